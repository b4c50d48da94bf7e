"""Standard-address (标准地址) parsing, normalisation, matching and formatting."""

import csv
import random
from pathlib import Path

import pytest

from geoserver.domain.address import (
    Gazetteer,
    ParsedAddress,
    candidate_keys,
    chinese_numeral_to_int,
    format_address,
    normalize_address_text,
    parse_address,
    road_similarity,
    score_match,
)

DIVISIONS_CSV = (
    Path(__file__).resolve().parents[2]
    / "geoserver"
    / "demo"
    / "data"
    / "wenzhou_divisions_2023.csv"
)

# Real rows of 统计用区划代码 2023 (checked against the CSV below).
DIVISION_ROWS = [
    ("330302", "鹿城区", "county", "330300"),
    ("330303", "龙湾区", "county", "330300"),
    ("330304", "瓯海区", "county", "330300"),
    ("330302006", "五马街道", "township", "330302"),
    ("330302025", "南汇街道", "township", "330302"),
    ("330302102", "藤桥镇", "township", "330302"),
    ("330303001", "永中街道", "township", "330303"),
    ("330302006044", "鼓楼社区", "village", "330302006"),
    ("330302025006", "南塘社区", "village", "330302025"),
    ("330302102001", "藤桥社区", "village", "330302102"),
    ("330302102202", "油岙村委会", "village", "330302102"),
]
# Test roads per township; 人民路 is in three townships on purpose (no unique township).
ROADS = {
    "330302006": ["解放街", "五马街", "人民路", "天妃巷"],
    "330302025": ["南塘街", "人民路"],
    "330303001": ["温州大道", "人民路"],
}

FULL = {
    "county": "鹿城区",
    "county_code": "330302",
    "township": "五马街道",
    "township_code": "330302006",
    "road": "解放街",
    "door_number": "123",
}


@pytest.fixture(scope="module")
def gazetteer() -> Gazetteer:
    return Gazetteer(DIVISION_ROWS, roads=ROADS)


@pytest.fixture(scope="module")
def gazetteer_without_roads() -> Gazetteer:
    return Gazetteer(DIVISION_ROWS)


@pytest.fixture(scope="module")
def wenzhou_gazetteer() -> Gazetteer:
    with DIVISIONS_CSV.open(encoding="utf-8") as f:
        rows = [(r["code"], r["name"], r["level"], r["parent_code"]) for r in csv.DictReader(f)]
    return Gazetteer(rows)


def components(parsed: ParsedAddress) -> dict[str, str | None]:
    return {k: v for k, v in vars(parsed).items() if k != "rest"}


def expected(**values: str) -> dict[str, str | None]:
    blank = components(ParsedAddress())
    return {**blank, **values}


def test_division_rows_are_real_rows_of_the_csv() -> None:
    with DIVISIONS_CSV.open(encoding="utf-8") as f:
        real = {(r["code"], r["name"], r["level"], r["parent_code"]) for r in csv.DictReader(f)}
    assert set(DIVISION_ROWS) <= real


# --- normalisation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("解放街１２３号３幢", "解放街123号3幢"),
        ("解放街123号三幢二单元", "解放街123号3幢2单元"),
        ("解放街十二号", "解放街12号"),
        ("解放街一百零三号", "解放街103号"),
        ("解放街3号楼", "解放街3幢"),
        ("解放街123号3栋2单元302房", "解放街123号3幢2单元302室"),
        ("解放街123号B座", "解放街123号B幢"),
        ("解放街 123号，3幢。", "解放街123号3幢"),
        ("浙江省温州市鹿城区解放街", "鹿城区解放街"),
        ("温州大道1000号", "温州大道1000号"),
        ("解放街123-3幢", "解放街123号3幢"),
        ("解放街123-3", "解放街123号3幢"),
        ("解放街123—3", "解放街123号3幢"),
        ("解放街123-5号", "解放街123-5号"),
        ("解放街123号之一", "解放街123-1号"),
        ("解放街123号-3幢", "解放街123号3幢"),
        ("解放街123号5-2-302", "解放街123号5幢2单元302室"),
        ("五马街道十八家社区", "五马街道十八家社区"),
        ("第三幢", "3幢"),
    ],
)
def test_normalize_address_text(text: str, normalized: str) -> None:
    assert normalize_address_text(text) == normalized


