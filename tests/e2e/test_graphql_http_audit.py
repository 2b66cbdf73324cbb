"""The GraphQL-over-HTTP audit of the ``graphql-http`` package, against ``shuangjian up``.

``auditServer`` sends the spec's requests (media types, methods, parameters, parse,
validation and coercion failures) to a running process; every check must pass with no
warning. The npm packages are installed once into ``.cache/npm`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import Suite

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "npm"
SCRIPT = Path(__file__).with_name("graphql_http_audit.cjs")
PACKAGES = {"graphql-http": "1.23.1", "graphql": "16.15.0"}
AUDITS = 61  # what graphql-http 1.23.1 runs


def _installed(name: str) -> str | None:
    manifest = CACHE / "node_modules" / name / "package.json"
    if not manifest.exists():
        return None
    return str(json.loads(manifest.read_text(encoding="utf-8"))["version"])


@pytest.fixture(scope="module")
def node_modules() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run graphql-http's audit")
    wanted = [f"{name}@{version}" for name, version in PACKAGES.items()]
    if any(_installed(name) != version for name, version in PACKAGES.items()):
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(CACHE),
                *wanted,
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return CACHE / "node_modules"


def test_the_graphql_over_http_audit_passes_without_a_warning(
    tmp_path: Path, node_modules: Path
) -> None:
    suite = Suite(tmp_path, tmp_path / "data", "--no-demo")
    suite.start()
    try:
        audit = subprocess.run(
            [
                "node",
                str(SCRIPT),
                f"{suite.base_url}/graphql",
                suite.client.headers["Authorization"],
            ],
            env={**os.environ, "NODE_PATH": str(node_modules)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        suite.kill()
    assert audit.returncode == 0, audit.stderr
    results = json.loads(audit.stdout)
    assert len(results) == AUDITS
    failed = [r for r in results if r["status"] != "ok"]
    assert failed == [], json.dumps(failed, indent=2, ensure_ascii=False)
