"""Read smoothing against a naive reference, and the window guarantee on arbitrary input (hypothesis)."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.records import AgentRead
from edge.smoothing import Smoother


def naive_smooth(reads: list[AgentRead], window_us: int) -> list[AgentRead]:
    """Reference for time-ordered input: per (reader, antenna, epc), a group starts at the first read
    not yet grouped and takes every read in [start, start + window)."""
    by_key: dict[tuple, list[AgentRead]] = defaultdict(list)
    for r in reads:
        by_key[(r.reader, r.antenna, r.epc)].append(r)
    out = []
    for (reader, antenna, epc), rs in by_key.items():
        rs = sorted(rs, key=lambda r: r.ts_us)
        i = 0
        while i < len(rs):
            start = rs[i].ts_us
            group = [r for r in rs[i:] if r.ts_us < start + window_us]
            out.append(AgentRead(start, reader, antenna, epc, max(r.rssi_dbm for r in group),
                                 sum(r.count for r in group), _or(r.flags for r in group)))
            i += len(group)
    return out


def _or(xs) -> int:
    v = 0
    for x in xs:
        v |= x
    return v


read_st = st.builds(
    AgentRead,
    ts_us=st.integers(0, 5_000_000),
    reader=st.sampled_from(["R1", "R2"]),
    antenna=st.integers(1, 3),
    epc=st.sampled_from(["AA000001", "AA000002", "BB000003"]),
    rssi_dbm=st.floats(-90, -20, allow_nan=False).map(lambda x: round(x, 2)),
    count=st.integers(1, 3),
    flags=st.integers(0, 1),
)


def _run(sm: Smoother, reads: list[AgentRead], ticks: list[int]) -> list[AgentRead]:
    """Feed reads one by one, the agent clock = each read's time, calling due() at the given extra times."""
    out: list[AgentRead] = []
    ticks = sorted(ticks)
    for r in reads:
        while ticks and ticks[0] <= r.ts_us:
            out += sm.due(ticks.pop(0))
        out += sm.push([r], r.ts_us)
        out += sm.due(r.ts_us)
    return out + sm.flush()


@settings(max_examples=300, deadline=None)
@given(st.lists(read_st, max_size=80), st.integers(1, 2_000_000), st.lists(st.integers(0, 5_000_000), max_size=10))
def test_matches_naive_reference_on_ordered_input(reads, window_us, ticks):
    reads = sorted(reads, key=lambda r: r.ts_us)
    got = _run(Smoother(window_us), reads, ticks)
    assert sorted(got) == sorted(naive_smooth(reads, window_us))


@settings(max_examples=300, deadline=None)
@given(st.lists(read_st, max_size=80), st.integers(0, 2_000_000))
def test_window_guarantee_on_any_order(reads, window_us):
    """Nothing is lost, every published time is a real read time, and every read is represented by a
    record of its key at most one window earlier: presence moves by less than the window."""
    sm = Smoother(window_us)
    out = sm.push(reads, 0) + sm.flush()
    assert sum(r.count for r in out) == sum(r.count for r in reads)
    assert sm.reads_in == sum(r.count for r in reads) and sm.records_out == len(out)
    raw_times = defaultdict(set)
    for r in reads:
        raw_times[(r.reader, r.antenna, r.epc)].add(r.ts_us)
    by_key = defaultdict(list)
    for o in out:
        by_key[(o.reader, o.antenna, o.epc)].append(o.ts_us)
        assert o.ts_us in raw_times[(o.reader, o.antenna, o.epc)]
    for r in reads:
        ts = by_key[(r.reader, r.antenna, r.epc)]
        assert any(t <= r.ts_us < t + max(window_us, 1) for t in ts)
    if window_us == 0:
        assert out == reads


@settings(max_examples=100, deadline=None)
@given(st.lists(read_st, min_size=1, max_size=80), st.integers(1, 2_000_000))
def test_at_most_one_record_per_key_and_window(reads, window_us):
    reads = sorted(reads, key=lambda r: r.ts_us)
    out = _run(Smoother(window_us), reads, [])
    by_key = defaultdict(list)
    for o in out:
        by_key[(o.reader, o.antenna, o.epc)].append(o.ts_us)
    for ts in by_key.values():
        ts.sort()
        assert all(b - a >= window_us for a, b in zip(ts, ts[1:]))


def test_due_closes_by_agent_clock_only_after_the_window():
    sm = Smoother(1_000_000)
    r = AgentRead(10, "R1", 1, "AA000001", -50.0, 1, 0)
    assert sm.push([r], now_us=100) == []
    assert sm.due(100 + 999_999) == []
    assert sm.due(100 + 1_000_000) == [r]
    assert len(sm) == 0 and sm.flush() == []


def test_edges_empty_and_single():
    assert Smoother(500).push([], 0) == [] and Smoother(500).flush() == []
    r = AgentRead(5, "R1", 1, "AA000001", -50.0, 2, 1)
    sm = Smoother(500)
    assert sm.push([r], 0) == [] and sm.flush() == [r]
