"""The `pora` command line."""

from __future__ import annotations

import logging
import sys

import click
from pydantic import ValidationError

from streams.settings import Settings


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise click.ClickException(f"configuration: {problems}") from None


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Pora: real-time supervision of foreigners and TPPO prevention."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.WARNING)


def _serve_metrics(host: str, port: int, variable: str) -> None:
    """/metrics for a service without an HTTP server of its own (port 0: none)."""
    if not port:
        return
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        problem = f"cannot serve /metrics on {host}:{port} ({exc.strerror}): set {variable}, 0 for none"
        raise click.ClickException(problem) from None


@main.command()
def up() -> None:
    """Start the local stack: Tansu broker, topics, ingestion gateway."""
    from streams import localstack, stack

    try:
        stack.up(_settings(), say=click.echo)
    except localstack.StackError as exc:
        raise _fail(exc) from None


@main.command()
def down() -> None:
    """Stop the local stack started by `pora up`."""
    from streams import stack

    stack.down(_settings(), say=click.echo)


@main.command()
def status() -> None:
    """Show which local processes run."""
    from streams import localstack, stack

    s = _settings()
    for name in (stack.BROKER, stack.GATEWAY, stack.WORKER, stack.FEED):
        pid = localstack.read_pid(s.state_dir, name)
        state = "running" if pid is not None and localstack.is_running(pid) else "stopped"
        click.echo(f"{name:<9} {state}" + (f" (pid {pid})" if pid and state == "running" else ""))


@main.command()
def gateway() -> None:
    """Run the ingestion gateway in the foreground."""
    from connectors.gateway.app import run
    from connectors.gateway.keys import KeyFileError, KeyRing

    s = _settings()
    try:
        keys = KeyRing.load(s.keys_file)
    except KeyFileError as exc:
        raise _fail(exc) from None
    if not len(keys):
        raise click.ClickException(f"API key file {s.keys_file} holds no keys; add one with `pora keys add`")
    click.echo(
        f"gateway: {len(keys)} API keys, Kafka {s.kafka_bootstrap}, listening on {s.gateway_host}:{s.gateway_port}"
    )
    run(s, keys, print_fn=click.echo)


@main.command()
@click.option(
    "--rules",
    "rules_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Rules file (default: streams/rules.toml).",
)
def worker(rules_path: str | None) -> None:
    """Run a detector worker (faust); start several to share the partitions."""
    from pathlib import Path

    from streams.app import run_worker
    from streams.detect.config import load_rules

    try:
        rules = load_rules(Path(rules_path) if rules_path else None)
    except (OSError, ValueError) as exc:
        raise _fail(exc) from None
    settings = _settings()
    _serve_metrics(settings.metrics_host, settings.worker_metrics_port, "PORA_WORKER_METRICS_PORT")
    click.echo(f"worker: rules {rules.version}, Kafka {settings.kafka_bootstrap}")
    run_worker(settings, rules)


@main.command()
def topics() -> None:
    """Create the platform's topics (idempotent)."""
    from streams import localstack
    from streams.topics import TOPICS

    s = _settings()
    names = [s.topic(t.name) for t in TOPICS]
    try:
        created = localstack.create_topics(
            s.kafka_bootstrap,
            names,
            s.topic_partitions,
            s.topic_replication,
            max_message_bytes=s.kafka_max_message_bytes,
        )
    except localstack.StackError as exc:
        raise _fail(exc) from None
    for n in names:
        click.echo(f"{n:<30} {'created' if n in created else 'exists'}")


@main.group()
def keys() -> None:
    """Manage API keys of sources."""


