"""The server-rendered SVG charts: pure functions, so they are tested on their output alone."""

import xml.etree.ElementTree as ET
from datetime import date, timedelta
from decimal import Decimal

import pytest

from portal.site import charts
from portal.templatetags.money import usd

SVG = "{http://www.w3.org/2000/svg}"


def days(values) -> list[tuple[date, object]]:
    start = date(2025, 3, 1)
    return [(start + timedelta(days=i), v) for i, v in enumerate(values)]


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # also proves the markup is well-formed XML


def test_a_bar_chart_has_one_bar_per_day_with_heights_in_proportion():
    root = parse(charts.chart_svg(days([0, 5, 10, 20]), label="Requests"))
    bars = root.findall(f"{SVG}rect")
    assert len(bars) == 4
    heights = [float(b.get("height")) for b in bars]
    assert heights[0] == 0
    assert heights[3] == pytest.approx(2 * heights[2], rel=0.01) == pytest.approx(4 * heights[1], rel=0.01)


def test_the_size_is_fixed_whatever_the_data_so_nothing_moves_when_it_draws():
    small = parse(charts.chart_svg(days([1]), label="x"))
    large = parse(charts.chart_svg(days(range(90)), label="x"))
    for root in (small, large):
        assert (root.get("width"), root.get("height")) == (str(charts.WIDTH), str(charts.HEIGHT))
        assert root.get("viewBox") == f"0 0 {charts.WIDTH} {charts.HEIGHT}"


def test_axis_labels_show_round_values_and_the_date_range():
    root = parse(charts.chart_svg(days([3, 7, 41]), label="Requests"))
    texts = [t.text for t in root.findall(f"{SVG}text")]
    assert {"0", "25", "50"} <= set(texts)  # 41 rounds up to a 50 axis, with 25 in the middle
    assert "Mar 1" in texts and "Mar 3" in texts


def test_money_values_use_the_formatter_and_tooltips_name_the_day():
    svg = charts.chart_svg(
        days([Decimal("0.25"), Decimal("1.50")]), label="Spend", kind="line", value_format=usd
    )
    root = parse(svg)
    assert root.find(f"{SVG}polyline") is not None
    tips = [t.text for t in root.iter(f"{SVG}title")]
    assert "Mar 2: $1.50" in tips
    assert any("$1.75" in t for t in tips)  # the summary title gives the total
    assert "$2.00" in [t.text for t in root.findall(f"{SVG}text")]  # the axis top


def test_all_zero_and_empty_series_render_without_dividing_by_zero():
    zeros = parse(charts.chart_svg(days([0, 0, 0]), label="Requests"))
    assert all(float(b.get("height")) == 0 for b in zeros.findall(f"{SVG}rect"))
    empty = parse(charts.chart_svg([], label="Requests"))
    assert [t.text for t in empty.findall(f"{SVG}text") if t.get("class") == "chart-empty"] == ["No data"]


def test_a_tiny_value_still_shows_as_a_sliver():
    root = parse(charts.chart_svg(days([10_000, 1]), label="Requests"))
    assert float(root.findall(f"{SVG}rect")[1].get("height")) >= 1


def test_the_label_is_escaped_and_announced_to_screen_readers():
    root = parse(charts.chart_svg(days([1, 2]), label='<script>"x"</script>'))
    assert root.get("role") == "img"
    assert root.get("aria-label").startswith('<script>"x"</script>: 3 over 2 days')  # parsed back, so escaped


def test_unknown_kinds_are_refused():
    with pytest.raises(ValueError):
        charts.chart_svg(days([1]), label="x", kind="pie")


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0, 1), (0.3, 0.5), (1, 1), (1.2, 2), (2.1, 2.5), (7, 10), (41, 50), (12_001, 20_000)],
)
def test_nice_ceiling(value, ceiling):
    assert charts.nice_ceiling(value) == pytest.approx(ceiling)


@pytest.mark.parametrize(
    ("value", "ceiling"), [(0, 2), (1, 2), (3, 4), (5, 10), (21, 40), (41, 50), (120, 200)]
)
def test_counts_get_an_axis_whose_top_and_middle_are_whole(value, ceiling):
    assert charts.nice_ceiling(value, whole=True) == ceiling


def test_a_requests_chart_never_has_a_fractional_tick():
    texts = [
        t.text for t in parse(charts.chart_svg(days([3, 25, 9]), label="Requests")).findall(f"{SVG}text")
    ]
    assert {"0", "20", "40"} <= set(texts) and not any("." in t for t in texts)
