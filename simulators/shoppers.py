"""People in the store: arrivals, groups, itineraries, walking and browsing, staff, assets, purchases.

Every tagged person becomes a piecewise-linear trajectory: waypoints (t_us, floor, x_m, y_m);
the position between two waypoints is linear in time, on the floor of the earlier waypoint, and a
waypoint with floor -1 means "not in the store" until the next one. Untagged shoppers have no
trajectory but still cross doors and buy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from storeflow.layout import Layout, Zone
from simulators.geometry import NavGraph, ZoneIndex
from simulators.scenario import Scenario

__all__ = ["World", "Plan", "plan_people", "ARRIVAL_CURVES"]

#: Relative arrivals per store-local hour (index 0..23), weekday and weekend.
ARRIVAL_CURVES = {
    "weekday": np.array([0, 0, 0, 0, 0, 0, 0, 0, 0.05, 0.15, 0.45, 0.6, 0.8, 0.75, 0.65, 0.65,
                         0.7, 0.85, 1.0, 1.0, 0.8, 0.45, 0.1, 0.0]),
    "weekend": np.array([0, 0, 0, 0, 0, 0, 0, 0, 0.05, 0.2, 0.65, 0.9, 1.0, 1.0, 1.0, 1.0,
                         0.95, 0.9, 0.9, 0.8, 0.6, 0.35, 0.08, 0.0]),
}
TIER_BUY = {"regular": 1.0, "silver": 1.25, "gold": 1.55, "vip": 2.0, "": 0.7}
TIERS = ("regular", "silver", "gold", "vip")
TIER_P = (0.55, 0.25, 0.14, 0.06)
CATEGORY_PRICE = {"beauty": 450.0, "jewelry": 2600.0, "accessories": 1500.0, "shoes": 700.0, "watches": 2200.0,
                  "womenswear": 900.0, "menswear": 1100.0, "sports": 600.0, "kids": 300.0, "home": 350.0,
                  "appliances": 2400.0}


@dataclass
class Portal:
    """A counter's open side: a walkable point just outside it and the matching point just inside."""

    node: int
    out_xy: tuple[float, float]
    in_xy: tuple[float, float]


@dataclass
class Spot:
    zone: Zone
    portals: list[Portal]
    attraction: float
    shrink: tuple[float, float, float, float]  # browse bbox inside the polygon

    def __post_init__(self) -> None:
        self.index = ZoneIndex.of([self.zone])
        xs = sorted({p[0] for p in self.zone.polygon})
        ys = sorted({p[1] for p in self.zone.polygon})
        self.is_rect = len(self.zone.polygon) == 4 and len(xs) == 2 and len(ys) == 2