@pytest.mark.parametrize(
    ("numeral", "value"),
    [
        ("十", 10),
        ("十二", 12),
        ("二十", 20),
        ("一百零三", 103),
        ("一百一十", 110),
        ("两千零五", 2005),
        ("三零二", 302),
        ("十十", None),
        ("三三十", None),
        ("", None),
    ],
)
def test_chinese_numeral_to_int(numeral: str, value: int | None) -> None:
    assert chinese_numeral_to_int(numeral) == value


# --- parsing: variants of one address ------------------------------------------------------------

BUILDING_UNIT = dict(FULL, building="3", unit="2")
ROOM = dict(BUILDING_UNIT, room="302")


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("鹿城区五马街道解放街123号3幢2单元", BUILDING_UNIT),
        ("浙江省温州市鹿城区五马街道解放街123号3幢2单元", BUILDING_UNIT),
        ("温州市鹿城区五马街道解放街123号3栋2单元", BUILDING_UNIT),
        ("浙江温州鹿城区五马街道解放街123号3#楼2单元", BUILDING_UNIT),
        ("鹿城五马解放街123号3幢2单元", BUILDING_UNIT),
        ("鹿城区五马街道解放街１２３号３幢２单元", BUILDING_UNIT),
        ("鹿城区五马街道解放街123号三幢二单元", BUILDING_UNIT),
        ("鹿城区五马街道解放街一百二十三号3号楼2单元", BUILDING_UNIT),
        ("鹿城区 五马街道，解放街 123号 3座 2单元", BUILDING_UNIT),
        ("鹿城区解放街123号3幢2单元", BUILDING_UNIT),  # township skipped: known road
        ("五马街道解放街123号3幢2单元", BUILDING_UNIT),  # county from the township
        ("五马解放街123号3幢2单元", BUILDING_UNIT),
        ("解放街123号3幢2单元", BUILDING_UNIT),  # no divisions at all: known road
        ("解放街123号3栋2单元302室", ROOM),
        ("解放街123号3幢2单元302", ROOM),
        ("解放街123号3幢2单元302房", ROOM),
        ("解放街123号3幢二单元三零二室", ROOM),
        ("解放街123-3栋2单元302室", ROOM),
        ("解放街123号3-2-302", ROOM),
        ("解放街123-3幢", dict(FULL, building="3")),
        ("解放街123-3", dict(FULL, building="3")),
        ("解放街123", FULL),
        ("解放街123号302", dict(FULL, room="302")),
        ("解放街123号之一", dict(FULL, door_number="123-1")),
        ("解放街123-1号", dict(FULL, door_number="123-1")),
        ("解放街123号A座1201室", dict(FULL, building="A", room="1201")),
        ("鹿城区五马街道五马街5号", dict(FULL, road="五马街", door_number="5")),
        ("五马街5号", dict(FULL, road="五马街", door_number="5")),
        ("鹿城区五马街道天妃巷12号", dict(FULL, road="天妃巷", door_number="12")),
        ("人民路98弄7号", {"road": "人民路98弄", "door_number": "7"}),
        ("人民路九十八弄七号", {"road": "人民路98弄", "door_number": "7"}),
        (
            "温州大道1000号",
            {
                "county": "龙湾区",
                "county_code": "330303",
                "township": "永中街道",
                "township_code": "330303001",
                "road": "温州大道",
                "door_number": "1000",
            },
        ),
        (
            "藤桥镇油岙村5号",
            {
                "county": "鹿城区",
                "county_code": "330302",
                "township": "藤桥镇",
                "township_code": "330302102",
                "village": "油岙村",
                "village_code": "330302102202",
                "door_number": "5",
            },
        ),
        (
            "藤桥镇油岙5号",
            {
                "county": "鹿城区",
                "county_code": "330302",
                "township": "藤桥镇",
                "township_code": "330302102",
                "village": "油岙村",
                "village_code": "330302102202",
                "door_number": "5",
            },
        ),
        (
            "油岙村5号",
            {
                "county": "鹿城区",
                "county_code": "330302",
                "township": "藤桥镇",
                "township_code": "330302102",
                "village": "油岙村",
                "village_code": "330302102202",
                "door_number": "5",
            },
        ),
        (
            "藤桥镇某某村5号",
            {
                "county": "鹿城区",
                "county_code": "330302",
                "township": "藤桥镇",
                "township_code": "330302102",
                "village": "某某村",
                "door_number": "5",
            },
        ),
        (
            "南汇街道南塘街5号",
            {
                "county": "鹿城区",
                "county_code": "330302",
                "township": "南汇街道",
                "township_code": "330302025",
                "road": "南塘街",
                "door_number": "5",
            },
        ),
    ],
)
def test_parse_address_variants(gazetteer: Gazetteer, text: str, parts: dict[str, str]) -> None:
    parsed = parse_address(text, gazetteer=gazetteer)
    assert components(parsed) == expected(**parts)
    assert parsed.rest == ""


