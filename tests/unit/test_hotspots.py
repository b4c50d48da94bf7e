"""Gi* hot spots, search ranking and statistics helpers: pure functions, no database."""

from __future__ import annotations

import math
from datetime import date

import h3.api.basic_int as h3
import pytest

from geoserver.domain.hotspots import classify, gi_star, p_value, ring_neighbours
from geoserver.errors import InvalidInput
from geoserver.geo.h3cells import cell_int, to_signed, to_unsigned
from geoserver.services.search import clean_query, combined_score, proximity, text_score
from geoserver.services.statistics import Period, buckets, rank_rows

CENTRE = cell_int(120.655, 28.015, 8)  # 五马街道, Wenzhou


def _area(k: int = 4) -> list[int]:
    return sorted(to_signed(c) for c in h3.grid_disk(to_unsigned(CENTRE), k))


def test_a_cluster_is_a_hot_spot_and_its_centre_the_hottest() -> None:
    cells = _area()
    counts = dict.fromkeys(cells, 1)  # background: one event everywhere
    for c in ring_neighbours(CENTRE):
        counts[c] = 12
    counts[CENTRE] = 20
    z = gi_star(counts, cells)
    assert max(z, key=lambda c: z[c]) == CENTRE
    assert classify(z[CENTRE]) == ("hot", 99)
    far = cells[0] if cells[0] not in ring_neighbours(CENTRE) else cells[-1]
    assert z[far] < 0 and classify(z[far])[0] in ("cold", "none")


def test_gi_star_matches_the_formula_by_hand() -> None:
    cells = _area(2)  # 19 cells
    counts = {c: (i % 5) for i, c in enumerate(cells)}
    z = gi_star(counts, cells)
    n = len(cells)
    x = [counts[c] for c in cells]
    mean = sum(x) / n
    s = math.sqrt(sum(v * v for v in x) / n - mean * mean)
    window = [c for c in ring_neighbours(CENTRE) if c in counts]
    w = len(window)
    expected = (sum(counts[c] for c in window) - mean * w) / (
        s * math.sqrt((n * w - w * w) / (n - 1)))
    assert z[CENTRE] == pytest.approx(expected)
    # Edge cells have fewer neighbours inside the area: W_i counts only those.
    assert len([c for c in ring_neighbours(cells[0]) if c in counts]) < 7


def test_no_variation_means_no_hot_spots() -> None:
    cells = _area(2)
    assert set(gi_star(dict.fromkeys(cells, 3), cells).values()) == {0.0}
    assert set(gi_star({}, cells).values()) == {0.0}


def test_classify_and_p_value() -> None:
    assert classify(1.0) == ("none", None)
    assert classify(1.7) == ("hot", 90)
    assert classify(-2.0) == ("cold", 95)
    assert p_value(1.96) == pytest.approx(0.05, abs=1e-3)


def test_text_score_orders_exact_prefix_contains_fuzzy() -> None:
    exact = text_score("五马街道", "五马街道")
    prefix = text_score("五马街道办事处", "五马街道")
    contains = text_score("鹿城区五马街道", "五马街道")
    fuzzy = text_score("五马街区", "五马街道")
    assert exact == (1.0, "exact")
    assert prefix[1] == "prefix" and contains[1] == "contains" and fuzzy[1] == "fuzzy"
    assert exact[0] > prefix[0] > contains[0] > fuzzy[0] > 0
    # Full-width digits are the same digits; tokens may come in any order.
    assert text_score("解放街１２号", "解放街12号")[1] == "exact"
    assert text_score("鹿城区解放街12号", "12号 解放街")[1] == "contains"


def test_distance_weighs_in_only_with_a_centre() -> None:
    assert proximity(0) == 1.0 and proximity(1000) == pytest.approx(0.5)
    assert combined_score(0.7, 5000, near=False) == 0.7
    assert combined_score(0.7, 100, near=True) > combined_score(0.7, 5000, near=True)


@pytest.mark.parametrize("q", ["", "   ", "五", "a", "五 ", "!!", "x" * 65])
def test_bad_queries_are_refused(q: str) -> None:
    with pytest.raises(InvalidInput) as err:
        clean_query(q)
    assert err.value.problems[0].field == "q"


def test_queries_are_normalised() -> None:
    assert clean_query("  五马　 街道 ") == "五马 街道"
    assert clean_query("ＡＢ") == "AB"


def test_rank_rows_ties_share_a_rank() -> None:
    rows = [{"code": c, "v": v} for c, v in (("a", 3), ("b", 5), ("c", 3), ("d", 1),
                                            ("e", None))]
    ranked = rank_rows(rows, "v")
    assert [(r["code"], r["rank"]) for r in ranked] == [
        ("b", 1), ("a", 2), ("c", 2), ("d", 4), ("e", 5)]


def test_buckets_weeks_start_monday_months_on_the_first() -> None:
    period = Period(date(2025, 3, 5), date(2025, 4, 2))
    weeks = buckets(period, "week")
    assert weeks[0] == date(2025, 3, 3) and all(d.weekday() == 0 for d in weeks)
    assert weeks[-1] == date(2025, 3, 31)
    assert buckets(period, "month") == [date(2025, 3, 1), date(2025, 4, 1)]
    assert len(buckets(period, "day")) == period.days == 29
    assert period.previous() == Period(date(2025, 2, 4), date(2025, 3, 4))