class World:
    """Static, per-layout simulation geometry: walking graph, counter portals, doors."""

    def __init__(self, layout: Layout, rng: np.random.Generator) -> None:
        self.layout = layout
        self.nav = NavGraph(layout)
        self.counters: list[Spot] = []
        self.rooms: dict[int, Spot] = {}
        self.checkouts: dict[int, Zone] = {}
        for z in layout.zones:
            if z.kind in ("counter", "staff_only"):
                spot = Spot(z, self._portals(z), float(rng.lognormal(0, 0.6)), self._browse_box(z))
                if not spot.portals:
                    spot.portals = [self._fallback_portal(z)]
                if z.kind == "counter":
                    self.counters.append(spot)
                else:
                    self.rooms.setdefault(z.floor, spot)
            elif z.kind == "checkout" and z.floor not in self.checkouts:
                self.checkouts[z.floor] = z
        self.counter_index = ZoneIndex.of([s.zone for s in self.counters])
        cents = np.array([self._centroid(s.zone) for s in self.counters]).reshape(-1, 2)
        self.c_x, self.c_y = cents[:, 0], cents[:, 1]
        self.c_floor = np.array([s.zone.floor for s in self.counters])
        self.c_attr = np.array([s.attraction for s in self.counters])
        self.c_cat = np.array([s.zone.category or "general" for s in self.counters])
        # counter portals as arrays, for "brushing" into counters along the way
        refs = [(ci, pi) for ci, sp in enumerate(self.counters) for pi in range(len(sp.portals))]
        self.p_ref = refs
        self.p_x = np.array([self.counters[ci].portals[pi].out_xy[0] for ci, pi in refs])
        self.p_y = np.array([self.counters[ci].portals[pi].out_xy[1] for ci, pi in refs])
        self.p_floor = np.array([self.counters[ci].zone.floor for ci, _ in refs])
        self.door_nodes = []
        for d in layout.doors:
            self.door_nodes.append(self.nav.node_at(d.floor, d.x, d.y))
        if not self.door_nodes:  # a layout without doors: people appear at the first walkable cell
            f = layout.floors[0]
            self.door_nodes.append(self.nav.node_at(f.floor, f.width_m / 2, 0.0))
        self.checkout_nodes = {fl: self.nav.node_at(fl, *self._centroid(z)) for fl, z in self.checkouts.items()}
        self.categories = sorted({s.zone.category or "general" for s in self.counters})

    @staticmethod
    def _centroid(z: Zone) -> tuple[float, float]:
        return (sum(p[0] for p in z.polygon) / len(z.polygon), sum(p[1] for p in z.polygon) / len(z.polygon))

    def _browse_box(self, z: Zone) -> tuple[float, float, float, float]:
        xs = [p[0] for p in z.polygon]
        ys = [p[1] for p in z.polygon]
        return (min(xs), min(ys), max(xs), max(ys))

    def _portals(self, z: Zone) -> list[Portal]:
        out = []
        poly = z.polygon
        idx = ZoneIndex.of([z])
        n = len(poly)
        for i in range(n):
            (x0, y0), (x1, y1) = poly[i], poly[(i + 1) % n]
            length = math.hypot(x1 - x0, y1 - y0)
            if length < 1.0:
                continue
            mx, my = (x0 + x1) / 2, (y0 + y1) / 2
            nx, ny = (y1 - y0) / length, -(x1 - x0) / length  # one of the normals
            for sgn in (1, -1):
                ox, oy = mx + sgn * nx * 0.9, my + sgn * ny * 0.9
                ix, iy = mx - sgn * nx * 0.6, my - sgn * ny * 0.6
                inside = idx.lookup(np.array([z.floor]), np.array([ix]), np.array([iy]))[0] == 0
                if inside and self.nav.is_free(z.floor, ox, oy):
                    out.append(Portal(self.nav.node_at(z.floor, ox, oy), (ox, oy), (ix, iy)))
                    break
        return out

    def _fallback_portal(self, z: Zone) -> Portal:
        cx, cy = self._centroid(z)
        node = self.nav.node_at(z.floor, cx, cy)
        _, nx, ny = self.nav.node_floor_xy(node)
        return Portal(node, (nx, ny), (cx, cy))

    def random_node(self, rng: np.random.Generator) -> int:
        """A random walkable node (any floor)."""
        fl = self.layout.floors[int(rng.integers(len(self.layout.floors)))].floor
        fx, fy = np.nonzero(self.nav.free[fl])
        k = int(rng.integers(fx.size))
        return self.nav.offset[fl] + int(fx[k]) * self.nav.free[fl].shape[1] + int(fy[k])

    def random_inside(self, rng: np.random.Generator, spot: Spot, margin: float = 0.4) -> tuple[float, float]:
        """A uniformly random point inside the spot's polygon, kept ``margin`` from its bbox edges."""
        x0, y0, x1, y1 = spot.shrink
        mx, my = min(margin, (x1 - x0) / 3), min(margin, (y1 - y0) / 3)
        for _ in range(50):
            x = x0 + mx + (x1 - x0 - 2 * mx) * rng.random()
            y = y0 + my + (y1 - y0 - 2 * my) * rng.random()
            if spot.is_rect or spot.index.lookup(np.array([spot.zone.floor]), np.array([x]), np.array([y]))[0] == 0:
                return x, y
        return spot.portals[0].in_xy