def test_road_in_several_townships_does_not_guess_a_township(gazetteer: Gazetteer) -> None:
    parsed = parse_address("人民路5号", gazetteer=gazetteer)
    assert (parsed.county, parsed.township) == (None, None)
    within_county = parse_address("龙湾区人民路5号", gazetteer=gazetteer)
    assert within_county.township_code == "330303001"


@pytest.mark.parametrize(
    ("text", "road", "township"),
    [
        ("鹿城路88号", "鹿城路", None),  # not 鹿城(区) + 路
        ("五马街5号", "五马街", None),  # not 五马(街道) + 街
        ("瓯海大道8号", "瓯海大道", None),
        ("南汇街道南塘街5号", "南塘街", "南汇街道"),  # not 南塘(社区) + 街
        ("南汇街道南塘东路5号", "南塘东路", "南汇街道"),  # a stem must not eat the road name
    ],
)
def test_road_that_starts_like_a_division_is_a_road(
    gazetteer_without_roads: Gazetteer, text: str, road: str, township: str | None
) -> None:
    parsed = parse_address(text, gazetteer=gazetteer_without_roads)
    assert (parsed.road, parsed.township, parsed.village) == (road, township, None)


def test_bare_village_stem_needs_a_township_or_county(gazetteer: Gazetteer) -> None:
    assert parse_address("油岙5号", gazetteer=gazetteer).village is None
    assert parse_address("鹿城区油岙5号", gazetteer=gazetteer).village_code == "330302102202"


def test_parse_without_gazetteer_reads_divisions_by_suffix() -> None:
    parsed = parse_address("浙江省温州市鹿城区五马街道解放街123号3栋2单元302室")
    assert components(parsed) == expected(
        county="鹿城区",
        township="五马街道",
        road="解放街",
        door_number="123",
        building="3",
        unit="2",
        room="302",
    )
    assert parse_address("蒲鞋市街道信河街8号").township == "蒲鞋市街道"
    assert parse_address("蒲鞋市街道信河街8号").county is None
    assert parse_address("藤桥镇某某村5号").village == "某某村"


def test_parse_with_the_whole_wenzhou_gazetteer(wenzhou_gazetteer: Gazetteer) -> None:
    parsed = parse_address("鹿城五马解放街123号", gazetteer=wenzhou_gazetteer)
    assert (parsed.county, parsed.township, parsed.road) == ("鹿城区", "五马街道", "解放街")
    # 平阳坑镇 (瑞安市) must not be read as 平阳(县) + 坑镇.
    parsed = parse_address("平阳坑镇平阳坑村8号", gazetteer=wenzhou_gazetteer)
    assert (parsed.county, parsed.township, parsed.village) == ("瑞安市", "平阳坑镇", "平阳坑村")
    assert parse_address("瓯海大道88号", gazetteer=wenzhou_gazetteer).road == "瓯海大道"
    assert parse_address("龙湾永中街道温州大道1000号", gazetteer=wenzhou_gazetteer).county_code == (
        "330303"
    )


