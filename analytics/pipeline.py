"""The analyze job's per-block pipeline without the database: presence -> visits -> positions -> refine.

One function, :func:`analyze_block`, used by the job (:mod:`analytics.job`, which adds loading,
model fitting and storing, trips, paths, the heatmap and writing) and by the accuracy bench, so the
bench measures exactly what the job computes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from analytics.data import AntennaMap, Reads, ZoneMap
from analytics.positions import PathLossModel, Positions, RangeModel, estimate_positions
from analytics.presence import Presence, PresenceModel, zone_presence
from analytics.refine import ZoneMasks, presence_in_visits, refine_visits, zone_masks
from analytics.visits import Visits, visits_from_presence
from storeflow.layout import Layout

__all__ = ["BlockResult", "analyze_block"]


@dataclass(frozen=True)
class BlockResult:
    """What :func:`analyze_block` computed for one block of reads."""

    presence: Presence            # all spans, zone -1 (placed nowhere) included
    heat_presence: Presence       # the same with counter spans cut to the refined visits (for the heatmap)
    visits: Visits                # every zone's visits; counter visits refined when positions exist
    positions: Positions | None   # customers' positions; None without customer reads or refine=False
    decode_visits_s: float        # wall seconds: presence decode + visits
    positions_refine_s: float     # wall seconds: positions + refinement


def analyze_block(reads: Reads, antennas: AntennaMap, layout: Layout, zones: ZoneMap, params: Mapping[str, float],
                  presence_model: PresenceModel, customer_read: np.ndarray, *,
                  position_models: tuple[PathLossModel, RangeModel] | None = None,
                  masks: ZoneMasks | None = None, refine: bool = True) -> BlockResult:
    """Presence, visits and customer positions of one block of whole tags' reads (sorted by tag, time).

    ``params``: the store's analytics parameters (:func:`storeflow.settings.store_params`), of which
    ``trip_gap_s`` (presence segments), ``gap_s`` and ``min_dwell_s`` (visits) are used, in seconds.
    ``customer_read``: bool per read, the reads of customer tags; their tags' positions are estimated
    (with ``position_models`` = (path loss, range) when given, else models fitted on ``reads``) and
    the counter visits' boundaries refined with them (:mod:`analytics.refine`). ``masks``: the
    zones' :func:`~analytics.refine.zone_masks` (computed when None). ``refine=False``: no positions,
    visits as decoded. ``heat_presence``: the presence spans for the heatmap, counter spans kept only
    within the refined visits (:func:`~analytics.refine.presence_in_visits`), so that the heatmap's
    counter time agrees with the visits' dwell.
    """
    customer_read = np.asarray(customer_read, bool)
    if customer_read.shape != (len(reads),):
        raise ValueError(f"customer_read: needs one bool per read ({len(reads)}), got shape {customer_read.shape}")
    t0 = time.perf_counter()
    pres_all = zone_presence(reads, presence_model, antennas, segment_gap_s=params["trip_gap_s"])
    pres = pres_all.zones_only()
    visits = visits_from_presence(pres.tag, pres.zone, pres.start_us, pres.end_us,
                                  gap_s=params["gap_s"], min_dwell_s=params["min_dwell_s"])
    t1 = time.perf_counter()
    pos = None
    heat_presence = pres_all
    cust_tags = np.unique(reads.tag[customer_read]) if refine else np.zeros(0, np.int32)
    if len(cust_tags):
        pl, rm = position_models if position_models is not None else (None, None)
        pos = estimate_positions(reads, antennas, layout, model=pl, range_model=rm, tags=cust_tags)
        counter = np.array([k == "counter" for k in zones.kind])
        visits = refine_visits(visits, pos, masks if masks is not None else zone_masks(layout.zones),
                               min_dwell_s=params["min_dwell_s"], zones=counter)
        heat_presence = presence_in_visits(pres_all, visits, counter)
    return BlockResult(pres_all, heat_presence, visits, pos, t1 - t0, time.perf_counter() - t1)
