"""The embedded suite as a user drives it: ``shuangjian up --demo``, GraphQL over HTTP, Ctrl-C.

A real OS process on a free port, a data dir under tmp_path, and a restart on the same
data dir to show that events survive and nothing is applied twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.conftest import Suite, run_cli, wait_until
from tests.factories import valid_credit_code

GUYUAN = """{ region(code: "640400") {
  name level children { code name }
  stats { institutions { active subject nonSubject approved pending } } } }"""

STATS_FIELDS = """active subject nonSubject online offline approved pending suspended revoked
  exited convertedToNonProfit blacklisted whitelisted subjectBaseline subjectCompressionRate"""
STATS = f"""{{
  district: region(code: "640402") {{ stats {{ institutions {{ {STATS_FIELDS} }} }} }}
  city: region(code: "640400") {{ stats {{ institutions {{ {STATS_FIELDS} }} }} }}
  province: region(code: "640000") {{ stats {{ institutions {{ {STATS_FIELDS} }} }} }}
}}"""
COUNT = '{ institutions(filter: { region: "640400" }, first: 100) { totalCount } }'
REGISTER = """mutation($input: RegisterInstitutionInput!) {
  registerInstitution(input: $input) { id name status category nonSubjectKind } }"""
E2E_1 = '{ institution(id: "e2e-1") { name status } }'

NOT_LOADED_AGAIN = "Data dir already holds events: demo data not loaded again."


def stats(suite: Suite) -> dict[str, dict[str, Any]]:
    data = suite.data(STATS)
    return {level: data[level]["stats"]["institutions"] for level in data}


def assert_clean_exit(suite: Suite) -> None:
    code = suite.interrupt()
    output = suite.output
    assert code == 0, f"exit code {code} after SIGINT:\n{output}"
    assert "Traceback" not in output, output
    # The bearer token of every request made here never reaches the log.
    token = suite.client.headers["Authorization"].removeprefix("Bearer ")
    assert token not in output
    assert "Authorization" in output  # the header `make run` prints for the user, only


def test_up_demo_register_ctrl_c_and_restart_on_the_same_data_dir(suite: Suite) -> None:
    suite.start()
    assert "Loaded 640 demo institutions." in suite.output
    assert NOT_LOADED_AGAIN not in suite.output

    # GraphiQL for a browser.
    page = suite.client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "graphiql" in page.text.lower()

    # The demo figures for 固原 (services/demo.py PLANS).
    region = suite.data(GUYUAN)["region"]
    assert (region["name"], region["level"]) == ("固原市", "CITY")
    assert [child["code"] for child in region["children"]] == [
        "640402",
        "640422",
        "640423",
        "640424",
        "640425",
    ]
    figures = region["stats"]["institutions"]
    # 固原 after the policy: 167 active of the 206, 6 of the 97 SUBJECT ones left.
    assert figures == {
        "active": 167,
        "subject": 6,
        "nonSubject": 161,
        "approved": 167,
        "pending": 0,
    }

    # Register one more institution; listing and roll-ups follow within a second.
    count_before = suite.data(COUNT)["institutions"]["totalCount"]
    assert count_before == 206  # closed institutions stay on the register
    before = stats(suite)
    created = suite.data(
        REGISTER,
        {
            "input": {
                "id": "e2e-1",
                "name": "原州区飞跃篮球俱乐部",
                "creditCode": valid_credit_code("640402", "MA00000E2"),
                "region": "640402",
                "category": "NON_SUBJECT",
                "nonSubjectKind": "SPORTS",
                "mode": "OFFLINE",
            }
        },
    )["registerInstitution"]
    assert created == {
        "id": "e2e-1",
        "name": "原州区飞跃篮球俱乐部",
        "status": "PENDING",
        "category": "NON_SUBJECT",
        "nonSubjectKind": "SPORTS",
    }

    def counted() -> int | None:
        total = suite.data(COUNT)["institutions"]["totalCount"]
        return total if total == count_before + 1 else None

    wait_until(counted, 1.0, "institutions(region 640400) totalCount to grow by 1")

    def rolled_up() -> dict[str, dict[str, Any]] | None:
        now = stats(suite)
        grown = all(
            now[level]["active"] == before[level]["active"] + 1
            and now[level]["nonSubject"] == before[level]["nonSubject"] + 1
            for level in ("city", "province")
        )
        return now if grown else None

    after = wait_until(rolled_up, 1.0, "active and nonSubject +1 on 640400 and 640000")
    for level in ("district", "city", "province"):
        assert after[level]["subject"] == before[level]["subject"], level
        assert after[level]["pending"] == before[level]["pending"] + 1, level

    # Ctrl-C.
    assert_clean_exit(suite)

    # Start again on the same data dir: the events are still there, nothing applied twice.
    suite.start()
    output = suite.output
    assert NOT_LOADED_AGAIN in output, output
    assert "Loaded 640 demo institutions." not in output
    assert suite.data(E2E_1)["institution"] == {"name": "原州区飞跃篮球俱乐部", "status": "PENDING"}
    assert suite.data(COUNT)["institutions"]["totalCount"] == count_before + 1
    assert stats(suite) == after

    assert_clean_exit(suite)


def test_help_describes_the_command_and_its_options(tmp_path: Path) -> None:
    top = run_cli("--help", cwd=tmp_path)
    assert top.returncode == 0, top.stderr
    assert "up" in top.stdout
    assert "Run every service" in top.stdout

    up = run_cli("up", "--help", cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    for option in ("--demo", "--no-demo", "--data-dir", "--port", "--host"):
        assert option in up.stdout, option
    for description in ("Load demo data", "SQLite", "Port to listen on", "Interface to listen on"):
        assert description in up.stdout, description
