"""The data dir: private to the user who runs the platform, and guarded by an OS lock.

Privacy: the dir is created 0700 and every file the platform keeps in it 0600 (the SQLite
databases with their ``-wal`` and ``-shm`` files, the token secret, the lock, the faust
worker's dir). ``prepare`` also tightens files an older version left readable; the dir
itself is tightened only when it holds nothing but the platform's files, since
``--data-dir`` may point at a dir shared with other things. Otherwise a warning says
how to close it.

Locking: an ``fcntl.flock`` on ``shuangjian.lock``. ``up`` and ``rebuild`` take it
exclusively: a rebuild that drops the read models under a running platform corrupts its
roll-ups, and ``up`` must not start in the middle of a rebuild. ``serve``, ``gateway``
and ``project`` take it shared, so the distributed processes may share one data dir on
one machine, but neither ``up`` nor ``rebuild`` can run beside them. The kernel releases
the lock when its holder exits, however it exits (``kill -9`` too): no stale lock files.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
LOCK_FILE = "shuangjian.lock"
SECRET_FILE = "jwt-secret"
FAUST_DIR = "faust"
_SQLITE_SUFFIXES = (".db", ".db-wal", ".db-shm", ".db-journal")


class DataDirInUse(Exception):
    """Another process holds the data dir in a way that excludes this one."""

    def __init__(self, data_dir: Path, command: str, holder: str, *, exclusive: bool) -> None:
        self.data_dir = data_dir
        if exclusive:
            message = (
                f"the data dir {data_dir} is in use by {holder}; `shuangjian {command}` "
                "needs it to itself: stop the other process first"
            )
        else:
            message = (
                f"the data dir {data_dir} is in use by {holder}, which needs it to itself; "
                f"`shuangjian {command}` can start once it has finished"
            )
        super().__init__(message)


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) with the dir itself 0700."""
    if not path.is_dir():
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)


def make_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if missing, or take group and other access away."""
    make_private_dir(path.parent)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def make_private_database(path: Path) -> None:
    """A SQLite database file 0600 before SQLite opens it, and its companions if they exist.

    SQLite gives the ``-wal``, ``-shm`` and journal files it creates the mode of the
    database file, so these stay private from then on too.
    """
    make_private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        companion = path.with_name(path.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_IMODE(companion.stat().st_mode) & 0o077:
                companion.chmod(FILE_MODE)


def _is_ours(entry: Path) -> bool:
    name = entry.name
    if entry.is_dir():
        return name == FAUST_DIR
    return (
        name in (LOCK_FILE, SECRET_FILE)
        or name.endswith(_SQLITE_SUFFIXES)
        or (name.startswith(f".{SECRET_FILE}.") and name.endswith(".tmp"))
    )


def prepare(data_dir: Path) -> None:
    """Create the data dir 0700, tighten the platform's files in it, and the dir if it is ours.

    A dir that also holds other things keeps its mode, with a warning, because changing it
    could lock someone out of those things.
    """
    make_private_dir(data_dir)
    entries = list(data_dir.iterdir())
    for entry in entries:
        if _is_ours(entry) and not entry.is_symlink():
            mode = stat.S_IMODE(entry.stat().st_mode)
            if mode & 0o077:
                entry.chmod(DIR_MODE if entry.is_dir() else FILE_MODE)
                log.warning("datadir.tightened", path=str(entry), mode=oct(mode))
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if mode & 0o077:
        if all(_is_ours(entry) for entry in entries):
            data_dir.chmod(DIR_MODE)
            log.warning("datadir.tightened", path=str(data_dir), mode=oct(mode))
        else:
            log.warning(
                "datadir.open_to_others",
                path=str(data_dir),
                mode=oct(mode),
                advice=f"it holds other files too, so it was left as it is: chmod 700 {data_dir}",
            )


@contextlib.contextmanager
def hold(data_dir: Path, command: str, *, exclusive: bool) -> Iterator[None]:
    """Hold the data dir's lock for the block; raise ``DataDirInUse`` at once if it is taken.

    An exclusive holder writes who it is into the lock file, so a refused process can name
    it; a shared holder clears that line (it can only be stale once a shared lock is had).
    """
    prepare(data_dir)
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            raise DataDirInUse(
                data_dir, command, holder or "another shuangjian process", exclusive=exclusive
            ) from None
        os.ftruncate(fd, 0)
        if exclusive:
            os.pwrite(fd, f"`shuangjian {command}` (pid {os.getpid()})\n".encode(), 0)
        try:
            yield
        finally:
            if exclusive:
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the descriptor releases the lock
