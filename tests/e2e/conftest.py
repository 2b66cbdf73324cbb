"""Helpers for the end-to-end ring: the real ``shuangjian`` console script over real HTTP."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.common.auth import Role, issue_token, load_or_create_secret
from tests.processes import SHUANGJIAN, Process, clean_env, free_port, wait_until

__all__ = ["Suite", "run_cli", "wait_until"]


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
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.base_url, timeout=10.0)
        command = ["up", *args, "--port", str(self.port), "--data-dir", str(data_dir)]
        self.shuangjian = Process(
            "shuangjian",
            command,
            workdir=workdir,
            env=clean_env(),
            ready_url=f"{self.base_url}/healthz",
        )

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self.shuangjian.start()
        # The same secret file the process uses: a national admin, as `make run` prints.
        secret = load_or_create_secret(self.data_dir)
        token = issue_token(secret, "e2e-admin", role=Role.ADMIN)
        self.client.headers["Authorization"] = f"Bearer {token}"

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT, then wait for the process to exit; returns its exit code."""
        return self.shuangjian.interrupt()

    def kill(self) -> None:
        """Teardown: make sure nothing outlives the test, whatever happened."""
        self.shuangjian.stop(strict=False)
        self.client.close()

    @property
    def output(self) -> str:
        """What the latest run printed."""
        return self.shuangjian.last_output

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
