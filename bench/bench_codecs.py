"""Frames parsed per second per protocol, against the obvious alternative, in the same run.

Serial protocols: our framer (bytes.find / sum / table CRC over a bytearray, fed 4 KiB pieces) vs a
naive byte-at-a-time parser in the style of the public drivers (pyImpinj's per-byte state machine,
chafon-rfid's bit-loop CRC). JSON protocols: our parser vs a pydantic v2 model per message
(``model_validate_json``) — what one would write first with the stack we already have.

    .venv/bin/python bench/bench_codecs.py [--frames N]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from pydantic import BaseModel

from edge.readers import build_parser
from edge.readers import chafon_288m as cf
from edge.readers import impinj_iot, impinj_r2000 as r2k, irisys, milesight, terabee_evo as tb, zebra_iot


# --- naive alternatives ---------------------------------------------------------------------------------

def naive_r2000(wire: bytes) -> int:
    """Byte-at-a-time state machine (as in pyImpinj's FramedPacket), EPC via PC word."""
    n = 0
    pkt = bytearray()
    inp = False
    for b in wire:
        if not inp:
            if b == 0xA0:
                inp = True
                pkt = bytearray([b])
            continue
        pkt.append(b)
        if len(pkt) >= 2 and len(pkt) == pkt[1] + 2:
            inp = False
            if sum(pkt) & 0xFF == 0 and pkt[3] == 0x89 and pkt[1] > 0x0A:
                pc = int.from_bytes(pkt[5:7], "big")
                size = (pc >> 11) * 2
                _ = (pkt[4] & 3) + 1, pkt[7:7 + size].hex().upper(), pkt[-2] - 129
                n += 1
    return n


def _crc_bitwise(data: bytes) -> int:
    c = 0xFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0x8408 if c & 1 else c >> 1
    return c


def naive_chafon(wire: bytes) -> int:
    """Read Len, take the frame, bit-loop CRC (chafon-rfid style), decode tags."""
    n, i = 0, 0
    while i < len(wire):
        ln = wire[i]
        fr = wire[i:i + ln + 1]
        if len(fr) < ln + 1:
            break
        if _crc_bitwise(fr[:-2]) == int.from_bytes(fr[-2:], "little"):
            d = fr[4:-2]
            j = 2
            for _ in range(d[1]):
                el = d[j] & 0x7F
                _ = d[j + 1:j + 1 + el].hex().upper(), d[j + 1 + el] - 129
                j += el + 2
                n += 1
            i += ln + 1
        else:
            i += 1
    return n


class _ImpTag(BaseModel):
    epcHex: str | None = None
    epc: str | None = None
    antennaPort: int
    peakRssiCdbm: int


class _ImpEvent(BaseModel):
    timestamp: str
    tagInventoryEvent: _ImpTag | None = None


class _ZData(BaseModel):
    idHex: str
    antenna: int
    peakRssi: float


class _ZEvent(BaseModel):
    data: _ZData
    timestamp: str
    type: str


def _naive_json(model: type[BaseModel], ns: bool) -> Callable[[list[bytes]], int]:
    import datetime as dt

    def run(msgs: list[bytes]) -> int:
        n = 0
        for m in msgs:
            ev = model.model_validate_json(m)
            # fromisoformat takes at most microseconds: cut a nanosecond fraction by hand
            dt.datetime.fromisoformat(ev.timestamp[:26] + "+00:00" if ns else ev.timestamp)
            n += 1
        return n
    return run


# --- workloads ------------------------------------------------------------------------------------------

def _epc(rng: random.Random) -> str:
    return f"{rng.getrandbits(96):024X}"


def workloads(n: int) -> dict[str, tuple[str, object, Callable[[], int], Callable[[], int] | None]]:
    rng = random.Random(1)
    r2 = b"".join(r2k.encode_tag(rng.randint(1, 4), _epc(rng), rng.randint(-90, -30)) for _ in range(n))
    cfw = b"".join(b"".join(cf.encode_inventory(rng.randint(1, 4), [(_epc(rng), rng.randint(-90, -30))]))
                   for _ in range(n))
    tbw = b"".join(tb.encode_count(i, i // 2) for i in range(n))
    imp = [impinj_iot.dumps([impinj_iot.encode_event(_epc(rng), 1, -5000, 1_763_600_000_000_000 + i)]) for i in range(n)]
    zeb = [zebra_iot.dumps([zebra_iot.encode_event(_epc(rng), 1, -50, 1_763_600_000_000_000 + i)]) for i in range(n)]
    iri = [irisys.encode_counts({"In": i, "Out": i // 2}, 1_763_600_000_000_000 + i) for i in range(n)]
    mil = [milesight.encode_interval(3, 2, 1_763_600_000_000_000, 1_763_600_060_000_000) for _ in range(n)]

    def stream(proto: str, wire: bytes) -> Callable[[], int]:
        def run() -> int:
            p = build_parser(proto, "X")
            k = 0
            for i in range(0, len(wire), 4096):
                k += len(p.feed(wire[i:i + 4096], 0))
            return p.stats.frames
        return run

    def msgs(proto: str, ms: list[bytes]) -> Callable[[], int]:
        def run() -> int:
            p = build_parser(proto, "X")
            for m in ms:
                p.feed(m, 0)
            return p.stats.frames
        return run

    return {
        "impinj-r2000": ("serial", len(r2), stream("impinj-r2000", r2), lambda: naive_r2000(r2)),
        "chafon-288m": ("serial", len(cfw), stream("chafon-288m", cfw), lambda: naive_chafon(cfw)),
        "terabee-evo": ("serial", len(tbw), stream("terabee-evo", tbw), None),
        "impinj-iot": ("mqtt", len(imp), msgs("impinj-iot", imp), lambda: _naive_json(_ImpEvent, True)(imp)),
        "zebra-iot": ("mqtt", len(zeb), msgs("zebra-iot", zeb), lambda: _naive_json(_ZEvent, False)(zeb)),
        "irisys": ("mqtt", len(iri), msgs("irisys", iri), None),
        "milesight": ("mqtt", len(mil), msgs("milesight", mil), None),
    }


def _best(fn: Callable[[], int], reps: int = 3) -> tuple[float, int]:
    best, n = float("inf"), 0
    for _ in range(reps):
        t = time.perf_counter()
        n = fn()
        best = min(best, time.perf_counter() - t)
    return best, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20000)
    args = ap.parse_args()
    print(f"{'protocol':14} {'ours frames/s':>14} {'alternative':>14} {'ratio':>7}")
    for name, (_, _, ours, alt) in workloads(args.frames).items():
        t, n = _best(ours)
        line = f"{name:14} {n / t:14,.0f}"
        if alt is not None:
            ta, na = _best(alt)
            line += f" {na / ta:14,.0f} {ta / t * n / max(na, 1):6.2f}x"
        else:
            line += f" {'-':>14} {'-':>7}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
