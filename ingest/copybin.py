"""PostgreSQL binary COPY streams built with numpy (no per-row Python).

A binary COPY stream is a fixed header, then per row a big-endian int16 field count and, per field,
an int32 byte length followed by the value in network byte order, then an int16 -1 trailer. For
fixed-width columns that is one numpy structured array with big-endian fields: filling it is a few
vectorised assignments, and :meth:`psycopg.Copy.write` sends the bytes as they are.
"""

from __future__ import annotations

import numpy as np

from storeflow.contract import PG_EPOCH_US

__all__ = ["PGCOPY_HEADER", "PGCOPY_TRAILER", "PG_EPOCH_US", "TAG_READS_COLUMNS", "tag_reads_copy_buffer"]

PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
PGCOPY_TRAILER = (-1).to_bytes(2, "big", signed=True)

TAG_READS_COLUMNS = ("ts", "store_id", "antenna_id", "tag_id", "rssi_cdbm", "read_count", "flags")

_TAG_READS_ROW = np.dtype(
    [
        ("nfields", ">i2"),
        ("ts_len", ">i4"),
        ("ts", ">i8"),
        ("store_len", ">i4"),
        ("store_id", ">i4"),
        ("antenna_len", ">i4"),
        ("antenna_id", ">i4"),
        ("tag_len", ">i4"),
        ("tag_id", ">i4"),
        ("rssi_len", ">i4"),
        ("rssi_cdbm", ">i2"),
        ("count_len", ">i4"),
        ("read_count", ">i2"),
        ("flags_len", ">i4"),
        ("flags", ">i2"),
    ]
)
_ROW_TEMPLATE = np.zeros(1, dtype=_TAG_READS_ROW)
for _name, _width in (
    ("ts_len", 8),
    ("store_len", 4),
    ("antenna_len", 4),
    ("tag_len", 4),
    ("rssi_len", 2),
    ("count_len", 2),
    ("flags_len", 2),
):
    _ROW_TEMPLATE[_name] = _width
_ROW_TEMPLATE["nfields"] = len(TAG_READS_COLUMNS)
_TEMPLATE_BYTES = _ROW_TEMPLATE.view(np.uint8)


def tag_reads_copy_buffer(
    ts_us: np.ndarray,
    store_id: np.ndarray | int,
    antenna_id: np.ndarray,
    tag_id: np.ndarray,
    rssi_cdbm: np.ndarray,
    read_count: np.ndarray,
    flags: np.ndarray,
) -> bytes:
    """A complete ``COPY tag_reads (TAG_READS_COLUMNS) FROM STDIN (FORMAT BINARY)`` payload.

    ``ts_us`` is Unix epoch microseconds; the other arrays are the column values (same length,
    ``store_id`` may be a scalar). Values must already fit their columns (int4 / int2).
    """
    n = len(ts_us)
    rows = np.empty(n, dtype=_TAG_READS_ROW)
    # Field count and lengths: broadcast the template's bytes (far faster than a structured scalar).
    rows.view(np.uint8).reshape(n, _TAG_READS_ROW.itemsize)[:] = _TEMPLATE_BYTES
    rows["ts"] = np.asarray(ts_us, dtype=np.int64) - PG_EPOCH_US
    rows["store_id"] = store_id
    rows["antenna_id"] = antenna_id
    rows["tag_id"] = tag_id
    rows["rssi_cdbm"] = rssi_cdbm
    rows["read_count"] = read_count
    rows["flags"] = flags
    return b"".join((PGCOPY_HEADER, rows.tobytes(), PGCOPY_TRAILER))
