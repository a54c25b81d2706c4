"""deploy/k8s, checked offline: core kinds against the Kubernetes OpenAPI schemas
(kubernetes-validate, strict), custom resources against their operators' CRD schemas (vendored in
tests/fixtures/crds, closed to unknown fields as the API server's strict field validation is), and
against the code they run: topics, partitions, `pora` commands, PORA_* settings that production
mode accepts, ports and probes, the autoscaler's metric, network policies, scrape jobs and alert
rules, and secrets that are never written down."""

from __future__ import annotations

import copy
import importlib
import json
import re
import shlex
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import click
import jsonschema  # type: ignore[import-untyped]  # no types-jsonschema among the dev tools
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from monitoring import metrics
from streams import topics
from streams.cli import main
from streams.detect.person import INPUTS
from streams.settings import Mode, Settings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
CRDS = REPO / "tests" / "fixtures" / "crds"
ALERTS_FILE = REPO / "monitoring" / "prometheus" / "alerts.yml"
NAMESPACE = "pora"
# the oldest Kubernetes that Strimzi 1.x supports, and the newest that kubernetes-validate bundles
K8S_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())
# custom resource kinds: the apiVersion used and the vendored openAPIV3Schema (SOURCES.md)
CRD_KINDS = {
    "Kafka": "kafka.strimzi.io/v1",
    "KafkaNodePool": "kafka.strimzi.io/v1",
    "KafkaTopic": "kafka.strimzi.io/v1",
    "KafkaUser": "kafka.strimzi.io/v1",
    "ClickHouseInstallation": "clickhouse.altinity.com/v1",
    "ClickHouseKeeperInstallation": "clickhouse-keeper.altinity.com/v1",
    "PodMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
}
SERVICES = ("gateway", "worker", "sink", "feed")
# the port each service listens on (its Settings field) and the paths probed there
PORT_FIELDS = {
    "gateway": "gateway_port",
    "worker": "worker_metrics_port",
    "sink": "sink_metrics_port",
    "feed": "feed_port",
}
PROBES = {  # (liveness, readiness)
    "gateway": ("/healthz", "/readyz"),
    "worker": ("/metrics", "/metrics"),
    "sink": ("/metrics", "/metrics"),
    "feed": ("/healthz", "/healthz"),
}
# the topics the worker reads, which faust co-partitions (streams/app.py)
WORKER_INPUTS = {*INPUTS, topics.SPONSOR_REPORTS, topics.ENTITY_FACTS, topics.PERSON_FACTS}
_SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|KEY$", re.I)
Doc = dict[str, Any]


# ---------------------------------------------------------------------- loading


@cache
def detector_group() -> str:
    """The detectors' consumer group: the faust app id that `pora worker` runs with."""
    import inspect

    from streams.app import build_app  # imports faust: only when needed

    group: str = inspect.signature(build_app).parameters["app_id"].default
    return group


@cache
def _load() -> tuple[tuple[str, Doc], ...]:
    found = []
    for path in sorted([*K8S.rglob("*.yaml"), *K8S.rglob("*.yml")]):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                found.append((str(path.relative_to(K8S)), doc))
    return tuple(found)


def documents() -> list[tuple[str, Doc]]:
    """(file, doc) of every YAML document under deploy/k8s, fresh copies."""
    return [(f, copy.deepcopy(d)) for f, d in _load()]


@cache
def _resources() -> tuple[Doc, ...]:
    docs = [d for _, d in _load() if d.get("kind") != "Kustomization"]
    return (*docs, generated_configmap())


def resources() -> list[Doc]:
    """The Kubernetes objects (not the kustomization), plus the ConfigMap it generates; fresh copies."""
    return copy.deepcopy(list(_resources()))


def kustomization() -> Doc:
    (doc,) = [d for f, d in documents() if f == "kustomization.yaml"]
    return doc


def of_kind(kind: str) -> list[Doc]:
    return [copy.deepcopy(d) for d in _resources() if d["kind"] == kind]


