"""Accuracy of estimated visits against ground truth (SPEC section 3, issue 6).

An estimated visit matches a true visit when they have the same tag and zone and their time
overlap / union >= ``min_iou`` (0.5). Each visit matches at most one other (greedy by overlap,
highest first). Pass-bys are excluded on both sides (they are not visits).

Figures: visit precision / recall / F1, median relative dwell error over matched pairs
(|est - true| / true), and per-counter visitors (distinct tags with a visit) estimated vs true.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["VisitAccuracy", "match_visits", "visit_accuracy", "simulation_visits"]


@dataclass(frozen=True)
class VisitAccuracy:
    n_true: int
    n_est: int
    n_matched: int
    precision: float
    recall: float
    f1: float
    dwell_rel_err_median: float                        # over matched pairs (fraction, 0.15 = 15 %)
    visitors_true: dict[int, int] = field(default_factory=dict)   # zone -> distinct tags
    visitors_est: dict[int, int] = field(default_factory=dict)
    visitors_rel_err: dict[int, float] = field(default_factory=dict)  # zone -> (est - true) / true

    @property
    def visitors_max_abs_rel_err(self) -> float:
        vals = [abs(v) for v in self.visitors_rel_err.values() if np.isfinite(v)]
        return max(vals) if vals else float("nan")

    def visitors_share_within(self, tolerance: float = 0.10) -> float:
        """Share of counters whose estimated visitors are within ``tolerance`` (0.10 = 10 %) of the truth."""
        vals = list(self.visitors_rel_err.values())
        return float(np.mean([abs(v) <= tolerance for v in vals])) if vals else 0.0

    @property
    def visitors_total_rel_err(self) -> float:
        t = sum(self.visitors_true.values())
        return (sum(self.visitors_est.values()) - t) / t if t else float("nan")

    def summary(self) -> str:
        return (f"visits true={self.n_true} est={self.n_est} matched={self.n_matched} "
                f"P={self.precision:.3f} R={self.recall:.3f} F1={self.f1:.3f} "
                f"dwell_med_rel_err={self.dwell_rel_err_median:.3f} "
                f"visitors max|rel err|={self.visitors_max_abs_rel_err:.3f} "
                f"total rel err={self.visitors_total_rel_err:+.3f}")


def match_visits(t_tag: np.ndarray, t_zone: np.ndarray, t_start: np.ndarray, t_end: np.ndarray,
                 e_tag: np.ndarray, e_zone: np.ndarray, e_start: np.ndarray, e_end: np.ndarray,
                 min_iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Greedy one-to-one matching by IoU >= ``min_iou``; returns (true index, estimated index) pairs."""
    t_tag, t_zone = np.asarray(t_tag, np.int64), np.asarray(t_zone, np.int64)
    e_tag, e_zone = np.asarray(e_tag, np.int64), np.asarray(e_zone, np.int64)
    t_start, t_end = np.asarray(t_start, np.int64), np.asarray(t_end, np.int64)
    e_start, e_end = np.asarray(e_start, np.int64), np.asarray(e_end, np.int64)
    cand_t: list[np.ndarray] = []
    cand_e: list[np.ndarray] = []
    cand_iou: list[np.ndarray] = []
    # group both sides by (tag, zone); candidates are pairs within a group that overlap
    key_t = t_tag * 1_000_003 + t_zone
    key_e = e_tag * 1_000_003 + e_zone
    ot, oe = np.argsort(key_t, kind="stable"), np.argsort(key_e, kind="stable")
    kt, ke = key_t[ot], key_e[oe]
    ut, st = np.unique(kt, return_index=True)
    bounds_t = dict(zip(ut.tolist(), zip(st.tolist(), np.append(st[1:], len(kt)).tolist())))
    ue, se = np.unique(ke, return_index=True)
    for k, s0, s1 in zip(ue.tolist(), se.tolist(), np.append(se[1:], len(ke)).tolist()):
        if k not in bounds_t:
            continue
        a0, a1 = bounds_t[k]
        ti, ei = ot[a0:a1], oe[s0:s1]
        inter = (np.minimum(t_end[ti][:, None], e_end[ei][None, :])
                 - np.maximum(t_start[ti][:, None], e_start[ei][None, :])).clip(0)
        union = (np.maximum(t_end[ti][:, None], e_end[ei][None, :])
                 - np.minimum(t_start[ti][:, None], e_start[ei][None, :]))
        iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        ii, jj = np.nonzero(iou >= min_iou)
        cand_t.append(ti[ii])
        cand_e.append(ei[jj])
        cand_iou.append(iou[ii, jj])
    if not cand_t:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    ct, ce, ci = np.concatenate(cand_t), np.concatenate(cand_e), np.concatenate(cand_iou)
    order = np.lexsort((ce, ct, -ci))
    used_t: set[int] = set()
    used_e: set[int] = set()
    mt, me = [], []
    for i in order.tolist():
        a, b = int(ct[i]), int(ce[i])
        if a in used_t or b in used_e:
            continue
        used_t.add(a)
        used_e.add(b)
        mt.append(a)
        me.append(b)
    return np.array(mt, np.int64), np.array(me, np.int64)


