"""Heatmap rendering (analytics.render): PNG encoder, both PNG engines, standalone HTML."""

from __future__ import annotations

import base64
import struct
import zlib
from datetime import datetime, timezone

import numpy as np
import pytest

from analytics.render import PNG_SIGNATURE, colorize, heatmap_figure, heatmap_html, heatmap_png, png_bytes
from analytics.reports import HeatmapGrid


def grid(ny: int = 4, nx: int = 6) -> HeatmapGrid:
    seconds = np.zeros((ny, nx))
    seconds[0, 0] = 100.0  # bottom-left corner is the hottest cell
    seconds[ny - 1, nx - 1] = 10.0
    t = datetime(2026, 11, 20, tzinfo=timezone.utc)
    return HeatmapGrid("s", 1, 0.5, nx * 0.5, ny * 0.5, t, t, seconds)


def decode_png(data: bytes) -> np.ndarray:
    """A tiny PNG reader for 8-bit RGB, filter 0 (what png_bytes writes), checking every CRC."""
    assert data[:8] == PNG_SIGNATURE
    pos, idat, w, h = 8, b"", 0, 0
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + body)
        if kind == b"IHDR":
            w, h, depth, colour = struct.unpack(">IIBB", body[:10])
            assert (depth, colour) == (8, 2)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(h, 1 + 3 * w)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:].reshape(h, w, 3)


def test_png_bytes_round_trip() -> None:
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, size=(5, 9, 3), dtype=np.uint8)
    assert np.array_equal(decode_png(png_bytes(img)), img)
    with pytest.raises(ValueError):
        png_bytes(np.zeros((0, 3, 3), dtype=np.uint8))


def test_colorize_extremes() -> None:
    rgb = colorize(np.array([[0.0, 50.0, 100.0]]))
    assert tuple(rgb[0, 0]) == (68, 1, 84) and tuple(rgb[0, 2]) == (253, 231, 37)
    assert (colorize(np.zeros((2, 2))) == np.array([68, 1, 84])).all()


def test_builtin_png_orientation_and_size() -> None:
    data = heatmap_png(grid(), engine="builtin", width_px=60)  # 10 px per cell
    img = decode_png(data)
    assert img.shape == (40, 60, 3)
    # floor origin is bottom-left: the hottest cell (iy=0, ix=0) is the image's bottom-left block
    assert tuple(img[-1, 0]) == (253, 231, 37)
    assert tuple(img[0, -1]) != (68, 1, 84)  # top-right = cell (3, 5), 10 s, not the minimum colour


def test_kaleido_png_renders_headless() -> None:
    data = heatmap_png(grid(), engine="kaleido", width_px=400)
    assert data[:8] == PNG_SIGNATURE
    w, h = struct.unpack(">II", data[16:24])
    assert w == 400 and h >= 300


def test_html_is_standalone_with_the_figure() -> None:
    html = heatmap_html(grid())
    assert html.lstrip().startswith("<html>")
    assert "Plotly.newPlot" in html and '"type":"heatmap"' in html
    assert '<script src="http' not in html and len(html) > 1_000_000  # plotly.js inlined: works offline


def test_floor_plan_goes_under_the_heatmap() -> None:
    plan = png_bytes(np.full((4, 6, 3), 200, dtype=np.uint8))
    g = grid()
    with_plan = HeatmapGrid(g.store, g.floor, g.cell_m, g.width_m, g.depth_m, g.start, g.end, g.seconds,
                            plan, "image/png")
    uri = "data:image/png;base64," + base64.b64encode(plan).decode("ascii")
    fig = heatmap_figure(with_plan)
    assert fig.layout.images[0].source == uri and fig.layout.images[0].layer == "below"
    html = heatmap_html(with_plan)
    assert uri.replace("/", "\\u002f") in html  # plotly escapes "/" in the page's JSON
    assert not heatmap_figure(g).layout.images
