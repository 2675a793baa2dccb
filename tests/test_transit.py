"""Floor-change transit: filled rows vs the pure-Python reference, the fit, edge cases, simulator accuracy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import analytics.transit as tr
from analytics.positions import PathLossModel, Positions
from analytics.transit import TransferPoints, fit_transfer_points, floor_changes, transit_positions
from tests.naive_positions import synthetic_layout
from tests.naive_transit import naive_cost, naive_fill, naive_gaps

MODEL = PathLossModel(np.full(1, -40.0), 2.0, 4.0)
LAYOUT = synthetic_layout(floors=3, width_m=30.0, depth_m=20.0, nx=2, ny=2)
T0 = 1_700_000_000_000_000


def _positions(rows: list[tuple], step_s: float, with_var: bool = True) -> Positions:
    cols = list(zip(*rows)) if rows else [[]] * 6
    return Positions(np.array(cols[0], np.int32), np.array(cols[1], np.int64), np.array(cols[2], np.int32),
                     np.array(cols[3], np.float32), np.array(cols[4], np.float32), step_s, MODEL, None,
                     np.array(cols[5], np.float32) if with_var else None)


def _rows(pos: Positions) -> list[tuple]:
    var = pos.var_m2 if pos.var_m2 is not None else np.zeros(len(pos), np.float32)
    return [(int(t), int(s), int(f), float(x), float(y), float(v))
            for t, s, f, x, y, v in zip(pos.tag, pos.ts_us, pos.floor, pos.x_m, pos.y_m, var)]


def _points(pairs: dict[tuple[int, int], tuple[float, float, float, float, float]]) -> TransferPoints:
    k = sorted(pairs)
    v = [pairs[p] for p in k]
    return TransferPoints(np.array([a for a, _ in k], np.int32), np.array([b for _, b in k], np.int32),
                          np.array([[p[0], p[1]] for p in v], np.float64).reshape(-1, 2),
                          np.array([[p[2], p[3]] for p in v], np.float64).reshape(-1, 2),
                          np.full(len(k), 20.0), np.array([p[4] for p in v], np.float64),
                          np.ones(len(k), np.int64))


@st.composite
def tracks(draw):
    """A few tags with sorted step-aligned rows, floors 1-3, gaps from one step to beyond the trip gap."""
    step_s = draw(st.sampled_from([1.0, 0.5, 2.0]))
    step_us = int(step_s * 1e6)
    rows = []
    for tag in range(draw(st.integers(0, 4))):
        t = T0 + draw(st.integers(0, 100)) * step_us
        for _ in range(draw(st.integers(1, 8))):
            t += draw(st.sampled_from([1, 1, 2, 3, 7, 40, 90, 200])) * step_us
            rows.append((tag, t, draw(st.sampled_from([1, 2, 3])), draw(st.floats(0, 30, width=32)),
                         draw(st.floats(0, 20, width=32)), draw(st.sampled_from([0.0, 0.5, 3.0, 12.0]))))
    return rows, step_s


point = st.tuples(st.floats(0, 30), st.floats(0, 20), st.floats(0, 30), st.floats(0, 20),
                  st.sampled_from([0.0, 1.0, 4.0]))


@settings(max_examples=200, deadline=None)
@given(data=tracks(), pairs=st.dictionaries(st.tuples(st.sampled_from([1, 2, 3]), st.sampled_from([1, 2, 3])),
                                           point),
       trip_gap_steps=st.sampled_from([3, 50, 120, 10_000]), speed=st.sampled_from([0.3, 1.2, 5.0]),
       ride_share=st.sampled_from([0.0, 0.5, 1.0, 0.3]), same_floor=st.booleans(), with_var=st.booleans())
def test_fill_matches_reference(data, pairs, trip_gap_steps: int, speed: float, ride_share: float,
                                same_floor: bool, with_var: bool) -> None:
    rows, step_s = data
    pairs = {k: v for k, v in pairs.items() if k[0] != k[1]}
    pos = _positions(rows, step_s, with_var)
    trip_gap_s = trip_gap_steps * step_s
    out = transit_positions(pos, LAYOUT, trip_gap_s, speed, ride_share, same_floor, points=_points(pairs))
    got = _rows(out)
    base = _rows(pos)  # the reference starts from the stored float32 values
    want = naive_fill(base, step_s, pairs, trip_gap_s, speed, ride_share, same_floor, tr._DETOUR)
    assert [r[:3] for r in got] == [r[:3] for r in want]
    for g, w in zip(got, want):
        assert g[3:] == pytest.approx(w[3:], rel=1e-5, abs=1e-4)
    # sorted by (tag, ts) and one row per step inside every filled gap
    assert [r[:2] for r in got] == sorted(r[:2] for r in got)
    gaps = naive_gaps(base, int(step_s * 1e6), int(round(trip_gap_s * 1e6)), same_floor)
    changes = [i for i in gaps if base[i][2] != base[i + 1][2]]
    assert [int(i) for i in floor_changes(pos, trip_gap_s)] == changes
    if len(out) == len(pos):
        assert out is pos


@settings(max_examples=100, deadline=None)
@given(base=st.lists(st.floats(-50, 50), min_size=1, max_size=30), seed=st.integers(0, 1000),
       inv_speed=st.sampled_from([0.2, 1.0, 2.5]))
def test_best_candidate_is_the_cheapest(base: list[float], seed: int, inv_speed: float) -> None:
    rng = np.random.default_rng(seed)
    ex, ey = rng.uniform(0, 30, len(base)), rng.uniform(0, 20, len(base))
    cx, cy = rng.uniform(0, 30, 40), rng.uniform(0, 20, 40)
    i = tr._best_candidate(np.array(base), ex, ey, inv_speed, cx, cy)
    costs = [naive_cost(base, list(zip(ex, ey)), inv_speed, (a, b)) for a, b in zip(cx, cy)]
    assert costs[i] == pytest.approx(min(costs), rel=1e-12, abs=1e-9)
    assert i == int(np.argmin(costs)) or costs[i] <= min(costs) + 1e-9


def _model_changes(rng: np.random.Generator, n: int, p: tuple[float, float], q: tuple[float, float],
                   ride_s: float, speed: float, a: int, b: int, tag0: int) -> list[tuple]:
    """n floor changes a -> b whose gaps follow the transit model exactly (walk, ride, walk; whole steps)."""
    rows = []
    for k in range(n):
        xa, ya = rng.uniform(0, 30), rng.uniform(0, 20)
        xb, yb = rng.uniform(0, 30), rng.uniform(0, 20)
        g = math.hypot(xa - p[0], ya - p[1]) / speed + ride_s + math.hypot(xb - q[0], yb - q[1]) / speed
        t = T0 + k * 10**9
        rows += [(tag0 + k, t, a, xa, ya, 2.0), (tag0 + k, t + int(round(g + 1)) * 10**6, b, xb, yb, 2.0)]
    return rows


def test_fit_recovers_transfer_points_of_model_gaps() -> None:
    rng = np.random.default_rng(3)
    # lattice points of the candidate grid (1 m cells: centres at .5), one escalator each way
    up, down = ((12.5, 8.5), (13.5, 14.5)), ((20.5, 8.5), (19.5, 3.5))
    rows = (_model_changes(rng, 300, *up, 25.0, 1.2, 1, 2, 0)
            + _model_changes(rng, 300, *down, 25.0, 1.2, 2, 1, 1000))
    pos = _positions(sorted(rows), 1.0)
    pts = fit_transfer_points(pos, LAYOUT, 1200.0, 1.2)
    got = {(int(a), int(b)): (p, q)
           for a, b, p, q in zip(pts.floor_from, pts.floor_to, pts.from_xy, pts.to_xy)}
    assert set(got) == {(1, 2), (2, 1)}
    for pair, (p, q) in ((1, 2), up), ((2, 1), down):
        assert np.hypot(*(got[pair][0] - p)) <= 1.01 and np.hypot(*(got[pair][1] - q)) <= 1.01
    assert pts.ride_s == pytest.approx([25.0, 25.0], abs=1.5)
    assert pts.n_changes.tolist() == [300, 300]
    # the filled rows put the gap time on both floors, the walk on A ending at the transfer point
    out = transit_positions(pos, LAYOUT, 1200.0, points=pts)
    missing = (pos.ts_us[1::2] - pos.ts_us[::2]) // 10**6 - 1
    assert len(out) == len(pos) + int(missing.sum())


def test_edge_cases() -> None:
    empty = _positions([], 1.0)
    assert len(transit_positions(empty, LAYOUT)) == 0
    assert len(fit_transfer_points(empty, LAYOUT)) == 0
    assert len(floor_changes(empty)) == 0
    s = 10**6
    one_floor = _positions([(0, T0, 1, 1.0, 1.0, 1.0), (0, T0 + 100 * s, 1, 9.0, 1.0, 1.0),
                            (1, T0 + 5 * s, 1, 2.0, 2.0, 1.0)], 1.0)
    out = transit_positions(one_floor, LAYOUT)  # no floor change: unchanged
    assert _rows(out) == _rows(one_floor)
    assert len(transit_positions(one_floor, LAYOUT, same_floor=True)) == 3 + 99  # the same-floor gap bridged
    # a floor change longer than the trip gap is a trip end, one step apart is nothing to fill
    far = _positions([(0, T0, 1, 1.0, 1.0, 1.0), (0, T0 + 2000 * s, 2, 5.0, 5.0, 1.0),
                      (1, T0, 1, 1.0, 1.0, 1.0), (1, T0 + s, 2, 5.0, 5.0, 1.0)], 1.0)
    assert len(fit_transfer_points(far, LAYOUT, 1200.0)) == 0
    assert _rows(transit_positions(far, LAYOUT, 1200.0)) == _rows(far)
    # one change: learnt from itself, the gap filled with A first, then B, at consecutive steps
    single = _positions([(0, T0, 1, 2.0, 3.0, 1.0), (0, T0 + 60 * s, 2, 20.0, 10.0, 1.0)], 1.0)
    out = transit_positions(single, LAYOUT, 1200.0)
    assert len(out) == 61 and (np.diff(out.ts_us) == s).all()
    fl = out.floor.tolist()
    assert fl == sorted(fl) and fl.count(1) > 1 and fl.count(2) > 1
    for share, on_a in ((1.0, 60), (0.0, 1)):  # the whole ride on the floor left / reached
        pts = _points({(1, 2): (2.5, 3.5, 19.5, 9.5, 1.0)})
        got = transit_positions(single, LAYOUT, 1200.0, ride_share=share, points=pts)
        assert got.floor.tolist().count(1) == pytest.approx(on_a, abs=2)
    with pytest.raises(ValueError, match="ride_share"):
        transit_positions(single, LAYOUT, ride_share=1.5)
    with pytest.raises(ValueError, match="speed_mps"):
        transit_positions(single, LAYOUT, speed_mps=0.0)
    with pytest.raises(ValueError, match="trip_gap_s"):
        transit_positions(single, LAYOUT, trip_gap_s=-1.0)


def _grid(heat: np.ndarray, floor: int, shape: tuple[int, int]) -> np.ndarray:
    est = np.zeros(shape)
    h = heat[heat["floor"] == floor]
    np.add.at(est, (h["ix"], h["iy"]), h["seconds"])
    return est


@pytest.mark.slow
def test_transit_brings_heatmap_closer_to_simulated_truth() -> None:
    from analytics.heatmap import compute_heatmap, zone_cells
    from analytics.positions import estimate_positions, points_in_polygon
    from simulators import sample_layout_path, simulate
    from storeflow.layout import load_layout

    layout = load_layout(sample_layout_path("department"))
    sim = simulate(layout, shoppers=200, hours=1, seed=7, scenario="easy")
    reads, am = sim.reads()
    customer = sim.truth.customer[reads.tag]
    pos = estimate_positions(reads, am, layout, tags=np.unique(reads.tag[customer]))
    heat = {t: compute_heatmap(reads, am, layout, customer, 1.0, sim.start_us, sim.end_us, positions=pos,
                               transit=t) for t in (False, True)}
    # the escalators' zones, found from the simulator's escalator ends (only the test knows them)
    ends = [e[k] for e in layout.simulation["escalators"] for k in ("from", "to")]
    is_esc = [any(p["floor"] == z.floor
                  and points_in_polygon(np.array([p["x"]]), np.array([p["y"]]), z.polygon)[0] for p in ends)
              for z in layout.zones]
    assert any(is_esc)
    in_zone = zone_cells(layout, 1.0)
    off = 0
    for f in layout.floors:
        true = sim.truth.heatmap(f.floor, 1.0)
        est = {t: _grid(h, f.floor, true.shape) for t, h in heat.items()}
        r = {t: float(np.corrcoef(true.ravel(), e.ravel())[0, 1]) for t, e in est.items()}
        print(f"floor {f.floor}: r without transit {r[False]:.3f}, with {r[True]:.3f}; "
              f"total truth {true.sum():.0f} s, without {est[False].sum():.0f} s, "
              f"with {est[True].sum():.0f} s")
        assert r[True] > r[False]
        assert abs(est[True].sum() - true.sum()) < abs(est[False].sum() - true.sum())
        for zi, z in enumerate(layout.zones):
            if not is_esc[zi] or z.floor != f.floor:
                continue
            cells = in_zone[zi, off:off + true.size]
            t_sec = true.ravel()[cells].sum()
            e_sec = {t: e.ravel()[cells].sum() for t, e in est.items()}
            print(f"  zone {z.zone}: truth {t_sec:.0f} s, without transit {e_sec[False]:.0f} s, "
                  f"with {e_sec[True]:.0f} s")
            assert abs(e_sec[True] - t_sec) < abs(e_sec[False] - t_sec)
        off += true.size
