"""GB/T 2260 regions (province, city, county level) and the tree the roll-ups walk.

The data is a snapshot of the statistics bureau's 2023 edition shipped as ``regions.csv``
(see ``SOURCE.md``). Codes are 6 digits: ``PPCCDD``. A province ends in ``0000`` and a city
in ``00``, so a region's subtree is exactly the codes that start with its
:meth:`RegionTree.subtree_prefix`; the constructor refuses data that would break that, so
callers may filter stored codes by prefix instead of walking the tree.
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import functools
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from importlib import resources

from services.common.errors import BadInput

__all__ = ["Region", "RegionLevel", "RegionTree", "well_formed"]

EDITION = "2023"
_CODE = re.compile(r"[0-9]{2}|[0-9]{4}|[0-9]{6}")


def well_formed(code: object) -> bool:
    """A 2-, 4- or 6-digit code (a province, city or district prefix), existing or not."""
    return isinstance(code, str) and _CODE.fullmatch(code) is not None


# City-level names that stand for "no real city here": the municipalities' 市辖区/县 and the
# provinces' pseudo-city for directly administered counties. Full names skip them.
_PLACEHOLDER_CITIES = frozenset({"市辖区", "县", "省直辖县级行政区划", "自治区直辖县级行政区划"})


class RegionLevel(enum.Enum):
    PROVINCE = "PROVINCE"
    CITY = "CITY"
    DISTRICT = "DISTRICT"


_PREFIX_LENGTH = {RegionLevel.PROVINCE: 2, RegionLevel.CITY: 4, RegionLevel.DISTRICT: 6}
_PARENT_LEVEL = {RegionLevel.CITY: RegionLevel.PROVINCE, RegionLevel.DISTRICT: RegionLevel.CITY}


@dataclass(frozen=True, slots=True)
class Region:
    code: str
    name: str
    level: RegionLevel
    parent_code: str | None
    # Filled in by RegionTree so ``full_name`` needs no tree lookup; not part of identity.
    _name_prefix: str = dataclasses.field(default="", compare=False, repr=False)

    @property
    def full_name(self) -> str:
        """Names from the province down, e.g. "宁夏回族自治区固原市原州区", "天津市和平区".

        Placeholder cities (市辖区, 县, 省直辖县级行政区划) are skipped as ancestors but a
        placeholder keeps its own name ("重庆市县"), so no two regions share a full name.
        Only regions that come from a :class:`RegionTree` carry their ancestors' names.
        """
        return self._name_prefix + self.name


class RegionTree:
    """Lookups and subtree queries over one consistent set of regions."""

    def __init__(self, regions: Iterable[Region]) -> None:
        by_code: dict[str, Region] = {}
        for region in regions:
            if region.code in by_code:
                raise ValueError(f"duplicate region code {region.code}")
            by_code[region.code] = region
        for region in by_code.values():
            _check_shape(region, by_code)

        self._by_code: dict[str, Region] = {}
        for code in sorted(by_code):
            region = by_code[code]
            prefix = ""
            if region.parent_code is not None:
                parent = self._by_code[region.parent_code]  # parents sort before children
                prefix = parent._name_prefix
                if not (parent.level is RegionLevel.CITY and parent.name in _PLACEHOLDER_CITIES):
                    prefix += parent.name
            self._by_code[code] = replace(region, _name_prefix=prefix)

        self._lineages: dict[str, tuple[str, ...]] = {}  # only codes that exist
        self._children: dict[str, list[Region]] = {code: [] for code in self._by_code}
        self._by_level: dict[RegionLevel, list[Region]] = {level: [] for level in RegionLevel}
        for region in self._by_code.values():
            if region.parent_code is not None:
                self._children[region.parent_code].append(region)
            self._by_level[region.level].append(region)

    @classmethod
    def load(cls) -> RegionTree:
        """The packaged 2023 snapshot, parsed once per process."""
        return _packaged_tree(cls)  # type: ignore[arg-type]  # classes are hashable

    def canonical(self, code: str, field: str = "region") -> str:
        """The 6-digit code of an existing region; "64" and "6404" are accepted as prefixes.

        A 2-digit code must name a province and a 4-digit code a city, so "1100" is rejected
        rather than silently read as the province 110000.
        """
        if not well_formed(code):
            # Quoted short: whatever was sent is echoed back, and it may be megabytes.
            text = str(code)
            shown = text if len(text) <= 20 else f"{text[:20]}…({len(text)} characters)"
            raise BadInput(
                f'region "{shown}" is malformed: expected a 2-, 4- or 6-digit GB/T 2260 code',
                field=field,
            )
        region = self._by_code.get(code.ljust(6, "0"))
        if region is None or (len(code) < 6 and _PREFIX_LENGTH[region.level] != len(code)):
            raise BadInput(
                f'region "{code}" is not a GB/T 2260 code in the {EDITION} edition', field=field
            )
        return region.code

    def get(self, code: str) -> Region | None:
        """Like :meth:`require` but ``None`` for malformed or unknown codes."""
        try:
            return self.require(code)
        except BadInput:
            return None

    def require(self, code: str, field: str = "region") -> Region:
        return self._by_code[self.canonical(code, field)]

    def require_district(self, code: str, field: str = "region") -> Region:
        """The county-level region an institution is registered in.

        A prefecture-level city with no county level at all (东莞, 中山, 儋州 in the 2023
        edition: towns sit right under the city) is its own lowest unit, so it counts as
        a district here; its roll-up then stops at the city.
        """
        region = self.require(code, field)
        if region.level is RegionLevel.CITY and not self._children[region.code]:
            return region
        if region.level is not RegionLevel.DISTRICT:
            raise BadInput(
                f'region "{code}" is a {region.level.value}; '
                "an institution belongs to a district (6-digit county-level code)",
                field=field,
            )
        return region

    def parent(self, code: str) -> Region | None:
        """The parent region; ``None`` for a province. Unknown codes raise BadInput."""
        region = self.require(code)
        return None if region.parent_code is None else self._by_code[region.parent_code]

    def lineage(self, code: str) -> list[Region]:
        """Province first, ending at the region itself (the order roll-ups aggregate in)."""
        return [self._by_code[c] for c in self.lineage_codes(code)]

    def lineage_codes(self, code: str) -> tuple[str, ...]:
        """The codes of ``lineage``, remembered per code: every roll-up contribution of
        every event walks it, and checking the code each time was a rebuild's hot spot."""
        codes = self._lineages.get(code)
        if codes is None:
            chain = [self.require(code)]
            while (parent_code := chain[-1].parent_code) is not None:
                chain.append(self._by_code[parent_code])
            codes = self._lineages[code] = tuple(r.code for r in reversed(chain))
        return codes

    def children(self, code: str) -> list[Region]:
        """Direct children ordered by code; empty for districts and childless cities."""
        return list(self._children[self.canonical(code)])

    def by_level(self, level: RegionLevel, parent: str | None = None) -> list[Region]:
        """Regions of ``level`` ordered by code, optionally within ``parent``'s subtree.

        The subtree includes ``parent`` itself, so ``by_level(CITY, "640400")`` is [固原市].
        """
        regions = self._by_level[level]
        if parent is None:
            return list(regions)
        prefix = self.subtree_prefix(parent)
        return [r for r in regions if r.code.startswith(prefix)]

    def subtree_prefix(self, code: str) -> str:
        """The prefix shared by exactly the codes in the region's subtree (itself included)."""
        region = self.require(code)
        return region.code[: _PREFIX_LENGTH[region.level]]

    def contains(self, ancestor: str, code: str) -> bool:
        """Whether ``code`` lies in ``ancestor``'s subtree; a region contains itself."""
        return self.canonical(code).startswith(self.subtree_prefix(ancestor))

    def __len__(self) -> int:
        return len(self._by_code)

    def __iter__(self) -> Iterator[Region]:
        """All regions ordered by code (each parent before its children)."""
        return iter(self._by_code.values())


