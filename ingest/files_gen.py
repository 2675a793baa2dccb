"""Synthetic tag-read CSV files for tests and benchmarks (not a simulator: no shopper model).

Rows are written block-wise with pyarrow so a 10 M-row file takes seconds and little memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

__all__ = ["write_reads_csv"]


def write_reads_csv(path: Path, n_rows: int, antennas: Sequence[tuple[str, int]], *, n_tags: int = 5000,
                    start_us: int = 1_795_140_000_000_000, rate_per_s: float = 1000.0, seed: int = 0,
                    iso: bool = True, block_rows: int = 500_000) -> int:
    """Write ``n_rows`` reads (``ts,reader,antenna,epc,rssi,count``) to ``path``; returns the file size.

    Timestamps advance at ``rate_per_s`` reads per second from ``start_us`` (epoch µs), as ISO 8601
    with a +08:00 offset (``iso``) or as epoch µs.
    """
    rng = np.random.default_rng(seed)
    epcs = np.array([f"E280{t:020X}" for t in rng.choice(1 << 40, size=n_tags, replace=False)])
    readers = np.array([r for r, _ in antennas])
    ports = np.array([p for _, p in antennas], dtype=np.int64)
    opts = pacsv.WriteOptions(include_header=True, quoting_style="none")
    with pa.OSFile(str(path), "wb") as sink:
        writer = None
        for lo in range(0, n_rows, block_rows):
            n = min(block_rows, n_rows - lo)
            idx = np.arange(lo, lo + n)
            ts = start_us + (idx * (1e6 / rate_per_s)).astype(np.int64) + rng.integers(0, 1000, n)
            if iso:
                local = pa.array(ts + 8 * 3_600_000_000, pa.timestamp("us"))
                ts_col = pc.binary_join_element_wise(pc.strftime(local, format="%Y-%m-%dT%H:%M:%S"), "+08:00", "")
            else:
                ts_col = pa.array(ts)
            a = rng.integers(0, len(antennas), n)
            table = pa.table({
                "ts": ts_col,
                "reader": pa.array(readers[a]),
                "antenna": pa.array(ports[a]),
                "epc": pa.array(epcs[rng.integers(0, n_tags, n)]),
                "rssi": pa.array(np.round(rng.uniform(-80.0, -40.0, n), 1)),
                "count": pa.array(rng.integers(1, 4, n)),
            })
            if writer is None:
                writer = pacsv.CSVWriter(sink, table.schema, write_options=opts)
            writer.write_table(table)
        if writer is not None:
            writer.close()
    return path.stat().st_size
