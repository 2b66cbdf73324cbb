"""The docker-compose stack, checked without a Docker engine.

``docker-compose.yml`` is validated against the Compose Specification's JSON schema (the
one Docker Compose embeds, vendored in ``schemas/``, see COMPOSE-SOURCE.md), as written and
after ``${...}`` interpolation, and held to the stack's rules: healthchecks everywhere and
``depends_on`` on health, pinned images, hardened platform containers, secrets as files
and never as values, declared volumes, one published port. The ``SHUANGJIAN_*`` variables
it sets are compared with the settings classes themselves (a typo is a setting silently
left at its default) and loaded through them (a bad value fails here, not at start-up),
and the addresses that must agree (Kafka listener and bootstrap, MongoDB replica set and
URIs, service URLs and ports, health URLs and the probes each process serves) are checked
against each other and against the code.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import typing
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jsonschema
import pytest
import yaml
from pydantic import SecretStr

from tests.deploy.test_dockerfile import (
    REPO,
    RUNTIME_USER,
    healthcheck_command,
    parse_dockerfile,
    runtime,
)

COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
SCHEMA_FILE = Path(__file__).parent / "schemas" / "compose-spec.json"
SCHEMA_SOURCE = Path(__file__).parent / "schemas" / "COMPOSE-SOURCE.md"
PLATFORM_IMAGE_TARGETS = {None, "runtime"}  # build targets that make the platform image
# Read by the image itself (its HEALTHCHECK), not by a settings class.
IMAGE_VARIABLES = {"SHUANGJIAN_HEALTHCHECK_URL"}
SECRETS_DIR = "/run/secrets"
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, ${NAME:+x},
# ${NAME+x}, $NAME; "$$" is a literal dollar.
INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)
GO_DURATION = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?(?:ns|us|µs|ms|s|m|h))+$|^0$")


# ---------------------------------------------------------------------------------------
# Loading


def load_compose() -> dict[str, Any]:
    """The file as YAML gives it (merge keys resolved, as Compose resolves them)."""
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def env_example() -> dict[str, str]:
    values = {}
    for raw in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: {raw!r} is no KEY=value"
            values[key.strip()] = value.strip()
    return values


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution over every string of the document."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        op, arg = match["op"], match["arg"] or ""
        present = name in env
        filled = present and env[name] != ""
        if op in (":-", "-"):
            return env[name] if (filled if op == ":-" else present) else arg
        if op in (":?", "?"):
            if not (filled if op == ":?" else present):
                raise KeyError(f"${{{name}}} is required: {arg}")
            return env[name]
        if op in (":+", "+"):
            return arg if (filled if op == ":+" else present) else ""
        return env.get(name, "")

    return INTERPOLATION.sub(substitute, value)


def variables_used(value: Any) -> Iterator[tuple[str, str | None]]:
    """(name, operator) of every substitution in the document."""
    if isinstance(value, dict):
        for v in value.values():
            yield from variables_used(v)
    elif isinstance(value, list):
        for v in value:
            yield from variables_used(v)
    elif isinstance(value, str):
        for match in INTERPOLATION.finditer(value):
            if not match["escaped"]:
                yield match["braced"] or match["plain"], match["op"]


def settings_classes() -> list[type[Any]]:
    """Every class the platform reads ``SHUANGJIAN_*`` variables into."""
    from services.bootstrap import MODULES
    from services.common.config import Settings

    return [Settings, *(module.settings for module in MODULES)]


def settings_variables() -> set[str]:
    """The variable of every setting: ``SHUANGJIAN_`` and the field name in capitals."""
    return {f"SHUANGJIAN_{name.upper()}" for c in settings_classes() for name in c.model_fields}


def _holds_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(_holds_secret(arg) for arg in typing.get_args(annotation))


def secret_variables() -> set[str]:
    """The variables of the settings typed SecretStr: never a value in the compose file."""
    return {
        f"SHUANGJIAN_{name.upper()}"
        for c in settings_classes()
        for name, info in c.model_fields.items()
        if _holds_secret(info.annotation)
    }


def platform_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services running the platform's runtime image (built from this repo)."""
    return {
        name: spec
        for name, spec in services.items()
        if "build" in spec and spec["build"].get("target") in PLATFORM_IMAGE_TARGETS
    }


