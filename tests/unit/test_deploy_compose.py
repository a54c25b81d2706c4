"""deploy/compose and the Dockerfile, checked without Docker: the Compose file against the Compose
specification (the schema check-jsonschema vendors), and against the code it runs: `pora`
commands that exist, PORA_* variables that are settings and that production mode accepts, health
checks on the ports the services listen on, mounts of files that exist, secrets that are never
written down, Prometheus jobs that find the services (promtool checks the file), and an image
built from files that reach the build context."""

from __future__ import annotations

import copy
import importlib.metadata
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click
import jsonschema  # type: ignore[import-untyped]  # no types-jsonschema among the dev tools
import pytest
import yaml

from streams.cli import main
from streams.settings import Mode, Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "deploy" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
ALERTS_FILE = REPO / "monitoring" / "prometheus" / "alerts.yml"
PORA_SERVICES = {"topics", "migrate", "gateway", "worker", "sink", "feed"}
ONE_SHOT = {"topics", "migrate"}
# the port each long-running Pora service listens on (its Settings field), and the job scraping it
PORTS = {
    "gateway": "gateway_port",
    "worker": "worker_metrics_port",
    "sink": "sink_metrics_port",
    "feed": "feed_port",
}
HOSTS = {"gateway": "gateway_host", "worker": "metrics_host", "sink": "metrics_host", "feed": "feed_host"}
JOBS = {"pora-gateway": "gateway", "pora-worker": "worker", "pora-sink": "sink", "pora-feed": "feed"}
# ${VAR:?message}: Compose refuses to start while VAR is unset or empty
_REQUIRED = re.compile(r"^\$\{([A-Z_][A-Z0-9_]*):\?[^}]+\}$")
_INTERPOLATION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(:?[-?+])?([^}]*)\}")
_SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN")
Compose = dict[str, Any]


def compose() -> Compose:
    doc: Compose = yaml.safe_load(COMPOSE_FILE.read_text())
    return doc


def compose_schema() -> dict[str, Any]:
    """The Compose specification's JSON schema, as vendored in check-jsonschema (read as a file:
    importing check_jsonschema pulls in its CLI, which needs a newer click than faust allows)."""
    path = importlib.metadata.distribution("check-jsonschema").locate_file(
        "check_jsonschema/builtin_schemas/vendor/compose-spec.json"
    )
    schema: dict[str, Any] = json.loads(Path(str(path)).read_text())
    return schema


def schema_errors(doc: Compose) -> list[str]:
    validator = jsonschema.Draft202012Validator(compose_schema())
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: "" if v is None else str(v) for k, v in raw.items()}


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def long_running(doc: Compose) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in doc["services"].items() if n not in ONE_SHOT}


