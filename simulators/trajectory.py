"""Concatenated piecewise-linear trajectories and the kernel that samples them on a time grid."""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

__all__ = ["Trajectories"]


@numba.njit(cache=True)
def _sample(wp_ptr, wp_t, wp_f, wp_x, wp_y, tags, t0, dt, n_steps, out_f, out_x, out_y):
    for j in range(tags.shape[0]):
        tag = tags[j]
        lo, hi = wp_ptr[tag], wp_ptr[tag + 1]
        if hi - lo == 0:
            for s in range(n_steps):
                out_f[s, j] = -1
            continue
        # binary search the segment containing t0
        a, b = lo, hi
        while b - a > 1:
            m = (a + b) // 2
            if wp_t[m] <= t0:
                a = m
            else:
                b = m
        k = a
        for s in range(n_steps):
            t = t0 + s * dt
            while k + 1 < hi and wp_t[k + 1] <= t:
                k += 1
            if t < wp_t[lo] or k + 1 >= hi or wp_f[k] < 0:
                out_f[s, j] = -1
                out_x[s, j] = 0.0
                out_y[s, j] = 0.0
                continue
            span = wp_t[k + 1] - wp_t[k]
            w = (t - wp_t[k]) / span if span > 0 else 0.0
            out_f[s, j] = wp_f[k]
            out_x[s, j] = wp_x[k] + (wp_x[k + 1] - wp_x[k]) * w
            out_y[s, j] = wp_y[k] + (wp_y[k + 1] - wp_y[k]) * w


@dataclass(frozen=True)
class Trajectories:
    """Waypoints of all tags; tag i's are [ptr[i], ptr[i+1]). Floor -1 = absent until the next one."""

    ptr: np.ndarray   # int64 [n_tags + 1]
    t_us: np.ndarray  # int64
    floor: np.ndarray  # int64
    x: np.ndarray     # float64 metres
    y: np.ndarray

    @staticmethod
    def from_lists(per_tag: list[list[tuple[int, int, float, float]]]) -> Trajectories:
        counts = np.array([len(p) for p in per_tag], np.int64)
        ptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        flat = [w for p in per_tag for w in p]
        arr = np.array(flat, dtype=np.float64).reshape(-1, 4) if flat else np.zeros((0, 4))
        t = np.array([w[0] for w in flat], np.int64)
        tr = Trajectories(ptr, t, arr[:, 1].astype(np.int64), arr[:, 2].copy(), arr[:, 3].copy())
        for i in range(len(per_tag)):  # times must not decrease within a tag
            seg = tr.t_us[ptr[i]:ptr[i + 1]]
            if seg.size > 1 and np.any(np.diff(seg) < 0):
                raise AssertionError(f"trajectory of tag {i} goes back in time")
        return tr

    @property
    def n_tags(self) -> int:
        return int(self.ptr.shape[0] - 1)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(first, last) waypoint time per tag (int64 µs; -1 for tags without a trajectory)."""
        has = self.ptr[1:] > self.ptr[:-1]
        first = np.full(self.n_tags, -1, np.int64)
        last = np.full(self.n_tags, -1, np.int64)
        first[has] = self.t_us[self.ptr[:-1][has]]
        last[has] = self.t_us[self.ptr[1:][has] - 1]
        return first, last

    def sample(self, tags: np.ndarray, t0_us: int, dt_us: int, n_steps: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions of ``tags`` at t0 + k·dt: floors [n_steps, n] (-1 absent), x and y (metres)."""
        n = tags.shape[0]
        f = np.empty((n_steps, n), np.int64)
        x = np.empty((n_steps, n), np.float64)
        y = np.empty((n_steps, n), np.float64)
        _sample(self.ptr, self.t_us, self.floor, self.x, self.y, tags.astype(np.int64), np.int64(t0_us),
                np.int64(dt_us), n_steps, f, x, y)
        return f, x, y
