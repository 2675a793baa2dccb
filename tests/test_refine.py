"""Visit refinement with positions (analytics.refine) against the reference in tests/naive.py."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from analytics.positions import PathLossModel, Positions
from analytics.presence import Presence
from analytics.refine import presence_in_visits, refine_visits, zone_masks
from analytics.visits import Visits
from tests.naive import presence_in_visits_naive, refine_naive, zone_mass_naive

S = 1_000_000
T0 = 1_700_000_000 * S
#: zones on two floors: rectangles, a triangle and an L shape (zone index = position in the list)
ZONES = [SimpleNamespace(floor=1, polygon=((0.0, 0.0), (4.0, 0.0), (4.0, 3.0), (0.0, 3.0))),
         SimpleNamespace(floor=1, polygon=((5.0, 1.0), (9.0, 1.0), (5.0, 6.0))),
         SimpleNamespace(floor=2, polygon=((1.0, 1.0), (6.0, 1.0), (6.0, 2.5), (2.5, 2.5), (2.5, 6.0), (1.0, 6.0))),
         SimpleNamespace(floor=2, polygon=((7.3, 0.2), (8.1, 0.2), (8.1, 0.9), (7.3, 0.9)))]


def _positions(tag, ts, floor, x, y, var, step_s=1.0) -> Positions:
    model = PathLossModel(np.zeros(1), 2.0, 1.0)  # unused by refine
    return Positions(np.asarray(tag, np.int32), np.asarray(ts, np.int64), np.asarray(floor, np.int32),
                     np.asarray(x, np.float32), np.asarray(y, np.float32), step_s, model, None,
                     None if var is None else np.asarray(var, np.float32))


def _visits(rows) -> Visits:
    t, z, s, e = (np.array([r[i] for r in rows], dt) for i, dt in enumerate((np.int32, np.int32, np.int64, np.int64)))
    d = (e - s) / 1e6
    return Visits(t, z, s, e, d, d < 10.0)


@st.composite
def scenes(draw):
    n_tags = draw(st.integers(1, 3))
    prow, vrow = [], []
    for tag in range(n_tags):
        n = draw(st.integers(0, 25))
        first = draw(st.integers(0, 5))
        steps = sorted(set(draw(st.lists(st.integers(first, first + 40), min_size=n, max_size=n))))
        for k in steps:
            prow.append((tag, T0 + k * S, draw(st.sampled_from([1, 2])),
                         draw(st.floats(-1.0, 10.0)), draw(st.floats(-1.0, 7.0)), draw(st.floats(0.01, 9.0))))
        t = T0
        for _ in range(draw(st.integers(0, 3))):
            s = t + draw(st.integers(0, 15)) * S + draw(st.sampled_from([0, 300_000]))
            e = s + draw(st.integers(0, 25)) * S
            vrow.append((tag, draw(st.integers(0, len(ZONES) - 1)), s, e))
            t = e
    return prow, vrow


@settings(max_examples=150, deadline=None)
@given(scenes(), st.sampled_from([0.1, 0.3, 0.5, 0.9]), st.sampled_from([0.5, 1.0]))
def test_refine_matches_naive(scene, min_mass, cell_m):
    prow, vrow = scene
    sd = [r[5] ** 0.5 for r in prow]
    want, masses, expected = refine_naive(vrow, [(r[0], r[1], r[2], r[3], r[4], s) for r, s in zip(prow, sd)], [
        (z.floor, z.polygon) for z in ZONES], S, cell_m, min_mass, 10.0)
    # the kernel sums a +-5 sigma window: a mass within 1e-6 of the threshold may fall either side;
    # so may an expected time within 1e-5 s of the minimum dwell
    assume(all(abs(m - min_mass) > 1e-6 for m in masses))
    assume(all(abs(x - 10.0) > 1e-5 for x in expected))
    pos = _positions(*(np.array([r[i] for r in prow]) for i in range(6))) if prow else _positions(*([],) * 6)
    got = refine_visits(_visits(vrow), pos, zone_masks(ZONES, cell_m), min_mass=min_mass)
    rows = [(int(t), int(z), int(s), int(e), float(d), bool(p))
            for t, z, s, e, d, p in zip(got.tag, got.zone, got.start_us, got.end_us, got.dwell_s, got.passby)]
    # a pass-by's length and centre are sums of masses: equal to a few microseconds
    us = pytest.approx
    assert rows == [(t, z, us(s, abs=3), us(e, abs=3), us(d, abs=1e-5), p) for t, z, s, e, d, p in want]
    # SPEC: a pass-by is exactly a visit shorter than the minimum dwell
    assert (got.passby == (got.dwell_s < 10.0)).all()


@settings(max_examples=200, deadline=None)
@given(st.floats(-2.0, 11.0), st.floats(-2.0, 8.0), st.floats(0.05, 4.0), st.integers(0, len(ZONES) - 1),
       st.sampled_from([0.25, 0.5, 1.0]))
def test_zone_mass_matches_naive(x, y, sd, z, cell_m):
    # one row, one visit: kept iff the mass reaches the threshold, which brackets the mass
    want = zone_mass_naive(x, y, sd, ZONES[z].polygon, cell_m)
    masks = zone_masks(ZONES, cell_m)
    for thr in (want - 2e-6, want + 2e-6):
        if not 0 < thr <= 1:
            continue
        pos = _positions([0], [T0], [ZONES[z].floor], [x], [y], [sd * sd])
        got = refine_visits(_visits([(0, z, T0, T0 + S)]), pos, masks, min_mass=thr)
        assert len(got) == (1 if thr < want else 0), (want, thr)


def test_refine_cuts_the_approach_and_drops_an_edge_walk():
    # tag 0 walks up to zone 0 (outside for 3 s), stays 20 s inside, leaves; tag 1 walks along the
    # edge (never inside); tag 2 has no positions at all (kept as decoded)
    xs0 = [6.0, 5.5, 5.0] + [2.0] * 20 + [6.0, 6.5]
    xs1 = [0.5 + 0.3 * k for k in range(12)]
    tag = [0] * len(xs0) + [1] * len(xs1)
    ts = [T0 + k * S for k in range(len(xs0))] + [T0 + k * S for k in range(len(xs1))]
    x = xs0 + xs1
    y = [1.5] * len(xs0) + [4.2] * len(xs1)
    pos = _positions(tag, ts, [1] * len(tag), x, y, [0.04] * len(tag))
    v = _visits([(0, 0, T0, T0 + len(xs0) * S), (1, 0, T0, T0 + 12 * S), (2, 0, T0, T0 + 40 * S)])
    got = refine_visits(v, pos, zone_masks(ZONES))
    assert got.tag.tolist() == [0, 2]
    assert (got.start_us[0] - T0) // S == 3 and (got.end_us[0] - T0) // S == 23
    assert got.dwell_s.tolist() == [20.0, 40.0] and not got.passby.any()
    # a visit cut below the minimum dwell becomes a pass-by
    short = refine_visits(_visits([(0, 0, T0, T0 + 6 * S)]), pos, zone_masks(ZONES))
    assert short.dwell_s.tolist() == [pytest.approx(3.0, abs=1e-5)] and short.passby.tolist() == [True]
    # zones not selected keep their decoded boundaries
    same = refine_visits(v, pos, zone_masks(ZONES), zones=np.array([False, True, True, True]))
    assert same.start_us.tolist() == v.start_us.tolist() and same.end_us.tolist() == v.end_us.tolist()


def test_a_walk_along_the_edge_is_a_pass_by_of_its_expected_time_inside():
    # 16 s walking along zone 0's top edge (y = 3 m) with 0.5 m of spread: every step puts about half
    # its mass inside, so all are kept, but the tag spends only about 8 s inside in expectation
    xs = [0.25 * k for k in range(16)]
    pos = _positions([0] * 16, [T0 + k * S for k in range(16)], [1] * 16, xs, [3.0] * 16, [0.25] * 16)
    got = refine_visits(_visits([(0, 0, T0, T0 + 16 * S)]), pos, zone_masks(ZONES))
    assert got.passby.tolist() == [True]
    assert 6.0 < got.dwell_s[0] < 9.0
    assert got.dwell_s[0] * S == pytest.approx(got.end_us[0] - got.start_us[0])
    # centred on the walk: mass is spread evenly, so the pass-by sits in the middle of the 16 s
    assert abs((got.start_us[0] + got.end_us[0]) / 2 - (T0 + 8 * S)) < 1.0 * S
    # the same walk one metre inside the edge is a visit with its cut boundaries
    deep = refine_visits(_visits([(0, 0, T0, T0 + 16 * S)]),
                         _positions([0] * 16, [T0 + k * S for k in range(16)], [1] * 16, xs, [2.0] * 16,
                                    [0.25] * 16), zone_masks(ZONES))
    assert deep.passby.tolist() == [False] and deep.dwell_s.tolist() == [16.0]


def test_refine_edge_cases_and_bad_input():
    masks = zone_masks(ZONES)
    empty_pos = _positions(*([],) * 6)
    assert len(refine_visits(_visits([]), empty_pos, masks)) == 0
    one = _visits([(0, 1, T0, T0 + 30 * S)])
    assert refine_visits(one, empty_pos, masks).end_us.tolist() == [T0 + 30 * S]  # no rows: as decoded
    pt = _positions([0], [T0 + 5 * S], [1], [6.0], [2.0], None)  # a point (no variance) inside zone 1
    assert refine_visits(one, pt, masks).start_us.tolist() == [T0 + 5 * S]
    with pytest.raises(ValueError, match="visits.zone"):
        refine_visits(_visits([(0, 9, T0, T0 + S)]), empty_pos, masks)
    with pytest.raises(ValueError, match="min_mass"):
        refine_visits(one, empty_pos, masks, min_mass=0.0)
    with pytest.raises(ValueError, match="sorted"):
        refine_visits(one, _positions([1, 0], [T0, T0], [1, 1], [0, 0], [0, 0], [1, 1]), masks)
    with pytest.raises(ValueError, match="cell_m"):
        zone_masks(ZONES, 0.0)


@pytest.mark.slow
@pytest.mark.parametrize("store, scenario", [("boutique", "hard"), ("department", "hard")])
def test_refinement_improves_accuracy_against_truth(store, scenario):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from accuracy_sim import evaluate

    plain, _ = evaluate(store, scenario, 80, 0.75, 5, refine=False)
    refined, _ = evaluate(store, scenario, 80, 0.75, 5, refine=True)
    print(f"{store} {scenario}: F1 {plain.f1:.3f} -> {refined.f1:.3f}, dwell error "
          f"{plain.dwell_rel_err_median:.3f} -> {refined.dwell_rel_err_median:.3f}")
    assert refined.f1 > plain.f1
    assert refined.dwell_rel_err_median < plain.dwell_rel_err_median


@st.composite
def spans_and_visits(draw):
    """Per tag, non-overlapping presence spans (zones -1..3) and non-overlapping visits, both in time
    order, at whole and half seconds so that ends touch and overlaps are partial."""
    spans, visits = [], []
    for tag in draw(st.lists(st.integers(0, 5), max_size=3, unique=True).map(sorted)):
        for rows in (spans, visits):
            t = T0 + draw(st.integers(0, 10)) * S // 2
            for _ in range(draw(st.integers(0, 6))):
                s = t + draw(st.integers(0, 8)) * S // 2
                e = s + draw(st.integers(1, 30)) * S // 2
                rows.append((tag, draw(st.integers(-1 if rows is spans else 0, 3)), s, e))
                t = e
    return spans, visits


@settings(max_examples=300, deadline=None)
@given(spans_and_visits(), st.lists(st.booleans(), min_size=4, max_size=4))
def test_presence_in_visits_matches_naive(data, clip):
    spans, vrows = data
    cols = [np.array([r[i] for r in spans], dt) for i, dt in enumerate((np.int32, np.int32, np.int64, np.int64))]
    got = presence_in_visits(Presence(*cols), _visits(vrows), np.array(clip))
    want = presence_in_visits_naive(spans, vrows, clip)
    assert list(zip(got.tag.tolist(), got.zone.tolist(), got.start_us.tolist(), got.end_us.tolist())) == want
    # the result is still sorted by (tag, start) without overlaps within a tag
    order = np.lexsort((got.start_us, got.tag))
    assert (order == np.arange(len(got))).all()
    same = got.tag[1:] == got.tag[:-1]
    assert (got.start_us[1:][same] >= got.end_us[:-1][same]).all()


def test_presence_in_visits_cuts_a_counter_span_to_its_refined_visit():
    # tag 7 decoded at counter 1 for 0-30 s (visit refined to 8-21 s) then in the aisle, at zone 2
    # (not clipped) 40-50 s; tag 8 at counter 1 with no visit left (dropped by refinement)
    spans = Presence(np.array([7, 7, 7, 8], np.int32), np.array([1, -1, 2, 1], np.int32),
                     np.array([0, 30, 40, 0], np.int64) * S + T0, np.array([30, 40, 50, 20], np.int64) * S + T0)
    got = presence_in_visits(spans, _visits([(7, 1, T0 + 8 * S, T0 + 21 * S)]), np.array([False, True, False]))
    assert got.tag.tolist() == [7, 7, 7]
    assert got.zone.tolist() == [1, -1, 2]
    assert ((got.start_us - T0) // S).tolist() == [8, 30, 40]
    assert ((got.end_us - T0) // S).tolist() == [21, 40, 50]
    with pytest.raises(ValueError, match="presence.zone"):
        presence_in_visits(spans, _visits([]), np.array([True]))