def named(kind: str, name: str) -> Doc:
    (doc,) = [d for d in of_kind(kind) if d["metadata"]["name"] == name]
    return doc


def config_env() -> dict[str, str]:
    return dict(_config_env())


@cache
def _config_env() -> dict[str, str]:
    """The env file of the kustomization's configMapGenerator, as kustomize reads it."""
    (generator,) = kustomization()["configMapGenerator"]
    values: dict[str, str] = {}
    for env_file in generator["envs"]:
        for line in (K8S / env_file).read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                key, sep, value = line.partition("=")
                assert sep, f"{env_file}: not KEY=VALUE: {line!r}"
                values[key.strip()] = value
    return values


def generated_configmap() -> Doc:
    (generator,) = kustomization()["configMapGenerator"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": generator["name"], "namespace": generator["namespace"]},
        "data": config_env(),
    }


def deployment(service: str) -> Doc:
    return named("Deployment", service)


def pod_spec(service: str) -> Doc:
    spec: Doc = deployment(service)["spec"]["template"]["spec"]
    return spec


def main_container(service: str) -> Doc:
    containers: list[Doc] = [c for c in pod_spec(service)["containers"] if c["name"] == service]
    (container,) = containers
    return container


def all_containers() -> Iterator[tuple[str, Doc]]:
    for d in of_kind("Deployment"):
        spec = d["spec"]["template"]["spec"]
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            yield f"{d['metadata']['name']}/{c['name']}", c


def topic_specs() -> dict[str, Doc]:
    return {d["spec"]["topicName"]: d for d in of_kind("KafkaTopic")}


def matches(selector: Doc, labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and In/NotIn/Exists expressions) against labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        op, key, values = e["operator"], e["key"], e.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
    return True


def pod_labels(service: str) -> dict[str, str]:
    labels: dict[str, str] = deployment(service)["spec"]["template"]["metadata"]["labels"]
    return labels