def visit_accuracy(t_tag: np.ndarray, t_zone: np.ndarray, t_start: np.ndarray, t_end: np.ndarray,
                   e_tag: np.ndarray, e_zone: np.ndarray, e_start: np.ndarray, e_end: np.ndarray,
                   min_iou: float = 0.5) -> VisitAccuracy:
    """Compare visits (pass-bys already removed on both sides); times in microseconds."""
    mt, me = match_visits(t_tag, t_zone, t_start, t_end, e_tag, e_zone, e_start, e_end, min_iou)
    n_t, n_e, n_m = len(t_tag), len(e_tag), len(mt)
    precision = n_m / n_e if n_e else float("nan")
    recall = n_m / n_t if n_t else float("nan")
    f1 = 2 * n_m / (n_t + n_e) if (n_t + n_e) else float("nan")
    t_dw = (np.asarray(t_end, np.int64) - np.asarray(t_start, np.int64))[mt].astype(float)
    e_dw = (np.asarray(e_end, np.int64) - np.asarray(e_start, np.int64))[me].astype(float)
    rel = np.abs(e_dw - t_dw) / np.maximum(t_dw, 1.0)
    dwell_err = float(np.median(rel)) if rel.size else float("nan")

    def visitors(tag: np.ndarray, zone: np.ndarray) -> dict[int, int]:
        if len(tag) == 0:
            return {}
        pairs = np.unique(np.column_stack((np.asarray(zone, np.int64), np.asarray(tag, np.int64))), axis=0)
        z, c = np.unique(pairs[:, 0], return_counts=True)
        return dict(zip(z.tolist(), c.tolist()))

    vt, ve = visitors(t_tag, t_zone), visitors(e_tag, e_zone)
    rel_err = {z: (ve.get(z, 0) - n) / n for z, n in vt.items() if n > 0}
    for z in ve:
        if z not in vt:
            rel_err[z] = float("inf")
    return VisitAccuracy(n_t, n_e, n_m, precision, recall, f1, dwell_err, vt, ve, rel_err)


def simulation_visits(sim, layout, refine: bool = True):  # type: ignore[no-untyped-def]
    """The analyze job's pipeline (fit the presence model, then :func:`analytics.pipeline.analyze_block`)
    run straight on a simulation's reads, for comparing with its truth.

    ``sim``: a :class:`simulators.sim.Simulation` of ``layout``. Returns ``(truth, estimate, info)``:
    truth and estimate each a tuple ``(tag, zone, start_us, end_us)`` of customer counter visits without
    pass-bys, zone as an index into :func:`analytics.data.zone_map` of the layout
    (``visit_accuracy(*truth, *estimate)``); ``info`` the run's size and timings (seconds): reads,
    sim_s (generating the reads), fit_s, decode_visits_s, positions_refine_s, states, antennas.
    """
    import time

    from analytics.data import zone_map
    from analytics.pipeline import analyze_block
    from analytics.presence import fit_presence_model
    from storeflow.settings import store_params

    t0 = time.perf_counter()
    reads, am = sim.reads()
    t_sim = time.perf_counter() - t0
    zm = zone_map(layout)
    params = store_params(layout.settings)
    t0 = time.perf_counter()
    model = fit_presence_model(reads, am, zm, segment_gap_s=params["trip_gap_s"])
    t_fit = time.perf_counter() - t0
    customer = sim.truth.customer
    blk = analyze_block(reads, am, layout, zm, params, model, customer[reads.tag], refine=refine)
    v = blk.visits
    keep = np.array([k == "counter" for k in zm.kind])[v.zone] & ~v.passby & customer[v.tag]
    tv = sim.truth.visits[~sim.truth.visits["passby"]]
    code = {z: i for i, z in enumerate(zm.zone)}
    truth = (np.asarray(tv["tag"], np.int64), np.array([code[z] for z in tv["zone"]], np.int64),
             np.asarray(tv["start_us"], np.int64), np.asarray(tv["end_us"], np.int64))
    estimate = (v.tag[keep].astype(np.int64), v.zone[keep].astype(np.int64), v.start_us[keep], v.end_us[keep])
    info = {"reads": len(reads), "sim_s": t_sim, "fit_s": t_fit, "decode_visits_s": blk.decode_visits_s,
            "positions_refine_s": blk.positions_refine_s, "states": model.n_states, "antennas": len(am)}
    return truth, estimate, info
