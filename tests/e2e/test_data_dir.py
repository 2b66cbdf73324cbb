"""The data dir as real OS processes use it: the lock, private files, the token secret, the port.

* ``rebuild`` is refused while ``up`` runs, and ``up`` while a rebuild runs; a ``kill -9``
  releases the lock. ``serve`` and ``gateway`` share a data dir, but not with either.
* Files in the data dir are 0600 and the dir 0700, also when an older start left them open.
* ``token`` refuses a data dir without a secret instead of inventing one.
* ``up`` on a port in use says so in one line, before announcing anything.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from services.common.auth import Role, TokenVerifier, load_or_create_secret
from services.common.datadir import LOCK_FILE
from services.common.regions import RegionTree
from tests.e2e.conftest import Suite, run_cli
from tests.factories import registration, valid_credit_code
from tests.processes import SHUANGJIAN, Process, clean_env, free_port, wait_until

REGISTER = (
    """mutation($input: RegisterInstitutionInput!) { registerInstitution(input: $input) { id } }"""
)
STATS = '{ region(code: "640400") { stats { institutions { active pending } } } }'
COUNT = '{ institutions(filter: { region: "640400" }, first: 100) { totalCount } }'
WITHIN = 60.0  # generous for slow machines; every wait is on a condition


def register(suite: Suite, n: int) -> None:
    code = valid_credit_code("640402", f"MA{n:07d}")
    suite.data(REGISTER, {"input": registration(id=f"dd-{n}", creditCode=code)})


def figures(suite: Suite) -> dict[str, Any]:
    return {"stats": suite.data(STATS), "count": suite.data(COUNT)}


def one_line_refusal(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit code 2, one line on stderr holding every needle, no traceback, nothing done."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def holder(data_dir: Path) -> str:
    return (data_dir / LOCK_FILE).read_text(encoding="utf-8")


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """Child processes inherit it: the modes checked below must not depend on the caller's."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


# --- the lock ---------------------------------------------------------------------------


