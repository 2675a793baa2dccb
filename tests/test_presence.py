"""Zone presence HMM: Viterbi kernel vs the plain reference; behaviour on a synthetic store.

The synthetic RF here is deliberately simple and our own (log-distance path loss, logistic read
probability); it is not the simulator's model and no presence parameter is tuned to it.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from analytics import presence as P
from analytics.data import Reads, antenna_map, zone_map
from storeflow.layout import load_layout
from tests.naive import fill_beside_naive, min_stay_viterbi_naive, step_emissions_naive, viterbi_naive

S = 1_000_000
T0 = 1_700_000_000 * S  # every synthetic tag starts its plan here


@pytest.fixture(scope="module")
def mini(request):
    from tests.conftest import DATA

    lay = load_layout(DATA / "mini_store.yaml")
    return lay, antenna_map(lay), zone_map(lay)


def _synthetic(am, zm, stays, rng, rate_hz=4.0, ghost_rate=0.0):
    """Reads of tags following ``stays``: per tag a list of ((x, y), seconds)."""
    cols = [[], [], [], []]
    for tag, plan in enumerate(stays):
        now = T0
        for (px, py), dur in plan:
            n = max(1, int(dur * rate_hz))
            tt = now + np.sort(rng.integers(0, int(dur * S), n))
            for a in range(len(am)):
                d = np.hypot(am.x_m[a] - px, am.y_m[a] - py) + 0.3
                r = -40 - 25 * np.log10(d) + rng.normal(0, 3, n)
                m = rng.random(n) < 1 / (1 + np.exp(d - 5))
                if ghost_rate:
                    ghost = rng.random(n) < ghost_rate
                    r[ghost] = -45.0
                    m |= ghost
                for c, v in zip(cols, (np.full(m.sum(), tag), tt[m], np.full(m.sum(), a), r[m])):
                    c.append(v)
            now += int(dur * S)
    return Reads.sorted_from(*(np.concatenate(c) for c in cols))


def _random_plans(zm, rng, n_tags):
    plans = []
    for _ in range(n_tags):
        plan = [((rng.uniform(2, 28), 10.0), rng.uniform(5, 20))]
        for _ in range(rng.integers(1, 4)):
            poly = zm.polygon(int(rng.integers(0, 3)))
            lo, hi = poly.min(0) + 0.5, poly.max(0) - 0.5
            plan.append(((rng.uniform(lo[0], hi[0]), rng.uniform(lo[1], hi[1])), rng.uniform(15, 120)))
            plan.append(((rng.uniform(2, 28), 10.0), rng.uniform(5, 20)))
        plans.append(plan)
    return plans


@pytest.fixture(scope="module")
def fitted(mini):
    lay, am, zm = mini
    rng = np.random.default_rng(11)
    reads = _synthetic(am, zm, _random_plans(zm, rng, 120), rng)
    return reads, P.fit_presence_model(reads, am, zm)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40))
def test_viterbi_kernel_matches_reference(fitted, seed, n_reads):
    """Random segments: the kernel's path is optimal under the reference emissions/transitions."""
    _, model = fitted
    rng = np.random.default_rng(seed)
    n_ant = model.p_detect.shape[1]
    ts = np.sort(rng.integers(0, 12 * S, n_reads)).astype(np.int64)
    ts[rng.random(n_reads) < 0.3] = ts[0]  # equal timestamps
    ts.sort()
    ant = rng.integers(0, n_ant, n_reads).astype(np.int32)
    rssi = rng.uniform(-80, -40, n_reads)
    base, table = P._emission_arrays(model)
    ptr, idx, logp = P._pred_graph(model.trans)
    o_step, o_ant, o_rssi = np.empty(n_reads, np.int64), np.empty(n_reads, np.int32), np.empty(n_reads)
    m = P._segment_obs(ts, ant, rssi, 0, n_reads, S, n_ant, o_step, o_ant, o_rssi,
                       np.full(n_ant, -1, np.int64), np.zeros(n_ant, np.int64))
    T = int((ts[-1] - ts[0]) // S + 1)
    out = np.empty(T, np.int16)
    best = P._viterbi_segment(T, o_step, o_ant, o_rssi, m, base, table, ptr, idx, logp,
                              np.arange(model.n_states, dtype=np.int64), out)
    # the model's RSSI resolution: nearest 0.5 dB bin centre
    rssi_q = P.RSSI_LO_DBM + P.RSSI_BIN_DB * np.array([P.rssi_bin(r) for r in rssi])
    em = model.emit_weight * step_emissions_naive(
        ts, ant, rssi_q, S, np.clip(model.p_detect, P._P_MIN, P._P_MAX), model.mu_dbm,
        np.maximum(model.sd_db, P._SD_MIN_DB), P._OUTLIER_W, model.rssi_span_db)
    with np.errstate(divide="ignore"):
        lt = np.log(model.trans)
    ref = viterbi_naive(em, lt)

    def score(path):
        return em[0, path[0]] + sum(lt[path[k - 1], path[k]] + em[k, path[k]] for k in range(1, T))

    assert best == pytest.approx(score(ref), rel=1e-9, abs=1e-6)
    assert score(out.tolist()) == pytest.approx(score(ref), rel=1e-9, abs=1e-6)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 7), st.integers(1, 4))