def test_township_abbreviation_is_read_under_its_county(wenzhou_gazetteer: Gazetteer) -> None:
    parsed = parse_address("龙湾永中温州大道1000号", gazetteer=wenzhou_gazetteer)
    assert (parsed.township, parsed.township_code) == ("永中街道", "330303001")


def test_unparsed_tail_is_kept_in_rest(gazetteer: Gazetteer) -> None:
    parsed = parse_address("解放街123号3幢旁边小卖部", gazetteer=gazetteer)
    assert (parsed.door_number, parsed.building) == ("123", "3")
    assert parsed.rest == "旁边小卖部"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "!!!",
        "hello world",
        "今天天气不错",
        "12345",
        "我在街上",
        "号号号",
        "——",
        "幢单元室",
    ],
)
def test_garbage_gives_an_empty_address_with_the_text_as_rest(
    gazetteer: Gazetteer, text: str
) -> None:
    assert parse_address(text, gazetteer=gazetteer) == ParsedAddress(rest=text)
    assert parse_address(text) == ParsedAddress(rest=text)


def test_overlong_text_is_not_parsed() -> None:
    text = "解放街123号" * 100
    assert parse_address(text) == ParsedAddress(rest=text)


def test_random_text_never_raises(wenzhou_gazetteer: Gazetteer) -> None:
    pool = (
        "鹿城区五马街道解放街路巷弄大道号幢栋单元室房之一二三十百零-—，。 0123456789Ａ１#村社区镇乡"
    )
    rng = random.Random(20240601)
    for _ in range(2000):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 30)))
        parsed = parse_address(text, gazetteer=wenzhou_gazetteer)
        assert isinstance(parsed, ParsedAddress)
        format_address(parsed)
        candidate_keys(parsed)


def test_non_string_input_does_not_raise() -> None:
    assert parse_address(None) == ParsedAddress()  # type: ignore[arg-type]
    assert parse_address(12345) == ParsedAddress(rest="12345")  # type: ignore[arg-type]


# --- matching ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def candidates(gazetteer: Gazetteer) -> dict[str, ParsedAddress]:
    texts = {
        "exact": "鹿城区五马街道解放街123号3幢2单元302室",
        "other_building": "鹿城区五马街道解放街123号4幢2单元302室",
        "other_door": "鹿城区五马街道解放街125号3幢2单元302室",
        "far_door": "鹿城区五马街道解放街301号3幢2单元302室",
        "other_road": "鹿城区五马街道五马街123号3幢2单元302室",
        "door_level": "鹿城区五马街道解放街123号",
    }
    return {key: parse_address(text, gazetteer=gazetteer) for key, text in texts.items()}


def scores(query: ParsedAddress, candidates: dict[str, ParsedAddress]) -> dict[str, float]:
    return {key: score_match(query, candidate) for key, candidate in candidates.items()}


@pytest.mark.parametrize(
    "text",
    [
        "解放街123号3栋2单元302室",
        "鹿城五马解放街123号三幢二单元302",
        "鹿城区五马街道解放街123号3幢2单元302室",
    ],
)
def test_score_ordering(
    gazetteer: Gazetteer, candidates: dict[str, ParsedAddress], text: str
) -> None:
    s = scores(parse_address(text, gazetteer=gazetteer), candidates)
    assert s["exact"] == pytest.approx(1.0)
    assert s["exact"] > s["other_building"] > s["other_door"] > s["far_door"] > s["other_road"]
    assert s["exact"] - s["other_door"] >= 0.25  # well below the exact door …
    assert s["far_door"] >= 0.3  # … but the right road still counts
    assert s["door_level"] > s["other_building"]  # the containing door beats a wrong building


def test_candidate_with_more_detail_than_the_query_scores_full(
    gazetteer: Gazetteer, candidates: dict[str, ParsedAddress]
) -> None:
    query = parse_address("解放街123号", gazetteer=gazetteer)
    assert score_match(query, candidates["exact"]) == pytest.approx(1.0)
    assert score_match(query, candidates["other_door"]) < 0.8


