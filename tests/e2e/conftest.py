"""Helpers for the end-to-end ring: the real ``shuangjian`` console script over real HTTP."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.common.auth import Role, issue_token, load_or_create_secret
from tests.processes import (
    READY_WITHIN,
    SHUANGJIAN,
    STOP_WITHIN,
    clean_env,
    free_port,
    wait_until,
)

__all__ = ["READY_WITHIN", "STOP_WITHIN", "Suite", "free_port", "run_cli", "wait_until"]


def run_cli(*args: str, cwd: Path, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SHUANGJIAN), *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Suite:
    """One ``shuangjian up`` process; its stdout and stderr go to a log file."""

    def __init__(self, workdir: Path, data_dir: Path, *args: str) -> None:
        self.workdir = workdir
        self.data_dir = data_dir
        self.args = args
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self.client = httpx.Client(base_url=self.base_url, timeout=10.0)
        self.runs = 0

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.runs += 1
        self.log_path = self.workdir / f"shuangjian-{self.runs}.log"
        command = [
            str(SHUANGJIAN),
            "up",
            *self.args,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=clean_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._healthy, READY_WITHIN, f"GET /healthz on {self.base_url}")
        # The same secret file the process uses: a national admin, as `make run` prints.
        secret = load_or_create_secret(self.data_dir)
        token = issue_token(secret, "e2e-admin", role=Role.ADMIN)
        self.client.headers["Authorization"] = f"Bearer {token}"

    def _healthy(self) -> bool | None:
        assert self.process is not None
        if (code := self.process.poll()) is not None:
            raise AssertionError(
                f"shuangjian exited with {code} before it was ready:\n{self.output}"
            )
        try:
            response = self.client.get("/healthz", timeout=1.0)
        except httpx.TransportError:
            return None
        return True if response.status_code == 200 else None

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT, then wait for the process to exit; returns its exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=STOP_WITHIN)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"shuangjian did not exit within {STOP_WITHIN}s of SIGINT:\n{self.output}"
            ) from None

    def kill(self) -> None:
        """Teardown: make sure nothing outlives the test, whatever happened."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_WITHIN)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_WITHIN)
        self.client.close()

    @property
    def output(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    # --- GraphQL ------------------------------------------------------------------------

    def post(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.client.post("/graphql", json={"query": query, "variables": variables or {}})
        assert response.status_code == 200, response.text
        return response.json()

    def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = self.post(query, variables)
        assert "errors" not in body, body["errors"]
        return body["data"]


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[Suite]:
    running = Suite(tmp_path, tmp_path / "data", "--demo")
    try:
        yield running
    finally:
        running.kill()
        # Shown by pytest only when the test failed: the suite's own account of what happened.
        for log in sorted(tmp_path.glob("shuangjian-*.log")):
            print(f"--- {log.name} ---\n{log.read_text(encoding='utf-8', errors='replace')}")
