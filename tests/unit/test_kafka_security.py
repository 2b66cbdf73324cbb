"""The Kafka security settings: refused when they load if they cannot work, secrets never
shown, and the same options for every client."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed
from pydantic import ValidationError

from services.common.config import Settings
from services.common.kafka_security import KafkaSecurity
from tests.brokers.tls import make_certificates


def settings(**values: Any) -> Settings:
    return Settings(kafka_bootstrap="kafka:9093", _env_file=None, **values)  # type: ignore[call-arg]


def test_sasl_without_credentials_is_refused_naming_the_variables() -> None:
    with pytest.raises(ValidationError, match="SHUANGJIAN_KAFKA_SASL_USERNAME"):
        settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="svc")


def test_a_ca_file_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="SHUANGJIAN_KAFKA_SSL_CAFILE: no such file"):
        settings(kafka_security_protocol="SSL", kafka_ssl_cafile=tmp_path / "nope.pem")


def test_tls_files_without_a_tls_protocol_are_refused(tmp_path: Path) -> None:
    files = make_certificates(tmp_path)
    with pytest.raises(ValidationError, match="does not use TLS"):
        settings(kafka_ssl_cafile=files.ca_cert)  # PLAINTEXT would silently ignore it


def test_a_client_certificate_needs_its_key(tmp_path: Path) -> None:
    files = make_certificates(tmp_path)
    with pytest.raises(ValidationError, match="go together"):
        settings(kafka_security_protocol="SSL", kafka_ssl_certfile=files.server_cert)


def test_the_password_is_never_shown() -> None:
    configured = settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username="svc",
        kafka_sasl_password="s3cret-pw",
    )
    security = KafkaSecurity.from_settings(configured)
    assert security.password == "s3cret-pw"
    for shown in (repr(configured), str(configured), repr(security)):
        assert "s3cret-pw" not in shown


def test_every_client_gets_the_same_options(tmp_path: Path) -> None:
    files = make_certificates(tmp_path)
    security = KafkaSecurity.from_settings(
        settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_username="svc",
            kafka_sasl_password="pw",
            kafka_ssl_cafile=files.ca_cert,
        )
    )
    options = security.aiokafka()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("svc", "pw")
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    credentials = security.faust()
    assert credentials is not None
    assert credentials.protocol.value == "SASL_SSL"  # type: ignore[attr-defined]
    assert credentials.mechanism.value == "SCRAM-SHA-512"  # type: ignore[attr-defined]
    plain = KafkaSecurity()
    assert plain.aiokafka() == {"security_protocol": "PLAINTEXT"} and plain.faust() is None


def test_a_refusal_is_explained_and_an_outage_is_not() -> None:
    security = KafkaSecurity(protocol="SASL_SSL", username="svc", password="pw")
    try:
        raise KafkaConnectionError("Unable to bootstrap") from SaslAuthenticationFailed()
    except KafkaConnectionError as exc:
        refused = security.explain(exc)
    assert refused is not None and "SHUANGJIAN_KAFKA_SASL_PASSWORD" in refused
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_message = "unable to get local issuer certificate"
    explained = security.explain(untrusted)
    assert explained is not None and "SHUANGJIAN_KAFKA_SSL_CAFILE" in explained
    assert security.explain(KafkaConnectionError("Connection refused")) is None
