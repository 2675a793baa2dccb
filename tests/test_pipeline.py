"""analyze_block: the job's per-block pipeline is presence -> visits -> customer positions -> refine."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.pipeline import analyze_block
from analytics.presence import fit_presence_model, zone_presence
from analytics.visits import visits_from_presence
from storeflow.settings import store_params
from tests.test_presence import _random_plans, _synthetic, mini  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def block(mini):  # noqa: F811
    lay, am, zm = mini
    rng = np.random.default_rng(9)
    reads = _synthetic(am, zm, _random_plans(zm, rng, 12), rng)
    params = store_params(lay.settings)
    model = fit_presence_model(reads, am, zm, segment_gap_s=params["trip_gap_s"])
    pres = zone_presence(reads, model, am, segment_gap_s=params["trip_gap_s"])
    p = pres.zones_only()
    decoded = visits_from_presence(p.tag, p.zone, p.start_us, p.end_us, gap_s=params["gap_s"],
                                   min_dwell_s=params["min_dwell_s"])
    return lay, am, zm, reads, params, model, pres, decoded


def _same_visits(a, b) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("tag", "zone", "start_us", "end_us", "passby"))


def test_refined_with_customer_positions(block):
    lay, am, zm, reads, params, model, pres, decoded = block
    customer = reads.tag != 0
    got = analyze_block(reads, am, lay, zm, params, model, customer)
    assert np.array_equal(got.presence.zone, pres.zone) and np.array_equal(got.presence.start_us, pres.start_us)
    assert got.positions is not None and len(got.positions) > 0
    assert set(np.unique(got.positions.tag).tolist()) == set(np.unique(reads.tag[customer]).tolist())
    counter = np.array([k == "counter" for k in zm.kind])
    # only counter visits are refined: the others are as decoded
    other = lambda v: v.start_us[~counter[v.zone]]  # noqa: E731
    assert np.array_equal(other(got.visits), other(decoded))
    assert len(got.visits) > 0 and got.decode_visits_s >= 0 and got.positions_refine_s >= 0


def test_without_refine_or_customers_visits_are_as_decoded(block):
    lay, am, zm, reads, params, model, pres, decoded = block
    off = analyze_block(reads, am, lay, zm, params, model, reads.tag != 0, refine=False)
    none = analyze_block(reads, am, lay, zm, params, model, np.zeros(len(reads), bool))
    for got in (off, none):
        assert got.positions is None and _same_visits(got.visits, decoded)
    with pytest.raises(ValueError, match="customer_read"):
        analyze_block(reads, am, lay, zm, params, model, np.ones(len(reads) - 1, bool))
