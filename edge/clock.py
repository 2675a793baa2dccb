"""Which timestamp a record gets: the device's when it is sane, else the agent's receive time.

A reader whose clock was never set reports times around 2000-01-01 (RTC reset); one with a drifting
or mis-set clock reports times far from ours. Both are replaced by the agent's receive time, and the
record is flagged (:data:`storeflow.wire.FLAG_AGENT_CLOCK`) so analytics can tell the two apart.
"""

from __future__ import annotations

import time

from storeflow.wire import FLAG_AGENT_CLOCK

__all__ = ["now_us", "choose_ts", "UNSET_CLOCK_BEFORE_US"]

#: Device times before 2001-01-01 UTC are treated as an unset clock (RTCs reset to 1970 or 2000).
UNSET_CLOCK_BEFORE_US = 978_307_200_000_000


def now_us() -> int:
    """The agent's wall clock (epoch µs)."""
    return time.time_ns() // 1000


def choose_ts(device_ts_us: int | None, received_us: int, max_skew_us: int) -> tuple[int, int]:
    """``(ts_us, flags)``: the device time when set and within ``max_skew_us`` of ``received_us``,
    else ``received_us`` with ``FLAG_AGENT_CLOCK``."""
    if (device_ts_us is None or device_ts_us < UNSET_CLOCK_BEFORE_US
            or abs(device_ts_us - received_us) > max_skew_us):
        return received_us, FLAG_AGENT_CLOCK
    return device_ts_us, 0