def container_port(container: Doc, port: int | str) -> int:
    """A probe's or Service's port (a number, or a container port's name) as a number."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(number)


# ---------------------------------------------------------------------- files and schemas


def test_every_file_is_listed_in_the_kustomization_and_every_listed_file_exists() -> None:
    k = kustomization()
    listed = set(k["resources"])
    on_disk = {str(p.relative_to(K8S)) for p in [*K8S.rglob("*.yaml"), *K8S.rglob("*.yml")]}
    assert listed == on_disk - {"kustomization.yaml"}, "kustomization.yaml resources differ from the YAML files"
    for generator in k["configMapGenerator"]:
        for env_file in generator["envs"]:
            assert (K8S / env_file).is_file(), env_file
    # images: the one name the Pora containers use, which `kustomize edit set image` rewrites
    assert [i["name"] for i in k["images"]] == ["pora"]
    assert {c["image"] for n, c in all_containers()} == {"pora"}


def test_every_object_has_a_kind_a_name_and_its_namespace() -> None:
    seen = set()
    for doc in resources():
        meta = doc["metadata"]
        key = (doc["kind"], meta.get("namespace"), meta["name"])
        assert key not in seen, f"{key} defined twice"
        seen.add(key)
        if doc["kind"] == "Namespace":
            assert meta["name"] == NAMESPACE
        elif doc["kind"] == "ConfigMap" and meta["name"] == "pora-prometheus-adapter":
            assert meta["namespace"] == "monitoring"  # the adapter's own namespace
        else:
            assert meta.get("namespace") == NAMESPACE, f"{doc['kind']}/{meta['name']} is not in {NAMESPACE}"


def _embedded_core_objects(doc: Doc) -> Iterator[Doc]:
    """Pod, Service and PVC specs the ClickHouse operators copy verbatim (their CRDs keep them open)."""
    templates = doc["spec"].get("templates", {})
    for t in templates.get("podTemplates", []):
        yield {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": t["name"]}, "spec": t["spec"]}
    for t in templates.get("serviceTemplates", []):
        yield {"apiVersion": "v1", "kind": "Service", "metadata": {"name": t["name"]}, "spec": t["spec"]}
    for t in templates.get("volumeClaimTemplates", []):
        yield {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": t["name"]}, "spec": t["spec"]}


def core_objects() -> list[Doc]:
    core = [d for d in resources() if d["kind"] not in CRD_KINDS]
    for kind in ("ClickHouseInstallation", "ClickHouseKeeperInstallation"):
        for doc in of_kind(kind):
            core += _embedded_core_objects(doc)
    return core


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_core_objects_are_valid_kubernetes(version: str) -> None:
    errors = []
    for doc in core_objects():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(map(str, exc.path))
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}")
    assert not errors, "\n".join(errors)


def closed(schema: Any) -> Any:
    """The schema with unknown fields refused wherever the CRD lists an object's fields: the API
    server prunes them silently (or refuses them with strict field validation), so a typo would
    otherwise pass here and do nothing there."""
    if isinstance(schema, dict):
        out = {k: closed(v) for k, v in schema.items()}
        if (
            out.get("type") == "object"
            and "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [closed(v) for v in schema]
    return schema


@cache
def crd_validator(kind: str) -> Any:
    schema = json.loads((CRDS / f"{kind.lower()}.json").read_text())
    # CRD schemas are OpenAPI 3.0, whose keywords (boolean exclusiveMinimum, ...) are Draft 4's
    return jsonschema.Draft4Validator(closed(schema))


def crd_errors(doc: Doc) -> list[str]:
    validator = crd_validator(doc["kind"])
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_custom_resources_match_their_operators_schemas() -> None:
    groups = {d["kind"]: d["apiVersion"].rpartition("/")[0] for d in resources()}
    used = {kind for kind, group in groups.items() if "." in group and not group.endswith(".k8s.io")}
    assert used <= set(CRD_KINDS), f"custom resources without a vendored schema: {used - set(CRD_KINDS)}"
    assert set(CRD_KINDS) <= used, f"schemas vendored for kinds no longer used: {set(CRD_KINDS) - used}"
    errors = []
    for doc in resources():
        if doc["kind"] in CRD_KINDS:
            assert doc["apiVersion"] == CRD_KINDS[doc["kind"]], (doc["kind"], doc["apiVersion"])
            errors += [f"{doc['kind']}/{doc['metadata']['name']}: {e}" for e in crd_errors(doc)]
    assert not errors, "\n".join(errors)


def test_the_crd_check_refuses_typos_and_wrong_types() -> None:
    """The schema check can fail: a misspelt field, a wrong type, a value outside an enum."""
    kafka = named("Kafka", "pora")
    kafka["spec"]["kafka"]["listners"] = kafka["spec"]["kafka"]["listeners"]
    assert any("listners" in e for e in crd_errors(kafka))
    topic = topic_specs()[topics.ALERTS]
    topic["spec"]["partitions"] = "six"
    assert any("partitions" in e for e in crd_errors(topic))
    user = named("KafkaUser", "pora-sink")
    user["spec"]["authorization"]["acls"][0]["operations"] = ["Reed"]
    assert crd_errors(user)
    chi = named("ClickHouseInstallation", "pora")
    chi["spec"]["configuration"]["clusters"][0]["layout"]["shardCount"] = 2
    assert any("shardCount" in e for e in crd_errors(chi))


def test_the_core_check_refuses_a_misspelt_field() -> None:
    doc = deployment("worker")
    doc["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSIONS[0], strict=True)


# ---------------------------------------------------------------------- Kafka


def test_a_kafka_topic_for_every_topic_in_streams_topics_and_no_other() -> None:
    specs = topic_specs()
    assert set(specs) == {t.name for t in topics.TOPICS}
    for name, doc in specs.items():
        assert doc["metadata"]["labels"]["strimzi.io/cluster"] == named("Kafka", "pora")["metadata"]["name"], name
        assert doc["spec"]["replicas"] == 3, name
        assert doc["spec"]["config"]["min.insync.replicas"] == 2, name


def test_worker_inputs_share_one_partition_count_which_the_settings_name() -> None:
    specs = topic_specs()
    counts = {name: specs[name]["spec"]["partitions"] for name in WORKER_INPUTS}
    assert len(set(counts.values())) == 1, f"the worker's input topics differ in partitions: {counts}"
    (partitions,) = set(counts.values())
    assert int(config_env()["PORA_TOPIC_PARTITIONS"]) == partitions
    kafka_config = named("Kafka", "pora")["spec"]["kafka"]["config"]
    assert kafka_config["num.partitions"] == partitions


def test_input_topics_are_kept_for_the_replay() -> None:
    """The worker rebuilds its state by reading its inputs from the beginning: nothing it reads (nor
    the alerts and actions the feed and the worker re-read) may expire."""
    specs = topic_specs()
    for name in [*WORKER_INPUTS, topics.ALERTS, topics.ALERT_ACTIONS]:
        config = specs[name]["spec"]["config"]
        assert config["retention.ms"] == -1 and config["retention.bytes"] == -1, name
        assert config.get("cleanup.policy", "delete") == "delete", name  # compaction would drop events
    assert specs[topics.DEAD_LETTERS]["spec"]["config"]["retention.ms"] > 0


def test_kafka_is_kraft_with_replicated_persistent_node_pools_and_a_tls_listener() -> None:
    kafka = named("Kafka", "pora")
    assert kafka["metadata"]["annotations"] == {"strimzi.io/kraft": "enabled", "strimzi.io/node-pools": "enabled"}
    pools = of_kind("KafkaNodePool")
    assert {role for p in pools for role in p["spec"]["roles"]} == {"controller", "broker"}
    for pool in pools:
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == "pora"
        assert pool["spec"]["replicas"] == 3
        volumes = pool["spec"]["storage"]["volumes"]
        assert [v["type"] for v in volumes] == ["persistent-claim"] and not volumes[0]["deleteClaim"]
    listeners = kafka["spec"]["kafka"]["listeners"]
    assert any(listener["tls"] for listener in listeners)
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 3 and config["min.insync.replicas"] == 2
    assert config["auto.create.topics.enable"] is False
    host, _, port = config_env()["PORA_KAFKA_BOOTSTRAP"].partition(":")
    assert host == f"{kafka['metadata']['name']}-kafka-bootstrap"
    assert int(port) in {listener["port"] for listener in listeners if not listener["tls"]}


def test_kafka_listeners_admit_only_pora_pods() -> None:
    for listener in named("Kafka", "pora")["spec"]["kafka"]["listeners"]:
        peers = listener["networkPolicyPeers"]
        assert peers and all(set(p) == {"podSelector"} for p in peers), listener["name"]
        for service in SERVICES:
            assert any(matches(p["podSelector"], pod_labels(service)) for p in peers), (listener["name"], service)
        assert not any(matches(p["podSelector"], {"app.kubernetes.io/name": "clickhouse"}) for p in peers)


def test_kafka_user_acls_name_real_topics_and_groups() -> None:
    names = {t.name for t in topics.TOPICS}
    groups = {detector_group(), Settings().sink_group}
    users = {u["metadata"]["name"]: u for u in of_kind("KafkaUser")}
    assert set(users) == {f"pora-{s}" for s in SERVICES}
    for name, user in users.items():
        assert user["spec"]["authentication"]["type"] == "tls", name
        for acl in user["spec"]["authorization"]["acls"]:
            r = acl["resource"]
            if r["type"] == "group":
                assert r["name"] in groups, (name, r)
            elif r.get("patternType") == "prefix":
                assert any(t.startswith(r["name"]) for t in names), (name, r)
            else:
                assert r["name"] in names, (name, r)
    readable = {
        a["resource"]["name"]
        for a in users["pora-sink"]["spec"]["authorization"]["acls"]
        if a["resource"]["type"] == "topic" and "Read" in a["operations"]
    }
    assert readable == {t.name for t in topics.PUBLIC}, "the sink reads every public topic"


# ---------------------------------------------------------------------- the Pora services


def _command_exists(args: list[str]) -> bool:
    group: click.Command = main
    for word in args:
        if word.startswith("-"):
            break
        if not isinstance(group, click.Group):
            return True  # the rest are the command's own arguments
        sub = group.commands.get(word)
        if sub is None:
            return False
        group = sub
    return not isinstance(group, click.Group)


def test_every_container_runs_a_real_pora_command() -> None:
    for where, c in all_containers():
        if "command" in c:  # not the image's `pora` entrypoint: the cluster schema init container
            assert c["command"][:3] == ["python", "-m", "connectors.sink.cluster"], where
            module = importlib.import_module(c["command"][2])
            with pytest.raises(SystemExit) as done:
                module.main(["--help"])
            assert done.value.code == 0
            assert "--apply" in c["command"], where
            continue
        assert _command_exists(c["args"]), f"{where}: `pora {shlex.join(c['args'])}` is not a command"
    for service in SERVICES:
        assert main_container(service)["args"] == [service]


def container_env(container: Doc) -> dict[str, Any]:
    """The container's environment: the shared ConfigMap, then its own entries (value or valueFrom)."""
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        assert source["configMapRef"]["name"] == generated_configmap()["metadata"]["name"]
        env.update(config_env())
    for entry in container.get("env", []):
        env[entry["name"]] = entry.get("value", entry.get("valueFrom"))
    return env