def test_min_stay_chains_match_reference(seed, T, min_steps):
    """Entry chains (a zone stay lasts >= min_steps): the decoded score equals brute force over all
    paths that respect the minimum stay, and the decoded path obeys it."""
    rng = np.random.default_rng(seed)
    state_zone = np.array([-1, 0, 1, -1, -1], np.int32)        # far | in 0, in 1 | beside 0, beside 1
    S = len(state_zone)
    trans = rng.random((S, S)) * (rng.random((S, S)) < 0.7)
    np.fill_diagonal(trans, rng.random(S) + 0.5)
    trans /= trans.sum(axis=1, keepdims=True)
    log_em = rng.normal(0, 2, (T, S))
    # one observation per step at its own "antenna" whose table row is that step's emissions
    table = np.zeros((T, P.RSSI_BINS, S))
    table[:, :, :] = log_em[:, None, :]
    o_step, o_ant, o_rssi = np.arange(T, dtype=np.int64), np.arange(T, dtype=np.int32), np.full(T, -60.0)
    xtrans, emit_of = P._entry_chains(trans, state_zone, min_steps)
    ptr, idx, logp = P._pred_graph(xtrans)
    out = np.empty(T, np.int16)
    best = P._viterbi_segment(T, o_step, o_ant, o_rssi, T, np.zeros(S), table, ptr, idx, logp, emit_of, out)
    with np.errstate(divide="ignore"):
        lt = np.log(trans)
    ref = min_stay_viterbi_naive(log_em, lt, [1, 2], min_steps)
    assert best == pytest.approx(ref, rel=1e-9, abs=1e-9)
    # the decoded path respects the minimum stay in the middle of the segment
    path = out.tolist()
    k = 0
    while k < T:
        j = k
        while j < T and path[j] == path[k]:
            j += 1
        if path[k] in (1, 2) and k > 0 and j < T:
            assert j - k >= min_steps
        k = j
    assert np.allclose(xtrans.sum(axis=1), 1.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 4), max_size=30), max_size=5), st.booleans())
def test_fill_beside_matches_reference(segs, with_far):
    """A beside-z run between two stays in z becomes "in z"; nothing else changes."""
    state_zone = np.array([-1, 0, 1, -1, -1], np.int32)
    inside_of = P._inside_of_beside(state_zone)
    assert inside_of.tolist() == [-1, -1, -1, 1, 2]
    states = np.array([s for seg in segs for s in seg], np.int16)
    step_off = np.concatenate(([0], np.cumsum([len(seg) for seg in segs]))).astype(np.int64)
    P._fill_beside(states, step_off, inside_of, with_far)
    ref = [s for seg in segs for s in fill_beside_naive(seg, inside_of.tolist(), with_far)]
    assert states.tolist() == ref


def _truth_zone_at(zm, plan, t_s):
    t = 0.0
    for (x, y), dur in plan:
        if t <= t_s < t + dur:
            for z in range(3):
                if P._points_in_polygon(np.array([x]), np.array([y]), zm.polygon(z))[0]:
                    return z
            return -1
        t += dur
    return -1