def one_shot(spec: dict[str, Any]) -> bool:
    """Runs to completion on demand (a profile, no restart): not a part of the stack."""
    return bool(spec.get("profiles")) and spec.get("restart") == "no"


def port_option(command: list[str]) -> int:
    return int(command[command.index("--port") + 1])


def listening_port(spec: dict[str, Any]) -> int:
    """The port a platform container's process listens on, from its command and env."""
    command = spec["command"]
    if command[0] == "project":
        return int(spec["environment"]["SHUANGJIAN_PROJECTOR_WEB_PORT"])
    return port_option(command)


# ---------------------------------------------------------------------------------------
# The Compose Specification


def test_vendored_schema_is_the_recorded_one() -> None:
    """The schema is a copy of the Compose project's own: an edit by hand fails here."""
    digest = hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest()
    assert f"`{digest}`" in SCHEMA_SOURCE.read_text(encoding="utf-8"), (
        "compose-spec.json differs from the file COMPOSE-SOURCE.md records"
    )


def validate(document: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors
    )


def durations(document: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """The values Compose parses as Go durations (the schema only says "string")."""
    for name, spec in document["services"].items():
        for key in ("interval", "timeout", "start_period", "start_interval"):
            if key in spec.get("healthcheck", {}):
                yield f"{name}.healthcheck.{key}", spec["healthcheck"][key]
        if "stop_grace_period" in spec:
            yield f"{name}.stop_grace_period", spec["stop_grace_period"]


def test_compose_file_follows_the_specification(compose: dict[str, Any]) -> None:
    assert "version" not in compose, "the Compose Specification has no version: drop it"
    validate(compose)
    for where, value in durations(compose):
        assert isinstance(value, str) and GO_DURATION.match(value), f"{where}: {value!r}"


@pytest.mark.parametrize("dotenv", ["without .env", "with .env.example as .env"])
def test_compose_file_follows_the_specification_once_interpolated(
    compose: dict[str, Any], dotenv: str
) -> None:
    """Compose validates after substitution; with or without a .env, every variable
    resolves (a default or the example's value) and the result is still valid."""
    env = env_example() if dotenv.startswith("with") else {}
    validate(interpolate(compose, env))


def test_variables_are_documented_in_env_example(compose: dict[str, Any]) -> None:
    """Every ${VARIABLE} has a default and is in .env.example, and the example lists no
    variable the file does not use."""
    used = dict(variables_used(compose))
    assert all(op in (":-", "-") for op in used.values()), f"each with a default: {used}"
    assert set(used) == set(env_example())


def test_env_example_changes_no_local_setting() -> None:
    """`shuangjian` run from the repo reads .env too (pydantic-settings' env_file): a copy
    of the example must not change a local run, so a setting in it keeps its default."""
    from services.common.config import Settings

    values = env_example()
    for name, value in values.items():
        assert not name.startswith("SHUANGJIAN_TEST_"), name
        field = name.removeprefix("SHUANGJIAN_").lower()
        for settings in settings_classes():
            if name.startswith("SHUANGJIAN_") and field in settings.model_fields:
                assert str(settings.model_fields[field].default) == value, name
    assert Settings.model_config.get("env_file") == ".env"


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A:-x}", {}, "x"),
        ("${A:-x}", {"A": ""}, "x"),
        ("${A-x}", {"A": ""}, ""),
        ("${A:-x}", {"A": "y"}, "y"),
        ("$A/${B}", {"A": "1", "B": "2"}, "1/2"),
        ("$${A}", {"A": "1"}, "${A}"),
        ("${A:+set}", {"A": "1"}, "set"),
        ("${A:+set}", {}, ""),
    ],
)
def test_interpolation_follows_compose(text: str, env: dict[str, str], expected: str) -> None:
    """The substitution the schema check runs after, as Compose does it."""
    assert interpolate(text, env) == expected


def test_interpolation_refuses_a_missing_required_variable() -> None:
    with pytest.raises(KeyError, match="required"):
        interpolate("${A:?set A}", {})


