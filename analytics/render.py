"""Heatmap rendering: a plotly figure, a standalone interactive HTML page and a PNG image.

PNG: ``engine="kaleido"`` renders the plotly figure (axes, colour bar, title) through kaleido 1.x,
which needs a Chrome/Chromium on the machine; ``engine="builtin"`` paints the grid itself (numpy +
zlib, one colour block per cell, origin bottom-left, no axes) and works anywhere; ``engine="auto"``
tries kaleido and falls back to the builtin painter when no browser can be started.
"""

from __future__ import annotations

import base64
import logging
import struct
import zlib
from typing import TYPE_CHECKING, Literal

import numpy as np

from analytics.reports import HeatmapGrid

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["heatmap_figure", "heatmap_html", "heatmap_png", "png_bytes", "colorize", "PNG_SIGNATURE"]

log = logging.getLogger(__name__)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PngEngine = Literal["auto", "kaleido", "builtin"]

# Viridis anchors (the colour scale plotly uses for the figure), so both PNG engines agree.
_VIRIDIS = np.array([
    (68, 1, 84), (72, 40, 120), (62, 74, 137), (49, 104, 142), (38, 130, 142),
    (31, 158, 137), (53, 183, 121), (109, 205, 89), (180, 222, 44), (253, 231, 37),
], dtype=np.float64)


def _title(grid: HeatmapGrid) -> str:
    return (f"{grid.store} floor {grid.floor}: tag-seconds per {grid.cell_m:g} m cell, "
            f"{grid.start.isoformat()} to {grid.end.isoformat()}")


def heatmap_figure(grid: HeatmapGrid, title: str | None = None) -> go.Figure:
    """A plotly heatmap of the grid in floor coordinates (metres, origin bottom-left, equal aspect)."""
    import plotly.graph_objects as go

    ny, nx = grid.seconds.shape
    xs = (np.arange(nx) + 0.5) * grid.cell_m
    ys = (np.arange(ny) + 0.5) * grid.cell_m
    fig = go.Figure(go.Heatmap(
        z=grid.seconds, x=xs, y=ys, colorscale="Viridis", opacity=0.65 if grid.plan_image else 1.0,
        colorbar={"title": {"text": "tag-seconds"}},
        hovertemplate="x %{x:.2f} m, y %{y:.2f} m: %{z:.0f} tag-seconds<extra></extra>",
    ))
    fig.update_layout(
        title={"text": title or _title(grid)},
        xaxis={"title": {"text": "x (m)"}, "range": [0, max(grid.width_m, nx * grid.cell_m)], "constrain": "domain"},
        yaxis={"title": {"text": "y (m)"}, "range": [0, max(grid.depth_m, ny * grid.cell_m)],
               "scaleanchor": "x", "scaleratio": 1, "constrain": "domain"},
        plot_bgcolor="white",
    )
    if grid.plan_image and grid.plan_media_type:
        # The floor plan under the heatmap, stretched to the floor's extent (origin bottom-left).
        uri = f"data:{grid.plan_media_type};base64,{base64.b64encode(grid.plan_image).decode('ascii')}"
        fig.add_layout_image(source=uri, xref="x", yref="y", x=0, y=grid.depth_m, sizex=grid.width_m,
                             sizey=grid.depth_m, sizing="stretch", layer="below", opacity=1.0)
    return fig


def heatmap_html(grid: HeatmapGrid, title: str | None = None) -> str:
    """A standalone interactive HTML page (plotly.js inlined: works offline)."""
    return heatmap_figure(grid, title).to_html(full_html=True, include_plotlyjs=True,
                                               div_id="storeflow-heatmap")


def colorize(values: np.ndarray) -> np.ndarray:
    """Map a 2-D array to viridis RGB (uint8, shape (..., 3)); 0 = darkest, the maximum = brightest."""
    v = np.asarray(values, dtype=np.float64)
    top = float(v.max()) if v.size else 0.0
    t = np.clip(v / top, 0.0, 1.0) if top > 0 else np.zeros_like(v)
    pos = t * (len(_VIRIDIS) - 1)
    anchors = np.arange(len(_VIRIDIS))
    rgb = np.stack([np.interp(pos, anchors, _VIRIDIS[:, c]) for c in range(3)], axis=-1)
    return np.rint(rgb).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an (height, width, 3) uint8 array as an 8-bit RGB PNG (no filtering, zlib level 6)."""
    img = np.ascontiguousarray(rgb, dtype=np.uint8)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"expected a non-empty (height, width, 3) array, got shape {img.shape}")
    h, w, _ = img.shape
    raw = np.concatenate([np.zeros((h, 1), dtype=np.uint8), img.reshape(h, w * 3)], axis=1)  # filter 0

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b"")


def _builtin_png(grid: HeatmapGrid, target_px: int) -> bytes:
    ny, nx = grid.seconds.shape
    px = max(1, target_px // max(nx, ny))  # pixels per cell
    rgb = colorize(grid.seconds)[::-1]  # row 0 of the image is the top of the floor (largest y)
    return png_bytes(np.repeat(np.repeat(rgb, px, axis=0), px, axis=1))


def heatmap_png(grid: HeatmapGrid, engine: PngEngine = "auto", width_px: int = 1000,
                title: str | None = None) -> bytes:
    """The heatmap as PNG bytes (see the module docstring for the engines)."""
    if engine not in ("auto", "kaleido", "builtin"):
        raise ValueError(f"unknown PNG engine {engine!r}")
    if engine in ("auto", "kaleido"):
        try:
            ny, nx = grid.seconds.shape
            height = int(width_px * ny / nx) + 120
            return heatmap_figure(grid, title).to_image(format="png", width=width_px, height=max(height, 300))
        except Exception as e:  # noqa: BLE001 - any kaleido/browser failure means "cannot render here"
            if engine == "kaleido":
                raise RuntimeError(f"kaleido cannot render the PNG here ({type(e).__name__}: {e}); "
                                   "install Chrome/Chromium or use the builtin engine") from e
            log.info("kaleido unavailable (%s); rendering the PNG with the builtin painter", type(e).__name__)
    return _builtin_png(grid, width_px)
