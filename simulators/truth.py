"""Ground truth from physical presence: positions at 2 Hz, visits and pass-bys, trips, KPIs, heatmaps.

Visits follow SPEC section 3 applied to true positions: one continuous stay of a customer tag in a
counter polygon; absences up to ``gap_s`` that are not spent in another counter do not split it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numba
import numpy as np

from storeflow.layout import Layout
from storeflow.settings import store_params
from simulators.geometry import ZoneIndex
from simulators.trajectory import Trajectories

__all__ = ["Truth", "POSITION_DTYPE", "VISIT_DTYPE", "TRIP_DTYPE", "SAMPLE_US"]

SAMPLE_US = 500_000  # 2 Hz
POSITION_DTYPE = np.dtype([("tag", "u4"), ("ts_us", "i8"), ("floor", "i2"), ("x_m", "f4"), ("y_m", "f4")])
VISIT_DTYPE = np.dtype([("tag", "u4"), ("zone", "U16"), ("start_us", "i8"), ("end_us", "i8"),
                        ("dwell_s", "f8"), ("passby", "?")])
TRIP_DTYPE = np.dtype([("tag", "u4"), ("start_us", "i8"), ("end_us", "i8")])


@numba.njit(cache=True)
def _runs(zone: np.ndarray, ts: np.ndarray, dt: np.int64, gap_us: np.int64):
    """Visits (zone, start, end) from one tag's time-ordered samples (zone -1 = in no counter)."""
    n = zone.shape[0]
    oz = np.empty(n, np.int32)
    os_ = np.empty(n, np.int64)
    oe = np.empty(n, np.int64)
    m = 0
    cur = -1
    start = np.int64(0)
    last = np.int64(0)
    for i in range(n):
        z = zone[i]
        t = ts[i]
        if cur >= 0:
            gap = t - (last + dt)
            if z == cur and gap <= gap_us:
                last = t
                continue
            if z == cur or z >= 0 or gap > gap_us:
                oz[m] = cur
                os_[m] = start
                oe[m] = last + dt
                m += 1
                cur = -1
            else:
                continue  # short absence in no counter: the visit stays open
        if z >= 0:
            cur = z
            start = t
            last = t
    if cur >= 0:
        oz[m] = cur
        os_[m] = start
        oe[m] = last + dt
        m += 1
    return oz[:m], os_[:m], oe[:m]