@pytest.mark.parametrize("ghost_rate", [0.0, 0.02])
def test_presence_agrees_with_physical_presence(mini, fitted, ghost_rate):
    """Neighbouring counters C01/C02 share an edge and hear each other's tags; with multipath
    ghosts (strong reads at random antennas) >= 90 % of the seconds a tag spends in a counter
    are decoded in that counter, and a neighbour is almost never taken for it.

    The tags here also stand still for 5-20 s in the aisle 2 m from the counters' edges, which by
    RSSI looks like the far part of a counter: the decoder may hold such a short stand in the
    counter next to it (its evidence weight is learnt from the data, and standing persists), so
    only >= 75 % of all seconds agree.
    """
    lay, am, zm = mini
    rng = np.random.default_rng(5)
    plans = _random_plans(zm, rng, 60)
    reads = _synthetic(am, zm, plans, rng, ghost_rate=ghost_rate)
    model = P.fit_presence_model(reads, am, zm)
    pres = P.zone_presence(reads, model, am, segment_gap_s=1200)
    ok = total = in_zone = in_zone_ok = confused = 0
    for i in range(len(pres)):
        for t_us in range(int(pres.start_us[i]), int(pres.end_us[i]), S):
            sec = (t_us - T0) / S + 0.5
            true = _truth_zone_at(zm, plans[int(pres.tag[i])], sec)
            total += 1
            ok += true == pres.zone[i]
            in_zone += true >= 0
            in_zone_ok += true >= 0 and true == pres.zone[i]
            confused += true >= 0 and pres.zone[i] >= 0 and true != pres.zone[i]
    assert total > 5000 and in_zone > 3000
    assert in_zone_ok / in_zone >= 0.9
    assert confused / in_zone <= 0.02
    assert ok / total >= 0.75


def test_missed_reads_do_not_split(mini, fitted):
    """A tag standing in C01 (next to C02, which hears it too) whose reads drop out for 8 s stays in C01."""
    lay, am, zm = mini
    _, model = fitted
    rng = np.random.default_rng(2)
    reads = _synthetic(am, zm, [[((7.5, 15.5), 40.0)]], rng)
    keep = ~((reads.ts_us - reads.ts_us[0] > 15 * S) & (reads.ts_us - reads.ts_us[0] < 23 * S))
    reads = Reads(reads.tag[keep], reads.ts_us[keep], reads.antenna[keep], reads.rssi_dbm[keep], reads.count[keep])
    pres = P.zone_presence(reads, model, am, segment_gap_s=1200).zones_only()
    c01 = zm.zone.index("C01")
    inside = (pres.end_us - pres.start_us)[pres.zone == c01].sum()
    elsewhere = (pres.end_us - pres.start_us)[pres.zone != c01].sum()
    assert inside >= 25 * S and elsewhere <= 5 * S


def test_model_is_learnt_from_layout_and_data(mini, fitted):
    lay, am, zm = mini
    _, model = fitted
    states = model.state_zone.tolist()
    n_z = len(set(int(z) for z in am.zone if z >= 0))
    # far | in zone (one per zone with antennas) | beside zone
    assert model.n_states == 1 + 2 * n_z
    assert states[0] == -1 and sorted(states[1:n_z + 1]) == sorted(set(int(z) for z in am.zone if z >= 0))
    assert states[n_z + 1:] == [-1] * n_z
    for a in range(len(am)):
        s = states.index(int(am.zone[a]))
        # each antenna hears its own zone more often and at least as strong as beside it and far away
        assert model.p_detect[s, a] >= model.p_detect[s + n_z, a] >= model.p_detect[0, a]
        assert model.p_detect[s, a] > model.p_detect[0, a]
        assert model.mu_dbm[s, a] >= model.mu_dbm[s + n_z, a] >= model.mu_dbm[0, a]
    # from one counter to another through the aisle: in C01 -> beside C01 -> beside C02 -> in C02
    # (C01 and C02 touch); C01 and C03 are far apart: not even their aisles are linked
    c01, c02, c03 = (states.index(zm.zone.index(z)) for z in ("C01", "C02", "C03"))
    assert model.trans[c01, c02] == 0 and model.trans[c01, c03] == 0
    assert model.trans[c01, c01 + n_z] > 0 and model.trans[c01 + n_z, c02 + n_z] > 0
    assert model.trans[c02 + n_z, c02] > 0
    assert model.trans[c01 + n_z, c03 + n_z] == 0
    assert np.allclose(model.trans.sum(axis=1), 1.0)
    # the direct link between touching counters is still available on request
    reads, _ = fitted
    linked = P.fit_presence_model(reads, am, zm, em_rounds=0, direct_neighbours=True)
    assert linked.trans[c01, c02] > 0 and linked.trans[c01, c03] == 0