@dataclass
class Plan:
    """Everything the people model decided; trajectories are concatenated per tag."""

    tag_epc: list[str] = field(default_factory=list)
    tag_member: list[str] = field(default_factory=list)
    tag_kind: list[str] = field(default_factory=list)
    members: list[tuple[str, str, str]] = field(default_factory=list)
    waypoints: list[list[tuple[int, int, float, float]]] = field(default_factory=list)  # per tag
    crossings: list[tuple[int, int, int, int]] = field(default_factory=list)  # ts_us, door, n people, +1 in / -1 out
    purchases: list[tuple[int, str, str, float, str]] = field(default_factory=list)
    person_trips: list[tuple[int, int]] = field(default_factory=list)  # all shoppers incl. untagged


class _Walker:
    """Builds one group's waypoints while it walks and browses."""

    def __init__(self, world: World, rng: np.random.Generator, t_us: float, node: int, speed: float) -> None:
        self.w, self.rng, self.t, self.node, self.speed = world, rng, t_us, node, speed
        f, x, y = world.nav.node_floor_xy(node)
        self.pts: list[tuple[int, int, float, float]] = [(int(t_us), f, x, y)]

    @property
    def pos(self) -> tuple[int, float, float]:
        return self.pts[-1][1], self.pts[-1][2], self.pts[-1][3]

    def go(self, f: int, x: float, y: float, speed: float) -> None:
        _, x0, y0 = self.pos
        self.t += math.hypot(x - x0, y - y0) / max(speed, 0.05) * 1e6
        self.pts.append((int(self.t), f, x, y))

    def stay(self, seconds: float) -> None:
        self.t += seconds * 1e6
        f, x, y = self.pos
        self.pts.append((int(self.t), f, x, y))

    def walk_to(self, node: int, brush_p: float = 0.0) -> None:
        """Walk the straightened aisle path to a node, with lateral jitter, speed changes and pauses.

        With probability ``brush_p`` the walker steps briefly into a counter it passes (a pass-by)."""
        path = self.w.nav.path(self.node, node)
        brush_at = -1
        if brush_p > 0 and len(path) > 2 and self.rng.random() < brush_p and len(self.w.p_ref):
            brush_at = int(self.rng.integers(1, len(path) - 1))
        for i, (f, x, y) in enumerate(path[1:], start=1):
            if i == brush_at:
                self._brush()
            cf, _, _ = self.pos
            if f != cf:  # escalator: ride along its footprint on the floor left, arrive on the new one
                self.t += self._ride_s(path[i - 1], path[i]) * 1e6
                self.pts.append((int(self.t) - 1, cf, x, y))
                self.pts.append((int(self.t), f, x, y))
                continue
            if 0 < i < len(path) - 1:
                jx, jy = self.rng.uniform(-0.3, 0.3, 2)
                if self.w.nav.is_free(f, x + jx, y + jy):
                    x, y = x + jx, y + jy
            self.go(f, x, y, self.speed * self.rng.uniform(0.8, 1.2))
            if self.rng.random() < 0.05:
                self.stay(self.rng.uniform(2, 10))
        self.node = node

    def _brush(self) -> None:
        """Step into the counter whose open side is nearest (within 6 m) and straight back out."""
        f, x, y = self.pos
        d = np.hypot(self.w.p_x - x, self.w.p_y - y) + np.where(self.w.p_floor == f, 0.0, 1e9)
        k = int(np.argmin(d))
        if d[k] > 6.0:
            return
        ci, pi = self.w.p_ref[k]
        portal = self.w.counters[ci].portals[pi]
        (ox, oy), (ix, iy) = portal.out_xy, portal.in_xy
        frac = (0.9 + self.rng.uniform(0.2, 1.0)) / 1.5  # out point is 0.9 m outside, in point 0.6 m inside
        self.go(f, ox, oy, self.speed)
        self.go(f, ox + (ix - ox) * frac, oy + (iy - oy) * frac, self.speed * 0.7)
        self.stay(self.rng.uniform(0.0, 3.0))
        self.go(f, ox, oy, self.speed * 0.8)

    def _ride_s(self, a: tuple[int, float, float], b: tuple[int, float, float]) -> float:
        nav = self.w.nav
        na, nb = nav.node_at(*a), nav.node_at(*b)
        for u, v, ride_s in nav.escalators:
            if u == na and v == nb:
                return ride_s
        return float(np.median([r for _, _, r in nav.escalators])) if nav.escalators else 25.0

    def browse(self, spot: Spot, portal: Portal, dwell_s: float, exit_portal: Portal) -> None:
        """Enter through a portal, wander between random points for ``dwell_s``, leave via exit_portal."""
        f = spot.zone.floor
        self.go(f, *portal.out_xy, self.speed)
        self.go(f, *portal.in_xy, 0.8)
        t_end = self.t + dwell_s * 1e6
        while True:
            pause = min(self.rng.exponential(12.0), max(0.0, (t_end - self.t) / 1e6))
            self.stay(pause)
            if self.t >= t_end:
                break
            x, y = self.w.random_inside(self.rng, spot)
            self.go(f, x, y, self.rng.uniform(0.3, 0.7))
            if self.t >= t_end:
                break
        self.go(f, *exit_portal.in_xy, 0.8)
        self.go(f, *exit_portal.out_xy, 0.8)
        self.node = exit_portal.node

    def glance(self, spot: Spot, portal: Portal) -> None:
        """Step into a counter and straight back out (a pass-by)."""
        f = spot.zone.floor
        self.go(f, *portal.out_xy, self.speed)
        self.go(f, *portal.in_xy, 0.8)
        self.stay(self.rng.uniform(0.5, 5.0))
        self.go(f, *portal.out_xy, 0.8)
        self.node = portal.node

    def walk_through(self, spot: Spot, a: Portal, b: Portal) -> None:
        f = spot.zone.floor
        self.go(f, *a.out_xy, self.speed)
        self.go(f, *a.in_xy, self.speed)
        self.go(f, *b.in_xy, self.speed * 0.9)
        self.go(f, *b.out_xy, self.speed)
        self.node = b.node