def container_settings(container: Doc) -> Settings:
    """The settings the container starts with; a Secret's value (absent here, which is the point)
    replaced by a stand-in of the right shape."""
    env = {k: v if isinstance(v, str) else "s" * 40 for k, v in container_env(container).items()}
    return Settings.model_validate({k.removeprefix("PORA_").lower(): v for k, v in env.items()})


def test_every_pora_variable_is_a_setting() -> None:
    fields = set(Settings.model_fields)
    names = set(config_env()) | {n for _, c in all_containers() for n in container_env(c)}
    for name in names:
        assert name.startswith("PORA_"), name
        assert name.removeprefix("PORA_").lower() in fields, f"{name} is not a field of streams.settings.Settings"


def test_production_mode_accepts_each_containers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for where, c in all_containers():
        for name in list(Settings.model_fields):
            monkeypatch.delenv(f"PORA_{name.upper()}", raising=False)
        for name, value in container_env(c).items():
            # a Secret's value is not here (that is the point): a stand-in of the right shape
            monkeypatch.setenv(name, value if isinstance(value, str) else "s" * 40)
        s = Settings()
        assert s.mode is Mode.PRODUCTION, where
        assert s.metrics_host == "0.0.0.0" and s.clickhouse_url.startswith("clickhouse://"), where


