"""FerretDB, a MongoDB wire-protocol server, built from source and run for the tests.

The MongoDB adapters (``services/common/mongo.py``) are otherwise tested against an
in-process fake; FerretDB puts the real driver (``pymongo.AsyncMongoClient``), the real
wire protocol and a real server's query engine under them without Docker or a MongoDB
download: it is a Go program, so the only thing needed is ``go`` and the Go module proxy.
It runs on its SQLite backend (pure Go, ``modernc.org/sqlite``, so ``CGO_ENABLED=0``
and no C compiler), one process per test session, every test in its own database.

Where FerretDB v1 differs from MongoDB is listed in ``tests/brokers/FERRETDB.md``; the
three that matter here: no multi-document transactions, no atomic single-document
update under concurrent writers, no nested arrays. So it stands in for MongoDB in tests
with one writer per document, not in races.

For humans: ``python -m tests.brokers.ferretdb [--dir DIR]`` starts one and prints its
URI, e.g. for ``SHUANGJIAN_MONGODB_URI=<uri> shuangjian ...`` (with the same caveats).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self
from uuid import uuid4

from pymongo import AsyncMongoClient, MongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from tests.brokers.spawn import spawn
from tests.ports import free_port

MODULE = "github.com/FerretDB/FerretDB"
VERSION = "v1.24.2"
PACKAGE = "./cmd/ferretdb"
REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "ferretdb"
# Set to 0/off/false/no to leave FerretDB out (e.g. on a machine without the module proxy).
SWITCH = "SHUANGJIAN_TEST_FERRETDB"
READY_WITHIN = 30.0
STOP_WITHIN = 10.0
BUILD_WITHIN = 30 * 60.0  # a cold module cache on a slow link; the usual is 1-2 minutes
TAIL = 40  # lines of go's output or of the server log quoted in an error


# What FerretDB v1.24 (SQLite backend) lacks that the adapters' tests run into; quoted by
# the tests that cannot pass there, explained in FERRETDB.md.
NOT_ATOMIC = (
    "FerretDB v1 runs an update as a query, then a write of the whole document, not "
    "atomically: concurrent writers of one document lose updates and a $inc counter "
    "hands out a value twice, so this race fails or passes by chance there; the "
    "mongo-fake (and mongo) params cover it"
)


class FerretDBError(RuntimeError):
    """FerretDB could not be built, started or reached; the message quotes its output."""


# --- availability and build ---------------------------------------------------------------


def _binary(cache: Path) -> Path:
    return cache / VERSION / "bin" / "ferretdb"


def _why_unavailable() -> str:
    if os.environ.get(SWITCH, "").strip().lower() in ("0", "off", "false", "no"):
        return f"{SWITCH}={os.environ[SWITCH]} leaves FerretDB out"
    if _binary(CACHE).is_file() or shutil.which("go"):
        return ""
    return (
        "Go is not on PATH: FerretDB (the MongoDB-compatible test server) is built from "
        "source with it, once, into .cache/ferretdb"
    )


def available() -> bool:
    """Whether FerretDB can run here: already built, or ``go`` is on PATH to build it."""
    return not _why_unavailable()


# Why ``available()`` is False, for skip messages; empty when it is True.
reason = _why_unavailable()


def build(cache: Path = CACHE) -> Path:
    """The ``ferretdb`` binary of ``VERSION``, built on first use into ``cache/VERSION/bin``.

    Plain ``go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2`` builds a binary
    that panics at start ("Invalid build/version/version.txt file content"): FerretDB
    embeds that generated file, the module zip does not ship it, and ``go build -overlay``
    refuses to patch files inside the module cache. So the module is fetched through the
    module proxy (``go mod download``), copied out of the cache, given ``version.txt``,
    and built there; its ``go.sum`` pins every dependency, so nothing but the module proxy
    (and its checksum database) is involved.

    Two pytest processes may call this at once: the build runs under an exclusive
    ``fcntl`` lock, into a temporary directory renamed into place when complete, so a
    binary at the final path is always whole and the second caller just waits for it.
    """
    binary = _binary(cache)
    if binary.is_file():
        return binary
    if not shutil.which("go"):
        raise FerretDBError(reason or "Go is not on PATH")
    home = binary.parent.parent
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.is_file():  # built by another process while this one waited
            return binary
        for stale in home.glob("build-*"):  # left by a build that was killed
            _remove(stale)
        work = Path(tempfile.mkdtemp(prefix="build-", dir=home))
        try:
            _build_into(work)
            _remove(binary.parent)
            (work / "bin").rename(binary.parent)
        finally:
            _remove(work)
    return binary


def _build_into(work: Path) -> None:
    """Build ``work/bin/ferretdb`` from a writable copy of the module source."""
    env = {**os.environ, "CGO_ENABLED": "0", "GOWORK": "off"}
    listing = _go(["mod", "download", "-json", f"{MODULE}@{VERSION}"], work, env)
    source = work / "src"
    shutil.copytree(json.loads(listing)["Dir"], source, copy_function=shutil.copyfile)
    for directory, _, _ in os.walk(source):  # the module cache's tree is read-only
        os.chmod(directory, 0o755)
    (source / "build" / "version" / "version.txt").write_text(f"{VERSION}\n")
    output = work / "bin" / "ferretdb"
    _go(
        ["build", "-trimpath", "-buildvcs=false", "-mod=readonly", "-o", str(output), PACKAGE],
        source,
        env,
    )


def _go(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    command = ["go", *args]
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=BUILD_WITHIN,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise FerretDBError(f"`{' '.join(command)}` took over {BUILD_WITHIN:.0f}s") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).splitlines()
        raise FerretDBError(
            f"building FerretDB {VERSION} failed: `{' '.join(command)}` exited with "
            f"{done.returncode}; its last lines:\n" + "\n".join(output[-TAIL:])
        )
    return done.stdout


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# --- the server --------------------------------------------------------------------------


class FerretDB:
    """One FerretDB process on a free loopback port, its data and log in ``directory``.

    ``start()`` returns once the server answers a ``ping``; ``stop()`` sends SIGTERM, then
    SIGKILL; ``start()`` again brings it back on the same port with the same data, so a
    test can take the database away from a client and give it back. It runs in a process
    group of its own (a Ctrl-C meant for pytest does not reach it half-way through a test)
    and dies with the process that started it.
    """

    def __init__(
        self,
        directory: Path,
        *,
        binary: Path | None = None,
        port: int | None = None,
        ready_within: float = READY_WITHIN,
    ) -> None:
        self.directory = directory.resolve()  # the server runs in it: relative paths would nest
        self.binary = binary
        self.ready_within = ready_within
        self.log = self.directory / "ferretdb.log"
        self._wanted_port = port
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise FerretDBError("FerretDB is not started")
        return self._port

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the process to exit (by itself or by ``stop``); its exit code, or None
        when it still runs after ``timeout``."""
        if self._process is None:
            return None
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self._process.wait(timeout=timeout)
        return None

    def start(self) -> Self:
        """Start the server and wait for it to answer; a port taken meanwhile is retried."""
        if self.running():
            raise FerretDBError(f"FerretDB already runs at {self.uri}")
        binary = self.binary or build()
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        for _ in range(1 if self._wanted_port else 3):
            self._port = self._wanted_port or free_port()
            offset = self.log.stat().st_size if self.log.exists() else 0
            self._process = self._spawn(binary, data)
            if self._wait_ready():
                self._wanted_port = self._port  # a restart keeps the URI
                return self
            self.stop()  # reaps it
            if "address already in use" not in self._log_since(offset):
                break
        raise FerretDBError(
            f"FerretDB did not start on port {self._port}; the end of {self.log}:\n" + self.tail()
        )

    def _spawn(self, binary: Path, data: Path) -> subprocess.Popen[bytes]:
        args = [
            str(binary),
            "--handler=sqlite",
            f"--sqlite-url=file:{data}/",
            f"--state-dir={self.directory}",
            f"--listen-addr=127.0.0.1:{self._port}",
            "--debug-addr=-",  # no metrics/pprof listener (it would take port 8088)
            "--telemetry=disable",
            "--log-format=text",
        ]
        # A developer's FERRETDB_* settings must not reconfigure the test server.
        env = {k: v for k, v in os.environ.items() if not k.startswith("FERRETDB_")}
        with open(self.log, "ab") as log:
            return spawn(
                args,
                cwd=self.directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _wait_ready(self) -> bool:
        """Poll until this process answers a ``ping`` (True) or exits (False); past the
        deadline, stop it and raise."""
        assert self._process is not None
        deadline = time.monotonic() + self.ready_within
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            if self._answers():
                # Whoever answered, it was not this process if it has exited (port taken).
                return self._process.poll() is None
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=0.02)  # the poll interval, cut short by an exit
        self.stop()
        raise FerretDBError(
            f"FerretDB did not answer within {self.ready_within:.0f}s; the end of {self.log}:\n"
            + self.tail()
        )

    def _answers(self) -> bool:
        """Whether a server on the port answers a ``ping``; cheap while nothing listens."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                pass
        except OSError:
            return False
        client: MongoClient[dict[str, Any]] = MongoClient(
            self.uri, directConnection=True, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000
        )
        try:
            client.admin.command("ping")
        except PyMongoError:
            return False
        finally:
            client.close()
        return True

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after ``STOP_WITHIN``; idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_WITHIN)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _log_since(self, offset: int) -> str:
        with contextlib.suppress(OSError), open(self.log, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")
        return ""

    def tail(self) -> str:
        """The last lines of the server's log, for error messages."""
        return "\n".join(self._log_since(0).splitlines()[-TAIL:])