def test_score_tolerates_a_one_character_typo_in_the_road(
    gazetteer: Gazetteer, candidates: dict[str, ParsedAddress]
) -> None:
    s = scores(parse_address("解方街123号3幢2单元302室", gazetteer=gazetteer), candidates)
    assert s["exact"] >= 0.5
    assert s["exact"] == max(s.values())
    assert s["other_road"] < 0.1


def test_conflicting_county_penalises(gazetteer: Gazetteer) -> None:
    query = parse_address("龙湾区人民路5号", gazetteer=gazetteer)
    same = parse_address("龙湾区永中街道人民路5号", gazetteer=gazetteer)
    elsewhere = parse_address("鹿城区五马街道人民路5号", gazetteer=gazetteer)
    assert score_match(query, same) == pytest.approx(1.0)
    assert score_match(query, elsewhere) < 0.5


def test_rural_address_matches_by_village(gazetteer: Gazetteer) -> None:
    query = parse_address("藤桥镇油岙5号", gazetteer=gazetteer)
    assert score_match(query, parse_address("鹿城区藤桥镇油岙村5号", gazetteer=gazetteer)) == 1.0
    other_village = parse_address("鹿城区藤桥镇藤桥社区5号", gazetteer=gazetteer)
    assert score_match(query, other_village) < 0.5


def test_scores_stay_in_unit_interval(gazetteer: Gazetteer) -> None:
    texts = ["", "解放街", "解放街123号", "鹿城区", "龙湾区人民路5号", "藤桥镇某某村5号", "5号3幢"]
    parsed = [parse_address(t, gazetteer=gazetteer) for t in texts]
    for query in parsed:
        for candidate in parsed:
            assert 0.0 <= score_match(query, candidate) <= 1.0
    assert score_match(ParsedAddress(), parsed[2]) == 0.0


def test_road_similarity() -> None:
    assert road_similarity("解放街", "解放街") == 1.0
    assert road_similarity("解放街", "解方街") == pytest.approx(0.5)
    assert road_similarity("人民东路", "人民冬路") == pytest.approx(0.6)
    assert road_similarity("解放街", "五马街") == pytest.approx(0.25)
    assert road_similarity("解放街", "") == 0.0


# --- keys and formatting -------------------------------------------------------------------------


def test_candidate_keys(gazetteer: Gazetteer) -> None:
    keys = candidate_keys(parse_address("鹿城五马解放街123号之一3幢", gazetteer=gazetteer))
    assert keys == {
        "road": "解放街",
        "door_number": "123-1",
        "door_base": 123,
        "county_code": "330302",
        "township_code": "330302006",
        "village_code": None,
        "village": None,
    }
    assert candidate_keys(parse_address("人民路5号"))["township_code"] is None


@pytest.mark.parametrize(
    ("text", "formatted"),
    [
        ("鹿城五马解放街123号三栋二单元302", "鹿城区五马街道解放街123号3幢2单元302室"),
        ("解放街123-3", "鹿城区五马街道解放街123号3幢"),
        ("解放街123号之一", "鹿城区五马街道解放街123-1号"),
        ("藤桥镇油岙5号", "鹿城区藤桥镇油岙村5号"),
        ("人民路98弄7号", "人民路98弄7号"),
        ("garbage", ""),
    ],
)
def test_format_address(gazetteer: Gazetteer, text: str, formatted: str) -> None:
    assert format_address(parse_address(text, gazetteer=gazetteer)) == formatted


def test_format_then_parse_round_trips(gazetteer: Gazetteer) -> None:
    parsed = parse_address("鹿城五马解放街123号3栋2单元302", gazetteer=gazetteer)
    assert parse_address(format_address(parsed), gazetteer=gazetteer) == parsed


def test_format_omits_longgang_virtual_township(wenzhou_gazetteer: Gazetteer) -> None:
    parsed = parse_address("龙港市华中社区兴港路5号", gazetteer=wenzhou_gazetteer)
    assert parsed.township_code == "330383198"
    assert format_address(parsed) == "龙港市华中社区兴港路5号"
