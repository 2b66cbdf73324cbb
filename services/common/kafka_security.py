"""How every Kafka client of the platform authenticates and encrypts: one place.

The relay's producer, the topic admin, the gateway's live tail and the projector (faust)
all take their options from one ``KafkaSecurity``, built from the ``SHUANGJIAN_KAFKA_*``
settings: PLAINTEXT by default, or TLS (``SSL``), SASL (``SASL_PLAINTEXT``) or both
(``SASL_SSL``, the one to use on a network the platform does not own) with SCRAM-SHA-512
by default. Passwords stay ``SecretStr`` in the settings and are never in a ``repr``.

A client that is refused (wrong credentials, a broker certificate nobody here trusts)
fails like a broker that is down: the relay keeps the events in the outbox and retries,
so nothing is lost. ``explain`` turns such a failure into the message an operator needs,
naming the setting to check, for the logs and the services' ``/healthz``.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

    from services.common.config import Settings


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    key_password: str | None = field(default=None, repr=False)
    check_hostname: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        def secret(value: Any) -> str | None:
            return None if value is None else str(value.get_secret_value())

        return cls(
            protocol=settings.kafka_security_protocol,
            mechanism=settings.kafka_sasl_mechanism,
            username=settings.kafka_sasl_username,
            password=secret(settings.kafka_sasl_password),
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
            key_password=secret(settings.kafka_ssl_key_password),
            check_hostname=settings.kafka_ssl_check_hostname,
        )

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @cached_property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The clients' TLS context (certificate verification always on), or None."""
        if not self.tls:
            return None
        context = ssl.create_default_context(
            cafile=str(self.cafile) if self.cafile is not None else None
        )
        context.check_hostname = self.check_hostname
        if self.certfile is not None:
            context.load_cert_chain(self.certfile, self.keyfile, self.key_password)
        return context

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producer, consumer and admin client."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            options["ssl_context"] = self.ssl_context
        if self.sasl:
            options |= {
                "sasl_mechanism": self.mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        return options

    def faust(self) -> CredentialsT | None:
        """``broker_credentials`` for the projector's faust app (None: PLAINTEXT)."""
        from faust.auth import SASLCredentials, SSLCredentials

        if self.sasl:
            # faust picks SASL_SSL when given a context and SASL_PLAINTEXT without one.
            return SASLCredentials(
                username=self.username,
                password=self.password,
                ssl_context=self.ssl_context,
                mechanism=self.mechanism,
            )
        if self.tls:
            assert self.ssl_context is not None
            return SSLCredentials(self.ssl_context)
        return None

    def explain(self, error: BaseException) -> str | None:
        """What an operator must fix, when ``error`` is a refusal rather than an outage."""
        for cause in _chain(error):
            if isinstance(cause, ssl.SSLCertVerificationError):
                trusted = f"the CA in {self.cafile}" if self.cafile else "the system trust store"
                return (
                    f"the Kafka broker's TLS certificate is not trusted ({cause.verify_message}):"
                    f" it must be signed by {trusted} (SHUANGJIAN_KAFKA_SSL_CAFILE)"
                )
            if isinstance(cause, ssl.SSLError):
                return (
                    f"TLS with the Kafka broker failed ({cause.reason or cause}): is the "
                    "listener TLS, and SHUANGJIAN_KAFKA_SECURITY_PROTOCOL right?"
                )
            name = type(cause).__name__
            if isinstance(cause, KafkaError) and "Authentication" in name:
                return (
                    f"Kafka refused SASL {self.mechanism} authentication of user "
                    f"{self.username!r}: check SHUANGJIAN_KAFKA_SASL_USERNAME and "
                    "SHUANGJIAN_KAFKA_SASL_PASSWORD"
                )
        return None

    async def diagnose(self, bootstrap: str, timeout: float = 5.0) -> str | None:
        """Why a client could not bootstrap, when the reason is a refusal.

        aiokafka reports only "Unable to bootstrap" and logs the cause; one connection of
        our own to the first bootstrap address raises it (the SASL or TLS error), for
        ``explain``. None for PLAINTEXT, or when that connection works or merely fails.
        """
        if self.protocol == "PLAINTEXT":
            return None
        host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
        try:
            async with asyncio.timeout(timeout):
                connection = await create_conn(
                    host, int(port), request_timeout_ms=int(timeout * 1000), **self.aiokafka()
                )
            connection.close()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return self.explain(exc)
        return None


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and its causes and contexts, each once."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        pending += [current.__cause__, current.__context__]
        pending += list(getattr(current, "exceptions", ()))
    return seen
