"""Running ``shuangjian`` as real OS processes: the console script, logs, readiness probes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TypeVar

import httpx

from tests.ports import free_port

SHUANGJIAN = Path(sys.executable).parent / "shuangjian"
READY_WITHIN = 60.0
STOP_WITHIN = 15.0

T = TypeVar("T")


__all__ = ["SHUANGJIAN", "Process", "clean_env", "free_port", "stop_all", "wait_until"]


def clean_env() -> dict[str, str]:
    """The embedded defaults: no SHUANGJIAN_* settings leaking in from the caller's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHUANGJIAN_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "200"  # rich wraps at 80 columns when not on a terminal
    return env


def wait_until(
    probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05
) -> T:
    """Call ``probe`` until it returns something other than None, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Process:
    """One ``shuangjian …`` process; stdout and stderr go to a log file per run.

    ``ready_url`` is polled after start until it answers 200 (a health or readiness probe).
    """

    def __init__(
        self,
        name: str,
        args: list[str],
        *,
        workdir: Path,
        env: Mapping[str, str],
        ready_url: str,
    ) -> None:
        self.name = name
        self.args = args
        self.workdir = workdir
        self.env = dict(env)
        self.ready_url = ready_url
        self.process: subprocess.Popen[bytes] | None = None
        self._terminated: subprocess.Popen[bytes] | None = None  # the run SIGTERM was sent to
        self.runs = 0
        self.logs: list[Path] = []

    def start(self, *, wait: bool = True) -> None:
        assert self.process is None or self.process.poll() is not None, f"{self.name} runs"
        self.runs += 1
        log_path = self.workdir / f"{self.name}-{self.runs}.log"
        self.logs.append(log_path)
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(SHUANGJIAN), *self.args],
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = READY_WITHIN) -> None:
        wait_until(self._ready, timeout, f"{self.name} at {self.ready_url}", interval=0.1)

    def _ready(self) -> bool | None:
        assert self.process is not None
        if (code := self.process.poll()) is not None:
            raise AssertionError(f"{self.name} exited with {code}:\n{self.output}")
        try:
            response = httpx.get(self.ready_url, timeout=1.0)
        except httpx.TransportError:
            return None
        return True if response.status_code == 200 else None

    def kill9(self) -> None:
        """SIGKILL: no shutdown code runs, nothing is flushed or committed."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STOP_WITHIN)

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT, then wait for the process to exit; returns its exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=STOP_WITHIN)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} did not exit within {STOP_WITHIN}s of SIGINT:\n{self.last_output}"
            ) from None

    def terminate(self) -> None:
        """SIGTERM, once, without waiting (``stop`` waits); nothing when it does not run."""
        if self.process is None or self.process.poll() is not None:
            return
        if self._terminated is not self.process:  # a second SIGTERM forces uvicorn's exit
            self._terminated = self.process
            self.process.terminate()

    def stop(self, *, strict: bool = True) -> int | None:
        """SIGTERM (unless ``terminate`` sent it) and wait; SIGKILL if it does not exit in
        time. Returns the exit code.

        ``strict``: a process that had to be killed fails the test (not in teardown).
        """
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.terminate()
        try:
            return self.process.wait(timeout=STOP_WITHIN)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_WITHIN)
            if strict:
                raise AssertionError(f"{self.name} ignored SIGTERM:\n{self.output}") from None
            return self.process.returncode

    @property
    def last_output(self) -> str:
        """What the latest run printed."""
        if not self.logs or not self.logs[-1].exists():
            return ""
        return self.logs[-1].read_text(encoding="utf-8", errors="replace")

    @property
    def output(self) -> str:
        """What every run printed, each under its log file's name."""
        return "\n".join(
            f"--- {log.name} ---\n{log.read_text(encoding='utf-8', errors='replace')}"
            for log in self.logs
            if log.exists()
        )


def stop_all(processes: Iterable[Process], *, strict: bool = True) -> None:
    """``stop`` each process, shutting them down together rather than one after the
    other: SIGTERM to all first, then wait for each (each still gets ``STOP_WITHIN``).
    Every process is stopped even when one fails; then the first failure is raised."""
    chosen = list(processes)
    for process in chosen:
        process.terminate()
    failures: list[AssertionError] = []
    for process in chosen:
        try:
            process.stop(strict=strict)
        except AssertionError as exc:
            failures.append(exc)
    if failures:
        raise failures[0]
