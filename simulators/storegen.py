"""Builds the two bundled sample layouts (``simulators/stores/*.yaml``).

Run ``python -m simulators.storegen`` to regenerate them. The layouts are plain SPEC files; this
module only saves typing the coordinates of ~70 rectangles by hand and places antennas the way an
installer would: one per counter near its back, two along the long axis of big counters, one per
entrance and checkout, grouped onto 4-port readers by proximity.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

STORES_DIR = Path(__file__).parent / "stores"

Rect = tuple[float, float, float, float]  # x0, y0, x1, y1


def _poly(r: Rect) -> list[list[float]]:
    x0, y0, x1, y1 = r
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def _split(a: float, b: float, sizes: list[float]) -> list[tuple[float, float]]:
    """Split [a, b] into consecutive pieces proportional to ``sizes``."""
    total = sum(sizes)
    out, cur = [], a
    for s in sizes:
        nxt = cur + (b - a) * s / total
        out.append((round(cur, 2), round(nxt, 2)))
        cur = nxt
    return out


class _Builder:
    def __init__(self, store: str, name: str) -> None:
        self.data: dict[str, Any] = {"store": store, "name": name, "timezone": "Asia/Shanghai",
                                     "floors": [], "zones": [], "readers": [], "doors": []}
        self.antennas: list[dict[str, Any]] = []
        self.n_counter = 0

    def floor(self, num: int, w: float, d: float) -> None:
        self.data["floors"].append({"floor": num, "width_m": w, "depth_m": d})

    def zone(self, zid: str, kind: str, floor: int, name: str, r: Rect, category: str | None = None,
             back: str | None = None) -> None:
        z: dict[str, Any] = {"zone": zid, "kind": kind, "floor": floor, "name": name}
        if category:
            z["category"] = category
        z["polygon"] = _poly(r)
        self.data["zones"].append(z)
        if kind in ("counter", "entrance", "checkout"):
            self._place_antennas(zid, kind, floor, r, back)

    def counter(self, floor: int, r: Rect, name: str, category: str, back: str) -> None:
        self.n_counter += 1
        self.zone(f"C{floor}{self.n_counter:02d}", "counter", floor, name, r, category, back)

    def _place_antennas(self, zid: str, kind: str, floor: int, r: Rect, back: str | None) -> None:
        x0, y0, x1, y1 = r
        w, d = x1 - x0, y1 - y0
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        # antennas sit towards the back wall of the counter (shelving), facing the aisle
        off = {"N": (0.0, 0.25 * d), "S": (0.0, -0.25 * d), "E": (0.25 * w, 0.0), "W": (-0.25 * w, 0.0)}
        dx, dy = off.get(back or "", (0.0, 0.0))
        if kind == "counter" and w * d >= 45.0:
            if w >= d:
                pts = [(x0 + w / 3, cy + dy), (x0 + 2 * w / 3, cy + dy)]
            else:
                pts = [(cx + dx, y0 + d / 3), (cx + dx, y0 + 2 * d / 3)]
        else:
            pts = [(cx + dx, cy + dy)]
        for x, y in pts:
            self.antennas.append({"floor": floor, "x": round(x, 2), "y": round(y, 2), "zone": zid})

    def door(self, did: str, floor: int, x: float, y: float) -> None:
        self.data["doors"].append({"door": did, "floor": floor, "x": x, "y": y})

    def finish(self, simulation: dict[str, Any] | None = None) -> dict[str, Any]:
        """Group antennas onto 4-port readers: greedy nearest neighbours on the same floor."""
        left = list(range(len(self.antennas)))
        n = 0
        while left:
            first = left.pop(0)
            a0 = self.antennas[first]
            near = sorted((i for i in left if self.antennas[i]["floor"] == a0["floor"]),
                          key=lambda i: math.dist((a0["x"], a0["y"]),
                                                  (self.antennas[i]["x"], self.antennas[i]["y"])))
            group = [first] + [i for i in near[:3]
                               if math.dist((a0["x"], a0["y"]), (self.antennas[i]["x"], self.antennas[i]["y"])) < 16]
            for i in group[1:]:
                left.remove(i)
            n += 1
            self.data["readers"].append({
                "reader": f"R{n:02d}",
                "antennas": [{"port": p + 1, **self.antennas[i]} for p, i in enumerate(group)],
            })
        if simulation:
            self.data["simulation"] = simulation
        return self.data


BOUTIQUE_COUNTERS = [
    # top row, shared walls, back wall north
    ((0, 19, 7, 25), "Lancome", "beauty", "N"),
    ((7, 19, 13, 25), "Estee Lauder", "beauty", "N"),
    ((13, 19, 21, 25), "Swarovski", "jewelry", "N"),
    ((21, 19, 27, 25), "Pandora", "jewelry", "N"),
    ((27, 19, 34, 25), "Coach", "accessories", "N"),
    ((34, 19, 40, 25), "Longchamp", "accessories", "N"),
    # central island, back to back
    ((8, 10, 16, 13.5), "Sulwhasoo", "beauty", "N"),
    ((8, 13.5, 16, 16), "Shiseido", "beauty", "S"),
    ((24, 10, 32, 13), "Casio", "watches", "N"),
    ((24, 13, 32, 16), "Swatch", "watches", "S"),
    # bottom row beside the entrance
    ((0, 0, 8, 6), "Skechers", "shoes", "S"),
    ((30, 0, 40, 6), "Uniqlo Kids", "kids", "S"),
]


def boutique() -> dict[str, Any]:
    """One mall floor, 40 x 25 m, 12 counters, one entrance with a door counter."""
    b = _Builder("sample-boutique", "Sample boutique floor")
    b.floor(1, 40.0, 25.0)
    for r, name, cat, back in BOUTIQUE_COUNTERS:
        b.counter(1, r, name, cat, back)
    b.zone("E1", "entrance", 1, "Mall entrance", (17, 0, 23, 2.5))
    b.zone("S1", "staff_only", 1, "Stock room", (8, 0, 13, 4))
    b.door("D1", 1, 20.0, 0.0)
    return b.finish({"arrival": {"profile": "mall"}, "staff_per_counter": 1})


DEPT_CATEGORIES = {
    1: ["beauty", "jewelry", "accessories", "shoes", "watches", "womenswear"],
    2: ["menswear", "sports", "kids", "home", "appliances", "womenswear"],
}
BRANDS = {
    "beauty": ["Lancome", "Estee Lauder", "Dior Beauty", "Shiseido", "SK-II", "Clinique", "Sulwhasoo", "MAC"],
    "jewelry": ["Chow Tai Fook", "Lukfook", "Swarovski", "Pandora", "Tiffany", "Chow Sang Sang"],
    "accessories": ["Coach", "Michael Kors", "Longchamp", "Kate Spade", "Samsonite"],
    "shoes": ["Belle", "Ecco", "Clarks", "Skechers", "Stella Luna"],
    "watches": ["Omega", "Longines", "Tissot", "Casio"],
    "womenswear": ["Ochirly", "Only", "Vero Moda", "Peacebird", "Marisfrolg", "ELLASSAY", "Zara Woman"],
    "menswear": ["Hugo Boss", "Jack Jones", "Youngor", "Septwolves", "Hazzys", "Lacoste"],
    "sports": ["Nike", "Adidas", "Li-Ning", "Anta", "Under Armour", "Puma"],
    "kids": ["Balabala", "Mothercare", "Lego", "Disney Kids"],
    "home": ["Muji Home", "Zwilling", "Supor", "Lock&Lock"],
    "appliances": ["Haier", "Midea", "Dyson", "Philips", "Panasonic"],
}


def department() -> dict[str, Any]:
    """Two floors of 80 x 50 m; perimeter counters, island counters, escalators, checkouts."""
    b = _Builder("sample-department", "Sample department store")
    used: dict[str, int] = {}

    def add(floor: int, r: Rect, k: int, back: str) -> None:
        cats = DEPT_CATEGORIES[floor]
        cat = cats[k % len(cats)]
        names = BRANDS[cat]
        name = names[used.get(cat, 0) % len(names)]
        used[cat] = used.get(cat, 0) + 1
        b.counter(floor, r, name, cat, back)

    for fl in (1, 2):
        b.floor(fl, 80.0, 50.0)
        b.n_counter = 0
        k = 0 if fl == 1 else 3
        # north wall row (shared walls), 6 m deep, varying widths
        for x0, x1 in _split(0, 80, [8, 5, 9, 6, 12, 5, 10, 4, 12, 9]):
            add(fl, (x0, 44, x1, 50), k, "N")
            k += 1
        # west and east wall columns below the 3 m aisle
        for y0, y1 in _split(9, 41, [11, 10, 11]):
            add(fl, (0, y0, 6, y1), k, "W")
            k += 1
        for y0, y1 in _split(9, 41, [9, 12, 11]):
            add(fl, (74, y0, 80, y1), k, "E")
            k += 1
        # island blocks: two rows, two counters back to back per block; escalator well in the middle
        for bx0, bx1, split in ((9, 21, 0.6), (24, 35, 0.35), (45, 56, 0.5), (59, 71, 0.7)):
            for y0, y1 in ((29, 38), (12, 21)):
                ym = round(y0 + (y1 - y0) * split, 2)
                add(fl, (bx0, ym, bx1, y1), k, "S")
                add(fl, (bx0, y0, bx1, ym), k + 1, "N")
                k += 2
        b.zone(f"X{fl}", "aisle", fl, f"Escalators {fl}F", (37, 27, 43, 37))
        if fl == 1:
            # south wall: two entrances with door counters, counters and the stock room between
            b.zone("E1", "entrance", 1, "South entrance west", (22, 0, 28, 3))
            b.zone("E2", "entrance", 1, "South entrance east", (52, 0, 58, 3))
            b.door("D1", 1, 25.0, 0.0)
            b.door("D2", 1, 55.0, 0.0)
            b.zone("E3", "entrance", 1, "Metro entrance", (0, 3, 2, 7))
            b.door("D3", 1, 0.0, 5.0)
            add(fl, (8, 0, 15, 6), k, "S")
            add(fl, (15, 0, 21, 6), k + 1, "S")
            add(fl, (61, 0, 68, 6), k + 2, "S")
            k += 3
            b.zone("K1", "checkout", 1, "Cashier 1F", (33, 0, 47, 4))
            b.zone("S1", "staff_only", 1, "Stock room 1F", (70, 0, 80, 6))
        else:
            for x0, x1 in _split(8, 66, [9, 8, 10, 7, 8, 8, 8]):
                add(fl, (x0, 0, x1, 6), k, "S")
                k += 1
            b.zone("K2", "checkout", 2, "Cashier 2F", (66, 0, 74, 4))
            b.zone("S2", "staff_only", 2, "Stock room 2F", (0, 0, 6, 6))
    sim = {
        "arrival": {"profile": "department"},
        "staff_per_counter": 1,
        # one up and one down escalator side by side in the well; a rider moves along the footprint
        "escalators": [{"from": {"floor": 1, "x": 38.5, "y": 28.0}, "to": {"floor": 2, "x": 38.5, "y": 36.0},
                        "ride_s": 25.0},
                       {"from": {"floor": 2, "x": 41.5, "y": 28.0}, "to": {"floor": 1, "x": 41.5, "y": 36.0},
                        "ride_s": 25.0}],
    }
    return b.finish(sim)


def random_store(seed: int) -> dict[str, Any]:
    """A random one-floor store (a SPEC layout with a ``simulation`` section) for generalisation checks.

    Drawn from ``seed``: floor size (32-60 x 26-44 m), aisle width (2.5-4 m), wall rows and columns of
    counters of random widths and depths, island blocks (single counters or two back to back), where
    the entrance, door and checkout are, and how the installer placed the antennas (at the back of the
    counter, at its centre, or anywhere inside it). Nothing in it is taken from the sample stores.
    """
    import random

    rng = random.Random(seed)
    w, d = float(rng.randint(32, 60)), float(rng.randint(26, 44))
    aisle = round(rng.uniform(2.5, 4.0), 1)
    dn, ds, dw = round(rng.uniform(4, 7), 1), round(rng.uniform(4, 6), 1), round(rng.uniform(4, 6), 1)
    style = rng.choice(["back", "centre", "anywhere"])
    b = _Builder(f"random-{seed}", f"Random store {seed}, antennas {'at the ' if style != 'anywhere' else ''}{style}")
    b.floor(1, w, d)
    rects: dict[str, Rect] = {}
    cats = sorted(BRANDS)

    def pieces(a: float, c: float, lo: float, hi: float) -> list[tuple[float, float]]:
        n = max(1, round((c - a) / rng.uniform(lo, hi)))
        return [(round(p, 2), round(q, 2)) for p, q in _split(a, c, [rng.uniform(lo, hi) for _ in range(n)])]

    def add(r: Rect, back: str) -> None:
        cat = rng.choice(cats)
        b.counter(1, r, rng.choice(BRANDS[cat]), cat, back if style == "back" else "")
        rects[b.data["zones"][-1]["zone"]] = r

    for x0, x1 in pieces(0, w, 4, 10):
        add((x0, d - dn, x1, d), "N")
    y_lo, y_hi = ds + aisle, d - dn - aisle
    for y0, y1 in pieces(y_lo, y_hi, 6, 12):
        add((0, y0, dw, y1), "W")
    for y0, y1 in pieces(y_lo, y_hi, 6, 12):
        add((w - dw, y0, w, y1), "E")
    # south wall: entrance (door in the wall) and checkout, counters in the segments left
    ex = round(rng.uniform(0.2, 0.7) * (w - 6), 1)
    right_ok, left_ok = ex + 6 + aisle + 8 <= w, ex - aisle - 8 >= 0
    kx = ex + 6 + aisle if right_ok and (not left_ok or rng.random() < 0.5) else ex - aisle - 8
    b.zone("E1", "entrance", 1, "Entrance", (ex, 0, ex + 6, 2.5))
    b.door("D1", 1, ex + 3, 0.0)
    b.zone("K1", "checkout", 1, "Cashier", (kx, 0, kx + 8, 3.5))
    for a, c in ((0.0, min(ex, kx) - aisle), (max(ex + 6, kx + 8) + aisle, w)):
        if c - a >= 4:
            for x0, x1 in pieces(a, c, 4, 9):
                add((x0, 0, x1, ds), "S")
    # islands between the wall counters, an aisle all round
    x_lo, x_hi = dw + aisle, w - dw - aisle
    y = y_lo
    while True:
        bd = round(rng.uniform(5, 9), 1)
        if y + bd > y_hi:
            break
        x = x_lo
        while True:
            bw = round(rng.uniform(6, 12), 1)
            if x + bw > x_hi:
                break
            if rng.random() < 0.6:
                ym = round(y + bd * rng.uniform(0.35, 0.65), 2)
                add((x, ym, x + bw, y + bd), "N")
                add((x, y, x + bw, ym), "S")
            else:
                add((x, y, x + bw, y + bd), rng.choice("NS"))
            x = round(x + bw + aisle, 2)
        y = round(y + bd + aisle, 2)
    if style == "anywhere":
        for ant in b.antennas:
            if ant["zone"] in rects:
                x0, y0, x1, y1 = rects[ant["zone"]]
                ant["x"] = round(x0 + (x1 - x0) * rng.uniform(0.15, 0.85), 2)
                ant["y"] = round(y0 + (y1 - y0) * rng.uniform(0.15, 0.85), 2)
    return b.finish({"arrival": {"profile": "mall"}, "staff_per_counter": 1})


def write_all(out_dir: Path = STORES_DIR) -> list[Path]:
    """Write the sample layouts as YAML; returns the written paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fn in (("boutique", boutique), ("department", department)):
        p = out_dir / f"{name}.yaml"
        text = yaml.safe_dump(fn(), sort_keys=False, default_flow_style=None, width=120)
        p.write_text(f"# Generated by `python -m simulators.storegen`; edit there.\n{text}", encoding="utf-8")
        paths.append(p)
    return paths


if __name__ == "__main__":
    for p in write_all():
        print(p)
