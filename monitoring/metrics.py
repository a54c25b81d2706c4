"""Every Prometheus metric Pora exports, defined once so names and labels stay consistent."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_ACCEPTED = Counter(
    "pora_gateway_events_accepted_total",
    "Events written to their topic and receipted, by source kind and event kind.",
    ["source_kind", "kind"],
)
EVENTS_DUPLICATE = Counter(
    "pora_gateway_events_duplicate_total",
    "Events posted again with an event_id already receipted (answered with the first receipt).",
    ["source_kind", "kind"],
)
EVENTS_REJECTED = Counter(
    "pora_gateway_events_rejected_total",
    "Events or request bodies rejected, by event kind and reason.",
    ["source_kind", "kind", "reason"],
)
DEAD_LETTERS = Counter(
    "pora_dead_letters_total",
    "Records written to the dead-letter topic, by the step that rejected them and the reason.",
    ["step", "reason"],
)
PUBLISH_FAILURES = Counter(
    "pora_gateway_publish_failures_total",
    "Records the broker did not acknowledge (the client got 503 and should retry).",
    ["topic"],
)
REQUEST_SECONDS = Histogram(
    "pora_gateway_request_seconds",
    "Time to answer an ingestion request, receipt included (broker acknowledgement waited for).",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "pora_gateway_batch_events",
    "Events per ingestion request.",
    buckets=(1, 10, 50, 100, 500, 1000, 5000),
)
DEDUP_ENTRIES = Gauge("pora_gateway_dedup_entries", "Event ids held for idempotent retries.")

SINK_ROWS = Counter("pora_sink_rows_total", "Rows the sink wrote to ClickHouse (acknowledged), by table.", ["table"])
SINK_BATCHES = Counter("pora_sink_batches_total", "Batches written to ClickHouse and committed to Kafka.")
SINK_RETRIES = Counter(
    "pora_sink_insert_retries_total", "Inserts ClickHouse refused or did not answer, retried after a backoff."
)
SINK_INSERT_SECONDS = Histogram(
    "pora_sink_insert_seconds",
    "Time to write one batch (every table) to ClickHouse.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SINK_PAUSED = Gauge("pora_sink_paused", "1 while the sink holds consumption because ClickHouse is unavailable.")
