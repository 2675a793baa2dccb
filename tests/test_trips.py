"""Trips and paths against the SPEC reference in tests/naive.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from analytics.trips import (_trips_kernel, first_counter_after_entrance, paths_from_visits, top_paths,
                             transition_matrix, trips_from_reads)
from analytics.visits import visits_from_presence
from tests.naive import paths_naive, trips_naive, visits_naive

S = 1_000_000


def _reads(rows):
    rows = sorted(rows)
    return (np.array([r[0] for r in rows], np.int32), np.array([r[1] * S for r in rows], np.int64),
            np.array([r[2] for r in rows], np.int32))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5000), st.integers(-1, 3)), max_size=80),
       st.sampled_from([0.0, 60.0, 1200.0]))
def test_trips_and_paths_match_naive(rows, trip_gap_s):
    tag, ts, zone = _reads(rows)
    trips = trips_from_reads(tag, ts, trip_gap_s=trip_gap_s)
    ref = trips_naive(tag, ts, trip_gap_s)
    assert list(zip(trips.tag.tolist(), trips.start_us.tolist(), trips.end_us.tolist(),
                    trips.n_reads.tolist())) == ref
    visits = visits_from_presence(tag, zone, ts, gap_s=30, min_dwell_s=10)
    is_counter = np.array([True, True, False, True])
    paths = paths_from_visits(trips, visits, is_counter)
    want = paths_naive(ref, visits_naive(tag, zone, ts, ts, 30, 10), lambda z: bool(is_counter[z]))
    assert [paths.path(i).tolist() for i in range(len(trips))] == want
    m = transition_matrix(paths, 4)
    assert m.sum() == sum(max(len(p) - 1, 0) for p in want)


def test_trip_gap_boundary():
    tag = np.zeros(3, np.int32)
    ts = np.array([0, 1200 * S, 1200 * S + 1200 * S + 1])
    t = trips_from_reads(tag, ts, trip_gap_s=1200)
    assert t.start_us.tolist() == [0, 2400 * S + 1] and t.n_reads.tolist() == [2, 1]


def test_transitions_top_paths_first_counter():
    # tag 1: entrance E(3), then C0, C1, C0 ; tag 2: C1 (no entrance seen), C0 ; tag 3: C0, C1, C0
    rows = []
    for tag, seq in ((1, [3, 0, 1, 0]), (2, [1, 0]), (3, [0, 1, 0]), (4, [0, 3, 1])):
        t = 0
        for z in seq:
            rows += [(tag, t + k, z) for k in range(0, 60, 5)]
            t += 100
    tag, ts, zone = _reads(rows)
    trips = trips_from_reads(tag, ts, trip_gap_s=1200)
    visits = visits_from_presence(tag, zone, ts, gap_s=30, min_dwell_s=10)
    counter = np.array([True, True, False, False])
    entrance = np.array([False, False, False, True])
    paths = paths_from_visits(trips, visits, counter)
    assert [paths.path(i).tolist() for i in range(4)] == [[0, 1, 0], [1, 0], [0, 1, 0], [0, 1]]
    m = transition_matrix(paths, 4)
    assert m[0, 1] == 3 and m[1, 0] == 3 and m.sum() == 6
    assert top_paths(paths, ["C0", "C1", "X", "E"], n=2) == [(("C0", "C1", "C0"), 2), (("C0", "C1"), 1)]
    first = first_counter_after_entrance(trips, visits, paths, entrance, counter)
    # tag 4 enters after visiting C0: first counter after the entrance is C1
    assert first.tolist() == [0, 1, 0, 1]


def test_bad_input():
    with pytest.raises(ValueError, match="not sorted"):
        trips_from_reads(np.array([1, 1]), np.array([5, 4]))
    with pytest.raises(ValueError, match="trip_gap_s"):
        trips_from_reads(np.array([1]), np.array([5]), trip_gap_s=-1)
    t = trips_from_reads(np.zeros(0), np.zeros(0))
    assert len(t) == 0


def test_unsorted_row_is_named_also_first_in_a_block():
    """The first bad row is named whether it lies inside a parallel block or is a block's first row
    (the kernel is called with such bounds: the wrapper's tag_blocks never starts a block there)."""
    rng = np.random.default_rng(4)
    tag = np.repeat(np.arange(40, dtype=np.int32), 50)
    ts = np.cumsum(rng.integers(0, 5_000_000, tag.size))
    for r in np.flatnonzero(np.diff(tag)) + 1:
        bad_tag = tag.copy()
        bad_tag[r] = tag[r - 1] - 1
        with pytest.raises(ValueError, match=f"not sorted by \\(tag, ts_us\\) at row {r}$"):
            trips_from_reads(bad_tag, ts)
        assert _trips_kernel(bad_tag, ts, 0, np.array([0, r, tag.size]))[-1] == r
        bad_tag[r] = tag[r - 1]
        bad_ts = ts.copy()
        bad_ts[r] = ts[r - 1] - 1
        with pytest.raises(ValueError, match=f"at row {r}$"):
            trips_from_reads(bad_tag, bad_ts)
        assert _trips_kernel(bad_tag, bad_ts, 0, np.array([0, r, tag.size]))[-1] == r
