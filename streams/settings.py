"""One settings object for every Pora service, read from ``PORA_*`` environment variables.

Local mode gets working defaults for the embedded stack; production mode refuses to start
with a defaulted secret, so a forgotten variable is an error and not a known key.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Well-known only so that the local stack works out of the box; rejected in production.
LOCAL_PERSON_KEY_SECRET = "pora-local-person-key-secret-not-for-production"
LOCAL_FEED_SECRET = "pora-local-feed-secret-not-for-production"
LOCAL_SECRETS = frozenset({LOCAL_PERSON_KEY_SECRET, LOCAL_FEED_SECRET})  # in the source: never a real secret
MIN_SECRET_CHARS = 32  # production secrets: the person key's HMAC secret and the feed's signing key


class Mode(StrEnum):
    LOCAL = "local"
    PRODUCTION = "production"


class Settings(BaseSettings):
    # hide_input_in_errors: a refused configuration's message must not print the secrets it was given
    model_config = SettingsConfigDict(env_prefix="PORA_", env_file=None, extra="ignore", hide_input_in_errors=True)

    mode: Mode = Mode.LOCAL
    state_dir: Path = Field(default=Path(".pora"), description="pid files, logs, local key file")

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = Field(default="", description="prepended to every topic name (tests, tenants)")
    topic_partitions: int = 6
    topic_replication: int = 1
    kafka_max_message_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=512 * 1024,
        description="largest record a topic takes: topics are created with this max.message.bytes (Kafka's "
        "own default is 1 MB) and the gateway refuses, with a 4xx, an event whose record would be larger",
    )

    # Gateway
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8088
    gateway_max_body_bytes: int = 8 * 1024 * 1024
    gateway_max_batch: int = 5000
    gateway_dedup_capacity: int = 2_000_000
    gateway_keys_file: Path | None = Field(
        default=None, description="API key file (TOML); local mode defaults to <state_dir>/keys.toml"
    )
    gateway_clock_skew_seconds: int = Field(
        default=300, description="how far in the future an occurred_at may lie before it is rejected"
    )
    gateway_rebuild_dedup: bool = Field(
        default=True, description="re-read event ids from the topics on start so retries stay idempotent"
    )
    gateway_send_timeout_seconds: float = 30.0
    gateway_tick_seconds: float = Field(
        default=0.25, description="clock ticks into every ingestion partition (event time in silence); 0: off"
    )
    gateway_workers: int = Field(
        default=-1, description="processes that validate and encode large requests; -1: one per core beyond the first"
    )
    gateway_worker_min_bytes: int = Field(
        default=32 * 1024, description="requests smaller than this are prepared in the main process"
    )

    # ClickHouse sink
    clickhouse_url: str = Field(
        default="",
        description="clickhouse://host:9000 (the server, via clickhouse-driver) or chdb:///path (embedded); "
        "empty: chdb in <state_dir>/chdb",
    )
    clickhouse_user: str = "default"
    clickhouse_password: SecretStr | None = None
    clickhouse_database: str = "pora"
    sink_group: str = Field(default="pora-sink", description="consumer group of the sink (offsets commit there)")
    sink_batch_rows: int = Field(default=50_000, gt=0, description="rows per ClickHouse insert, at most")
    sink_batch_seconds: float = Field(default=1.0, gt=0, description="age of the oldest unwritten row, at most")
    sink_retry_max_seconds: float = Field(default=30.0, gt=0, description="longest wait between insert retries")

    # Supervisor feed
    feed_host: str = "127.0.0.1"
    feed_port: int = 8090
    feed_users_file: Path | None = Field(
        default=None, description="feed users (TOML, hashes only); local mode defaults to <state_dir>/users.toml"
    )
    feed_secret: SecretStr | None = Field(default=None, description="signs session cookies and CSRF tokens")
    feed_session_hours: float = 12.0
    feed_board_days: float = Field(
        default=90.0,
        gt=0,
        description="event-time days of alerts the feed's board holds; older alerts are in the analytics",
    )
    feed_board_critical_days: float = Field(
        default=365.0,
        gt=0,
        description="event-time days an open (untriaged) CRITICAL alert stays on the feed's board",
    )

    # Metrics of the services without an HTTP port of their own (gateway and feed serve /metrics)
    metrics_host: str = Field(default="127.0.0.1", description="where the worker and sink serve /metrics")
    worker_metrics_port: int = Field(default=9101, ge=0, description="the worker's /metrics; 0: not served")
    sink_metrics_port: int = Field(default=9102, ge=0, description="the sink's /metrics; 0: not served")
    lag_interval_seconds: float = Field(default=5.0, gt=0, description="how often consumers export their lag")

    # Pseudonymisation: keyed hash of (nationality, document number, date of birth)
    person_key_secret: SecretStr | None = None

    # Local stack
    broker_host: str = "127.0.0.1"
    broker_port: int = 9092

    @model_validator(mode="after")
    def _secrets_in_production(self) -> Settings:
        url = urlparse(self.clickhouse_url)
        if url.username is not None or url.password is not None:  # it would be shown wherever the URL is
            raise ValueError(
                "PORA_CLICKHOUSE_URL must not hold a user or password: use PORA_CLICKHOUSE_USER and "
                "PORA_CLICKHOUSE_PASSWORD"
            )
        if self.mode is Mode.PRODUCTION:
            missing = []
            person = self.person_key_secret.get_secret_value() if self.person_key_secret is not None else ""
            if not person:
                missing.append("PORA_PERSON_KEY_SECRET")
            elif person in LOCAL_SECRETS:
                missing.append("PORA_PERSON_KEY_SECRET (the local default is not allowed)")
            elif len(person) < MIN_SECRET_CHARS:
                missing.append(f"PORA_PERSON_KEY_SECRET ({MIN_SECRET_CHARS} characters or more)")
            if self.gateway_keys_file is None:
                missing.append("PORA_GATEWAY_KEYS_FILE")
            feed = self.feed_secret.get_secret_value() if self.feed_secret is not None else ""
            if feed in LOCAL_SECRETS:
                missing.append("PORA_FEED_SECRET (the local default is not allowed)")
            elif len(feed) < MIN_SECRET_CHARS:
                missing.append(f"PORA_FEED_SECRET ({MIN_SECRET_CHARS} characters or more)")
            if self.feed_users_file is None:
                missing.append("PORA_FEED_USERS_FILE")
            if not self.clickhouse_url.startswith("clickhouse://"):
                missing.append("PORA_CLICKHOUSE_URL (clickhouse://host:port; embedded chdb is for the local stack)")
            elif self.clickhouse_password is None or not self.clickhouse_password.get_secret_value():
                missing.append("PORA_CLICKHOUSE_PASSWORD")
            elif self.clickhouse_password.get_secret_value() in LOCAL_SECRETS:
                missing.append("PORA_CLICKHOUSE_PASSWORD (a local default is not allowed)")
            if missing:
                raise ValueError("production mode needs: " + ", ".join(missing))
        return self

    @property
    def person_secret(self) -> bytes:
        if self.person_key_secret is not None and self.person_key_secret.get_secret_value():
            return self.person_key_secret.get_secret_value().encode()
        return LOCAL_PERSON_KEY_SECRET.encode()

    @property
    def users_file(self) -> Path:
        return self.feed_users_file or self.state_dir / "users.toml"

    @property
    def feed_key(self) -> bytes:
        if self.feed_secret is not None and self.feed_secret.get_secret_value():
            return self.feed_secret.get_secret_value().encode()
        return LOCAL_FEED_SECRET.encode()

    @property
    def keys_file(self) -> Path:
        return self.gateway_keys_file or self.state_dir / "keys.toml"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
