"""``simulate()``: one store, one period, known ground truth, reads streamed in time order."""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import yaml

from analytics.data import AntennaMap, Reads, antenna_map
from storeflow.contract import BadInput
from storeflow.layout import Layout, load_layout
from simulators.rf import SIM_READ_DTYPE, AntennaSetup, generate_slice
from simulators.scenario import Scenario, get_scenario
from simulators.shoppers import World, plan_people
from simulators.trajectory import Trajectories
from simulators.truth import Truth

__all__ = ["simulate", "Simulation", "sample_layout_path", "SIM_READ_DTYPE", "TAG_DTYPE", "MEMBER_DTYPE",
           "DOOR_DTYPE", "PURCHASE_DTYPE", "default_start_us"]

TAG_DTYPE = np.dtype([("epc", "U24"), ("member", "U16"), ("kind", "U6")])
MEMBER_DTYPE = np.dtype([("member", "U16"), ("tier", "U8"), ("joined", "U10")])
DOOR_DTYPE = np.dtype([("ts_us", "i8"), ("door", "u2"), ("entries", "i4"), ("exits", "i4")])
PURCHASE_DTYPE = np.dtype([("ts_us", "i8"), ("member", "U16"), ("zone", "U16"), ("amount", "f8"),
                           ("receipt", "U24")])
_STORES = Path(__file__).parent / "stores"
_SLICE_S = 10.0       # RF generation slice (seconds)
_STEP_US = 100_000    # position sampling inside a slice (0.1 s)


def sample_layout_path(name: str) -> Path:
    """Path of a bundled sample layout: ``boutique`` or ``department``."""
    p = _STORES / f"{name}.yaml"
    if not p.is_file():
        known = ", ".join(sorted(q.stem for q in _STORES.glob("*.yaml")))
        raise BadInput(f"unknown sample store {name!r} (known: {known})")
    return p


def default_start_us(layout: Layout) -> int:
    """2026-11-20 10:00 in the store's time zone, as epoch µs."""
    dt = datetime(2026, 11, 20, 10, 0, tzinfo=ZoneInfo(layout.timezone))
    return int(dt.timestamp()) * 1_000_000