def _local_day_kind(start_us: int, tz: str) -> tuple[str, float]:
    dt = datetime.fromtimestamp(start_us / 1e6, ZoneInfo(tz))
    kind = "weekend" if dt.weekday() >= 5 else "weekday"
    return kind, dt.hour + dt.minute / 60 + dt.second / 3600


def arrival_times(rng: np.random.Generator, n: int, start_us: int, hours: float, tz: str,
                  peak_power: float = 1.0) -> np.ndarray:
    """``n`` arrival times (epoch µs) over [start, start + hours) following the daily hour curve."""
    if n == 0:
        return np.zeros(0, np.int64)
    edges_s = np.arange(0, hours * 3600 + 60, 60.0)[: int(math.ceil(hours * 60)) + 1]
    edges_s[-1] = hours * 3600
    mids = start_us + (edges_s[:-1] + edges_s[1:]) / 2 * 1e6
    wts = np.empty(mids.size)
    for i, m in enumerate(mids):
        kind, h = _local_day_kind(int(m), tz)
        wts[i] = ARRIVAL_CURVES[kind][int(h) % 24]
    wts = np.maximum(wts, 0.02) ** peak_power * np.diff(edges_s)
    # leave the last 10 minutes without arrivals when the window is long enough
    if hours > 0.5:
        wts[edges_s[1:] > hours * 3600 - 600] = 0.0
    cdf = np.concatenate(([0.0], np.cumsum(wts)))
    cdf /= cdf[-1]
    u = rng.random(n)
    k = np.clip(np.searchsorted(cdf, u, side="right") - 1, 0, wts.size - 1)
    frac = (u - cdf[k]) / np.maximum(cdf[k + 1] - cdf[k], 1e-12)
    return np.sort((start_us + (edges_s[k] + frac * np.diff(edges_s)[k]) * 1e6).astype(np.int64))