# ---------------------------------------------------------------------------------------
# The stack's rules


def test_every_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    """``depends_on: service_healthy`` needs one; one-shots switch it off explicitly."""
    for name, spec in services.items():
        check = spec.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        if one_shot(spec):
            assert check == {"disable": True}, name
            continue
        assert check.get("test") and not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        for key in ("interval", "timeout", "retries", "start_period"):
            assert key in check, f"{name}: healthcheck {key}"


def test_depends_on_waits_for_health(services: dict[str, dict[str, Any]]) -> None:
    """A started container is not a ready one: every dependency is waited on until healthy
    (or, for a one-shot, until it completed)."""
    for name, spec in services.items():
        depends = spec.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on as a mapping with conditions"
        for dependency, rule in depends.items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            expected = (
                "service_completed_successfully"
                if one_shot(services[dependency])
                else "service_healthy"
            )
            assert rule.get("condition") == expected, f"{name} -> {dependency}: {rule}"


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    """Third-party images by exact version (the one the tests run, for Kafka); images built
    here by an explicit local tag."""
    from tests.brokers.kafka import KAFKA_VERSION

    pinned = re.compile(r"^[a-z0-9][a-z0-9._/-]*:\d+\.\d+\.\d+(?:@sha256:[0-9a-f]{64})?$")
    for name, spec in services.items():
        image = spec.get("image")
        assert image, f"{name}: name the image (a built one too, so it is not rebuilt per service)"
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {image}"
        if "build" not in spec:
            assert pinned.match(image), f"{name}: {image} is not pinned to X.Y.Z"
    assert services["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"
    assert re.fullmatch(r"mongo:8\.0\.\d+", services["mongodb"]["image"])
    built = {spec["image"] for spec in platform_services(services).values()}
    assert len(built) == 1, f"one platform image for every process: {built}"


def test_platform_containers_are_hardened(services: dict[str, dict[str, Any]]) -> None:
    """Non-root (the image's user), read-only root file system with /tmp a tmpfs, no
    capabilities, no privilege gain; the data dir on a volume or the tmpfs."""
    dockerfile = parse_dockerfile()
    image_data_dir = dockerfile.env(runtime(dockerfile))["SHUANGJIAN_DATA_DIR"]
    hardened = {**platform_services(services), "tests": services["tests"]}
    assert set(platform_services(services)) == {
        "registry",
        "inspections",
        "finance",
        "projector",
        "gateway",
    }
    for name, spec in hardened.items():
        assert spec.get("user") == RUNTIME_USER, name
        assert spec.get("read_only") is True, name
        tmpfs = [entry.split(":")[0] for entry in spec.get("tmpfs", [])]
        assert "/tmp" in tmpfs, name
        assert spec.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in spec.get("security_opt", []), name
        assert not spec.get("privileged"), name
        if name == "tests":
            continue
        data_dir = spec["environment"].get("SHUANGJIAN_DATA_DIR", image_data_dir)
        writable = tmpfs + [mount_target(volume) for volume in spec.get("volumes", [])]
        assert any(Path(data_dir).is_relative_to(place) for place in writable), (
            f"{name}: the data dir {data_dir} is not writable"
        )


def mount_target(volume: str | dict[str, Any]) -> str:
    if isinstance(volume, dict):
        return str(volume["target"])
    return volume.split(":")[1]


def test_named_volumes_are_declared(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    """Data that must outlive a container is in a named volume, and each is declared (and
    used): Kafka's log, MongoDB's files, the platform's data dir."""
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, spec in services.items():
        for volume in spec.get("volumes", []):
            if isinstance(volume, dict):
                if volume["type"] == "bind":
                    assert (REPO / volume["source"]).is_file(), f"{name}: {volume['source']}"
                    assert volume.get("read_only") is True, f"{name}: bind mounts read-only"
                    continue
                source = volume["source"]
            else:
                source = volume.split(":")[0]
                assert not source.startswith((".", "/")), f"{name}: {volume} as a long bind"
            assert source in declared, f"{name}: volume {source} is not declared"
            used.add(source)
    assert used == declared
    targets = {
        name: {mount_target(v) for v in spec.get("volumes", [])} for name, spec in services.items()
    }
    assert "/var/lib/kafka/data" in targets["kafka"]
    assert "/data/db" in targets["mongodb"]


def test_secrets_are_files_never_values(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    """No secret setting is given a value in the file; each reaches its containers as a
    compose secret, a git-ignored file mounted at /run/secrets/<the variable, lower case>,
    which the settings read from SHUANGJIAN_SECRETS_DIR (the image's ENV)."""
    secrets = secret_variables()
    assert "SHUANGJIAN_JWT_SECRET" in secrets
    for name, spec in services.items():
        given = set(spec.get("environment") or {}) & secrets
        assert not given, f"{name} sets {sorted(given)} as a value: use a compose secret"
    declared = compose["secrets"]
    for secret, definition in declared.items():
        assert secret.upper() in secrets, f"secret {secret} is named after no secret setting"
        assert set(definition) == {"file"}, f"{secret}: a file (not environment, external)"
        path = REPO / definition["file"]
        assert path.parent == REPO / "deploy" / "compose" / "secrets", definition["file"]
        if (REPO / ".git").exists() and shutil.which("git"):
            ignored = subprocess.run(
                ["git", "check-ignore", "--quiet", "--no-index", str(path)], cwd=REPO
            )
            assert ignored.returncode == 0, f"{definition['file']} is not git-ignored"
    dockerfile = parse_dockerfile()
    assert dockerfile.env(runtime(dockerfile))["SHUANGJIAN_SECRETS_DIR"] == SECRETS_DIR
    for name, spec in platform_services(services).items():
        mounted = spec.get("secrets", [])
        assert all(isinstance(s, str) for s in mounted), f"{name}: default targets only"
        # One token key for all: the projector signs the commands the services check.
        assert "shuangjian_jwt_secret" in mounted, name
    assert "shuangjian_finance_payer_secret" in services["finance"]["secrets"]


def test_secret_files_reach_the_settings(tmp_path: Path) -> None:
    """The design the compose file relies on: with SHUANGJIAN_SECRETS_DIR set, a file named
    after a secret setting's variable (as compose mounts it) is that setting's value,
    surrounding whitespace stripped. A fresh interpreter: the settings read it at import."""
    secrets = {
        "shuangjian_jwt_secret": "jwt-secret-from-a-file-long-enough-for-hs256",
        "shuangjian_finance_payer_secret": "payer-key-from-a-file",
    }
    for name, value in secrets.items():
        (tmp_path / name).write_text(f"{value}\n")
    probe = (
        "from services.common.config import Settings\n"
        "from services.finance.settings import FinanceSettings\n"
        "print(Settings(_env_file=None).jwt_secret.get_secret_value())\n"
        "print(FinanceSettings(_env_file=None).finance_payer_secret.get_secret_value())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHUANGJIAN_")}
    env["SHUANGJIAN_SECRETS_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, (
        "services/common/config.py does not read secrets from SHUANGJIAN_SECRETS_DIR "
        f"(pydantic-settings' secrets_dir):\n{result.stderr[-2000:]}"
    )
    assert result.stdout.splitlines() == list(secrets.values())


def test_platform_variables_are_real_settings(services: dict[str, dict[str, Any]]) -> None:
    """A misspelt variable is a setting silently left at its default: every SHUANGJIAN_*
    key is a field of Settings or of a service's settings class (or the image's own)."""
    known = settings_variables() | IMAGE_VARIABLES
    for name, spec in platform_services(services).items():
        unknown = {k for k in spec["environment"] if k.startswith("SHUANGJIAN_")} - known
        assert not unknown, f"{name}: no setting reads {sorted(unknown)}"


def test_platform_environment_loads_into_the_settings(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each container's environment, interpolated with the defaults, passes the settings'
    own validation (a bad value fails here rather than at the container's start)."""
    env = interpolate(services, {})
    for name in platform_services(services):
        with monkeypatch.context() as patch:
            for key in list(os.environ):
                if key.startswith("SHUANGJIAN_"):
                    patch.delenv(key)
            for key, value in env[name]["environment"].items():
                patch.setenv(key, str(value))
            for settings in settings_classes():
                loaded = settings(_env_file=None)
                if hasattr(loaded, "bus"):
                    assert loaded.bus == "kafka" and loaded.event_store == "mongodb", name
                    assert loaded.read_store == "mongodb", name


def test_test_variables_are_read_by_the_tests(services: dict[str, dict[str, Any]]) -> None:
    """The one-shot test runner's SHUANGJIAN_TEST_* switches are ones the suites read."""
    sources = "\n".join(
        p.read_text(encoding="utf-8")
        for p in (REPO / "tests").rglob("*.py")
        if "deploy" not in p.relative_to(REPO / "tests").parts
    )
    for key in services["tests"]["environment"]:
        assert key.startswith("SHUANGJIAN_TEST_"), key
        assert f'"{key}"' in sources, f"no test reads {key}"


def test_only_the_gateway_is_published_on_the_loopback(
    services: dict[str, dict[str, Any]],
) -> None:
    """The stack's one way in is the gateway, on 127.0.0.1 (a TLS proxy serves others):
    Kafka, MongoDB and the services' command APIs take no traffic from the host."""
    published = {name for name, spec in services.items() if spec.get("ports")}
    assert published == {"gateway"}
    gateway = services["gateway"]
    assert gateway["ports"] == [f"127.0.0.1:8000:{port_option(gateway['command'])}"]


def test_kafka_is_one_combined_kraft_node(services: dict[str, dict[str, Any]]) -> None:
    """Broker and controller in one node, and nothing on it that asks for three replicas;
    the address it advertises is the one the platform and the tests bootstrap from."""
    kafka = services["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"
    node = kafka["KAFKA_NODE_ID"]
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node}@kafka:9093"
    assert "CONTROLLER://:9093" in kafka["KAFKA_LISTENERS"].split(",")
    assert kafka["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_DEFAULT_REPLICATION_FACTOR",
        "KAFKA_MIN_INSYNC_REPLICAS",
    ):
        assert kafka[key] == "1", key
    assert kafka["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", kafka["CLUSTER_ID"]), "a base64 UUID"
    advertised = kafka["KAFKA_ADVERTISED_LISTENERS"].removeprefix("PLAINTEXT://")
    for name, spec in platform_services(services).items():
        assert spec["environment"]["SHUANGJIAN_KAFKA_BOOTSTRAP"] == advertised, name
        # The platform creates its topics with this replication: one broker, one replica.
        assert spec["environment"]["SHUANGJIAN_KAFKA_REPLICATION"] == "1", name
    assert services["tests"]["environment"]["SHUANGJIAN_TEST_KAFKA_BOOTSTRAP"] == advertised
    test = services["kafka"]["healthcheck"]["test"]
    assert test[1].startswith("/opt/kafka/bin/kafka-"), test


def test_mongodb_replica_set_agrees_everywhere(services: dict[str, dict[str, Any]]) -> None:
    """The replica set the server starts with, the one its healthcheck initiates (with the
    member's host), and the one every URI names are the same."""
    mongodb = services["mongodb"]
    command = mongodb["command"]
    replica_set = command[command.index("--replSet") + 1]
    script_mount = next(v for v in mongodb["volumes"] if isinstance(v, dict))
    assert script_mount["target"] in mongodb["healthcheck"]["test"]
    script = (REPO / script_mount["source"]).read_text(encoding="utf-8")
    constants = dict(re.findall(r'^const (\w+) = "([^"]*)";$', script, re.MULTILINE))
    assert constants["REPLICA_SET"] == replica_set
    member = constants["MEMBER"]
    assert member.split(":")[0] == "mongodb"
    uris = [
        spec["environment"]["SHUANGJIAN_MONGODB_URI"]
        for spec in platform_services(services).values()
    ]
    uris.append(services["tests"]["environment"]["SHUANGJIAN_TEST_MONGODB_URI"])
    for uri in uris:
        parts = urlsplit(uri)
        assert parts.netloc == member, uri
        assert parse_qs(parts.query)["replicaSet"] == [replica_set], uri


def test_service_urls_reach_each_service(services: dict[str, dict[str, Any]]) -> None:
    """Each module runs as the service of its name, on its own port, and the gateway and
    the projector's process managers are told that address."""
    from services.bootstrap import MODULES

    for module in MODULES:
        spec = services[module.name]
        command = spec["command"]
        assert command[:2] == ["serve", module.name]
        assert port_option(command) == module.port
        url = f"http://{module.name}:{module.port}"
        for caller in ("gateway", "projector"):
            variable = f"SHUANGJIAN_{module.name.upper()}_URL"
            assert services[caller]["environment"][variable] == url, (caller, variable)


async def answers(app: Any, path: str) -> bool:
    """Whether the ASGI app has a route for ``path``: anything but a 404, even unstarted
    (no lifespan: an unready 503 or a failing check still proves the route is there)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        return (await client.get(path)).status_code != 404


async def serves(spec: dict[str, Any], path: str, tmp_path: Path) -> bool:
    """Whether the process of a platform container answers ``path``, from the code itself."""
    from services.bootstrap import gateway_app, module_named, service_app
    from services.common.config import Settings

    command = spec["command"]
    secret = SecretStr("x" * 32)
    settings = Settings(data_dir=tmp_path, jwt_secret=secret, _env_file=None)  # type: ignore[call-arg]
    if command[0] == "serve":
        return await answers(service_app(settings, module_named(command[1])), path)
    if command[0] == "gateway":
        return await answers(gateway_app(settings), path)
    # The projector's pages are faust's (aiohttp), declared with @app.page in one place.
    assert command == ["project"], command
    source = (REPO / "services" / "projector.py").read_text(encoding="utf-8")
    return path in re.findall(r'@app\.page\("([^"]+)"\)', source)


async def test_health_urls_name_the_process_readiness_probe(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Each container's HEALTHCHECK asks its own process, on the port it listens on, for
    a path that process serves: the readiness probe, so ``service_healthy`` means ready."""
    for name, spec in platform_services(services).items():
        url = urlsplit(spec["environment"]["SHUANGJIAN_HEALTHCHECK_URL"])
        assert url.scheme == "http" and url.hostname == "127.0.0.1", name
        assert url.port == listening_port(spec), name
        assert url.path in ("/readyz", "/ready"), f"{name}: readiness, not liveness"
        assert await serves(spec, url.path, tmp_path / name), f"{name} serves no {url.path}"


def test_platform_healthcheck_is_the_images(services: dict[str, dict[str, Any]]) -> None:
    """The compose healthcheck repeats the Dockerfile's HEALTHCHECK word for word (so the
    file reads on its own), with timings that leave a cold start its minute."""
    command = healthcheck_command(parse_dockerfile())
    for name, spec in platform_services(services).items():
        check = spec["healthcheck"]
        assert check["test"] == ["CMD", *command], name
        assert parse_duration(check["start_period"]) >= timedelta(seconds=30), name


def parse_duration(text: str) -> timedelta:
    units = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours"}
    total = timedelta()
    for number, unit in re.findall(r"(\d+)(ms|s|m|h)", text):
        total += timedelta(**{units[unit]: int(number)})
    return total


def test_the_test_runner_runs_the_real_server_suites(
    services: dict[str, dict[str, Any]],
) -> None:
    """``docker compose --profile test run --rm tests``: the Dockerfile's test target
    (pytest as its entry point) on the contract and Kafka suites, against this stack."""
    tests = services["tests"]
    assert tests["profiles"] == ["test"]
    assert tests["build"]["target"] == "test"
    dockerfile = parse_dockerfile()
    entrypoint = dockerfile.effective(dockerfile.stage("test"), "ENTRYPOINT")
    assert entrypoint is not None and entrypoint.exec_form == ["pytest"]
    suites = [arg for arg in tests["command"] if arg.startswith("tests/")]
    assert suites == ["tests/contract", "tests/kafka"]
    assert all((REPO / suite).is_dir() for suite in suites)
    assert set(tests["depends_on"]) == {"kafka", "mongodb"}


def test_compose_file_says_how_to_run_the_tests() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert "docker compose --profile test run --rm tests" in text
