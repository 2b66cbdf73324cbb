"""``shuangjian report monthly`` as a user runs it: from the data dir, or from a running
server when ``make run`` holds the data dir, with refusals that name the option."""

from __future__ import annotations

from pathlib import Path

import pypdfium2

from services.common.auth import Role, issue_token, load_or_create_secret
from tests.e2e.conftest import Suite, run_cli


def text_of(pdf: Path) -> str:
    document = pypdfium2.PdfDocument(pdf)
    return "".join(page.get_textpage().get_text_range() for page in document)


def test_report_from_the_data_dir_and_from_the_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    out = tmp_path / "固原-2025-03.pdf"
    written = run_cli(
        "report", "monthly", "--region", "640400", "--month", "2025-03",
        "--out", str(out), "--data-dir", str(data), cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert written.returncode == 0, written.stdout + written.stderr
    assert "Wrote the 2025-03 report of 640400 (PDF" in written.stdout
    assert "宁夏回族自治区固原市“双减”工作2025年3月通报" in text_of(out)

    bad = run_cli(
        "report", "monthly", "--region", "640400", "--month", "2025-3",
        "--out", str(tmp_path / "bad.pdf"), "--data-dir", str(data), cwd=tmp_path,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "--month: month must be YYYY-MM" in bad.stdout
    assert not (tmp_path / "bad.pdf").exists()

    suite = Suite(tmp_path, data, "--no-demo")
    suite.start()
    try:
        busy = run_cli(
            "report", "monthly", "--region", "640400", "--month", "2025-03",
            "--out", str(tmp_path / "busy.xlsx"), "--data-dir", str(data), cwd=tmp_path,
        )  # fmt: skip
        assert busy.returncode == 2
        assert "ask the running server: --url" in busy.stderr

        secret = load_or_create_secret(data)
        xiji = issue_token(secret, "xiji", role=Role.VIEWER, region="640422")
        for region, code, expected in (
            ("640422", 0, "Wrote the 2025-03 report of 640422 (XLSX"),
            ("640400", 2, "--region: xiji may not read region 640400"),
        ):
            asked = run_cli(
                "report", "monthly", "--region", region, "--month", "2025-03",
                "--out", str(tmp_path / f"{region}.xlsx"), "--url", suite.base_url,
                "--token", xiji, cwd=tmp_path, timeout=60,
            )  # fmt: skip
            assert asked.returncode == code, asked.stdout + asked.stderr
            assert expected in asked.stdout.replace("\n", "")
        assert (tmp_path / "640422.xlsx").read_bytes()[:2] == b"PK"  # a zip: the workbook
        assert not (tmp_path / "640400.xlsx").exists()
    finally:
        suite.kill()
