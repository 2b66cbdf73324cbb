"""Starting the suite's servers (Kafka's JVMs, FerretDB) so that they die with the test
process: ``PR_SET_PDEATHSIG`` on Linux, forked from one long-lived thread."""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

_PR_SET_PDEATHSIG = 1
_prctl: Any = None
if sys.platform == "linux":
    # Looked up now: the child may only call async-signal-safe code between fork and exec.
    _prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    def preexec() -> None:  # runs in the child between fork and exec
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before the prctl: follow it
            os._exit(1)

    return preexec


class _Spawner:
    """Forks the servers from one daemon thread that lives as long as the process.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child ends, not the process:
    a server started from, say, an executor thread of an event loop would be killed when that
    executor shuts down.
    """

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[
            tuple[Callable[[], subprocess.Popen[bytes]], concurrent.futures.Future[Any]]
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _run(self) -> None:
        while True:
            spawn, future = self._requests.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(spawn())
                except BaseException as exc:
                    future.set_exception(exc)

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="test-server-spawner", daemon=True
                )
                self._thread.start()
        future: concurrent.futures.Future[subprocess.Popen[bytes]] = concurrent.futures.Future()
        preexec = _die_with_parent(os.getpid())
        self._requests.put(
            (
                lambda: subprocess.Popen(
                    args, preexec_fn=preexec, start_new_session=True, **kwargs
                ),
                future,
            )
        )
        return future.result()


_spawner = _Spawner()


def spawn(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen`` in a session of its own, killed by the kernel when this test
    process dies (even by ``kill -9``, which runs no cleanup)."""
    return _spawner.popen(args, **kwargs)
