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
SINK_LAST_WRITE = Gauge(
    "pora_sink_last_write_timestamp_seconds",
    "When the sink last wrote a batch to ClickHouse and committed it (Unix time); with lag above 0, "
    "a time that stops moving means the sink is stuck.",
)
SINK_PAUSED = Gauge("pora_sink_paused", "1 while the sink holds consumption because ClickHouse is unavailable.")
SINK_BATCH_ROWS = Histogram(
    "pora_sink_batch_rows",
    "Rows per batch written to ClickHouse (all tables of one batch together).",
    buckets=(1, 10, 100, 1_000, 5_000, 10_000, 50_000, 100_000),
)

# --- detector worker -------------------------------------------------------------------------
WORKER_EVENTS = Counter(
    "pora_worker_events_total",
    "Input records the detector worker processed, by stage (person, entity) and topic.",
    ["stage", "topic"],
)
ALERTS = Counter(
    "pora_alerts_total",
    "Alert records the detectors wrote, by rule and status (RAISED, AMENDED, WITHDRAWN). "
    "A restarted worker's replay does not count the records it finds already written.",
    ["rule_id", "status"],
)
EVENT_TO_ALERT_SECONDS = Histogram(
    "pora_event_to_alert_seconds",
    "Wall time from the Kafka timestamp of the record that caused an alert (for an event: the "
    "gateway's write, i.e. its acceptance; for an internal fact: the first stage's write) to the "
    "alert's write, by rule. Alerts a restarted worker finds already written are not observed.",
    ["rule_id"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
WATERMARK_DELAY = Gauge(
    "pora_worker_watermark_delay_seconds",
    "Wall time minus the stage's event-time watermark, per input partition: how far the "
    "detectors' notion of 'now' is behind the clock (grows when a partition stalls).",
    ["stage", "partition"],
)
LATE_EVENTS = Counter(
    "pora_worker_late_events_total",
    "Events that arrived behind the watermark and were applied late (rules stay exact, the alert "
    "is merely later), by stage.",
    ["stage"],
)
WORKER_PARTITIONS = Gauge("pora_worker_partitions_assigned", "Input partitions this worker holds, by stage.", ["stage"])
WORKER_STATE = Gauge(
    "pora_worker_state_items",
    "What the detectors hold in memory, summed over this worker's partitions, by stage and kind "
    "(person: people, record ids, timers; entity: establishments, sponsors, journeys, record ids, "
    "timers). Follows the people and places watched, not the events read (retention.days).",
    ["stage", "kind"],
)

# --- consumer lag (every consuming service exports its own) ----------------------------------
CONSUMER_LAG = Gauge(
    "pora_consumer_lag_records",
    "Records on a partition not yet processed by this consumer: the partition's high watermark as "
    "seen in fetch responses (exact on Tansu, whose ListOffsets is low) minus the consumer's "
    "position. ``source`` says where the end offset came from.",
    ["group", "topic", "partition", "source"],
)

# --- supervisor feed -------------------------------------------------------------------------
FEED_CONNECTED = Gauge("pora_feed_streams_open", "Live alert streams (browser tabs) open, by role.", ["role"])
FEED_USERS_CONNECTED = Gauge("pora_feed_users_connected", "Distinct users with at least one live stream open.")
FEED_ACTIONS = Counter(
    "pora_feed_actions_total", "Triage actions written to alerts.actions, by action and role.", ["action", "role"]
)
FEED_ACTIONS_REJECTED = Counter(
    "pora_feed_actions_rejected_total", "Triage actions refused (invalid, forbidden, stale), by reason.", ["reason"]
)
FEED_LOGINS = Counter("pora_feed_logins_total", "Log-in attempts, by outcome.", ["outcome"])
FEED_ALERTS_HELD = Gauge("pora_feed_alerts_held", "Alerts on the feed's board, by triage state.", ["state"])