def _dwell_s(rng: np.random.Generator, sc: Scenario) -> float:
    c = sc.crowd
    if rng.random() < c.dwell_tail_p:
        d = 180.0 * (1 - rng.random()) ** (-1 / c.dwell_tail_alpha)
    else:
        d = c.dwell_median_s * math.exp(rng.normal(0, c.dwell_sigma))
    return float(min(max(d, 12.0), c.dwell_max_s))


def plan_people(world: World, sc: Scenario, rng: np.random.Generator, shoppers: int, start_us: int,
                end_us: int) -> Plan:
    """Decide who comes when, where they go, what they buy; staff shifts and fixed asset tags."""
    layout = world.layout
    plan = Plan()
    c = sc.crowd
    hours = (end_us - start_us) / 3.6e9
    epc_rng = np.random.default_rng(rng.integers(0, 2**63))  # EPCs random: they must not reveal the tag's role
    used_epcs: set[str] = set()

    def new_tag(kind: str, member: str) -> int:
        i = len(plan.tag_epc)
        while True:
            epc = f"E280{int(epc_rng.integers(0, 2**40)):010X}{int(epc_rng.integers(0, 2**40)):010X}"
            if epc not in used_epcs:
                break
        used_epcs.add(epc)
        plan.tag_epc.append(epc)
        plan.tag_member.append(member)
        plan.tag_kind.append(kind)
        plan.waypoints.append([])
        return i

    # --- the member base (most members do not come today) -----------------------------------
    n_members = max(20, int(shoppers * c.member_share * 3))
    join_days = rng.integers(0, 6 * 365, n_members)
    base = np.datetime64("2026-11-01")
    member_tags = []
    for k in range(n_members):
        mid = f"M{k + 1:07d}"
        tier = TIERS[int(rng.choice(4, p=TIER_P))]
        plan.members.append((mid, tier, str(base - np.timedelta64(int(join_days[k]), "D"))))
        member_tags.append(new_tag("member", mid))
    member_order = rng.permutation(n_members)
    next_member = 0

    # --- staff and assets --------------------------------------------------------------------
    per_counter = float(layout.simulation.get("staff_per_counter", 1)) if layout.simulation else 1.0
    for spot in world.counters:
        area = _area(spot.zone)
        n_staff = max(1, int(round(per_counter * (2 if area >= 45 else 1))))
        for _ in range(n_staff):
            t = new_tag("staff", "")
            plan.waypoints[t] = _staff_day(world, rng, spot, start_us, end_us)
        for _ in range(rng.poisson(c.assets_per_counter)):
            t = new_tag("asset", "")
            x, y = world.random_inside(rng, spot, 0.2)
            plan.waypoints[t] = [(start_us, spot.zone.floor, x, y), (end_us, spot.zone.floor, x, y)]

    # --- shoppers, in groups ------------------------------------------------------------------
    sizes = []
    left = shoppers
    while left > 0:
        g = int(rng.choice(len(c.group_sizes), p=np.array(c.group_sizes) / sum(c.group_sizes))) + 1
        g = min(g, left)
        sizes.append(g)
        left -= g
    arrivals = arrival_times(rng, len(sizes), start_us, hours, layout.timezone, c.arrival_peak_power)
    n_stops_mean = 2.0 + min(8.0, len(world.counters) / 8.0)
    receipt_no = 0
    visits_todo: list[tuple[int, int, list | None]] = [(int(t), g, None) for g, t in zip(sizes, arrivals)]
    i_visit = 0
    while i_visit < len(visits_todo):
        t_arr, g, again = visits_todo[i_visit]
        i_visit += 1
        people = [] if again is None else list(again)
        for _ in range(g if again is None else 0):
            if rng.random() < c.member_share and next_member < n_members:
                m = int(member_order[next_member])
                next_member += 1
                people.append((member_tags[m], plan.members[m][0], plan.members[m][1]))
            elif rng.random() < c.anon_tag_share:
                people.append((new_tag("", ""), "", ""))
            else:
                people.append((-1, "", ""))
        door_in = int(rng.integers(len(world.door_nodes)))
        door_out = door_in if rng.random() < 0.7 else int(rng.integers(len(world.door_nodes)))
        speed = float(np.clip(rng.normal(c.walk_speed_mps, 0.2), 0.6, 1.8)) * (0.9 if g > 1 else 1.0)
        wk = _Walker(world, rng, float(t_arr), world.door_nodes[door_in], speed)
        prefs = set(rng.choice(world.categories, size=min(2, len(world.categories)), replace=False).tolist())
        pref_boost = np.where(np.isin(world.c_cat, list(prefs)), 4.0, 1.0) * world.c_attr
        n_stops = 1 + rng.poisson(n_stops_mean) if world.counters else 0
        visited: list[int] = []
        buys: list[tuple[int, float]] = []  # (counter, dwell)
        for _ in range(n_stops):
            cur_f, cx, cy = wk.pos
            if visited and rng.random() < c.revisit_p:
                ci = visited[int(rng.integers(len(visited)))]
            else:
                dist = np.hypot(world.c_x - cx, world.c_y - cy) + np.where(world.c_floor == cur_f, 0.0, 40.0)
                wts = pref_boost * np.exp(-dist / 35.0)
                if visited:
                    wts[visited] *= 0.2
                ci = int(rng.choice(len(world.counters), p=wts / wts.sum()))
            spot = world.counters[ci]
            portals = spot.portals
            pa = min(portals, key=lambda p: math.dist(p.out_xy, (cx, cy)) + (0 if spot.zone.floor == cur_f else 1e3))
            wk.walk_to(pa.node, c.brush_p)
            r = rng.random()
            if len(portals) > 1 and r < c.walkthrough_p:
                pb = portals[int(rng.integers(len(portals)))]
                if pb is pa:
                    pb = portals[(portals.index(pa) + 1) % len(portals)]
                wk.walk_through(spot, pa, pb)
            elif r < c.walkthrough_p + c.glance_p:
                wk.glance(spot, pa)
            else:
                dwell = _dwell_s(rng, sc)
                pb = pa if rng.random() < 0.8 else portals[int(rng.integers(len(portals)))]
                wk.browse(spot, pa, dwell, pb)
                visited.append(ci)
                buys.append((ci, dwell))
            if wk.t > end_us + 3.6e9:
                break
        if not world.counters:  # nothing to visit: wander the floor a little
            for _ in range(1 + rng.poisson(2)):
                wk.walk_to(world.random_node(rng))
                wk.stay(rng.uniform(5, 60))
        # purchases: probability grows with dwell and tier; paid at the floor's checkout if any
        for ci, dwell in buys:
            for tag, member, tier in people[:1] if g > 1 else people:
                p = 0.22 * TIER_BUY[tier] * (1 - math.exp(-dwell / 240.0))
                if rng.random() >= p:
                    continue
                spot = world.counters[ci]
                fl = spot.zone.floor
                price = CATEGORY_PRICE.get(spot.zone.category or "", 500.0)
                amount = round(float(price * rng.lognormal(0, 0.7)), 2)
                receipt_no += 1
                if fl in world.checkout_nodes or world.checkout_nodes:
                    ck_fl = fl if fl in world.checkout_nodes else next(iter(world.checkout_nodes))
                    wk.walk_to(world.checkout_nodes[ck_fl])
                    q = rng.uniform(40, 200)
                    wk.stay(q * 0.6)
                    ts = wk.t
                    wk.stay(q * 0.4)
                else:
                    ts = wk.t - rng.uniform(0, 20) * 1e6
                plan.purchases.append((int(ts), member, spot.zone.zone, amount, f"RC{receipt_no:08d}"))
        wk.walk_to(world.door_nodes[door_out])
        plan.crossings.append((int(t_arr), door_in, len(people), 1))
        plan.crossings.append((int(wk.t), door_out, len(people), -1))
        # group members follow the leader with a small offset and lag
        for k, (tag, _, _) in enumerate(people):
            lag = 0 if k == 0 else int(rng.uniform(0.3, 1.5) * 1e6)
            ox, oy = (0.0, 0.0) if k == 0 else tuple(rng.uniform(-0.35, 0.35, 2))
            plan.person_trips.append((int(t_arr) + lag, int(wk.t) + lag))
            if tag < 0:
                continue
            pts = [(t + lag, f, x + ox, y + oy) for t, f, x, y in wk.pts]
            if plan.waypoints[tag] and plan.waypoints[tag][-1][0] >= pts[0][0]:
                continue  # overlapping trips of one tag cannot happen; keep the first
            plan.waypoints[tag] += pts + [(pts[-1][0] + 1, -1, pts[-1][2], pts[-1][3])]
        # some come back later the same day (lunch, a second look): a new trip of the same tags
        if again is None and rng.random() < c.return_p:
            t_back = int(wk.t + rng.uniform(0.5, 3.0) * 3.6e9)
            if t_back < end_us - 600e6:
                visits_todo.append((t_back, g, people))
    return plan


