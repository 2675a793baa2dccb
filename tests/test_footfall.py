"""Door footfall per interval and occupancy corrected at closing: reference, hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.footfall import FOOTFALL_DTYPE, footfall, local_midnights_us, occupancy
from tests.naive_positions import naive_footfall

M = 60_000_000  # one minute in microseconds


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(-50, 500), st.integers(0, 30), st.integers(0, 30)), max_size=60),
       interval_min=st.integers(1, 90), lo=st.integers(-60, 100), length=st.integers(0, 400))
def test_footfall_matches_reference(rows, interval_min: int, lo: int, length: int) -> None:
    ts = [r[0] * M for r in rows]
    ent = [r[1] for r in rows]
    ext = [r[2] for r in rows]
    got = footfall(np.array(ts, np.int64), np.array(ent, np.int64), np.array(ext, np.int64), interval_min * 60,
                   lo * M, (lo + length) * M)
    want = naive_footfall(ts, ent, ext, interval_min * 60, lo * M, (lo + length) * M)
    assert [tuple(int(v) for v in r) for r in got] == want


def _ff(entries: list[int], exits: list[int], interval_us: int = 60 * M, t0: int = 0) -> np.ndarray:
    out = np.zeros(len(entries), FOOTFALL_DTYPE)
    out["interval_us"] = t0 + np.arange(len(entries)) * interval_us
    out["entries"] = entries
    out["exits"] = exits
    return out


def test_occupancy_residual_distributed_by_traffic() -> None:
    # raw running sum 10, 14, 8, 4: 4 people "left behind" at closing (exits under-counted)
    # traffic 10, 10, 10, 10 -> cumulative share 1/4, 2/4, 3/4, 1 of the residual 4 is removed
    occ = occupancy(_ff([10, 7, 2, 3], [0, 3, 8, 7]), np.array([4 * 60 * M]))
    assert occ["raw"].tolist() == [10, 14, 8, 4]
    assert occ["occupancy"].tolist() == pytest.approx([9.0, 12.0, 5.0, 0.0])


def test_occupancy_negative_residual_and_clip() -> None:
    # over-counted exits: raw 2, -1 (impossible), then -3 at close; traffic 2, 3, 2 (cum 2, 5, 7)
    # corrected: 2 + 3*2/7, -1 + 3*5/7, -3 + 3 -> 2.857, 1.143, 0
    occ = occupancy(_ff([2, 0, 0], [0, 3, 2]), np.array([3 * 60 * M]))
    assert occ["raw"].tolist() == [2, -1, -3]
    assert occ["occupancy"].tolist() == pytest.approx([2 + 6 / 7, -1 + 15 / 7, 0.0])
    # a day whose correction leaves a negative value is clipped at zero: raw -2, 0 ; traffic 2, 2
    occ = occupancy(_ff([0, 2], [2, 0]), np.array([2 * 60 * M]))
    assert occ["occupancy"].tolist() == pytest.approx([0.0, 0.0])


def test_occupancy_days_corrected_independently() -> None:
    # two days of two hourly intervals; closings after each day; day 2 is already balanced
    ff = _ff([5, 0, 3, 1], [1, 2, 1, 3])
    occ = occupancy(ff, np.array([2 * 60 * M, 4 * 60 * M]))
    assert occ["raw"].tolist() == [4, 2, 2, 0]
    # day 1: residual 2, traffic 6, 2 -> cum 6/8, 8/8 -> 4 - 1.5, 2 - 2
    assert occ["occupancy"].tolist() == pytest.approx([2.5, 0.0, 2.0, 0.0])
    # intervals after the last closing instant stay uncorrected
    occ = occupancy(ff, np.array([2 * 60 * M]))
    assert occ["occupancy"].tolist() == pytest.approx([2.5, 0.0, 2.0, 0.0])
    assert occupancy(ff[:0], np.array([], np.int64)).shape == (0,)


def test_local_midnights() -> None:
    # 2026-11-20 00:00 Asia/Shanghai is 2026-11-19T16:00Z
    day_utc_us = 1_763_568_000 * 1_000_000  # 2025-11-19T16:00:00Z
    got = local_midnights_us(day_utc_us - 3600 * 10**6, day_utc_us + 2 * 86_400 * 10**6, "Asia/Shanghai")
    assert got.tolist() == [day_utc_us, day_utc_us + 86_400 * 10**6, day_utc_us + 2 * 86_400 * 10**6]


def test_bad_input() -> None:
    z = np.zeros(2, np.int64)
    with pytest.raises(ValueError, match="entries"):
        footfall(z, np.array([1, -1]), z, 60, 0, 10)
    with pytest.raises(ValueError, match="exits: must be a 1-D array of length 2"):
        footfall(z, z, np.zeros(3, np.int64), 60, 0, 10)
    with pytest.raises(ValueError, match="interval_s"):
        footfall(z, z, z, 0, 0, 10)
    with pytest.raises(ValueError, match="must be integers"):
        footfall(z.astype(float), z, z, 60, 0, 10)
    with pytest.raises(ValueError, match="increasing"):
        occupancy(_ff([1, 1], [0, 0])[::-1].copy(), np.array([0]))
