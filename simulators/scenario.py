"""Scenario parameters: RF model, crowd and door-counter error, one frozen dataclass each.

``easy`` is a well-installed store on a quiet day; ``hard`` is harsher RF (more shadowing, ghosts,
misses and clock skew) and a denser crowd. Both keep at least 40 % of interrogation rounds missing a
tag that is in range (``p_max <= 0.6``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["RFParams", "CrowdParams", "DoorParams", "Scenario", "SCENARIOS", "get_scenario"]


@dataclass(frozen=True)
class RFParams:
    """UHF RFID link model (dual-slope log-distance path loss, d = 3-D distance in metres):

    RSSI(d, θ) = rssi_1m_dbm + G(θ) + g_a - 10·n·log10(d)                         for d <= breakpoint
               = rssi_1m_dbm + G(θ) + g_a - 10·n·log10(bp) - 10·n_far·log10(d/bp)  beyond it
    plus shadowing (dBm); G(θ) = -min(12·(θ/beamwidth)², front_back); g_a a per-antenna offset.
    Beyond the breakpoint shelving and bodies block the line of sight, so RSSI falls faster."""

    rssi_1m_dbm: float = -48.0          # mean RSSI at 1 m on boresight (dBm)
    path_loss_exp: float = 2.8          # n: RSSI falls 10·n dB per decade of distance
    breakpoint_m: float = 6.0           # beyond this (3-D) distance the exponent is path_loss_exp_far
    path_loss_exp_far: float = 4.5
    sensitivity_dbm: float = -70.0      # RSSI at which a round reads the tag with p_max / 2
    read_softness_db: float = 1.5       # width of the logistic read-probability edge (dB)
    p_max: float = 0.55                 # best-case probability that one round reads a tag
    shadow_slow_db: float = 3.5         # slow (body/orientation) log-normal shadowing, std (dB)
    shadow_tau_s: float = 2.0           # correlation time of the slow shadowing (seconds)
    shadow_fast_db: float = 1.5         # per-read fading, std (dB)
    beamwidth_deg: float = 90.0         # horizontal half-power beamwidth of an antenna (degrees)
    front_back_db: float = 12.0         # attenuation behind the antenna (dB)
    gain_spread_db: float = 1.5         # per-antenna install/cable gain offset, std (dB)
    antenna_height_m: float = 2.2
    tag_height_m: float = 1.1
    round_s: float = 0.05               # one inventory round on one antenna port (seconds)
    round_cap: int = 80                 # tags a round can singulate; more tags in range lower p
    crowd_radius_m: float = 3.0         # tags this close to an antenna compete in its rounds
    ghost_p: float = 0.004              # per read: a multipath ghost read at a distant antenna
    ghost_min_m: float = 8.0            # ghosts appear at antennas at least this far (metres)
    dup_p: float = 0.01                 # per read: delivered twice
    skew_sd_s: float = 0.2              # per-reader clock offset, std (seconds)
    drift_sd_ppm: float = 20.0          # per-reader clock drift, std (ppm)
    rssi_step_db: float = 0.5           # reader RSSI resolution (dB)

    @property
    def max_range_m(self) -> float:
        """Distance (3-D, m) beyond which the model reads nothing: a boresight tag with +2 sigma shadowing
        would be read with under 5 % of p_max there; capped at 25 m."""
        sigma = math.hypot(self.shadow_slow_db, self.shadow_fast_db)
        budget = (self.rssi_1m_dbm + 2 * self.gain_spread_db + 2 * sigma
                  - (self.sensitivity_dbm - 3.0 * self.read_softness_db))
        near = 10 * self.path_loss_exp * math.log10(self.breakpoint_m)
        if budget <= near:
            d = 10 ** (budget / (10 * self.path_loss_exp))
        else:
            d = self.breakpoint_m * 10 ** ((budget - near) / (10 * self.path_loss_exp_far))
        return float(min(20.0, d))

    def path_loss_db(self, distance3d_m: np.ndarray) -> np.ndarray:
        """Path loss relative to 1 m at a 3-D distance (dB, positive), dual slope."""
        d = np.maximum(np.asarray(distance3d_m, float), 0.1)
        bp = self.breakpoint_m
        return np.where(d <= bp, 10 * self.path_loss_exp * np.log10(d),
                        10 * self.path_loss_exp * math.log10(bp) + 10 * self.path_loss_exp_far * np.log10(d / bp))

    def mean_rssi_dbm(self, distance_m: np.ndarray, angle_rad: np.ndarray | float = 0.0,
                      gain_offset_db: float = 0.0) -> np.ndarray:
        """Mean RSSI at a horizontal distance and angle off boresight (dBm, no shadowing)."""
        d = np.sqrt(np.asarray(distance_m, float) ** 2 + (self.antenna_height_m - self.tag_height_m) ** 2)
        ang = np.abs(np.asarray(angle_rad, float))
        g = -np.minimum(12.0 * (np.degrees(ang) / self.beamwidth_deg) ** 2, self.front_back_db)
        return self.rssi_1m_dbm + g + gain_offset_db - self.path_loss_db(d)

    def read_probability(self, distance_m: np.ndarray, angle_rad: np.ndarray | float = 0.0,
                         gain_offset_db: float = 0.0) -> np.ndarray:
        """Expected probability that one round reads a tag, averaged over shadowing."""
        mean = self.mean_rssi_dbm(distance_m, angle_rad, gain_offset_db)[..., None]
        sigma = math.hypot(self.shadow_slow_db, self.shadow_fast_db)
        z, w = np.polynomial.hermite_e.hermegauss(40)
        w = w / w.sum()
        p = self.p_max / (1 + np.exp(-(mean + sigma * z - self.sensitivity_dbm) / self.read_softness_db))
        d3 = np.sqrt(np.asarray(distance_m, float) ** 2 + (self.antenna_height_m - self.tag_height_m) ** 2)
        return np.where(d3 <= self.max_range_m, (p * w).sum(-1), 0.0)


@dataclass(frozen=True)
class CrowdParams:
    """Shopper population and behaviour knobs."""

    member_share: float = 0.40          # shoppers carrying a registered member card
    anon_tag_share: float = 0.15        # anonymous shoppers carrying an unregistered tag
    group_sizes: tuple[float, ...] = (0.62, 0.26, 0.08, 0.04)  # P(group of 1, 2, 3, 4)
    arrival_peak_power: float = 1.0     # >1 sharpens the daily curve (denser peaks)
    glance_p: float = 0.30              # a counter stop is only a look (< 10 s)
    walkthrough_p: float = 0.08         # per stop: cut through a counter with two open sides
    return_p: float = 0.05              # a group comes back later the same day (a second trip)
    brush_p: float = 0.25              # per walking leg: step briefly into a counter passed on the way
    revisit_p: float = 0.12             # per stop: go back to a counter already visited
    dwell_median_s: float = 75.0        # median of the log-normal body of browse times
    dwell_sigma: float = 0.9
    dwell_tail_p: float = 0.10          # share of Pareto-tailed long stays
    dwell_tail_alpha: float = 1.4
    dwell_max_s: float = 2400.0
    walk_speed_mps: float = 1.15
    assets_per_counter: float = 0.3


@dataclass(frozen=True)
class DoorParams:
    """People-counter error: misses, group occlusion (undercount bias) and false counts."""

    interval_s: int = 60
    miss_p: float = 0.02                # a lone person not counted
    occlusion_p: float = 0.10           # each extra group member hidden behind another
    false_p: float = 0.01               # spurious count per real crossing (carts, staff)


@dataclass(frozen=True)
class Scenario:
    name: str
    rf: RFParams = field(default_factory=RFParams)
    crowd: CrowdParams = field(default_factory=CrowdParams)
    doors: DoorParams = field(default_factory=DoorParams)


SCENARIOS: dict[str, Scenario] = {
    "easy": Scenario("easy"),
    "hard": Scenario(
        "hard",
        rf=RFParams(path_loss_exp=2.6, path_loss_exp_far=4.0, shadow_slow_db=6.0, shadow_fast_db=2.5, p_max=0.42, round_cap=25,
                    gain_spread_db=3.0, front_back_db=9.0, ghost_p=0.03, dup_p=0.04, skew_sd_s=1.5,
                    drift_sd_ppm=100.0, rssi_step_db=1.0),
        crowd=CrowdParams(group_sizes=(0.45, 0.33, 0.14, 0.08), arrival_peak_power=1.8, glance_p=0.35,
                          walkthrough_p=0.12),
        doors=DoorParams(miss_p=0.04, occlusion_p=0.2, false_p=0.02),
    ),
}


def get_scenario(name: str) -> Scenario:
    """The named scenario (``easy`` or ``hard``)."""
    try:
        return SCENARIOS[name]
    except KeyError:
        from storeflow.contract import BadInput

        raise BadInput(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})") from None
