"""The platform's configuration, from ``SHUANGJIAN_*`` environment variables (or a .env file).

Unset means embedded: SQLite files under the data dir and an in-process bus. Each
adapter is chosen on its own, so any combination is valid. ``Settings`` holds what every
process shares (adapters, Kafka, MongoDB, tokens, limits); each service adds its own
settings class on ``ServiceSettings`` (its policy numbers, where it listens), read from
the same variables.
"""

from __future__ import annotations

import abc
import os
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.workdays import WorkCalendar

# Secrets may also come as files (Docker and Kubernetes secrets): in the folder
# SHUANGJIAN_SECRETS_DIR, a file named after a variable in lower case (shuangjian_jwt_secret)
# holds its value; a variable that is set wins.
SOURCES = SettingsConfigDict(
    env_prefix="SHUANGJIAN_",
    env_file=".env",
    extra="ignore",
    secrets_dir=os.environ.get("SHUANGJIAN_SECRETS_DIR") or None,
)
# Days a fact may be back-dated without the admin or importer role (every service).
BACKDATE_WINDOW_DAYS = 3


class ServiceSettings(BaseSettings):
    """Base of a service's own settings; ``url`` is where other processes reach its API."""

    model_config = SOURCES

    backdate_window_days: int = Field(
        BACKDATE_WINDOW_DAYS,
        ge=1,
        le=36500,
        description="How many days back a fact may be dated without the admin or importer role.",
    )

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """Where the distributed gateway sends this service's commands."""


class CalendarSettings(BaseSettings):
    """The national working-day calendar's configuration, for every service that counts
    rest or working days (one calendar: the same variables wherever they are read)."""

    model_config = SOURCES

    extra_holidays: list[date] = Field(
        default_factory=list,
        description="Statutory holidays beyond the shipped calendar (next year's State "
        'Council arrangement, published each November), e.g. ["2027-01-01"].',
    )
    extra_workdays: list[date] = Field(
        default_factory=list,
        description="Make-up working days (调休) beyond the shipped calendar.",
    )

    @model_validator(mode="after")
    def _calendar_is_usable(self) -> CalendarSettings:
        self.calendar()  # a day listed both ways is refused when the settings load
        return self

    def calendar(self) -> WorkCalendar:
        return WorkCalendar(frozenset(self.extra_holidays), frozenset(self.extra_workdays))


