"""The data dir's lock and modes (services/common/datadir.py), within one process.

``flock`` locks belong to an open file, so two ``hold`` calls in one process exclude each
other as two processes would; tests/e2e/test_data_dir.py runs the commands themselves.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from services.common.auth import NoSecret, load_or_create_secret, load_secret
from services.common.datadir import LOCK_FILE, DataDirInUse, hold, prepare


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def test_an_exclusive_holder_excludes_everyone_and_is_named(tmp_path: Path) -> None:
    with hold(tmp_path, "rebuild", exclusive=True):
        for exclusive in (True, False):
            with pytest.raises(DataDirInUse) as refused, hold(tmp_path, "up", exclusive=exclusive):
                pass
            assert f"`shuangjian rebuild` (pid {os.getpid()})" in str(refused.value)
            assert str(tmp_path) in str(refused.value)
    with hold(tmp_path, "up", exclusive=True):  # released on leaving the block
        pass
    assert (tmp_path / LOCK_FILE).read_text() == ""  # no stale name left behind


def test_shared_holders_coexist_and_keep_exclusive_ones_out(tmp_path: Path) -> None:
    with (
        hold(tmp_path, "serve registry", exclusive=False),
        hold(tmp_path, "gateway", exclusive=False),
        pytest.raises(DataDirInUse, match="`shuangjian up` needs it to itself"),
        hold(tmp_path, "up", exclusive=True),
    ):
        pass
    with hold(tmp_path, "up", exclusive=True):
        pass


def test_a_new_data_dir_is_private(tmp_path: Path) -> None:
    data = tmp_path / "new" / "data"
    with umask(0o022), hold(data, "up", exclusive=True):
        secret = load_or_create_secret(data)
    assert mode(data) == 0o700
    assert mode(data / LOCK_FILE) == mode(data / "jwt-secret") == 0o600
    assert load_or_create_secret(data) == secret == load_secret(data)
    assert sorted(p.name for p in data.iterdir()) == sorted([LOCK_FILE, "jwt-secret"])


def test_an_open_data_dir_of_ours_is_tightened(tmp_path: Path) -> None:
    data = tmp_path / "var"
    (data / "faust").mkdir(parents=True)
    for name in ("registry.events.db", "registry.events.db-wal", "jwt-secret"):
        (data / name).write_text("x")
        (data / name).chmod(0o644)
    data.chmod(0o755)
    (data / "faust").chmod(0o755)
    prepare(data)
    assert mode(data) == 0o700 and mode(data / "faust") == 0o700
    assert {mode(p) for p in data.iterdir() if p.is_file()} == {0o600}


def test_a_dir_shared_with_other_files_keeps_its_mode_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not ours")
    (tmp_path / "notes.txt").chmod(0o644)
    (tmp_path / "read-models.db").write_text("x")
    (tmp_path / "read-models.db").chmod(0o644)
    tmp_path.chmod(0o755)
    with capture_logs() as logs:
        prepare(tmp_path)
    assert mode(tmp_path) == 0o755
    assert mode(tmp_path / "notes.txt") == 0o644  # not ours: untouched
    assert mode(tmp_path / "read-models.db") == 0o600
    warning = next(e for e in logs if e["event"] == "datadir.open_to_others")
    assert f"chmod 700 {tmp_path}" in warning["advice"]


def test_load_secret_never_creates_one(tmp_path: Path) -> None:
    with pytest.raises(NoSecret, match=str(tmp_path)):
        load_secret(tmp_path)
    (tmp_path / "jwt-secret").write_text("  \n")
    with pytest.raises(NoSecret, match="missing or empty"):
        load_secret(tmp_path)
    assert not (tmp_path / "missing").exists()