class Simulation:
    """A simulated store period: sensors' outputs (reads streamed) plus ground truth."""

    def __init__(self, layout: Layout, scenario: Scenario, seed: int, start_us: int, end_us: int,
                 traj: Trajectories, tags: np.ndarray, members: np.ndarray, door_counts: np.ndarray,
                 purchases: np.ndarray, truth: Truth, setup: AntennaSetup) -> None:
        self.layout = layout
        self.scenario = scenario
        self.seed = seed
        self.start_us = start_us
        self.end_us = end_us
        self.tags = tags
        self.members = members
        self.door_counts = door_counts
        self.purchases = purchases
        self.truth = truth
        self._traj = traj
        self._setup = setup
        #: seconds spent generating reads during the last :meth:`write` (for the CLI summary)
        self.read_generation_s = 0.0

    def __repr__(self) -> str:
        return (f"Simulation(store={self.layout.store!r}, scenario={self.scenario.name!r}, seed={self.seed}, "
                f"tags={len(self.tags)}, hours={(self.end_us - self.start_us) / 3.6e9:g})")

    # --- reads ---------------------------------------------------------------------------------
    def _slices(self) -> Iterator[tuple[int, np.ndarray]]:
        """(slice end, unsorted reads of the slice), in slice order (deterministic per slice)."""
        rf = self.scenario.rf
        first, last = self._traj.bounds()
        slice_us = int(_SLICE_S * 1e6)
        n_slices = int(math.ceil((self.end_us - self.start_us) / slice_us))
        ss = np.random.SeedSequence([self.seed, 0x5EED])
        shadow_seed = int(ss.generate_state(1, np.uint64)[0])
        base = int(ss.generate_state(2, np.uint32)[1])
        for k in range(n_slices):
            t0 = self.start_us + k * slice_us
            t1 = min(t0 + slice_us, self.end_us)
            act = np.flatnonzero((first >= 0) & (first < t1) & (last > t0))
            if act.size == 0:
                continue
            n_steps = int(math.ceil((t1 - t0) / _STEP_US))
            f, x, y = self._traj.sample(act, t0, _STEP_US, n_steps)
            yield t1, generate_slice(self._setup, rf, (base + 7919 * k) % 2**32, shadow_seed, self.start_us,
                                     t0, _STEP_US, act, f, x, y)

    def read_chunks(self, chunk_reads: int = 1_000_000) -> Iterator[np.ndarray]:
        """All reads (SIM_READ_DTYPE) in time order (reader clock), in chunks of about ``chunk_reads``.

        Reads are generated slice by slice and released once no later slice can precede them
        (clock skew is bounded), so memory stays at a few slices whatever the period."""
        s = self._setup
        # a later slice's reads start at its true start; on a reader's clock at most hold_us earlier
        hold_us = (int(np.max(np.abs(s.skew_us))) if s.skew_us.size else 0) + 1000 \
            + (int(np.max(np.abs(s.drift_ppm)) * 1e-6 * (self.end_us - self.start_us)) if s.drift_ppm.size else 0)
        pending = np.zeros(0, SIM_READ_DTYPE)
        out: list[np.ndarray] = []
        n_out = 0
        for t1, part in self._slices():
            pending = np.concatenate((pending, part))
            pending = pending[np.argsort(pending["ts_us"], kind="stable")]
            cut = int(np.searchsorted(pending["ts_us"], t1 - hold_us, side="left"))
            if cut:
                out.append(pending[:cut])
                n_out += cut
                pending = pending[cut:]
            while n_out >= chunk_reads:
                allr = np.concatenate(out)
                yield allr[:chunk_reads]
                rest = allr[chunk_reads:]
                out, n_out = ([rest] if rest.size else []), int(rest.size)
        if pending.size:
            out.append(np.sort(pending, order="ts_us", kind="stable"))
        if out:
            allr = np.concatenate(out)
            for i in range(0, allr.size, chunk_reads):
                yield allr[i:i + chunk_reads]

    def reads(self) -> tuple[Reads, AntennaMap]:
        """All reads as the analytics arrays (holds everything in memory: small simulations only)."""
        amap = antenna_map(self.layout)
        idx = amap.index()
        lut = {}
        for ri, r in enumerate(self.layout.readers):
            for a in r.antennas:
                lut[(ri, a.port)] = idx[(r.reader, a.port)]
        chunks = list(self.read_chunks())
        allr = np.concatenate(chunks) if chunks else np.zeros(0, SIM_READ_DTYPE)
        key = allr["reader"].astype(np.int64) * 256 + allr["port"]
        table = np.full(len(self.layout.readers) * 256, -1, np.int32)
        for (ri, p), ai in lut.items():
            table[ri * 256 + p] = ai
        return Reads.sorted_from(allr["tag"].astype(np.int32), allr["ts_us"], table[key],
                                 allr["rssi_cdbm"] / 100.0), amap

    # --- files ---------------------------------------------------------------------------------
    def write(self, out_dir: Path) -> dict[str, int]:
        """Write SPEC CSVs (reads, doors, tags, members, purchases), the layout and truth/ files.

        Returns row counts per file."""
        out = Path(out_dir)
        (out / "truth").mkdir(parents=True, exist_ok=True)
        counts: dict[str, int] = {}
        readers = [r.reader for r in self.layout.readers]
        epcs = self.tags["epc"]
        epc_dict = pa.array(epcs.tolist(), pa.string())
        reader_dict = pa.array(readers, pa.string())
        with open(out / "reads.csv", "wb") as fh:
            fh.write(b"ts,reader,antenna,epc,rssi\n")
            n = 0
            gen_s = 0.0
            chunks = self.read_chunks(500_000)
            while True:
                t = time.perf_counter()
                ch = next(chunks, None)
                gen_s += time.perf_counter() - t
                if ch is None:
                    break
                _append_csv(fh, {
                    "ts": ch["ts_us"],
                    "reader": pa.DictionaryArray.from_arrays(pa.array(ch["reader"].astype(np.int32)), reader_dict),
                    "antenna": ch["port"],
                    "epc": pa.DictionaryArray.from_arrays(pa.array(ch["tag"].astype(np.int32)), epc_dict),
                    "rssi": ch["rssi_cdbm"] / 100.0,
                })
                n += ch.size
            counts["reads.csv"] = n
            self.read_generation_s = gen_s
        doors = [d.door for d in self.layout.doors]
        _write_csv(out / "doors.csv", ["ts", "door", "entries", "exits"],
                   ((int(r["ts_us"]), doors[r["door"]], int(r["entries"]), int(r["exits"])) for r in self.door_counts))
        counts["doors.csv"] = len(self.door_counts)
        listed = self.tags[self.tags["kind"] != ""]
        _write_csv(out / "tags.csv", ["epc", "member", "kind"], ((t["epc"], t["member"], t["kind"]) for t in listed))
        counts["tags.csv"] = len(listed)
        _write_csv(out / "members.csv", ["member", "tier", "joined"], (tuple(m) for m in self.members.tolist()))
        counts["members.csv"] = len(self.members)
        _write_csv(out / "purchases.csv", ["ts", "member", "zone", "amount", "receipt"],
                   ((int(p["ts_us"]), p["member"], p["zone"], f"{p['amount']:.2f}", p["receipt"])
                    for p in self.purchases))
        counts["purchases.csv"] = len(self.purchases)
        (out / "layout.yaml").write_text(yaml.safe_dump(self.layout.to_dict(), sort_keys=False, allow_unicode=True),
                                         encoding="utf-8")
        t = self.truth
        with open(out / "truth" / "positions.csv", "wb") as fh:
            fh.write(b"epc,ts,floor,x_m,y_m\n")
            n = 0
            for pos in t.position_batches():
                _append_csv(fh, {
                    "epc": pa.DictionaryArray.from_arrays(pa.array(pos["tag"].astype(np.int32)), epc_dict),
                    "ts": pos["ts_us"], "floor": pos["floor"],
                    "x_m": np.round(pos["x_m"].astype(np.float64), 3), "y_m": np.round(pos["y_m"].astype(np.float64), 3),
                })
                n += pos.size
        counts["truth/positions.csv"] = n
        v = t.visits
        _write_csv(out / "truth" / "visits.csv", ["epc", "member", "zone", "start", "end", "dwell_s", "passby"],
                   ((epcs[r["tag"]], t.tag_member[r["tag"]], r["zone"], int(r["start_us"]), int(r["end_us"]),
                     f"{r['dwell_s']:.1f}", int(r["passby"])) for r in v))
        counts["truth/visits.csv"] = len(v)
        tr = t.trips
        _write_csv(out / "truth" / "trips.csv", ["epc", "start", "end"],
                   ((epcs[r["tag"]], int(r["start_us"]), int(r["end_us"])) for r in tr))
        counts["truth/trips.csv"] = len(tr)
        (out / "truth" / "counters.json").write_text(json.dumps(t.counter_kpis(), indent=1), encoding="utf-8")
        (out / "truth" / "store.json").write_text(json.dumps(t.store_kpis(), indent=1), encoding="utf-8")
        for f in self.layout.floors:
            h = t.heatmap(f.floor)
            ix, iy = np.nonzero(h)
            _write_csv(out / "truth" / f"heatmap_floor{f.floor}.csv", ["x_m", "y_m", "seconds"],
                       zip(((ix + 0.5) * 0.5).tolist(), ((iy + 0.5) * 0.5).tolist(), h[ix, iy].tolist()))
        meta = {"store": self.layout.store, "scenario": self.scenario.name, "seed": self.seed,
                "start_us": self.start_us, "end_us": self.end_us, "files": counts}
        (out / "truth" / "simulation.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return counts


def _append_csv(fh, columns: dict) -> None:  # type: ignore[no-untyped-def]
    """Append rows (no header, no quoting) to a binary file; columns are numpy or arrow arrays."""
    pacsv.write_csv(pa.table(columns), fh, pacsv.WriteOptions(include_header=False, quoting_style="none"))


def _write_csv(path: Path, header: list[str], rows) -> None:  # type: ignore[no-untyped-def]
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def _door_counts(layout: Layout, crossings: list[tuple[int, int, int, int]], sc: Scenario,
                 rng: np.random.Generator, start_us: int, end_us: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-door interval counts with counter error, and the true entries (ts, door, n)."""
    dp = sc.doors
    step = int(dp.interval_s * 1e6)
    n_int = int(math.ceil((end_us - start_us) / step))
    n_doors = max(1, len(layout.doors))
    ent = np.zeros((n_int, n_doors), np.int64)
    ext = np.zeros((n_int, n_doors), np.int64)
    true = []
    for ts, door, n, sign in crossings:
        if not start_us <= ts < end_us:
            continue
        k = (ts - start_us) // step
        counted = 0 if rng.random() < dp.miss_p else 1
        counted += int((rng.random(n - 1) >= dp.occlusion_p).sum()) if n > 1 else 0
        counted += int(rng.random() < dp.false_p)
        if sign > 0:
            ent[k, door] += counted
            true.append((ts, door, n))
        else:
            ext[k, door] += counted
    rows = np.zeros(n_int * len(layout.doors), DOOR_DTYPE)
    if layout.doors:
        kk, dd = np.meshgrid(np.arange(n_int), np.arange(len(layout.doors)), indexing="ij")
        rows["ts_us"] = start_us + kk.ravel() * step
        rows["door"] = dd.ravel()
        rows["entries"] = ent[:, : len(layout.doors)].ravel()
        rows["exits"] = ext[:, : len(layout.doors)].ravel()
    tr = np.array(true, dtype=[("ts_us", "i8"), ("door", "i4"), ("n", "i4")]) if true else \
        np.zeros(0, dtype=[("ts_us", "i8"), ("door", "i4"), ("n", "i4")])
    return rows, tr


def simulate(layout: Layout | str | Path, *, shoppers: int, hours: float, seed: int, scenario: str | Scenario = "easy",
             start_us: int | None = None) -> Simulation:
    """Simulate ``shoppers`` people over ``hours`` from ``start_us`` (default 2026-11-20 10:00 local).

    ``scenario``: a named scenario (``easy``, ``hard``) or a :class:`~simulators.scenario.Scenario`.

    Deterministic for a given seed. Reads are generated lazily by :meth:`Simulation.read_chunks`."""
    if not isinstance(layout, Layout):
        p = Path(layout)
        layout = load_layout(p if p.suffix in (".yaml", ".yml", ".json") else sample_layout_path(str(layout)))
    if shoppers < 0:
        raise BadInput(f"shoppers must be >= 0, got {shoppers}")
    if not hours > 0 or not math.isfinite(hours):
        raise BadInput(f"hours must be a positive number, got {hours}")
    if not layout.readers:
        raise BadInput(f"layout {layout.store!r} has no readers to simulate")
    sc = scenario if isinstance(scenario, Scenario) else get_scenario(scenario)
    start = default_start_us(layout) if start_us is None else int(start_us)
    end = start + int(round(hours * 3.6e9))
    root = np.random.SeedSequence(seed)
    s_world, s_people, s_rf, s_doors = root.spawn(4)
    world = World(layout, np.random.default_rng(s_world))
    plan = plan_people(world, sc, np.random.default_rng(s_people), shoppers, start, end)
    traj = Trajectories.from_lists(plan.waypoints)
    tags = np.zeros(len(plan.tag_epc), TAG_DTYPE)
    tags["epc"], tags["member"], tags["kind"] = plan.tag_epc, plan.tag_member, plan.tag_kind
    members = np.array(plan.members, dtype=MEMBER_DTYPE) if plan.members else np.zeros(0, MEMBER_DTYPE)
    purchases = np.array(sorted(plan.purchases), dtype=PURCHASE_DTYPE) if plan.purchases else \
        np.zeros(0, PURCHASE_DTYPE)
    purchases = purchases[(purchases["ts_us"] >= start) & (purchases["ts_us"] < end)]
    doors, true_entries = _door_counts(layout, plan.crossings, sc, np.random.default_rng(s_doors), start, end)
    setup = AntennaSetup.build(layout, sc.rf, np.random.default_rng(s_rf))
    truth = Truth(layout, traj, tags["kind"].copy(), tags["member"].copy(), start, end, purchases, true_entries)
    return Simulation(layout, sc, seed, start, end, traj, tags, members, doors, purchases, truth, setup)