@contextlib.asynccontextmanager
async def scratch_database(
    uri: str, prefix: str = "shuangjian_test"
) -> AsyncIterator[AsyncDatabase[Any]]:
    """A database of its own on the server at ``uri`` (FerretDB or MongoDB), dropped after.

    Each test takes one, so tests sharing a server share no documents.
    """
    client: AsyncMongoClient[Any] = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
    name = f"{prefix}_{uuid4().hex}"
    try:
        yield client[name]
    finally:
        try:
            await client.drop_database(name)
        finally:
            await client.close()


# --- command line -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run one FerretDB until Ctrl-C (or SIGTERM), for pointing other suites at it."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.brokers.ferretdb", description=main.__doc__
    )
    parser.add_argument("--dir", type=Path, help="data and log directory (default: a temp dir)")
    parser.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    args = parser.parse_args(argv)
    if not available():
        print(f"FerretDB is unavailable: {reason}", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        if args.dir is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ferretdb-")))
        else:
            directory = args.dir.resolve()
            directory.mkdir(parents=True, exist_ok=True)

        def interrupt(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, interrupt)
        server = stack.enter_context(FerretDB(directory, port=args.port))
        print(server.uri, flush=True)
        print(f"data and log in {directory}; Ctrl-C stops it", file=sys.stderr, flush=True)
        try:
            code = server.wait()
        except KeyboardInterrupt:
            return 0
        print(f"FerretDB exited ({code}); the end of {server.log}:", file=sys.stderr)
        print(server.tail(), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