def bind_mounts(service: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(source on the host, target in the container) of the bind mounts (named volumes skipped)."""
    for v in service.get("volumes", []):
        if isinstance(v, dict):
            if v.get("type") == "bind":
                yield v["source"], v["target"]
            continue
        source, target = v.split(":")[:2]
        if source.startswith((".", "/")):
            yield source, target


def healthcheck_url(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    text = test if isinstance(test, str) else " ".join(test)
    found = re.search(r"https?://[^'\" ]+", text)
    assert found, text
    return found.group(0)


# ------------------------------------------------------------------------------------ the specification


def test_compose_file_follows_the_compose_specification() -> None:
    assert schema_errors(compose()) == []


def test_the_specification_check_can_fail() -> None:
    doc = compose()
    broken = copy.deepcopy(doc)
    broken["services"]["gateway"]["healtcheck"] = broken["services"]["gateway"].pop("healthcheck")
    assert any("healtcheck" in e for e in schema_errors(broken))
    broken = copy.deepcopy(doc)
    broken["services"]["worker"]["depends_on"]["topics"]["condition"] = "service_finished"
    assert schema_errors(broken)


# ------------------------------------------------------------------------------------ the Pora services


def test_pora_services_run_the_one_image_built_from_the_repository() -> None:
    services = compose()["services"]
    pora = {n for n, s in services.items() if "build" in s}
    assert pora == PORA_SERVICES
    images = {services[n]["image"] for n in pora}
    assert len(images) == 1
    for name in pora:
        build = services[name]["build"]
        assert (COMPOSE_DIR / build["context"]).resolve() == REPO, name
        assert (COMPOSE_DIR / build["context"] / build.get("dockerfile", "Dockerfile")).is_file()


def _resolve(args: list[str]) -> click.Command:
    """The `pora` command ``args`` runs (a group's subcommand followed to the end)."""
    cmd: click.Command = main
    rest = list(args)
    while isinstance(cmd, click.Group):
        assert rest, f"`pora {' '.join(args)}` stops at a group"
        name = rest.pop(0)
        assert name in cmd.commands, f"`pora {' '.join(args)}`: no command {name!r}"
        cmd = cmd.commands[name]
    options = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    for arg in rest:
        if arg.startswith("-"):
            assert arg.split("=")[0] in options, f"`pora {' '.join(args)}`: no option {arg}"
    return cmd


@pytest.mark.parametrize("name", sorted(PORA_SERVICES))
def test_every_pora_service_runs_a_pora_command(name: str) -> None:
    args = command(compose()["services"][name])
    assert args, f"{name} runs the image's default command (--help)"
    _resolve(args)


def test_command_check_can_fail() -> None:
    with pytest.raises(AssertionError):
        _resolve(["db"])
    with pytest.raises(AssertionError):
        _resolve(["workers"])
    with pytest.raises(AssertionError):
        _resolve(["keys", "add", "--kind-of", "hotel"])


def test_pora_variables_are_settings() -> None:
    fields = {f"PORA_{name.upper()}" for name in Settings.model_fields}
    for name, service in compose()["services"].items():
        unknown = {k for k in env(service) if k.startswith("PORA_")} - fields
        assert not unknown, f"{name}: {sorted(unknown)} are not fields of streams.settings.Settings"


@pytest.mark.parametrize("name", sorted(PORA_SERVICES))
def test_production_mode_accepts_each_services_configuration(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's environment, with a made-up value for every ${VAR:?}, is a valid production
    configuration (the services refuse to start otherwise)."""
    for key in list(Settings.model_fields):
        monkeypatch.delenv(f"PORA_{key.upper()}", raising=False)
    for key, value in env(compose()["services"][name]).items():
        made_up = _INTERPOLATION.sub(lambda m: f"made-up-{m.group(1).lower()}-" + "x" * 32, value)
        monkeypatch.setenv(key, made_up)
    settings = Settings()
    assert settings.mode is Mode.PRODUCTION
    assert settings.kafka_bootstrap == "kafka:9092"
    assert urlparse(settings.clickhouse_url).hostname == "clickhouse"
    if name in HOSTS:
        host = getattr(settings, HOSTS[name])
        assert host == "0.0.0.0", f"{name} would listen on {host} only: unreachable from the other containers"


def test_long_running_services_have_health_checks() -> None:
    for name, service in long_running(compose()).items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test != ["NONE"], f"{name} has no health check"
        assert service.get("restart") in ("unless-stopped", "always", "on-failure"), name


@pytest.mark.parametrize("name", sorted(PORTS))
def test_pora_health_checks_ask_the_port_the_service_listens_on(name: str) -> None:
    url = urlparse(healthcheck_url(compose()["services"][name]))
    assert url.hostname == "127.0.0.1"
    assert url.port == Settings.model_fields[PORTS[name]].default, name
    assert url.path in ("/readyz", "/healthz", "/metrics"), name


def test_one_shot_services_run_before_the_others() -> None:
    services = compose()["services"]
    for name in ONE_SHOT:
        assert services[name].get("restart") == "no", name
    waits = {
        "gateway": {"topics"},
        "worker": {"topics"},
        "feed": {"topics"},
        "sink": {"topics", "migrate"},
    }
    for name, needs in waits.items():
        deps = services[name]["depends_on"]
        for one_shot in needs:
            assert deps[one_shot]["condition"] == "service_completed_successfully", (name, one_shot)


def test_dependencies_exist_and_healthy_means_a_health_check() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for dep, how in (service.get("depends_on") or {}).items():
            assert dep in services, (name, dep)
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy: it has no check"


def test_the_worker_scales() -> None:
    services = compose()["services"]
    worker = services["worker"]
    assert "ports" not in worker, "a published worker port breaks --scale worker=N"
    assert not any("container_name" in s for s in services.values())


# ------------------------------------------------------------------------------------ files and secrets


def test_every_mounted_file_exists() -> None:
    mounted = []
    for name, service in compose()["services"].items():
        for source, target in bind_mounts(service):
            path = (COMPOSE_DIR / source).resolve()
            assert path.exists(), f"{name} mounts {source} ({path}), which does not exist"
            mounted.append((source, target))
    assert ("../../monitoring/prometheus/alerts.yml", "/etc/prometheus/rules/alerts.yml") in mounted
    assert ALERTS_FILE.is_file()


def test_secrets_are_never_written_down() -> None:
    """Secret variables come from ${VAR:?...} (no default), and every such VAR is in .env.example,
    empty; .env and secrets/ are git-ignored."""
    required = set()
    for name, service in compose()["services"].items():
        for key, value in env(service).items():
            if _SECRET_NAME.search(key):
                m = _REQUIRED.match(value)
                assert m, f"{name}: {key} must be ${{VAR:?message}}, not {value!r}"
                required.add(m.group(1))
    assert {"CLICKHOUSE_PASSWORD", "PORA_PERSON_KEY_SECRET", "PORA_FEED_SECRET"} <= required
    example = {}
    for line in (COMPOSE_DIR / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            example[key.strip()] = value.strip()
    for var in required:
        assert example.get(var) == "", f".env.example must list {var}, empty"
    ignored = (COMPOSE_DIR / ".gitignore").read_text().split()
    assert ".env" in ignored and "secrets/*" in ignored


def test_key_and_user_files_are_compose_secrets() -> None:
    doc = compose()
    files = {name: spec["file"] for name, spec in doc["secrets"].items()}
    for name, service in doc["services"].items():
        for secret in service.get("secrets", []):
            source = secret if isinstance(secret, str) else secret["source"]
            target = source if isinstance(secret, str) else secret.get("target", source)
            assert source in files, (name, source)
            assert (COMPOSE_DIR / files[source]).resolve().parent == COMPOSE_DIR / "secrets"
            variable = {"keys": "PORA_GATEWAY_KEYS_FILE", "users": "PORA_FEED_USERS_FILE"}[source]
            assert env(service)[variable] == f"/run/secrets/{target}", (name, variable)
    gateway = {s["source"] for s in doc["services"]["gateway"]["secrets"]}
    feed = {s["source"] for s in doc["services"]["feed"]["secrets"]}
    assert gateway == {"keys"} and feed == {"users"}


def test_grafana_gets_every_variable_its_provisioning_reads() -> None:
    provisioning = REPO / "monitoring" / "grafana" / "provisioning"
    wanted = set()
    for path in provisioning.rglob("*.yml"):
        wanted |= set(re.findall(r"\$__env\{(\w+)\}", path.read_text()))
    services = compose()["services"]
    assert wanted and wanted <= set(env(services["grafana"]))
    mounts = dict(bind_mounts(services["grafana"]))
    assert mounts["../../monitoring/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["../../monitoring/grafana/dashboards"] == "/var/lib/grafana/dashboards"
    assert "grafana-clickhouse-datasource" in env(services["grafana"])["GF_INSTALL_PLUGINS"]


def test_readme_commands_use_real_options() -> None:
    """Every `keys add` / `users add` in the README's examples runs with options that exist."""
    text = (COMPOSE_DIR / "README.md").read_text().replace("\\\n", " ")
    seen = 0
    for line in text.splitlines():
        for group in ("keys", "users"):
            if f" {group} add " in line and line.lstrip().startswith(("PORA_", "docker", "pora")):
                words = shlex.split(line)
                _resolve(words[words.index(group) :])
                seen += 1
    assert seen >= 4


# ------------------------------------------------------------------------------------ Prometheus


def prometheus_config() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    return doc


def test_scrape_jobs_find_the_services_on_their_ports() -> None:
    jobs = {j["job_name"]: j for j in prometheus_config()["scrape_configs"]}
    services = compose()["services"]
    for job, service in JOBS.items():
        assert job in jobs, job
        port = Settings.model_fields[PORTS[service]].default
        spec = jobs[job]
        targets = [t for sc in spec.get("static_configs", []) for t in sc["targets"]]
        targets += [f"{n}:{dns['port']}" for dns in spec.get("dns_sd_configs", []) for n in dns["names"]]
        assert targets == [f"{service}:{port}"], (job, targets)
        assert spec.get("metrics_path", "/metrics") == "/metrics"
        exposed = {
            str(p).split(":")[-1] for p in services[service].get("ports", []) + services[service].get("expose", [])
        }
        assert str(port) in exposed, f"{service} does not expose {port}"


def test_alert_rules_select_jobs_that_exist() -> None:
    jobs = {j["job_name"] for j in prometheus_config()["scrape_configs"]}
    used = set(re.findall(r'job\s*=\s*"([^"]+)"', ALERTS_FILE.read_text()))
    assert used and used <= jobs, used - jobs


def test_prometheus_loads_the_mounted_files() -> None:
    prometheus = compose()["services"]["prometheus"]
    mounts = dict(bind_mounts(prometheus))
    flags = dict(arg.split("=", 1) for arg in command(prometheus) if "=" in arg)
    assert mounts["./prometheus.yml"] == flags["--config.file"]
    assert prometheus_config()["rule_files"] == [mounts["../../monitoring/prometheus/alerts.yml"]]


def test_promtool_accepts_the_configuration(tmp_path: Path) -> None:
    """`promtool check config` on prometheus.yml, with the rule file at its place in the repository."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: Debian's `prometheus` package has it (.ci/run installs it)"
    config = prometheus_config()
    config["rule_files"] = [str(ALERTS_FILE)]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# ------------------------------------------------------------------------------------ the image


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) per instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, args = line.strip().partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` (relative to the repository) out of the build context:
    the last pattern that matches decides (Docker's rule; patterns here are names or ``**/x``)."""
    ignored = False
    parts = Path(path).parts
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if pattern == "*" or pattern == parts[0] or (pattern.startswith("**/") and pattern[3:] in parts):
            ignored = not negate
    return ignored


def test_dockerfile_builds_pora_from_the_context() -> None:
    steps = dockerfile()
    stages = [args for ins, args in steps if ins == "FROM"]
    assert len(stages) >= 2, "a build stage and a runtime stage"
    arg_defaults = dict(a.split("=", 1) for ins, a in steps if ins == "ARG" and "=" in a)
    bases = {re.sub(r"\$\{(\w+)\}", lambda m: arg_defaults[m.group(1)], s.split()[0]) for s in stages}
    assert all(b.startswith("python:3.11-slim") for b in bases), bases
    copied: set[str] = set()
    for ins, args in steps:
        if ins == "COPY" and "--from=" not in args:
            *sources, _ = [a for a in args.split() if not a.startswith("--")]
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: no such file"
                assert not dockerignored(source), f"COPY {source}: .dockerignore keeps it out of the context"
                copied.add(source)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    wheel_packages = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert {"pyproject.toml", project["project"]["readme"], *wheel_packages} <= copied
    assert project["project"]["scripts"]["pora"] == "streams.cli:main"


def test_dockerignore_keeps_local_state_out() -> None:
    for path in (".venv", ".pora", ".git", "tests", "test-results", "bench-results", "pora-detectors-data"):
        assert dockerignored(path), path
    assert dockerignored("deploy/compose/.env") and dockerignored("deploy/compose/secrets/keys.toml")
    assert dockerignored("streams/__pycache__/cli.cpython-311.pyc")
    assert not dockerignored("streams/cli.py")


def test_dockerfile_runs_pora_as_a_user_without_secrets() -> None:
    steps = dockerfile()
    final = steps[max(i for i, (ins, _) in enumerate(steps) if ins == "FROM") :]
    assert json.loads(next(a for ins, a in final if ins == "ENTRYPOINT")) == ["pora"]
    assert json.loads(next(a for ins, a in final if ins == "CMD")) == ["--help"]
    users = [a for ins, a in final if ins == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    baked = " ".join(a for ins, a in steps if ins in ("ENV", "ARG"))
    assert "PORA_MODE" not in baked
    assert not _SECRET_NAME.search(baked), "no secret belongs in the image"