def test_each_service_listens_on_its_port_and_is_probed_there() -> None:
    for service in SERVICES:
        c = main_container(service)
        port = getattr(container_settings(c), PORT_FIELDS[service])
        assert [p["containerPort"] for p in c["ports"]] == [port], service
        liveness, readiness = PROBES[service]
        for probe, path in (("livenessProbe", liveness), ("readinessProbe", readiness), ("startupProbe", liveness)):
            assert c[probe]["httpGet"]["path"] == path, (service, probe)
            assert container_port(c, c[probe]["httpGet"]["port"]) == port, (service, probe)
    for svc in of_kind("Service"):
        (service,) = [s for s in SERVICES if matches({"matchLabels": svc["spec"]["selector"]}, pod_labels(s))]
        for p in svc["spec"]["ports"]:
            assert container_port(main_container(service), p["targetPort"]) == p["port"], svc["metadata"]["name"]
    assert {s["metadata"]["name"] for s in of_kind("Service")} == {"gateway", "feed"}  # what the ingress reaches


def test_secret_files_are_mounted_where_the_settings_look() -> None:
    env = config_env()
    for service, variable, secret in (
        ("gateway", "PORA_GATEWAY_KEYS_FILE", "pora-gateway-keys"),
        ("feed", "PORA_FEED_USERS_FILE", "pora-feed-users"),
    ):
        path = Path(env[variable])
        (mount,) = [m for m in main_container(service)["volumeMounts"] if Path(m["mountPath"]) == path.parent]
        (volume,) = [v for v in pod_spec(service)["volumes"] if v["name"] == mount["name"]]
        assert volume["secret"]["secretName"] == secret and mount["readOnly"], service


