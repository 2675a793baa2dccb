"""Antenna coverage of counters (analytics/coverage.py): exact shares on hand-made geometry, a brute-force
reference on random antenna placements, the advice lines, and `storeflow import layout` printing them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.coverage import counter_coverage, coverage_warnings, suggest_antennas, with_suggested_antennas
from storeflow.layout import Layout, parse_layout


def _layout(antennas: list[tuple[float, float, str | None]], *, b_x1: float = 20.0) -> Layout:
    """Two 2 m deep counters side by side on one 30 x 10 m floor: A [0, 10] and B [10, b_x1] in x."""
    return parse_layout({
        "store": "cov-store", "name": "Coverage test", "timezone": "UTC",
        "floors": [{"floor": 1, "width_m": 30.0, "depth_m": 10.0}],
        "zones": [
            {"zone": "A", "kind": "counter", "floor": 1, "polygon": [[0, 0], [10, 0], [10, 2], [0, 2]]},
            {"zone": "B", "kind": "counter", "floor": 1, "polygon": [[10, 0], [b_x1, 0], [b_x1, 2], [10, 2]]},
        ],
        "readers": [{"reader": "R1", "antennas": [
            {"port": i + 1, "floor": 1, "x": x, "y": y, **({"zone": z} if z else {})}
            for i, (x, y, z) in enumerate(antennas)]}],
    })


def test_share_is_the_part_past_the_perpendicular_bisector() -> None:
    # A's antenna at x 2.5, B's at 10.5: the bisector is x = 6.5, so (10 - 6.5) / 10 of A is nearer B's
    cov = counter_coverage(_layout([(2.5, 1.0, "A"), (10.5, 1.0, "B")]))
    assert cov["A"][0] == pytest.approx(0.35)
    assert cov["A"][1] == "B"
    assert cov["B"] == (0.0, None)
    lines = coverage_warnings(_layout([(2.5, 1.0, "A"), (10.5, 1.0, "B")]))
    assert len(lines) == 1 and lines[0].startswith("counter A: 35% of its area is nearer to B's antennas")
    assert "add antennas to A at (8.25, 1) m" in lines[0]


def test_suggested_antenna_covers_the_lost_part() -> None:
    layout = _layout([(2.5, 1.0, "A"), (10.5, 1.0, "B")])
    assert suggest_antennas(layout) == [("A", 1, 8.25, 1.0)]   # centroid of x in [6.5, 10]
    fixed = _layout([(2.5, 1.0, "A"), (8.25, 1.0, "A"), (10.5, 1.0, "B")])
    # bisector x = 9.375 falls on a grid centre (0.25 m grid); a tie counts as covered: 2 of 40 columns lost
    assert counter_coverage(fixed)["A"][0] == pytest.approx(2 / 40)
    assert suggest_antennas(fixed) == [] and coverage_warnings(fixed) == []
    # no antenna at all: one at the counter's centroid
    assert suggest_antennas(_layout([(5.0, 1.0, "A")])) == [("B", 1, 15.0, 1.0)]


def test_a_second_antenna_covers_the_far_end() -> None:
    layout = _layout([(2.5, 1.0, "A"), (7.5, 1.0, "A"), (10.5, 1.0, "B")])
    share, by = counter_coverage(layout)["A"]
    assert share == pytest.approx(0.1) and by == "B"   # only past x = 9 now
    assert coverage_warnings(layout) == []


def test_counter_without_antenna_and_antennas_without_zone() -> None:
    # B has no antenna of its own; an antenna with no zone (e.g. at a door) competes with nobody
    layout = _layout([(5.0, 1.0, "A"), (15.0, 1.0, None)])
    cov = counter_coverage(layout)
    assert cov["B"] == (1.0, "A")
    assert cov["A"] == (0.0, None)
    assert coverage_warnings(layout) == ["counter B has no antenna: its visits cannot be found "
                                         "(readers[].antennas[].zone)"]


def test_threshold_is_strict_and_validates_step() -> None:
    layout = _layout([(2.5, 1.0, "A"), (10.5, 1.0, "B")])
    assert coverage_warnings(layout, max_share=0.35) == []
    assert len(coverage_warnings(layout, max_share=0.34)) == 1
    with pytest.raises(ValueError, match="step_m"):
        counter_coverage(layout, step_m=0)


def _brute_share(a_ants: list[tuple[float, float]], b_ants: list[tuple[float, float]], step: float) -> float:
    """Counter A's share nearer one of B's antennas, point by point (the slow reference)."""
    lost = total = 0
    nx, ny = round(10 / step), round(2 / step)
    for i in range(nx):
        for j in range(ny):
            x, y = (i + 0.5) * step, (j + 0.5) * step
            own = min(math.hypot(x - ax, y - ay) for ax, ay in a_ants)
            other = min(math.hypot(x - bx, y - by) for bx, by in b_ants)
            total += 1
            lost += other < own
    return lost / total


@settings(max_examples=40, deadline=None)
@given(a=st.lists(st.tuples(st.floats(0.1, 9.9), st.floats(0.1, 1.9)), min_size=1, max_size=3),
       b=st.lists(st.tuples(st.floats(10.1, 19.9), st.floats(0.1, 1.9)), min_size=1, max_size=3))
def test_share_matches_a_point_by_point_reference(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> None:
    layout = _layout([(x, y, "A") for x, y in a] + [(x, y, "B") for x, y in b])
    share, by = counter_coverage(layout, step_m=0.5)["A"]
    assert share == pytest.approx(_brute_share(a, b, 0.5))
    assert (by == "B") == (share > 0)
    # following the advice never uncovers anything, and an over-share counter always gets advice
    added = [(x, y, z) for z, _, x, y in suggest_antennas(layout, step_m=0.5)]
    assert (len(added) > 0) == (share > 0.25 or counter_coverage(layout, step_m=0.5)["B"][0] > 0.25)
    after = counter_coverage(_layout([(x, y, "A") for x, y in a] + [(x, y, "B") for x, y in b] + added), step_m=0.5)
    assert after["A"][0] <= share + 1e-12


def test_sample_stores() -> None:
    from simulators import sample_layout_path
    from storeflow.layout import load_layout

    assert coverage_warnings(load_layout(sample_layout_path("boutique"))) == []
    # the department store's long island strips with one antenna each, back to back with deeper counters
    layout = load_layout(sample_layout_path("department"))
    dept = coverage_warnings(layout)
    assert any(line.startswith("counter C129: ") and "C130" in line for line in dept)
    better = with_suggested_antennas(layout)
    assert len(better.antennas()) == len(layout.antennas()) + len(suggest_antennas(layout))
    assert coverage_warnings(better) == []


@pytest.mark.db
def test_import_layout_prints_the_advice(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from storeflow.cli import main

    data = _layout([(2.5, 1.0, "A"), (10.5, 1.0, "B")]).to_dict()
    path = tmp_path / "cov.yaml"
    path.write_text(yaml.safe_dump(data))
    code = main(["import", "layout", str(path), "--database-url", db_url])
    out, err = capsys.readouterr()
    assert code == 0 and "store cov-store imported (2 zones, 2 antennas, 0 doors)" in out
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert warnings == [f"warning: {coverage_warnings(parse_layout(data))[0]}"]