def test_rebuild_is_refused_while_up_runs_and_a_kill_9_releases_the_data_dir(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    suite = Suite(tmp_path, data, "--no-demo")
    try:
        suite.start()
        # "Shuangjian is up" is printed once the server accepts connections.
        wait_until(lambda: "Shuangjian is up" in suite.output or None, WITHIN, "the banner")
        assert suite.client.get("/healthz").status_code == 200
        for n in range(3):
            register(suite, n)
        before = figures(suite)
        assert before["count"]["institutions"]["totalCount"] == 3

        refused = run_cli("rebuild", "--data-dir", str(data), cwd=tmp_path)
        pid = suite.shuangjian.process.pid if suite.shuangjian.process else None
        one_line_refusal(refused, str(data), f"`shuangjian up` (pid {pid})")
        assert "Rebuilt" not in refused.stdout
        assert figures(suite) == before  # the running platform's read models are untouched

        suite.shuangjian.kill9()  # no shutdown code runs: only the kernel lets go of the lock
        rebuilt = run_cli("rebuild", "--data-dir", str(data), cwd=tmp_path)
        assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
        assert "Rebuilt registry.institutions." in rebuilt.stdout

        suite.start()
        assert figures(suite) == before
    finally:
        suite.kill()


def test_up_is_refused_while_a_rebuild_runs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    suite = Suite(tmp_path, data, "--no-demo")
    try:
        suite.start()
        register(suite, 1)
        before = figures(suite)
        assert suite.interrupt() == 0
    finally:
        suite.kill()

    # Hold SQLite's write lock on the event store so the rebuild, once it holds the data
    # dir, cannot finish before it is paused; then let it go while it is paused.
    blocker = sqlite3.connect(data / "registry.events.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    rebuild = subprocess.Popen(
        [str(SHUANGJIAN), "rebuild", "--data-dir", str(data)],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    paused = False
    try:
        wait_until(
            lambda: "shuangjian rebuild" in holder(data) or None, WITHIN, "the rebuild's lock"
        )
        rebuild.send_signal(signal.SIGSTOP)
        paused = True
        blocker.rollback()

        port = free_port()
        refused = run_cli("up", "--port", str(port), "--data-dir", str(data), cwd=tmp_path)
        line = one_line_refusal(refused, str(data), f"`shuangjian rebuild` (pid {rebuild.pid})")
        assert "Shuangjian is up" not in refused.stdout and "Bearer" not in refused.stdout
        assert "in use" in line

        rebuild.send_signal(signal.SIGCONT)
        paused = False
        output, _ = rebuild.communicate(timeout=WITHIN)
        assert rebuild.returncode == 0, output
        assert "Rebuilt registry.institutions." in output
    finally:
        if paused:
            rebuild.send_signal(signal.SIGCONT)
        if rebuild.poll() is None:
            rebuild.kill()
            rebuild.wait()
        blocker.close()

    again = Suite(tmp_path, data, "--no-demo")  # and once the rebuild is done, up starts
    try:
        again.start()
        assert figures(again) == before
    finally:
        again.kill()


def test_services_share_the_data_dir_but_not_with_up_or_rebuild(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = clean_env() | {"SHUANGJIAN_DATA_DIR": str(data)}
    registry_port, gateway_port = free_port(), free_port()
    registry = Process(
        "registry",
        ["serve", "registry", "--port", str(registry_port)],
        workdir=tmp_path,
        env=env,
        ready_url=f"http://127.0.0.1:{registry_port}/healthz",
    )
    gateway = Process(
        "gateway",
        ["gateway", "--port", str(gateway_port)],
        workdir=tmp_path,
        env=env | {"SHUANGJIAN_REGISTRY_URL": f"http://127.0.0.1:{registry_port}"},
        ready_url=f"http://127.0.0.1:{gateway_port}/healthz",
    )
    try:
        registry.start()
        gateway.start()  # a second process on the same data dir: both run

        one_line_refusal(run_cli("rebuild", "--data-dir", str(data), cwd=tmp_path), str(data))
        up = run_cli("up", "--port", str(free_port()), "--data-dir", str(data), cwd=tmp_path)
        one_line_refusal(up, str(data), "`shuangjian up` needs it to itself")
    finally:
        gateway.stop(strict=False)
        registry.stop(strict=False)
    rebuilt = run_cli("rebuild", "--data-dir", str(data), cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr


# --- private files ----------------------------------------------------------------------


def modes(data: Path) -> dict[str, int]:
    return {entry.name: stat.S_IMODE(entry.stat().st_mode) for entry in data.iterdir()}


def test_the_data_dir_is_0700_and_its_files_0600(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with umask(0o022):
        suite = Suite(tmp_path, data, "--no-demo")
        try:
            suite.start()
            register(suite, 1)  # writes through both databases' WAL files
            found = modes(data)
            assert stat.S_IMODE(data.stat().st_mode) == 0o700
            for name in (
                "registry.events.db",
                "registry.events.db-wal",
                "registry.events.db-shm",
                "read-models.db",
                "read-models.db-wal",
                "read-models.db-shm",
                "jwt-secret",
                LOCK_FILE,
            ):
                assert found.get(name) == 0o600, (name, found)
            assert set(found.values()) == {0o600}, found

            # A data dir an older version left open to everyone is closed on the next start.
            assert suite.interrupt() == 0
            data.chmod(0o755)
            for entry in data.iterdir():
                entry.chmod(0o644)
            suite.start()
            assert stat.S_IMODE(data.stat().st_mode) == 0o700
            assert set(modes(data).values()) == {0o600}, modes(data)
        finally:
            suite.kill()


# --- the token secret -------------------------------------------------------------------


def test_token_refuses_a_data_dir_without_a_secret_and_follows_the_env(tmp_path: Path) -> None:
    empty, missing, server = tmp_path / "empty", tmp_path / "missing", tmp_path / "server"
    empty.mkdir()
    for data in (empty, missing):
        refused = run_cli("token", "--data-dir", str(data), cwd=tmp_path)
        one_line_refusal(refused, str(data), "no token secret", "SHUANGJIAN_DATA_DIR")
        assert refused.stdout == ""  # no token the server would refuse
    assert list(empty.iterdir()) == [] and not missing.exists()

    secret = load_or_create_secret(server)  # what `up` does on its first start
    made = subprocess.run(
        [str(SHUANGJIAN), "token", "--region", "640400", "--role", "operator"],
        cwd=tmp_path,
        env=clean_env() | {"SHUANGJIAN_DATA_DIR": str(server)},
        capture_output=True,
        text=True,
        check=True,
    )
    principal = TokenVerifier(RegionTree.load(), secret=secret).verify(
        f"Bearer {made.stdout.strip()}"
    )
    assert (principal.role, principal.scope) == (Role.OPERATOR, "6404")


# --- the port ---------------------------------------------------------------------------


def test_up_on_a_port_in_use_says_so_in_one_line_and_announces_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("up", "--port", str(port), "--data-dir", str(data), cwd=tmp_path)
    one_line_refusal(result, f"127.0.0.1:{port}", "in use")
    assert "Shuangjian is up" not in result.stdout
    assert "Bearer" not in result.stdout
    # Refused before the platform started: no event store was opened.
    assert not (data / "registry.events.db").exists()


def test_ctrl_c_stops_a_start_that_is_still_replaying_and_the_next_goes_on(
    tmp_path: Path,
) -> None:
    """A data dir full of events and no read models (an upgrade, a restore): the start
    replays them before it is up, which at a province's scale takes many minutes."""
    data = tmp_path / "data"
    loaded = run_cli(
        "bench-load", "--institutions", "3000", "--events-only", "--data-dir", str(data),
        cwd=tmp_path, timeout=WITHIN,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    suite = Suite(tmp_path, data, "--no-demo")
    try:
        suite.shuangjian.start(wait=False)
        wait_until(lambda: "projection.catching_up" in suite.output or None, WITHIN, "replay")
        assert suite.interrupt() == 0
        assert "Stopped before it was up" in suite.output, suite.output
        assert "Shuangjian is up" not in suite.output

        suite.start()  # goes on from the positions the stopped replay committed
        counted = suite.data("{ institutions(first: 1) { totalCount } }")
        assert counted["institutions"]["totalCount"] == 3000
    finally:
        suite.kill()