@dataclass
class Truth:
    """Ground truth of one simulation (customer = tag kind ``member`` or unknown)."""

    layout: Layout
    traj: Trajectories
    tag_kind: np.ndarray
    tag_member: np.ndarray
    start_us: int
    end_us: int
    purchases: np.ndarray
    door_entries_true: np.ndarray = field(repr=False)  # (ts_us, door, n) of true entries (all shoppers)

    @cached_property
    def _params(self) -> dict[str, float]:
        return store_params(self.layout.settings)

    @cached_property
    def customer(self) -> np.ndarray:
        """Boolean per tag: counts as a customer (member or unknown tag)."""
        return np.isin(self.tag_kind, ["member", ""])

    def _tag_samples(self, tag: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        first, last = self._bounds
        if first[tag] < 0:
            e = np.zeros(0)
            return e.astype(np.int64), e.astype(np.int64), e, e
        lo = max(first[tag], self.start_us)
        hi = min(last[tag], self.end_us - 1)
        k0 = -(-(lo - self.start_us) // SAMPLE_US)
        k1 = (hi - self.start_us) // SAMPLE_US
        if k1 < k0:
            e = np.zeros(0)
            return e.astype(np.int64), e.astype(np.int64), e, e
        t0 = self.start_us + k0 * SAMPLE_US
        f, x, y = self.traj.sample(np.array([tag]), t0, SAMPLE_US, int(k1 - k0 + 1))
        ts = t0 + np.arange(k1 - k0 + 1, dtype=np.int64) * SAMPLE_US
        keep = f[:, 0] >= 0
        return ts[keep], f[keep, 0], x[keep, 0], y[keep, 0]

    @cached_property
    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.traj.bounds()

    def position_batches(self, tags_per_batch: int = 256, tags: np.ndarray | None = None):  # -> Iterator
        """True positions (POSITION_DTYPE, by tag then time) in batches of tags, without holding them all."""
        todo = np.arange(self.traj.n_tags) if tags is None else np.asarray(tags)
        for lo in range(0, todo.size, tags_per_batch):
            parts = []
            for tag in todo[lo:lo + tags_per_batch]:
                ts, f, x, y = self._tag_samples(int(tag))
                if ts.size == 0:
                    continue
                p = np.empty(ts.size, POSITION_DTYPE)
                p["tag"], p["ts_us"], p["floor"], p["x_m"], p["y_m"] = tag, ts, f, x, y
                parts.append(p)
            if parts:
                yield np.concatenate(parts)

    @cached_property
    def positions(self) -> np.ndarray:
        """True positions of every tag in the store, every 0.5 s (POSITION_DTYPE, by tag then time).

        Held in memory: for long, busy simulations use :meth:`position_batches`."""
        parts = list(self.position_batches())
        return np.concatenate(parts) if parts else np.zeros(0, POSITION_DTYPE)

    def _customer_batches(self):  # -> Iterator[np.ndarray]
        if "positions" in self.__dict__:  # already materialised
            pos = self.positions
            yield pos[self.customer[pos["tag"]]]
            return
        yield from self.position_batches(tags=np.flatnonzero(self.customer))

    @cached_property
    def _counter_index(self) -> ZoneIndex:
        return ZoneIndex.of(list(self.layout.counters))

    @cached_property
    def visits(self) -> np.ndarray:
        """True counter visits and pass-bys of customer tags (VISIT_DTYPE, by tag then start)."""
        zi = self._counter_index
        names = np.array([z.zone for z in zi.zones], dtype="U16")
        gap_us = np.int64(self._params["gap_s"] * 1e6)
        out = []
        for pos in self._customer_batches():
            zone = zi.lookup(pos["floor"], pos["x_m"], pos["y_m"])
            bounds = np.flatnonzero(np.diff(pos["tag"].astype(np.int64))) + 1
            for lo, hi in zip(np.concatenate(([0], bounds)), np.concatenate((bounds, [pos.size]))):
                if hi <= lo:
                    continue
                oz, os_, oe = _runs(zone[lo:hi], pos["ts_us"][lo:hi], np.int64(SAMPLE_US), gap_us)
                if oz.size == 0:
                    continue
                v = np.empty(oz.size, VISIT_DTYPE)
                v["tag"] = pos["tag"][lo]
                v["zone"] = names[oz]
                v["start_us"], v["end_us"] = os_, oe
                v["dwell_s"] = (oe - os_) / 1e6
                v["passby"] = v["dwell_s"] < self._params["min_dwell_s"]
                out.append(v)
        return np.concatenate(out) if out else np.zeros(0, VISIT_DTYPE)

    @cached_property
    def trips(self) -> np.ndarray:
        """Customer trips: presence with no gap over ``trip_gap_s`` (TRIP_DTYPE)."""
        gap = self._params["trip_gap_s"] * 1e6
        out = []
        for pos in self._customer_batches():
            if pos.size == 0:
                continue
            new = np.ones(pos.size, bool)
            new[1:] = (pos["tag"][1:] != pos["tag"][:-1]) | (np.diff(pos["ts_us"]) > gap)
            starts = np.flatnonzero(new)
            ends = np.concatenate((starts[1:], [pos.size])) - 1
            t = np.empty(starts.size, TRIP_DTYPE)
            t["tag"] = pos["tag"][starts]
            t["start_us"] = pos["ts_us"][starts]
            t["end_us"] = pos["ts_us"][ends] + SAMPLE_US
            out.append(t)
        return np.concatenate(out) if out else np.zeros(0, TRIP_DTYPE)

    # --- KPIs ----------------------------------------------------------------------------------
    def _period(self, from_us: int | None, to_us: int | None) -> tuple[int, int]:
        return (self.start_us if from_us is None else int(from_us), self.end_us if to_us is None else int(to_us))

    def _seen_tags(self, lo: int, hi: int) -> np.ndarray:
        tr = self.trips
        sel = (tr["start_us"] < hi) & (tr["end_us"] > lo)
        return np.unique(tr["tag"][sel])

    def counter_kpis(self, from_us: int | None = None, to_us: int | None = None) -> list[dict]:
        """SPEC counter KPIs per counter zone (zero-visit counters included) from true presence."""
        lo, hi = self._period(from_us, to_us)
        v = self.visits
        v = v[(v["start_us"] >= lo) & (v["start_us"] < hi)]
        seen = len(self._seen_tags(lo, hi))
        pur = self.purchases
        pur_in = pur[(pur["ts_us"] >= lo) & (pur["ts_us"] < hi)]
        window = self._params["purchase_window_s"] * 1e6
        trips = self.trips
        out = []
        for z in self.layout.counters:
            zv = v[(v["zone"] == z.zone) & ~v["passby"]]
            visitors = np.unique(zv["tag"])
            dwell = zv["dwell_s"]
            buyers = 0
            zp = pur[pur["zone"] == z.zone]
            for tag in visitors:
                member = self.tag_member[tag]
                if not member:
                    continue
                mp = zp[zp["member"] == member]
                if mp.size == 0:
                    continue
                tv = zv[zv["tag"] == tag]
                tt = trips[trips["tag"] == tag]
                hit = False
                for tr in tt:
                    if not np.any((tv["start_us"] >= tr["start_us"]) & (tv["start_us"] < tr["end_us"])):
                        continue
                    if np.any((mp["ts_us"] >= tr["start_us"]) & (mp["ts_us"] <= tr["end_us"] + window)):
                        hit = True
                buyers += hit
            revenue = float(pur_in["amount"][pur_in["zone"] == z.zone].sum())
            n_vis = int(visitors.size)
            out.append({
                "zone": z.zone,
                "visitors": n_vis,
                "visits": int(zv.size),
                "passbys": int(((v["zone"] == z.zone) & v["passby"]).sum()),
                "dwell_median_s": float(np.median(dwell)) if dwell.size else None,
                "dwell_p90_s": float(np.percentile(dwell, 90)) if dwell.size else None,
                "dwell_total_s": float(dwell.sum()),
                "buyers": int(buyers),
                "conversion": buyers / n_vis if n_vis else None,
                "revenue": round(revenue, 2),
                "revenue_per_visitor": revenue / n_vis if n_vis else None,
                "attraction": n_vis / seen if seen else 0.0,
            })
        return out

    def store_kpis(self, from_us: int | None = None, to_us: int | None = None) -> dict:
        """SPEC store KPIs from the truth (footfall = people who really came in)."""
        lo, hi = self._period(from_us, to_us)
        d = self.door_entries_true
        footfall = int(d["n"][(d["ts_us"] >= lo) & (d["ts_us"] < hi)].sum())
        pur = self.purchases
        tx = int(np.unique(pur["receipt"][(pur["ts_us"] >= lo) & (pur["ts_us"] < hi)]).size)
        tr = self.trips
        tr = tr[(tr["start_us"] >= lo) & (tr["start_us"] < hi)]
        return {
            "footfall": footfall,
            "tags_seen": int(len(self._seen_tags(lo, hi))),
            "transactions": tx,
            "conversion": tx / footfall if footfall else None,
            "trip_median_s": float(np.median((tr["end_us"] - tr["start_us"]) / 1e6)) if tr.size else None,
        }

    def heatmap(self, floor: int, cell_m: float = 0.5) -> np.ndarray:
        """[nx, ny] customer tag-seconds per cell of ``floor`` from true positions (cell (0,0) at origin)."""
        fl = self.layout.floor(floor)
        nx, ny = int(np.ceil(fl.width_m / cell_m - 1e-9)), int(np.ceil(fl.depth_m / cell_m - 1e-9))
        h = np.zeros(nx * ny, np.float64)
        for pos in self._customer_batches():
            pos = pos[pos["floor"] == floor]
            ix = np.clip((pos["x_m"] / cell_m).astype(np.int64), 0, nx - 1)
            iy = np.clip((pos["y_m"] / cell_m).astype(np.int64), 0, ny - 1)
            h += np.bincount(ix * ny + iy, minlength=nx * ny) * (SAMPLE_US / 1e6)
        return h.reshape(nx, ny)