@keys.command("add")
@click.option("--id", "source_id", required=True, help="Name of the source, e.g. hotel-harmoni-batam.")
@click.option(
    "--kind", type=click.Choice(["hotel", "checkpoint", "sponsor", "agency", "office", "system"]), required=True
)
@click.option("--binds", default="", help="establishment_id, checkpoint_id, sponsor_id, agency_id or office code.")
@click.option("--name", default="", help="Establishment name (completes CSV registers).")
@click.option("--region", default="", help="Establishment region.")
@click.option("--office", default="", help="Establishment's immigration office.")
@click.option("--utc-offset", default="", help="Local time offset for CSV registers, e.g. +08:00 (WITA).")
def keys_add(source_id: str, kind: str, binds: str, name: str, region: str, office: str, utc_offset: str) -> None:
    """Create a key; prints it once and stores only its hash in the key file."""
    from connectors.gateway.keys import key_entry, new_key

    if kind != "system" and not binds:
        raise click.UsageError(f"a {kind} key must be bound: give --binds")
    s = _settings()
    key = new_key()
    s.keys_file.parent.mkdir(parents=True, exist_ok=True)
    with s.keys_file.open("a") as fh:
        fh.write(key_entry(source_id, kind, binds, key, name=name, region=region, office=office, utc_offset=utc_offset))
    click.echo(f"key for {source_id} ({kind}{' ' + binds if binds else ''}), shown once:\n{key}")
    click.echo(f"added to {s.keys_file}; restart the gateway to load it", err=True)


@main.command()
@click.argument("topic")
@click.option("--limit", default=20, show_default=True, help="Show the last N records.")
def tail(topic: str, limit: int) -> None:
    """Print the last records of a topic, decoded."""
    import json

    from streams.reading import read_topic

    s = _settings()
    try:
        records = read_topic(s.kafka_bootstrap, s.topic(topic))
    except (LookupError, TimeoutError) as exc:
        raise _fail(exc) from None
    for r in records[-limit:]:
        body = r.record if r.record is not None else {"error": r.error}
        click.echo(f"{r.partition}:{r.offset} {r.kind} {json.dumps(body, default=str, ensure_ascii=False)}")


@main.command()
@click.option("--days", default=30, show_default=True, help="Simulated days.")
@click.option("--travellers", default=500, show_default=True)
@click.option("--seed", default=1, show_default=True)
@click.option("--start", default=None, help="First day YYYY-MM-DD (default: --days before today).")
@click.option("--out", "out_path", default="simulation.jsonl", show_default=True, help="Events (JSON lines).")
@click.option("--truth", "truth_path", default="truth.jsonl", show_default=True, help="Ground truth (JSON lines).")
def simulate(days: int, travellers: int, seed: int, start: str | None, out_path: str, truth_path: str) -> None:
    """Make a realistic population's events, with the alerts each rule should raise."""
    from collections import Counter
    from datetime import date, timedelta

    from connectors.simulator import write_simulation

    try:
        first = date.fromisoformat(start) if start else date.today() - timedelta(days=days + 1)
        sim = write_simulation(days, travellers, seed, first, out_path, truth_path)
    except ValueError as exc:
        raise _fail(exc) from None
    click.echo(
        f"{len(sim.events)} events to {out_path} (ending with a clock tick at {sim.end.isoformat()}), "
        f"{len(sim.truth)} expected alerts to {truth_path}:"
    )
    for rule, n in sorted(Counter(t["rule_id"] for t in sim.truth).items()):
        click.echo(f"  {rule:<26} {n:>5}")


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--window", default=1000, show_default=True, help="Lines per write (then a clock tick).")
@click.option("--speed", type=float, default=None, help="Event-time seconds per wall second (default: full speed).")
@click.option("--until", default=None, help="Tick event time to this ISO time at the end (deadlines after the data).")
def replay(path: str, window: int, speed: float | None, until: str | None) -> None:
    """Push a JSON-lines file of events through the gateway's validation into Kafka."""
    import asyncio
    from pathlib import Path

    from connectors.replay import ReplayError
    from connectors.replay import replay as run_replay
    from schemas.validation import parse_timestamp_ms

    try:
        until_ms = parse_timestamp_ms(until) if until else None
        stats = asyncio.run(run_replay(_settings(), Path(path), window=window, speed=speed, until_ms=until_ms))
    except (ReplayError, ValueError, RuntimeError) as exc:
        raise _fail(exc) from None
    click.echo(
        f"replayed {stats.lines} lines in {stats.seconds:.1f} s: {stats.accepted} accepted "
        f"({stats.duplicates} already there), {stats.rejected} rejected, {stats.ticks} clock ticks"
    )
    for line in stats.rejected_lines[:20]:
        click.echo(f"  rejected {line}", err=True)
    if stats.rejected:
        raise SystemExit(1)