class Settings(BaseSettings):
    model_config = SOURCES

    data_dir: Path = Field(Path("var"), description="Where the SQLite files live.")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    event_store: Literal["sqlite", "mongodb"] | None = Field(
        None, description="Event store adapter; default mongodb when a MongoDB URI is set."
    )
    read_store: Literal["sqlite", "mongodb"] | None = Field(
        None, description="Read-model adapter; default mongodb when a MongoDB URI is set."
    )
    bus: Literal["memory", "kafka"] | None = Field(
        None, description="Transport between stores and projections; kafka when a bootstrap is set."
    )
    kafka_bootstrap: str | None = Field(None, description="host:port[,host:port…]")
    kafka_topic_prefix: str = Field("shuangjian", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    kafka_partitions: int = Field(6, ge=1, le=1000)
    kafka_replication: int = Field(3, ge=1, le=10)
    kafka_create_topics: bool = Field(
        True,
        description="Whether the platform creates its topics (partitions and replication as "
        "configured); off where the operator owns them (Strimzi KafkaTopic resources).",
    )
    kafka_publish_timeout: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Seconds one outbox batch may take to be acknowledged before it is retried.",
    )
    # Kafka security, for every Kafka client of the platform (relay, projector, live tail,
    # admin). PLAINTEXT by default; a province's cluster will want SASL_SSL.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How Kafka clients connect: TLS (SSL), SASL, both or neither."
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="The SASL mechanism, with a SASL_* protocol."
    )
    kafka_sasl_username: str | None = Field(None, description="The SASL user.")
    kafka_sasl_password: SecretStr | None = Field(None, description="The SASL user's password.")
    kafka_ssl_cafile: Path | None = Field(
        None,
        description="PEM file of the CA(s) that sign the brokers' certificates; unset: "
        "the system's trust store.",
    )
    kafka_ssl_certfile: Path | None = Field(
        None, description="PEM client certificate, for brokers that require mutual TLS."
    )
    kafka_ssl_keyfile: Path | None = Field(None, description="PEM key of the client certificate.")
    kafka_ssl_key_password: SecretStr | None = Field(
        None, description="Password of an encrypted client key."
    )
    kafka_ssl_check_hostname: bool = Field(
        True, description="Whether a broker's certificate must name the host connected to."
    )
    projector_web_port: int = Field(
        6066, ge=0, le=65535, description="The projector's /ready and /metrics; 0: off."
    )
    projector_session_timeout: float = Field(
        30.0,
        ge=3.0,
        le=300.0,
        description="Seconds before the group gives a silent projector's partitions to another.",
    )
    projector_commit_interval: float = Field(
        2.8,
        gt=0,
        le=60,
        description="Seconds between Kafka offset commits (offsets of applied batches only).",
    )
    mongodb_uri: str | None = Field(None, repr=False)  # may hold a password
    mongodb_database: str = "shuangjian"
    mongodb_transactions: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Read-model batches in one MongoDB transaction: auto when the deployment "
        "(a replica set or sharded cluster) has them; on refuses a standalone server.",
    )

    # SecretStr: printing or logging the settings shows ********** instead.
    jwt_secret: SecretStr | None = Field(
        None, description="HS256 secret; unset: generated once and kept in the data dir."
    )
    jwks_url: str | None = Field(None, description="JWKS of an OIDC provider (RS256/ES256).")
    jwt_audience: str = "shuangjian"
    jwt_issuer: str | None = Field("shuangjian", description="Expected iss; empty: not checked.")
    max_body_bytes: int = Field(256 * 1024, ge=1024, description="Largest request body.")
    query_cost_budget: int = Field(
        50_000,
        ge=0,
        description="Largest estimated cost of one GraphQL operation (each field 1, times the "
        "size of every list around it), refused before it runs; 0: no limit.",
    )
    ingest_max_line_bytes: int = Field(
        64 * 1024, ge=1024, le=16 * 1024 * 1024, description="Largest line of /api/ingest."
    )
    ingest_max_lines: int = Field(
        100_000, ge=1, le=10_000_000, description="Most lines one /api/ingest stream holds."
    )
    import_max_bytes: int = Field(
        50 * 1024 * 1024, ge=1024, description="Largest spreadsheet POST /api/import takes."
    )
    request_timeout: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="Seconds a GraphQL query or mutation may run before it is stopped "
        "(UNAVAILABLE); subscriptions are not limited; 0: no limit.",
    )

    ready_max_lag: int = Field(
        10_000,
        ge=0,
        description="Events the read models may be behind before the gateway (or the "
        "embedded suite) reports not ready at /readyz; 0: not checked.",
    )

    log_level: str = "INFO"
    log_format: Literal["console", "json"] = "console"

    @model_validator(mode="after")
    def _choose_adapters(self) -> Settings:
        default: Literal["sqlite", "mongodb"] = "mongodb" if self.mongodb_uri else "sqlite"
        self.event_store = self.event_store or default
        self.read_store = self.read_store or default
        if "mongodb" in (self.event_store, self.read_store) and not self.mongodb_uri:
            raise ValueError("SHUANGJIAN_MONGODB_URI is required for the mongodb adapters")
        self.bus = self.bus or ("kafka" if self.kafka_bootstrap else "memory")
        if self.bus == "kafka" and not self.kafka_bootstrap:
            raise ValueError("SHUANGJIAN_KAFKA_BOOTSTRAP is required for the kafka bus")
        self._check_kafka_security()
        return self

    def _check_kafka_security(self) -> None:
        """Refuse, when the settings load, what would only fail at the first connection."""
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                f"SHUANGJIAN_KAFKA_SECURITY_PROTOCOL={protocol} needs "
                "SHUANGJIAN_KAFKA_SASL_USERNAME and SHUANGJIAN_KAFKA_SASL_PASSWORD"
            )
        tls = protocol in ("SSL", "SASL_SSL")
        files = {
            "SHUANGJIAN_KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
            "SHUANGJIAN_KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
            "SHUANGJIAN_KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile,
        }
        for name, path in files.items():
            if path is None:
                continue
            if not tls:
                raise ValueError(
                    f"{name} is set but SHUANGJIAN_KAFKA_SECURITY_PROTOCOL is "
                    f"{protocol}, which does not use TLS (SSL or SASL_SSL)"
                )
            if not path.is_file():
                raise ValueError(f"{name}: no such file: {path}")
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError(
                "SHUANGJIAN_KAFKA_SSL_CERTFILE and SHUANGJIAN_KAFKA_SSL_KEYFILE go together"
            )
