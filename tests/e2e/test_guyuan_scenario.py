"""固原's figures (RULES.md, seed 002) reproduced through GraphQL over HTTP.

206 institutions before the policy, 97 of them SUBJECT; afterwards 167 active, 6 of
them SUBJECT: 39 subject institutions closed (20 exited, 19 revoked) and 52 turned
into non-subject ones. 压减率 = (97 - 6) / 97 ≈ 0.938 at district, city and province.
"""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import Suite
from tests.factories import valid_credit_code

REGISTER = """mutation($input: RegisterInstitutionInput!) {
  registerInstitution(input: $input) { id status } }"""
APPROVE = """mutation($id: ID!, $at: DateTime) {
  approveInstitution(id: $id, licenseNo: "教民640402号", occurredAt: $at) { status } }"""
EXIT = """mutation($id: ID!, $at: DateTime) {
  exitInstitution(id: $id, reason: "有序退出", occurredAt: $at) { status } }"""
REVOKE = """mutation($id: ID!, $at: DateTime) {
  revokeInstitution(id: $id, reason: "取缔", occurredAt: $at) { status } }"""
RECLASSIFY = """mutation($id: ID!, $at: DateTime) {
  reclassifyInstitution(id: $id, category: NON_SUBJECT, nonSubjectKind: SPORTS, occurredAt: $at)
  { category authority } }"""
STATS = """query($code: String!) { region(code: $code) { name stats { institutions {
  active subject nonSubject approved revoked exited subjectBaseline subjectCompressionRate
} } history(from: "2021-01-01", to: "2022-12-01") {
  month institutionsRegistered institutionsClosed } } }"""


def test_guyuan_compression_rate_at_every_level(tmp_path: Path) -> None:
    suite = Suite(tmp_path, tmp_path / "data", "--no-demo")
    suite.start()
    try:
        for n in range(206):
            subject = n < 97
            month = 1 + n % 6
            suite.data(
                REGISTER,
                {
                    "input": {
                        "id": f"gy-{n:03d}",
                        "name": f"原州区第{n}培训机构",
                        "creditCode": valid_credit_code("640402", f"MA{n:07d}"),
                        "region": "640402",
                        "category": "SUBJECT" if subject else "NON_SUBJECT",
                        "nonSubjectKind": None if subject else "ARTS",
                        "mode": "OFFLINE",
                        "occurredAt": f"2021-{month:02d}-05T09:00:00",
                    }
                },
            )
            suite.data(APPROVE, {"id": f"gy-{n:03d}", "at": f"2021-{month:02d}-20T09:00:00"})

        # After the policy: subject institutions 0..38 close, 39..90 turn non-subject.
        for n in range(39):
            mutation = EXIT if n < 20 else REVOKE
            suite.data(mutation, {"id": f"gy-{n:03d}", "at": f"2021-{8 + n % 5:02d}-15T10:00:00"})
        for n in range(39, 91):
            changed = suite.data(RECLASSIFY, {"id": f"gy-{n:03d}", "at": "2021-10-01T10:00:00"})
            assert changed["reclassifyInstitution"]["authority"] == "SPORTS"

        for code in ("640402", "640400", "640000"):
            region = suite.data(STATS, {"code": code})["region"]
            stats = region["stats"]["institutions"]
            assert stats["active"] == 167, code
            assert stats["subject"] == 6, code
            assert stats["nonSubject"] == 161, code
            assert (stats["exited"], stats["revoked"]) == (20, 19), code
            assert stats["subjectBaseline"] == 97, code
            assert abs(stats["subjectCompressionRate"] - 0.938) < 0.0005, code
            months = {m["month"]: m for m in region["history"]}
            assert len(months) == 24
            assert sum(m["institutionsRegistered"] for m in months.values()) == 206
            assert sum(m["institutionsClosed"] for m in months.values()) == 39
            assert months["2021-08-01"]["institutionsClosed"] == 8

        trail = suite.data(
            '{ institution(id: "gy-000") { status events { totalCount edges { node { type '
            "version occurredAt actor } } } } }"
        )["institution"]
        assert trail["status"] == "EXITED"
        assert [e["node"]["type"] for e in trail["events"]["edges"]] == [
            "registry.InstitutionRegistered",
            "registry.InstitutionApproved",
            "registry.InstitutionExited",
        ]
        assert suite.interrupt() == 0
    finally:
        suite.kill()
