"""The packaged 2023 region snapshot and the tree the roll-ups rely on."""

from __future__ import annotations

import pytest

from services.common.errors import BadInput
from services.common.regions import Region, RegionLevel, RegionTree


@pytest.fixture(scope="module")
def tree() -> RegionTree:
    return RegionTree.load()


def codes(regions: list[Region]) -> list[str]:
    return [r.code for r in regions]


def test_load_is_a_cached_singleton(tree: RegionTree) -> None:
    assert RegionTree.load() is tree


def test_counts_per_level(tree: RegionTree) -> None:
    assert len(tree.by_level(RegionLevel.PROVINCE)) == 31
    assert len(tree.by_level(RegionLevel.CITY)) == 342
    # 2978 in the package minus the stand-ins for 东莞, 中山, 儋州 (see SOURCE.md).
    assert len(tree.by_level(RegionLevel.DISTRICT)) == 2975
    assert len(tree) == len(list(tree)) == 31 + 342 + 2975


def test_district_lookup_and_lineage(tree: RegionTree) -> None:
    region = tree.require("640402")
    assert region == Region("640402", "原州区", RegionLevel.DISTRICT, "640400")
    assert [(r.code, r.name) for r in tree.lineage("640402")] == [
        ("640000", "宁夏回族自治区"),
        ("640400", "固原市"),
        ("640402", "原州区"),
    ]
    assert tree.parent("640402") == tree.require("640400")
    assert tree.parent("640000") is None
    assert tree.require("340103").name == "庐阳区"
    assert codes(tree.lineage("340103")) == ["340000", "340100", "340103"]


def test_municipalities_keep_their_placeholder_city_level(tree: RegionTree) -> None:
    assert [(r.code, r.name, r.level) for r in tree.lineage("120101")] == [
        ("120000", "天津市", RegionLevel.PROVINCE),
        ("120100", "市辖区", RegionLevel.CITY),
        ("120101", "和平区", RegionLevel.DISTRICT),
    ]
    assert tree.require("500105").name == "江北区"
    assert tree.require("500105").parent_code == "500100"
    assert [(r.code, r.name) for r in tree.children("500000")] == [
        ("500100", "市辖区"),
        ("500200", "县"),
    ]
    for province in ("110000", "310000"):
        assert codes(tree.children(province)) == [province[:2] + "0100"]


def test_directly_administered_counties_sit_under_a_pseudo_city(tree: RegionTree) -> None:
    for code in ("419000", "429000", "469000", "659000"):
        assert tree.require(code).level is RegionLevel.CITY
        assert tree.children(code)
    assert codes(tree.lineage("419001")) == ["410000", "419000", "419001"]


def test_cities_without_county_level_have_no_children(tree: RegionTree) -> None:
    for code, name in (("441900", "东莞市"), ("442000", "中山市"), ("460400", "儋州市")):
        region = tree.require(code)
        assert (region.name, region.level) == (name, RegionLevel.CITY)
        assert tree.children(code) == []


def test_children_of_guyuan(tree: RegionTree) -> None:
    assert [(r.code, r.name) for r in tree.children("640400")] == [
        ("640402", "原州区"),
        ("640422", "西吉县"),
        ("640423", "隆德县"),
        ("640424", "泾源县"),
        ("640425", "彭阳县"),
    ]
    assert tree.children("640402") == []


@pytest.mark.parametrize(
    ("given", "expected"),
    [("64", "640000"), ("6404", "640400"), ("640400", "640400"), ("640402", "640402")],
)
def test_prefixes_are_accepted(tree: RegionTree, given: str, expected: str) -> None:
    assert tree.canonical(given) == expected
    assert tree.require(given).code == expected


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("999999", 'region "999999" is not a GB/T 2260 code in the 2023 edition'),
        ("99", "not a GB/T 2260 code"),
        ("1100", "not a GB/T 2260 code"),  # 4 digits name a city, and 1100 is none
        ("640499", "not a GB/T 2260 code"),
        ("", "malformed"),
        ("640", "malformed"),
        ("6404020", "malformed"),
        ("64040a", "malformed"),
        (" 640402", "malformed"),
        ("640402\n", "malformed"),
        ("６４", "malformed"),  # full-width digits
    ],
)
def test_bad_codes_raise_bad_input_with_field(tree: RegionTree, bad: str, fragment: str) -> None:
    with pytest.raises(BadInput) as caught:
        tree.canonical(bad, field="input.districtCode")
    assert fragment in caught.value.message
    assert caught.value.field == "input.districtCode"
    assert caught.value.extensions() == {"code": "BAD_INPUT", "field": "input.districtCode"}
    with pytest.raises(BadInput) as default_field:
        tree.require(bad)
    assert default_field.value.field == "region"
    assert tree.get(bad) is None