def test_pods_run_unprivileged_with_read_only_roots_and_bounded_resources() -> None:
    for service in SERVICES:
        spec = pod_spec(service)
        assert spec["automountServiceAccountToken"] is False
        assert spec["serviceAccountName"] == "pora"
        ctx = spec["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0
        assert ctx["seccompProfile"]["type"] == "RuntimeDefault"
    for where, c in all_containers():
        ctx = c["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False, where
        assert ctx["readOnlyRootFilesystem"] is True, where
        assert ctx["capabilities"]["drop"] == ["ALL"], where
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][bound]), (where, bound)
        mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
        assert "/tmp" in mounts, f"{where}: a read-only root needs a writable /tmp"


def test_every_service_has_a_disruption_budget_and_spreads_over_nodes() -> None:
    budgets = of_kind("PodDisruptionBudget")
    for service in SERVICES:
        labels = pod_labels(service)
        assert matches(deployment(service)["spec"]["selector"], labels)
        (pdb,) = [b for b in budgets if matches(b["spec"]["selector"], labels)]
        assert ("minAvailable" in pdb["spec"]) != ("maxUnavailable" in pdb["spec"]), service
        spread = pod_spec(service)["topologySpreadConstraints"]
        assert {t["topologyKey"] for t in spread} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
        assert all(matches(t["labelSelector"], labels) for t in spread), service
    # a rolling update of the workers would rebalance (and replay) once per replaced pod
    assert deployment("worker")["spec"]["strategy"]["type"] == "Recreate"


# ---------------------------------------------------------------------- autoscaling


def adapter_rules() -> list[Doc]:
    config = yaml.safe_load(named("ConfigMap", "pora-prometheus-adapter")["data"]["config.yaml"])
    rules: list[Doc] = config["externalRules"]
    return rules


def test_the_worker_scales_on_the_detectors_lag_up_to_the_partition_count() -> None:
    hpa = named("HorizontalPodAutoscaler", "worker")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"}
    assert "replicas" not in deployment("worker")["spec"], "the HPA owns the count"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    partitions = topic_specs()[topics.BORDER_CROSSINGS]["spec"]["partitions"]
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] <= partitions
    # every scale-down is a rebalance, hence a full replay, hence lag: it must not be automatic
    assert hpa["spec"]["behavior"]["scaleDown"]["selectPolicy"] == "Disabled"
    (rule,) = [r for r in adapter_rules() if r["name"]["as"] == metric["external"]["metric"]["name"]]
    lag = metrics.CONSUMER_LAG._name  # the gauge the worker exports
    for query in (rule["seriesQuery"], rule["metricsQuery"]):
        assert query.startswith(lag) or f"({lag}{{" in query, query
        assert f'group="{detector_group()}"' in query, query
    assert "<<.LabelMatchers>>" in rule["metricsQuery"]  # the HPA's namespace
    assert rule["resources"]["overrides"]["namespace"] == {"resource": "namespace"}