def test_bad_reads_rejected(mini, fitted):
    lay, am, zm = mini
    _, model = fitted
    nan = Reads(np.array([1, 1], np.int32), np.array([0, S]), np.array([0, 1], np.int32),
                np.array([-50, np.nan], np.float32), np.ones(2, np.int32))
    with pytest.raises(ValueError, match="rssi_dbm is not finite at 1 row"):
        P.zone_presence(nan, model, am, 1200)
    bad_ant = Reads(np.array([1], np.int32), np.array([0]), np.array([9], np.int32),
                    np.array([-50], np.float32), np.ones(1, np.int32))
    with pytest.raises(ValueError, match="antenna out of range"):
        P.fit_presence_model(bad_ant, am, zm)
    unsorted = Reads(np.array([1, 1], np.int32), np.array([S, 0]), np.array([0, 1], np.int32),
                     np.array([-50, -60], np.float32), np.ones(2, np.int32))
    with pytest.raises(ValueError, match="not sorted"):
        P.zone_presence(unsorted, model, am, 1200)


def test_empty_and_one_read(mini, fitted):
    lay, am, zm = mini
    _, model = fitted
    e = Reads.sorted_from(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0))
    assert len(P.zone_presence(e, model, am, 1200)) == 0
    one = Reads.sorted_from(np.array([4]), np.array([10 * S]), np.array([0]), np.array([-45.0]))
    pres = P.zone_presence(one, model, am, 1200)
    assert len(pres) == 1 and pres.start_us[0] == 10 * S and pres.end_us[0] == 11 * S
    # a model can be fitted on no reads at all (starting values only)
    m0 = P.fit_presence_model(e, am, zm)
    assert m0.p_detect.shape == model.p_detect.shape


def emission_weight_naive(states, obs, seg_of_step, mu, sd):
    """rho over (step k, antenna a) -> (step k+1, a) detection pairs in one segment and one state."""
    at = {(k, a): r for k, a, r in obs}
    num = si = sj = 0.0
    n = 0
    for (k, a), r in at.items():
        if (k + 1, a) not in at or seg_of_step[k] != seg_of_step[k + 1] or states[k] != states[k + 1]:
            continue
        s = states[k]
        zi = (r - mu[s][a]) / max(sd[s][a], P._SD_MIN_DB)
        zj = (at[(k + 1, a)] - mu[s][a]) / max(sd[s][a], P._SD_MIN_DB)
        num, si, sj, n = num + zi * zj, si + zi * zi, sj + zj * zj, n + 1
    if n < 100:
        return 1.0
    rho = min(max(num / (si * sj) ** 0.5, 0.0), 0.99)
    return min(max((1 - rho) / (1 + rho), P._EMIT_W_MIN), P._EMIT_W_MAX)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 0.95), st.integers(20, 400))
