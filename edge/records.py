"""The agent's internal records: a device record after the clock decision and the antenna map."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["AgentRead", "AgentDoor"]


class AgentRead(NamedTuple):
    """A tag read (or an aggregate of ``count`` reads) as the agent publishes it."""

    ts_us: int          # epoch µs (device clock, or agent receive time when flags has FLAG_AGENT_CLOCK)
    reader: str
    antenna: int        # layout antenna port, >= 1
    epc: str            # upper-case hex
    rssi_dbm: float     # dBm (the maximum over an aggregate)
    count: int          # reads aggregated, >= 1
    flags: int          # storeflow.wire FLAG_* bits


class AgentDoor(NamedTuple):
    """People counted at a door over an interval starting at ``ts_us``."""

    ts_us: int
    door: str
    entries: int
    exits: int
    flags: int
