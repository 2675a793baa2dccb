"""The SQLite spool: sequence and stream persistence, acks, the size limit."""

from __future__ import annotations

import logging

from edge.spool import Spool


def _payload(seq: int, size: int = 100) -> bytes:
    return seq.to_bytes(4, "little") * (size // 4)


def test_append_pending_ack_and_reopen(tmp_path):
    sp = Spool(tmp_path, 10_000_000)
    stream = sp.stream
    seqs = [sp.append("reads", 10, _payload, created_us=1000 + i) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert [b.seq for b in sp.pending(0, 3)] == [1, 2, 3]
    assert [b.seq for b in sp.pending(3, 10)] == [4, 5]
    assert sp.pending(0, 1)[0].payload == _payload(1)
    sp.ack([2, 1, 99])
    st = sp.stats()
    assert (st.batches, st.records, st.bytes, st.oldest_created_us) == (3, 30, 300, 1002)
    sp.close()
    sp = Spool(tmp_path, 10_000_000)
    assert sp.stream == stream
    assert [b.seq for b in sp.pending(0, 10)] == [3, 4, 5]
    sp.ack([3, 4, 5])
    assert sp.append("doors", 1, _payload, created_us=1) == 6  # never reuses a seq, even when empty
    sp.close()
    other = Spool(tmp_path / "new", 10_000_000)
    assert other.stream != stream and other.append("reads", 1, _payload, created_us=1) == 1
    other.close()


def test_size_limit_drops_oldest_loudly_and_counts(tmp_path, caplog):
    sp = Spool(tmp_path, 1000)
    for _ in range(10):
        sp.append("reads", 7, _payload, created_us=1)
    assert sp.stats().bytes == 1000 and sp.dropped_batches == 0
    with caplog.at_level(logging.ERROR, logger="storeflow.edge.spool"):
        sp.append("reads", 7, lambda s: _payload(s, 250), created_us=1)
    st = sp.stats()
    assert st.bytes <= 1000 and st.dropped_batches == 3 and st.dropped_records == 21
    assert [b.seq for b in sp.pending(0, 100)] == [4, 5, 6, 7, 8, 9, 10, 11]
    assert any("SPOOL FULL" in r.message for r in caplog.records)
    sp.close()
    sp = Spool(tmp_path, 1000)
    assert (sp.dropped_batches, sp.dropped_records, sp.stats().bytes) == (3, 21, st.bytes)
    sp.close()


def test_seq_is_baked_into_the_payload(tmp_path):
    sp = Spool(tmp_path, 10_000)
    seq = sp.append("reads", 1, lambda s: f"seq={s}".encode(), created_us=1)
    assert sp.pending(0, 1)[0].payload == f"seq={seq}".encode()
    sp.close()


def test_one_process_per_spool(tmp_path):
    import pytest

    from edge.spool import SpoolBusy

    sp = Spool(tmp_path, 10_000)
    with pytest.raises(SpoolBusy, match="in use by another agent"):
        Spool(tmp_path, 10_000)
    sp.close()
    Spool(tmp_path, 10_000).close()  # free again once closed
