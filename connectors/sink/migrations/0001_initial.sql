-- Pora analytics schema, version 1. Runs unchanged on ClickHouse 18.16, chdb and a current server:
-- no DateTime64, TTL, LowCardinality or insert dedup tokens. Duplicates (a redelivered batch, a
-- replayed topic) collapse by id: ReplacingMergeTree with the id last in the sorting key, read with
-- FINAL (or GROUP BY id) by the reports. Partitions by month of occurred_at; a duplicate has the same
-- occurred_at, so it lands in the same partition and collapses. Person data: the pseudonymous
-- person_key and nationality only, never names, document numbers or dates of birth.
-- {db} is the database the sink was configured with.

CREATE TABLE IF NOT EXISTS {db}.hotel_guest_events (
    event_id String,
    occurred_at DateTime('UTC'),
    reported_at DateTime('UTC'),
    source String,
    action String,
    corrects_event_id Nullable(String),
    establishment_id String,
    establishment_name String,
    region String,
    office String,
    person_key String,
    nationality String,
    permit_type Nullable(String),
    check_in_date Date,
    expected_check_out_date Nullable(Date),
    check_out_date Nullable(Date)
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (office, establishment_id, event_id);

CREATE TABLE IF NOT EXISTS {db}.border_crossings (
    event_id String,
    occurred_at DateTime('UTC'),
    reported_at DateTime('UTC'),
    source String,
    direction String,
    checkpoint_id String,
    checkpoint_kind String,
    office String,
    person_key String,
    nationality String,
    permit_type Nullable(String),
    authorised_until Nullable(Date),
    declared_establishment_id Nullable(String),
    destination_country Nullable(String),
    onward_route Array(String),
    return_ticket Nullable(UInt8),
    purpose Nullable(String),
    group_reference Nullable(String),
    agent_reference Nullable(String),
    booking_reference Nullable(String),
    pmi_placement_id Nullable(String)
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (office, checkpoint_id, direction, event_id);

CREATE TABLE IF NOT EXISTS {db}.permit_updates (
    event_id String,
    occurred_at DateTime('UTC'),
    reported_at DateTime('UTC'),
    source String,
    action String,
    permit_type String,
    person_key String,
    nationality String,
    valid_from Nullable(Date),
    valid_until Date,
    sponsor_id Nullable(String),
    office String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (office, person_key, event_id);

CREATE TABLE IF NOT EXISTS {db}.sponsor_reports (
    event_id String,
    occurred_at DateTime('UTC'),
    reported_at DateTime('UTC'),
    source String,
    sponsor_id String,
    sponsor_name String,
    region String,
    office String,
    period_start Date,
    period_end Date,
    roster_person_keys Array(String),
    change_kinds Array(String),
    change_person_keys Array(String)
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (office, sponsor_id, event_id);

CREATE TABLE IF NOT EXISTS {db}.agency_reports (
    event_id String,
    occurred_at DateTime('UTC'),
    reported_at DateTime('UTC'),
    source String,
    agency_id String,
    agency_kind String,
    observation String,
    region String,
    office String,
    person_key Nullable(String),
    nationality Nullable(String),
    establishment_id Nullable(String),
    sponsor_id Nullable(String)
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (office, observation, event_id);

CREATE TABLE IF NOT EXISTS {db}.alerts (
    event_id String,
    occurred_at DateTime('UTC'),
    reported_at DateTime('UTC'),
    alert_id String,
    rule_id String,
    rule_version String,
    status String,
    severity String,
    office String,
    person_key Nullable(String),
    establishment_id Nullable(String),
    sponsor_id Nullable(String),
    checkpoint_id Nullable(String),
    window_start Nullable(DateTime('UTC')),
    window_end Nullable(DateTime('UTC')),
    evidence_names Array(String),
    evidence_values Array(String),
    reasons Array(String)
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (office, rule_id, alert_id, event_id);

CREATE TABLE IF NOT EXISTS {db}.alert_actions (
    event_id String,
    occurred_at DateTime('UTC'),
    reported_at DateTime('UTC'),
    alert_id String,
    rule_id String,
    office String,
    action String,
    actor String,
    actor_role String,
    assignee Nullable(String),
    disposition Nullable(String)
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (office, alert_id, event_id);

-- The raw input stays on the dead-letter topic for operators; analytics keep why, where and how big.
CREATE TABLE IF NOT EXISTS {db}.dead_letters (
    event_id String,
    occurred_at DateTime('UTC'),
    reported_at DateTime('UTC'),
    source String,
    step String,
    kind Nullable(String),
    reason String,
    error_fields Array(String),
    error_problems Array(String),
    content_type String,
    raw_bytes UInt32
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (source, reason, event_id);