@main.command()
@click.option("--truth", "truth_path", type=click.Path(exists=True, dir_okay=False), required=True)
def evaluate(truth_path: str) -> None:
    """Compare the alerts on the topic with a simulation's ground truth: precision and recall per rule."""
    from pathlib import Path

    from connectors.evaluate import evaluate as run_evaluate
    from connectors.evaluate import table

    try:
        click.echo(table(run_evaluate(_settings(), Path(truth_path))))
    except (LookupError, TimeoutError) as exc:
        raise _fail(exc) from None


@main.command()
def demo() -> None:
    """Start the local stack, post sample reports as each source would, show what arrived."""
    from connectors.demo import run_demo, run_detector_demo, run_sink_demo
    from streams import localstack, stack

    s = _settings()
    try:
        stack.up(s, say=click.echo)
    except localstack.StackError as exc:
        raise _fail(exc) from None
    s = s.model_copy(update={"kafka_bootstrap": f"{s.broker_host}:{s.broker_port}"})
    run_demo(s, say=click.echo)
    sim_settings = run_detector_demo(s, say=click.echo)
    run_sink_demo(sim_settings, say=click.echo)
    try:
        url = stack.start_feed(sim_settings, say=click.echo, restart=True)
    except localstack.StackError as exc:
        raise _fail(exc) from None
    import json

    passwords = json.loads((s.state_dir / "demo-users.json").read_text())
    click.echo(
        f"\nThe supervisor feed runs on the simulated data: {url}\n"
        f"  log in as supervisor-batam / {passwords['supervisor-batam']} (office KANIM-BATAM); "
        f"other demo users (admin, supervisor-medan, polda-kepri) in {s.state_dir / 'demo-users.json'}"
    )
    click.echo(
        "\nThe stack keeps running: `pora tail alerts`, `pora report overstays`, `pora status`, `pora down` to stop."
    )