def _area(z: Zone) -> float:
    p = z.polygon
    return abs(sum(p[i][0] * p[(i + 1) % len(p)][1] - p[(i + 1) % len(p)][0] * p[i][1] for i in range(len(p)))) / 2


def _staff_day(world: World, rng: np.random.Generator, spot: Spot, start_us: int,
               end_us: int) -> list[tuple[int, int, float, float]]:
    """A staff member's day: in the counter, slow moves, breaks in the stock room (or out of the store)."""
    f = spot.zone.floor
    x, y = world.random_inside(rng, spot)
    pts = [(start_us, f, x, y)]
    t = float(start_us)
    next_break = t + rng.uniform(0.5, 3.5) * 3.6e9
    while t < end_us:
        if t >= next_break:
            room = world.rooms.get(f) or (next(iter(world.rooms.values())) if world.rooms else None)
            portal = spot.portals[0]
            brk = rng.uniform(10, 40) * 60e6
            t += 4e6
            pts.append((int(t), f, *portal.in_xy))
            t += 1.5e6
            pts.append((int(t), f, *portal.out_xy))
            if room is not None and room.zone.floor == f:
                wk = _Walker(world, rng, t, portal.node, 1.2)
                wk.walk_to(room.portals[0].node)
                wk.go(f, *room.portals[0].in_xy, 1.0)
                wk.stay(brk / 1e6)
                wk.go(f, *room.portals[0].out_xy, 1.0)
                wk.walk_to(portal.node)
                pts += wk.pts[1:]
                t = wk.t
            else:  # no stock room on this floor: out of the store (tag absent)
                pts.append((int(t) + 1, -1, *portal.out_xy))
                t += brk
                pts.append((int(t), f, *portal.out_xy))
            t += 1.5e6
            pts.append((int(t), f, *portal.in_xy))
            next_break = t + rng.uniform(2.0, 4.0) * 3.6e9
            continue
        t += rng.exponential(40.0) * 1e6
        pts.append((int(t), f, pts[-1][2], pts[-1][3]))
        x, y = world.random_inside(rng, spot)
        t += math.dist((x, y), pts[-1][2:]) / 0.5 * 1e6
        pts.append((int(t), f, x, y))
    return pts