def test_emission_weight_matches_reference(fitted, seed, persist, n_steps):
    """The learnt emission weight equals the reference on random decoded paths and observations,
    and falls as the RSSI residuals persist from one step to the next."""
    _, model = fitted
    rng = np.random.default_rng(seed)
    n_ant, n_s = model.p_detect.shape[1], model.n_states
    cuts = np.sort(rng.choice(np.arange(1, n_steps), size=min(3, n_steps - 1), replace=False))
    step_off = np.concatenate(([0], cuts, [n_steps])).astype(np.int64)
    states = np.repeat(rng.integers(0, n_s, n_steps // 10 + 1), 10)[:n_steps].astype(np.int16)
    obs = []
    noise = np.zeros(n_ant)
    for k in range(n_steps):
        noise = persist * noise + np.sqrt(1 - persist ** 2) * rng.normal(0, 1, n_ant)
        for a in np.flatnonzero(rng.random(n_ant) < 0.7):
            s = states[k]
            obs.append((k, int(a), float(model.mu_dbm[s, a] + model.sd_db[s, a] * noise[a])))
    o_step = np.array([o[0] for o in obs], np.int64)
    o_ant = np.array([o[1] for o in obs], np.int32)
    o_rssi = np.array([o[2] for o in obs], np.float64)
    seg_of_step = np.searchsorted(step_off, np.arange(n_steps + 1), side="right")
    got = P._emission_weight(states, o_step, o_ant, o_rssi, P._successive_pairs(o_step, o_ant, step_off, n_ant),
                             model)
    want = emission_weight_naive(states.tolist(), obs, seg_of_step.tolist(), model.mu_dbm.tolist(),
                                 model.sd_db.tolist())
    assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
    if n_steps >= 200 and persist >= 0.8:
        assert got < 0.3


def _random_reads(rng, n_tags, n_ant):
    """Random reads of several tags: bursts, gaps of up to a minute, equal timestamps, 1-read tags."""
    cols = [[], [], [], []]
    for tag in range(n_tags):
        n = int(rng.integers(1, 60))
        ts = T0 + np.cumsum(rng.choice([0, 200_000, 900_000, 3 * S, 60 * S], n, p=[.2, .4, .3, .07, .03]))
        for c, v in zip(cols, (np.full(n, tag), ts, rng.integers(0, n_ant, n), rng.uniform(-85, -35, n))):
            c.append(v)
    return Reads.sorted_from(*(np.concatenate(c) for c in cols))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.sampled_from([1, 3, P.LANES]),
       st.sampled_from([0.0, 3.0, P.MIN_STAY_S]), st.sampled_from([None, 1, 20]))
def test_lane_decoder_matches_segment_kernel(fitted, seed, n_tags, n_lanes, min_stay_s, max_lane_steps):
    """The multi-segment lane decoder returns exactly the states of the one-segment kernel
    (:func:`_viterbi_segment`, itself checked against the reference above) for every segment:
    segments of different lengths in one batch, unused lanes, entry chains or none, segments too
    long for the lanes (decoded one at a time)."""
    from dataclasses import replace

    _, model = fitted
    model = replace(model, min_stay_s=min_stay_s)
    rng = np.random.default_rng(seed)
    n_ant = model.p_detect.shape[1]
    reads = _random_reads(rng, n_tags, n_ant)
    seg_off = P.segment_reads(reads, 30.0)
    (states, *_), step_off, *_ = P._run_decode(reads, model, seg_off, False, n_lanes=n_lanes,
                                               max_lane_steps=max_lane_steps)
    base, table = P._emission_arrays(model)
    trans, emit_of = P._entry_chains(model.trans, model.state_zone, int(round(min_stay_s / model.step_s)))
    ptr, idx, logp = P._pred_graph(trans)
    rssi = reads.rssi_dbm.astype(np.float64)
    for g in range(len(seg_off) - 1):
        r0, r1 = seg_off[g], seg_off[g + 1]
        o_step, o_ant, o_rssi = np.empty(r1 - r0, np.int64), np.empty(r1 - r0, np.int32), np.empty(r1 - r0)
        m = P._segment_obs(reads.ts_us, reads.antenna, rssi, r0, r1, S, n_ant, o_step, o_ant, o_rssi,
                           np.full(n_ant, -1, np.int64), np.zeros(n_ant, np.int64))
        T = int(step_off[g + 1] - step_off[g])
        out = np.empty(T, np.int16)
        P._viterbi_segment(T, o_step, o_ant, o_rssi, m, base, table, ptr, idx, logp, emit_of, out)
        assert np.array_equal(states[step_off[g]:step_off[g + 1]], out), f"segment {g}"


def test_decode_stats_match_decoded_paths(fitted):
    """EM statistics of the decoded paths (per block, summed) equal a plain count over the steps."""
    reads, model = fitted
    seg_off = P.segment_reads(reads, 1200.0)
    (states, steps, det, ssum, ssq, tr), step_off, *_ = P._run_decode(reads, model, seg_off, True, n_blocks=3)
    n_s, n_ant = model.n_states, model.p_detect.shape[1]
    assert steps.shape[0] == 3
    assert np.array_equal(steps.sum(0), np.bincount(states, minlength=n_s))
    seg_of_step = np.repeat(np.arange(len(seg_off) - 1), np.diff(step_off))
    same = seg_of_step[1:] == seg_of_step[:-1]
    ref_tr = np.zeros((n_s, n_s))
    np.add.at(ref_tr, (states[:-1][same], states[1:][same]), 1.0)
    assert np.array_equal(tr.sum(0), ref_tr)
    o_step, o_ant, o_rssi = P._all_obs(reads.ts_us, reads.antenna, reads.rssi_dbm.astype(np.float64), seg_off,
                                       step_off, S, n_ant)
    ref_det = np.zeros((n_s, n_ant))
    ref_sum = np.zeros((n_s, n_ant))
    np.add.at(ref_det, (states[o_step], o_ant), 1.0)
    np.add.at(ref_sum, (states[o_step], o_ant), o_rssi)
    assert np.array_equal(det.sum(0), ref_det)
    assert np.allclose(ssum.sum(0), ref_sum, rtol=1e-12)
    assert np.all(ssq.sum(0) >= 0) and np.allclose(ssq.sum(0)[ref_det == 0], 0.0)