@main.command()
@click.option("--until-idle", type=float, default=None, help="Stop after this many seconds with nothing to read.")
def sink(until_idle: float | None) -> None:
    """Write every topic to ClickHouse (PORA_CLICKHOUSE_URL; default: embedded chdb in the state dir)."""
    import signal
    import threading
    import time

    from connectors.sink.migrate import migrate
    from connectors.sink.sink import Sink
    from connectors.sink.store import StoreError, open_store

    settings = _settings()
    _serve_metrics(settings.metrics_host, settings.sink_metrics_port, "PORA_SINK_METRICS_PORT")
    try:
        store = open_store(settings)
        ran = migrate(store)
    except (StoreError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    click.echo(f"sink: {store.target}" + (f" (migrated: {', '.join(m.name for m in ran)})" if ran else ""))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    s = Sink(settings, store)
    idle_since = time.monotonic()
    try:
        while not stop.is_set():
            if s.poll() or not s.consumer.assignment():  # idle counts from the partition assignment
                idle_since = time.monotonic()
            elif until_idle is not None and time.monotonic() - idle_since >= until_idle:
                break
    finally:
        s.close()
        store.close()
    st = s.stats
    click.echo(f"sink: {st.rows} rows in {st.batches} batches, {st.retries} retries, {st.dead_letters} dead letters")


@main.group()
def db() -> None:
    """The ClickHouse schema."""


@db.command("migrate")
def db_migrate() -> None:
    """Create or upgrade the analytics schema (versioned migrations, each applied once)."""
    from connectors.sink.migrate import migrate
    from connectors.sink.store import StoreError, open_store

    settings = _settings()
    try:
        store = open_store(settings)
        ran = migrate(store)
        store.close()
    except (StoreError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    if ran:
        click.echo(f"{store.target}: applied " + ", ".join(f"{m.version:04d}_{m.name}" for m in ran))
    else:
        click.echo(f"{store.target}: up to date")


def _report_date(ctx: click.Context, param: click.Parameter, value: str | None) -> object:
    from datetime import date

    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date: use YYYY-MM-DD", ctx, param) from None


@main.command()
@click.argument("name")
@click.option("--from", "date_from", metavar="YYYY-MM-DD", callback=_report_date, help="First local (WIB) day.")
@click.option("--to", "date_to", metavar="YYYY-MM-DD", callback=_report_date, help="Last local (WIB) day, inclusive.")
@click.option("--office", default=None, help="Only this immigration office, e.g. KANIM-BATAM.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
def report(name: str, date_from: object, date_to: object, office: str | None, fmt: str) -> None:
    """Run report NAME on ClickHouse: hotel-compliance, overstays, tppo-screening, tppo-indicators,
    sponsor-compliance, alert-funnel (definitions: connectors/sink/reports.py)."""
    from datetime import date

    from connectors.sink.migrate import migrate
    from connectors.sink.reports import ReportError, get_report, render, run_report
    from connectors.sink.store import StoreError, open_store

    first = date_from if isinstance(date_from, date) else None  # the callback gave a date or None
    last = date_to if isinstance(date_to, date) else None
    try:
        get_report(name)
        if first is not None and last is not None and first > last:
            raise ReportError(f"--from {first} is after --to {last}")
    except ReportError as exc:
        raise _fail(exc) from None
    settings = _settings()
    try:
        store = open_store(settings)
        try:
            migrate(store)
            result = run_report(store, name, date_from=first, date_to=last, office=office)
        finally:
            store.close()
    except (ReportError, StoreError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    click.echo(render(result, fmt), nl=False)


@main.command()
def feed() -> None:
    """Run the supervisor feed (web app, API, live stream) at PORA_FEED_HOST:PORA_FEED_PORT."""
    from connectors.feed.app import run_feed
    from streams.settings import Mode

    settings = _settings()
    if settings.mode is Mode.LOCAL:
        from connectors.feed.users import ensure_demo_users

        passwords = ensure_demo_users(settings.users_file, settings.state_dir / "demo-users.json")
        click.echo(f"demo users ({settings.state_dir / 'demo-users.json'}): " + ", ".join(sorted(passwords)))
    click.echo(f"feed: http://{settings.feed_host}:{settings.feed_port}/ (alerts from {settings.kafka_bootstrap})")
    run_feed(settings)


@main.group()
def users() -> None:
    """Feed users (PORA_FEED_USERS_FILE)."""


@users.command("add")
@click.option("--name", required=True)
@click.option("--role", type=click.Choice(["admin", "supervisor", "agency"]), required=True)
@click.option("--office", "offices", multiple=True, help="An office the user works for (repeat).")
@click.option("--rule", "rules", multiple=True, help="Agency members: a rule they may see (repeat).")
@click.option("--token/--no-token", default=False, help="Also make an API token.")
def users_add(name: str, role: str, offices: tuple[str, ...], rules: tuple[str, ...], token: bool) -> None:
    """Add or replace a user; prints the generated password (and token) once."""
    import secrets

    from connectors.feed.users import User, UserStore, hash_password, token_hash

    settings = _settings()
    store = UserStore.load(settings.users_file)
    password = secrets.token_urlsafe(12)
    api_token = secrets.token_urlsafe(24) if token else ""
    try:
        store.add(
            User(
                name,
                role,
                frozenset(offices),
                frozenset(rules),
                hash_password(password),
                token_hash(api_token) if api_token else "",
            )
        )
    except ValueError as exc:
        raise _fail(exc) from None
    store.save(settings.users_file)
    click.echo(f"user {name} ({role}) saved in {settings.users_file}")
    click.echo(f"password: {password}")
    if api_token:
        click.echo(f"API token: {api_token}")


if __name__ == "__main__":  # keep last: every command must be registered before main() runs
    sys.exit(main())