def test_the_gateway_scales_on_cpu() -> None:
    hpa = named("HorizontalPodAutoscaler", "gateway")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "gateway"
    assert "replicas" not in deployment("gateway")["spec"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and hpa["spec"]["minReplicas"] >= 2


# ---------------------------------------------------------------------- secrets


def readme_secrets() -> dict[str, set[str]]:
    """The Secrets README.md tells the operator to create, with their keys."""
    text = (K8S / "README.md").read_text()
    found: dict[str, set[str]] = {}
    for command in re.findall(r"kubectl[^\n]*create secret generic(?:[^\n]*\\\n)*[^\n]*", text):
        words = shlex.split(command.replace("\\\n", " "))
        name = words[words.index("generic") + 1]
        keys = {w.split("=", 2)[1] for w in words if w.startswith(("--from-literal=", "--from-file="))}
        found[name] = keys
    return found


def secret_references() -> set[tuple[str, str]]:
    refs = set()
    for _, c in all_containers():
        for value in container_env(c).values():
            if isinstance(value, dict) and "secretKeyRef" in value:
                refs.add((value["secretKeyRef"]["name"], value["secretKeyRef"]["key"]))
    for service in SERVICES:
        c = main_container(service)
        for v in pod_spec(service).get("volumes", []):
            if "secret" in v:
                (mount,) = [m for m in c["volumeMounts"] if m["name"] == v["name"]]
                env_paths = [Path(p) for p in config_env().values() if p.startswith(mount["mountPath"] + "/")]
                refs |= {(v["secret"]["secretName"], p.name) for p in env_paths}
    users = named("ClickHouseInstallation", "pora")["spec"]["configuration"]["users"]
    for value in users.values():
        if isinstance(value, dict):
            refs.add((value["valueFrom"]["secretKeyRef"]["name"], value["valueFrom"]["secretKeyRef"]["key"]))
    return refs


def test_no_secret_is_written_in_the_manifests() -> None:
    assert not [d for d in resources() if d["kind"] == "Secret"], "Secrets are created out of band (README.md)"
    for where, c in all_containers():
        for entry in c.get("env", []):
            if _SECRET_NAME.search(entry["name"]):
                assert "value" not in entry and "secretKeyRef" in entry["valueFrom"], f"{where}: {entry['name']}"
    for name in config_env():
        assert not _SECRET_NAME.search(name), f"config.env holds {name}"
    users = named("ClickHouseInstallation", "pora")["spec"]["configuration"]["users"]
    for key, value in users.items():
        if re.search(r"password", key, re.I):
            assert isinstance(value, dict) and "secretKeyRef" in value["valueFrom"], key


def test_every_secret_referenced_is_one_the_readme_creates() -> None:
    documented = readme_secrets()
    assert documented, "README.md shows no `kubectl create secret generic` command"
    for name, key in sorted(secret_references()):
        assert key in documented.get(name, set()), f"README.md does not create secret {name} with key {key}"


# ---------------------------------------------------------------------- network policies


def policies() -> list[Doc]:
    return of_kind("NetworkPolicy")


def admitted(labels: dict[str, str], port: int, namespace: str) -> bool:
    """Does some policy admit a connection from any pod of ``namespace`` to a pod with ``labels``
    on ``port``?"""
    for p in policies():
        if "Ingress" not in p["spec"]["policyTypes"] or not matches(p["spec"]["podSelector"], labels):
            continue
        for rule in p["spec"].get("ingress", []):
            if port not in [x["port"] for x in rule.get("ports", [])]:
                continue
            for peer in rule.get("from", []):
                ns = peer.get("namespaceSelector")
                if ns is not None and matches(ns, {"kubernetes.io/metadata.name": namespace}):
                    return True
    return False


def test_ingress_is_denied_by_default() -> None:
    deny = [p for p in policies() if p["spec"]["podSelector"] == {} and p["spec"]["policyTypes"] == ["Ingress"]]
    assert deny and not deny[0]["spec"].get("ingress"), "no default-deny ingress policy"


def test_the_services_are_reachable_only_as_intended() -> None:
    ports = {service: main_container(service)["ports"][0]["containerPort"] for service in SERVICES}
    for service in SERVICES:  # Prometheus scrapes every one
        assert admitted(pod_labels(service), ports[service], "monitoring"), service
    for service in ("gateway", "feed"):  # the public ones, through the ingress controller
        assert admitted(pod_labels(service), ports[service], "ingress-nginx"), service
    for service in ("worker", "sink"):
        assert not admitted(pod_labels(service), ports[service], "ingress-nginx"), service
    assert not admitted(pod_labels("gateway"), ports["gateway"], "default")


def test_clickhouse_admits_only_the_pora_pods_that_use_it_and_its_own() -> None:
    (policy,) = [p for p in policies() if p["metadata"]["name"] == "clickhouse"]
    chi = named("ClickHouseInstallation", "pora")
    assert policy["spec"]["podSelector"] == {"matchLabels": {"clickhouse.altinity.com/chi": chi["metadata"]["name"]}}
    pora_peers = [
        peer["podSelector"]
        for rule in policy["spec"]["ingress"]
        for peer in rule["from"]
        if set(peer) == {"podSelector"}
    ]
    allowed = {s for s in SERVICES if any(matches(sel, pod_labels(s)) for sel in pora_peers)}
    assert allowed == {"sink", "feed"}
    assert not [r for r in policy["spec"]["ingress"] if not r.get("from")], "a rule open to every source"


def test_pora_pods_may_resolve_names_and_reach_kafka() -> None:
    (egress,) = [p for p in policies() if p["metadata"]["name"] == "pora-egress"]
    for service in SERVICES:
        assert matches(egress["spec"]["podSelector"], pod_labels(service))
    ports = {(x["protocol"], x["port"]) for rule in egress["spec"]["egress"] for x in rule["ports"]}
    assert {("UDP", 53), ("TCP", 53), ("TCP", 9092)} <= ports


# ---------------------------------------------------------------------- monitoring


def test_each_service_is_scraped_under_its_job_name() -> None:
    jobs = {}
    for monitor in of_kind("PodMonitor"):
        (service,) = [s for s in SERVICES if matches(monitor["spec"]["selector"], pod_labels(s))]
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert endpoint["path"] == "/metrics"
        c = main_container(service)
        assert container_port(c, endpoint["port"]) == c["ports"][0]["containerPort"], service
        (relabel,) = [r for r in endpoint["relabelings"] if r.get("targetLabel") == "job"]
        assert relabel["action"] == "replace" and "sourceLabels" not in relabel
        jobs[service] = relabel["replacement"]
    assert jobs == {s: f"pora-{s}" for s in SERVICES}


def test_the_prometheus_rule_carries_the_alert_rules_file() -> None:
    assert ALERTS_FILE.exists(), f"{ALERTS_FILE.relative_to(REPO)} is missing: the PrometheusRule copies it"
    rules = yaml.safe_load(ALERTS_FILE.read_text())
    (rule,) = of_kind("PrometheusRule")
    assert rule["spec"]["groups"] == rules["groups"], (
        "deploy/k8s/monitoring/prometheusrule.yaml is out of date: "
        "run .venv/bin/python deploy/k8s/tools/sync_prometheus_rule.py"
    )
    jobs = set(re.findall(r'job="(pora-[a-z]+)"', ALERTS_FILE.read_text()))
    assert jobs <= {f"pora-{s}" for s in SERVICES}, f"the rules select jobs nothing scrapes: {jobs}"


# ---------------------------------------------------------------------- ClickHouse


def test_clickhouse_is_two_shards_of_two_replicas_on_keeper_reached_as_configured() -> None:
    chi = named("ClickHouseInstallation", "pora")
    (cluster,) = chi["spec"]["configuration"]["clusters"]
    assert cluster["layout"] == {"shardsCount": 2, "replicasCount": 2}
    (keeper,) = of_kind("ClickHouseKeeperInstallation")
    (node,) = chi["spec"]["configuration"]["zookeeper"]["nodes"]
    assert node == {"host": f"keeper-{keeper['metadata']['name']}", "port": 2181}  # the operator's Service name
    assert keeper["spec"]["configuration"]["clusters"][0]["layout"]["replicasCount"] == 3
    env = config_env()
    assert env["PORA_CLICKHOUSE_URL"] == f"clickhouse://clickhouse-{chi['metadata']['name']}:9000"
    users = chi["spec"]["configuration"]["users"]
    assert f"{env['PORA_CLICKHOUSE_USER']}/password" in users
    assert chi["spec"]["configuration"]["profiles"]["pora/distributed_foreground_insert"] == 1