def _check_shape(region: Region, by_code: dict[str, Region]) -> None:
    """Reject data that would make code prefixes disagree with the parent links."""
    code, level = region.code, region.level
    if _CODE.fullmatch(code) is None or len(code) != 6:
        raise ValueError(f"region code {code!r} is not 6 digits")
    tail = code[_PREFIX_LENGTH[level] :]
    own = code[_PREFIX_LENGTH[level] - 2 : _PREFIX_LENGTH[level]]
    if tail.strip("0") or own == "00":
        raise ValueError(f"{level.value} code {code} does not have the {level.value} shape")
    if level is RegionLevel.PROVINCE:
        if region.parent_code is not None:
            raise ValueError(f"province {code} has a parent")
        return
    parent = by_code.get(region.parent_code or "")
    if parent is None or parent.level is not _PARENT_LEVEL[level]:
        raise ValueError(f"{level.value} {code} has no {_PARENT_LEVEL[level].value} parent")
    if not code.startswith(parent.code[: _PREFIX_LENGTH[parent.level]]):
        raise ValueError(f"{code} does not start with its parent's prefix {parent.code}")


@functools.cache
def _packaged_tree(cls: type[RegionTree]) -> RegionTree:
    text = resources.files(__name__).joinpath("regions.csv").read_text(encoding="utf-8")
    return cls(
        Region(
            code=row["code"],
            name=row["name"],
            level=RegionLevel(row["level"]),
            parent_code=row["parent"] or None,
        )
        for row in csv.DictReader(io.StringIO(text))
    )
