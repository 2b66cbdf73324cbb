"""The FerretDB test tool itself: it starts, serves the real driver, stops, and never
outlives the process that started it."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from tests.brokers import ferretdb

pytestmark = pytest.mark.skipif(not ferretdb.available(), reason=ferretdb.reason)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (dead, not yet reaped by whoever adopted it) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


async def test_start_serve_restart_and_stop(tmp_path: Path) -> None:
    server = ferretdb.FerretDB(tmp_path)
    with server:
        pid = server.pid
        assert pid is not None and alive(pid)
        assert server.uri == f"mongodb://127.0.0.1:{server.port}/"
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(server.uri)
        try:
            await client["t"]["c"].insert_one({"_id": "a", "n": 1})
            assert await client["t"]["c"].find_one({"n": 1}) == {"_id": "a", "n": 1}
            # A standalone server: MongoReadStore's "auto" goes without transactions.
            assert "setName" not in await client.admin.command("hello")
        finally:
            await client.close()

        server.stop()
        assert not alive(pid) and not server.running()
        server.start()  # same port, same data
        client = AsyncMongoClient(server.uri)
        try:
            assert await client["t"]["c"].find_one({"_id": "a"}) == {"_id": "a", "n": 1}
        finally:
            await client.close()
        pid = server.pid
        assert pid is not None
    assert not alive(pid) and not server.running()
    assert "Listening on TCP 127.0.0.1" in server.log.read_text()


def test_it_dies_with_the_process_that_started_it_even_by_sigkill(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from tests.brokers.ferretdb import FerretDB\n"
        "server = FerretDB(Path(sys.argv[1])).start()\n"
        "print(server.pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=ferretdb.REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert alive(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert gone_within(pid, 10.0), f"ferretdb {pid} outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_a_port_in_use_is_an_error_quoting_the_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = ferretdb.FerretDB(tmp_path, port=taken.getsockname()[1], ready_within=20.0)
        with pytest.raises(ferretdb.FerretDBError, match="address already in use"):
            server.start()
    assert not server.running()


def test_a_failed_build_says_why_and_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("go") is None:
        pytest.skip("go is not on PATH (FerretDB was built before)")
    monkeypatch.setattr(ferretdb, "VERSION", "v0.0.0-not-a-release")
    monkeypatch.setenv("GOPROXY", "off")  # no network; the module cache has no such version
    with pytest.raises(ferretdb.FerretDBError, match="GOPROXY=off"):
        ferretdb.build(tmp_path)
    assert sorted(p.name for p in (tmp_path / "v0.0.0-not-a-release").iterdir()) == ["build.lock"]
