"""Accuracy: the matching rules (SPEC section 3), and estimated visits vs simulator ground truth.

The issue-6 bars (visit F1 >= 0.90, median relative dwell error <= 15 %, per-counter visitors
within 10 %) are asserted as they are. Where the current method does not reach a bar the test is
marked ``xfail(strict=True)`` with the measured number, so the gap stays visible and the marker
must be removed once the bar is met. ``test_accuracy_floor`` guards against regressions below what
the method measurably does today.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from analytics.accuracy import match_visits, visit_accuracy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
S = 1_000_000


def test_match_rules():
    # same tag & zone, IoU exactly 0.5 matches; other tag / other zone never match
    t = (np.array([1, 1, 2]), np.array([0, 1, 0]), np.array([0, 100, 0]) * S, np.array([20, 130, 10]) * S)
    e = (np.array([1, 1, 3, 1]), np.array([0, 2, 0, 1]), np.array([10, 100, 0, 129]) * S,
         np.array([20, 130, 10, 140]) * S)
    mt, me = match_visits(*t, *e)
    assert list(zip(mt.tolist(), me.tolist())) == [(0, 0)]
    acc = visit_accuracy(*t, *e)
    assert (acc.n_matched, acc.precision, acc.recall) == (1, 0.25, 1 / 3)
    assert acc.f1 == pytest.approx(2 / 7)
    assert acc.dwell_rel_err_median == pytest.approx(0.5)       # 10 s estimated for 20 s true
    assert acc.visitors_true == {0: 2, 1: 1} and acc.visitors_est == {0: 2, 1: 1, 2: 1}
    assert acc.visitors_rel_err[0] == 0.0 and acc.visitors_rel_err[2] == float("inf")


def test_match_is_one_to_one_greedy_by_overlap():
    # two estimates overlap one true visit: the better one matches, the other is a false positive
    t = (np.array([1]), np.array([0]), np.array([0]), np.array([100 * S]))
    e = (np.array([1, 1]), np.array([0, 0]), np.array([0, 10 * S]), np.array([60 * S, 100 * S]))
    mt, me = match_visits(*t, *e)
    assert mt.tolist() == [0] and me.tolist() == [1]
    assert visit_accuracy(*t, *e).f1 == pytest.approx(2 / 3)
    empty = visit_accuracy(*(np.zeros(0, np.int64),) * 4, *(np.zeros(0, np.int64),) * 4)
    assert empty.n_matched == 0 and np.isnan(empty.f1)


#: (store, scenario) -> simulation size for the fast tests (shoppers, hours)
CASES = {("boutique", "easy"): (60, 0.5), ("boutique", "hard"): (60, 0.5),
         ("department", "easy"): (40, 0.5), ("department", "hard"): (40, 0.5)}


@lru_cache(maxsize=None)
def _measure(store: str, scenario: str):
    from accuracy_sim import evaluate

    shoppers, hours = CASES[(store, scenario)]
    acc, _ = evaluate(store, scenario, shoppers, hours, seed=3)
    return acc


# Measured with bench/accuracy_sim.py (400 shoppers, 2 h, mean of seeds 11 and 12) with the current
# method (emission weight learnt from the RSSI residual autocorrelation, counter to counter only
# through the aisle, 5 s minimum stay, beside/far runs between two stays filled). Before the emission
# weight: 0.83 / 0.65 / 0.67 / 0.49. Boutique easy is at the bar on average (0.902 / 0.906 here,
# 0.885-0.908 over seeds 3, 5, 11, 12 with direct links between neighbours), not reliably over it.
_F1 = {("boutique", "easy"): 0.904, ("boutique", "hard"): 0.836, ("department", "easy"): 0.892,
       ("department", "hard"): 0.798}
_PARAMS = [pytest.param(k, marks=pytest.mark.slow, id=f"{k[0]}-{k[1]}") for k in CASES]


@pytest.mark.parametrize("case", _PARAMS)
@pytest.mark.xfail(strict=True, reason="visit F1 below the 0.90 bar on these small runs (0.82-0.90; 0.77-0.91 on "
                                       "the bench, see _F1): shoppers walking along a counter's edge or brushing "
                                       "it decode as short visits (hard RF); short visits at the far side of a "
                                       "counter are missed")
def test_visit_f1_bar(case):
    assert _measure(*case).f1 >= 0.90


@pytest.mark.parametrize("case", _PARAMS)
def test_dwell_error_bar(case):
    assert _measure(*case).dwell_rel_err_median <= 0.15


@pytest.mark.parametrize("case", _PARAMS)
@pytest.mark.xfail(strict=True, reason="per-counter visitors within 10 % for only part of the counters (bench: "
                                       "total -9 % to -2 % easy, +3 % to +20 % hard, where false visits "
                                       "remain)")
def test_visitors_bar(case):
    acc = _measure(*case)
    assert acc.visitors_max_abs_rel_err <= 0.10


@pytest.mark.parametrize("case", _PARAMS)
def test_accuracy_floor(case):
    """Regression guard at what the method does today (not the product bar)."""
    acc = _measure(*case)
    assert acc.n_true > 20
    assert acc.recall >= 0.75
    assert acc.precision >= 0.65
    assert acc.f1 >= 0.78         # measured 0.82-0.90 on these small runs (seed 3)
