"""Visits / pass-bys / dwell kernel against the SPEC reference in tests/naive.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from analytics.visits import _visits_kernel, visits_from_presence
from tests.naive import visits_naive


def _as_rows(v):
    return [(int(t), int(z), int(s), int(e), float(d), bool(p))
            for t, z, s, e, d, p in zip(v.tag, v.zone, v.start_us, v.end_us, v.dwell_s, v.passby)]


@st.composite
def presence_spans(draw, max_rows=60):
    n = draw(st.integers(0, max_rows))
    tags = sorted(draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)))
    zones = draw(st.lists(st.integers(-1, 3), min_size=n, max_size=n))
    # non-overlapping spans per tag: positive or zero gaps and lengths (seconds, whole or fractional)
    gaps = draw(st.lists(st.integers(0, 60_000_000), min_size=n, max_size=n))
    lens = draw(st.lists(st.integers(0, 40_000_000), min_size=n, max_size=n))
    start, end = np.zeros(n, np.int64), np.zeros(n, np.int64)
    t = 0
    for i in range(n):
        if i == 0 or tags[i] != tags[i - 1]:
            t = 1_700_000_000_000_000
        start[i] = t + gaps[i]
        end[i] = start[i] + lens[i]
        t = end[i]
    return np.array(tags, np.int32), np.array(zones, np.int32), start, end


@settings(max_examples=300, deadline=None)
@given(presence_spans(), st.sampled_from([0.0, 5.0, 30.0]), st.sampled_from([0.0, 10.0, 25.0]))
def test_visits_match_naive(spans, gap_s, min_dwell_s):
    tag, zone, start, end = spans
    got = visits_from_presence(tag, zone, start, end, gap_s=gap_s, min_dwell_s=min_dwell_s)
    assert _as_rows(got) == visits_naive(tag, zone, start, end, gap_s, min_dwell_s)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 600), st.integers(-1, 2)), max_size=80))
def test_per_read_zones_match_naive(rows):
    """Per-read assignment (start == end == read time), including equal timestamps."""
    rows.sort(key=lambda r: (r[0], r[1]))
    tag = np.array([r[0] for r in rows], np.int32)
    ts = np.array([r[1] * 1_000_000 for r in rows], np.int64)
    zone = np.array([r[2] for r in rows], np.int32)
    got = visits_from_presence(tag, zone, ts, gap_s=30, min_dwell_s=10)
    assert _as_rows(got) == visits_naive(tag, zone, ts, ts, 30, 10)


def test_spec_examples():
    s = 1_000_000
    # 0-20 s in C0, 45 s absent (placed nowhere), 65-100 s C0 again: gap 45 > 30 -> two visits
    tag = np.array([1, 1, 1], np.int32)
    zone = np.array([0, -1, 0], np.int32)
    start = np.array([0, 20, 65]) * s
    end = np.array([20, 65, 100]) * s
    v = visits_from_presence(tag, zone, start, end, gap_s=30, min_dwell_s=10)
    assert v.start_us.tolist() == [0, 65 * s] and v.dwell_s.tolist() == [20.0, 35.0]
    # a 25 s absence merges; an interleaved stay elsewhere splits even when short
    v = visits_from_presence(tag, zone, np.array([0, 20, 45]) * s, np.array([20, 45, 100]) * s, gap_s=30)
    assert len(v) == 1 and v.dwell_s[0] == 100.0 and not v.passby[0]
    v = visits_from_presence(tag, np.array([0, 1, 0], np.int32), np.array([0, 20, 22]) * s,
                             np.array([20, 22, 30]) * s, gap_s=30, min_dwell_s=10)
    assert v.zone.tolist() == [0, 1, 0] and v.passby.tolist() == [False, True, True]
    # a pass-by is dwell < min_dwell_s, exactly min_dwell_s is a visit
    v = visits_from_presence(np.array([1], np.int32), np.array([2], np.int32), np.array([0]), np.array([10 * s]),
                             min_dwell_s=10)
    assert not v.passby[0]


def test_empty_and_one_row():
    e = np.zeros(0)
    assert len(visits_from_presence(e, e, e, e)) == 0
    v = visits_from_presence(np.array([7]), np.array([3]), np.array([5]), np.array([5]))
    assert _as_rows(v) == [(7, 3, 5, 5, 0.0, True)]


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="not sorted"):
        visits_from_presence(np.array([2, 1]), np.array([0, 0]), np.array([0, 0]), np.array([0, 0]))
    with pytest.raises(ValueError, match="end_us < start_us at row 0"):
        visits_from_presence(np.array([1]), np.array([0]), np.array([5]), np.array([4]))
    with pytest.raises(ValueError, match="gap_s"):
        visits_from_presence(np.array([1]), np.array([0]), np.array([5]), gap_s=float("nan"))
    with pytest.raises(ValueError, match="shape"):
        visits_from_presence(np.array([1, 2]), np.array([0]), np.array([5, 6]))


def test_many_blocks_same_as_naive():
    """Enough tags that the parallel kernel splits them into several blocks."""
    rng = np.random.default_rng(3)
    n = 20_000
    tag = np.sort(rng.integers(0, 500, n)).astype(np.int32)
    ts = np.zeros(n, np.int64)
    for t in np.unique(tag):
        m = tag == t
        ts[m] = np.cumsum(rng.integers(0, 20_000_000, m.sum()))
    zone = rng.integers(-1, 4, n).astype(np.int32)
    got = visits_from_presence(tag, zone, ts, gap_s=12, min_dwell_s=10)
    assert _as_rows(got) == visits_naive(tag, zone, ts, ts, 12, 10)


def test_unsorted_row_is_named_also_first_in_a_block():
    """The order check runs inside the parallel blocks: the first bad row is named whether it lies
    inside a block or is a block's first row (compared with the previous block's last row; the
    wrapper's tag_blocks never starts a block there, so the kernel is also called with such bounds)."""
    rng = np.random.default_rng(4)
    tag = np.repeat(np.arange(40, dtype=np.int32), 50)
    ts = np.cumsum(rng.integers(0, 5_000_000, tag.size))
    zone = rng.integers(-1, 3, tag.size).astype(np.int32)
    for r in np.flatnonzero(np.diff(tag)) + 1:
        bad_tag = tag.copy()
        bad_tag[r] = tag[r - 1] - 1
        with pytest.raises(ValueError, match=f"not sorted by \\(tag, start_us\\) at row {r}$"):
            visits_from_presence(bad_tag, zone, ts, gap_s=30)
        bad_tag[r] = tag[r - 1]
        bad_ts = ts.copy()
        bad_ts[r] = ts[r - 1] - 1
        with pytest.raises(ValueError, match=f"at row {r}$"):
            visits_from_presence(bad_tag, zone, bad_ts, gap_s=30)
        bounds = np.array([0, r, tag.size])
        assert _visits_kernel(bad_tag, zone, bad_ts, bad_ts, 30_000_000, bounds)[-1] == r
        # a span with end < start anywhere, even after the unsorted row, is named first (as before)
        bad_end = bad_ts + 1
        bad_end[-1] = bad_ts[-1] - 1
        with pytest.raises(ValueError, match=f"end_us < start_us at row {tag.size - 1}$"):
            visits_from_presence(bad_tag, zone, bad_ts, bad_end, gap_s=30)