def test_non_string_code_is_bad_input(tree: RegionTree) -> None:
    with pytest.raises(BadInput):
        tree.canonical(640402)  # type: ignore[arg-type]
    assert tree.get(None) is None  # type: ignore[arg-type]


def test_require_district(tree: RegionTree) -> None:
    assert tree.require_district("640402").name == "原州区"
    with pytest.raises(BadInput) as caught:
        tree.require_district("640400", field="input.region")
    assert caught.value.message == (
        'region "640400" is a CITY; '
        "an institution belongs to a district (6-digit county-level code)"
    )
    assert caught.value.field == "input.region"
    with pytest.raises(BadInput, match="is a PROVINCE"):
        tree.require_district("64")
    # 东莞 has no county level: the city is its own lowest unit.
    assert tree.require_district("441900").name == "东莞市"


def test_unknown_codes_raise_in_tree_queries(tree: RegionTree) -> None:
    for query in (tree.parent, tree.lineage, tree.children, tree.subtree_prefix):
        with pytest.raises(BadInput):
            query("999999")


def test_subtree_prefix_and_contains(tree: RegionTree) -> None:
    assert tree.subtree_prefix("640000") == "64"
    assert tree.subtree_prefix("640400") == "6404"
    assert tree.subtree_prefix("640402") == "640402"
    assert tree.contains("64", "640402")
    assert tree.contains("640400", "640402")
    assert tree.contains("640402", "640402")
    assert not tree.contains("640402", "640400")
    assert not tree.contains("650000", "640402")


def test_by_level_within_a_parent(tree: RegionTree) -> None:
    assert codes(tree.by_level(RegionLevel.DISTRICT, parent="6404")) == codes(
        tree.children("640400")
    )
    assert [r.name for r in tree.by_level(RegionLevel.CITY, parent="640000")] == [
        "银川市",
        "石嘴山市",
        "吴忠市",
        "固原市",
        "中卫市",
    ]
    assert len(tree.by_level(RegionLevel.DISTRICT, parent="64")) == 22
    assert codes(tree.by_level(RegionLevel.CITY, parent="640400")) == ["640400"]


def test_subtree_prefix_matches_the_real_subtree_everywhere(tree: RegionTree) -> None:
    """Prefix filtering over stored codes is only safe if prefix and parent links agree."""
    descendants: dict[str, set[str]] = {r.code: {r.code} for r in tree}
    for region in tree:
        for ancestor in tree.lineage(region.code)[:-1]:
            descendants[ancestor.code].add(region.code)
    all_codes = [r.code for r in tree]
    assert len(set(all_codes)) == len(all_codes)
    for region in tree:
        prefix = tree.subtree_prefix(region.code)
        assert {c for c in all_codes if c.startswith(prefix)} == descendants[region.code]
        assert tree.canonical(prefix) == region.code


def test_codes_have_the_shape_of_their_level(tree: RegionTree) -> None:
    for region in tree:
        if region.level is RegionLevel.PROVINCE:
            assert region.code.endswith("0000")
            assert region.parent_code is None
        elif region.level is RegionLevel.CITY:
            assert region.code.endswith("00")
            assert not region.code.endswith("0000")
        else:
            assert not region.code.endswith("00")


def test_full_name(tree: RegionTree) -> None:
    assert tree.require("640402").full_name == "宁夏回族自治区固原市原州区"
    assert tree.require("120101").full_name == "天津市和平区"
    assert tree.require("500105").full_name == "重庆市江北区"
    assert tree.require("419001").full_name == "河南省济源市"
    assert tree.require("640000").full_name == "宁夏回族自治区"
    assert tree.require("500200").full_name == "重庆市县"
    full_names = [r.full_name for r in tree]
    assert len(set(full_names)) == len(full_names)


def test_constructor_rejects_inconsistent_data() -> None:
    province = Region("640000", "宁夏回族自治区", RegionLevel.PROVINCE, None)
    city = Region("640400", "固原市", RegionLevel.CITY, "640000")
    assert len(RegionTree([city, province])) == 2
    bad_sets = [
        [province, province],
        [province, Region("650400", "错位市", RegionLevel.CITY, "640000")],
        [province, city, Region("640400", "固原市", RegionLevel.DISTRICT, "640400")],
        [province, city, Region("640400", "同码县", RegionLevel.DISTRICT, "640000")],
        [province, Region("640402", "原州区", RegionLevel.DISTRICT, "640000")],
        [province, Region("6404", "固原市", RegionLevel.CITY, "640000")],
    ]
    for regions in bad_sets:
        with pytest.raises(ValueError):
            RegionTree(regions)
