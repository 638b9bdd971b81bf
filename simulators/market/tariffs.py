"""Grid tariffs: retail price λ_B and feed-in price λ_S for each 15-minute step of a day.

A ``Tariff`` holds 96 values of each (step 0 is 00:00-00:15).  It is the outside option of
every P2P market: a prosumer can always buy from the grid at λ_B and sell to it at λ_S, so
every clearing price lies in [λ_S, λ_B] and λ_S < λ_B must hold at every step.

Presets (``TARIFFS``) are illustrative numbers, not a real utility's price sheet: the flat
0.25 / 0.08 EUR/kWh is of the order of European household retail prices and small-PV
feed-in remuneration; the time-of-use day keeps a daily mean (0.242 EUR/kWh) close to the
flat retail price so the two presets differ in shape, not in level.
"""

from dataclasses import dataclass

import numpy as np

from simulators.units import STEP_H, STEPS_PER_DAY
from simulators.validation import ConfigError, check_choice, check_finite, check_range

FIELDS = ("buy_eur_per_kwh", "sell_eur_per_kwh")


@dataclass(eq=False)
class Tariff:
    """Grid prices per step of the day; arrays of shape (96,), read-only after validation."""

    buy_eur_per_kwh: np.ndarray
    """retail price λ_B [EUR/kWh] paid for energy drawn from the grid"""
    sell_eur_per_kwh: np.ndarray
    """feed-in price λ_S [EUR/kWh] received for energy injected into the grid"""
    name: str = "custom"
    """preset name, or 'custom'"""

    def __post_init__(self):
        for field in FIELDS:
            try:
                a = np.array(getattr(self, field), dtype=float)
            except (TypeError, ValueError):
                raise ConfigError(f"{field}: {getattr(self, field)!r} is not an array of numbers") from None
            if a.shape != (STEPS_PER_DAY,):
                raise ConfigError(f"{field}: expected {STEPS_PER_DAY} values (one per 15-minute step), "
                                  f"got shape {a.shape}")
            check_finite(field, a)
            if (a < 0).any():
                step = int(np.argmax(a < 0))
                raise ConfigError(f"{field}: {a[step]} at step {step} is negative; allowed range [0, inf)")
            a.setflags(write=False)
            setattr(self, field, a)
        bad = self.sell_eur_per_kwh >= self.buy_eur_per_kwh
        if bad.any():
            step = int(np.argmax(bad))
            raise ConfigError(f"sell_eur_per_kwh: {self.sell_eur_per_kwh[step]} at step {step} is not below "
                              f"buy_eur_per_kwh {self.buy_eur_per_kwh[step]}; the feed-in price must be lower "
                              f"than the retail price at every step")

    # ---- constructors ------------------------------------------------------------------
    @classmethod
    def flat(cls, buy, sell, name="custom"):
        """The same retail ``buy`` and feed-in ``sell`` price [EUR/kWh] all day."""
        return cls(np.full(STEPS_PER_DAY, check_range("buy", buy)), np.full(STEPS_PER_DAY, check_range("sell", sell)),
                   name)

    @classmethod
    def time_of_use(cls, periods, name="custom"):
        """Piecewise-constant day from ``periods``: (start_hour, end_hour, buy, sell) tuples.

        Hours are multiples of 0.25 in [0, 24]; a period with start > end wraps past midnight
        (e.g. (22, 6, ...)).  The periods must cover every step of the day exactly once.
        """
        buy = np.full(STEPS_PER_DAY, np.nan)
        sell = np.full(STEPS_PER_DAY, np.nan)
        for k, period in enumerate(periods):
            if len(period) != 4:
                raise ConfigError(f"periods[{k}]: {period!r} is not (start_hour, end_hour, buy, sell)")
            steps = _period_steps(k, period[0], period[1])
            taken = steps[~np.isnan(buy[steps])]
            if taken.size:
                raise ConfigError(f"periods[{k}]: {period!r} overlaps another period at "
                                  f"{_clock(taken[0])}; each step must belong to exactly one period")
            buy[steps], sell[steps] = float(period[2]), float(period[3])
        gaps = np.flatnonzero(np.isnan(buy))
        if gaps.size:
            raise ConfigError(f"periods: no period covers {_clock(gaps[0])} (step {gaps[0]}); "
                              f"the periods must cover 0-24 h")
        return cls(buy, sell, name)

    # ---- use -----------------------------------------------------------------------------
    def at(self, step):
        """(λ_B, λ_S) [EUR/kWh] of a step of the day; steps past 95 wrap into the next day."""
        i = int(step) % STEPS_PER_DAY
        return float(self.buy_eur_per_kwh[i]), float(self.sell_eur_per_kwh[i])

    def to_dict(self):
        """JSON-able dict (floats round-trip exactly through json) for config.json."""
        return {"name": self.name, "buy_eur_per_kwh": self.buy_eur_per_kwh.tolist(),
                "sell_eur_per_kwh": self.sell_eur_per_kwh.tolist()}

    @classmethod
    def from_dict(cls, raw):
        """Inverse of ``to_dict``; validates like the constructor."""
        if not isinstance(raw, dict):
            raise ConfigError(f"tariff: expected a dict from Tariff.to_dict(), got {type(raw).__name__}")
        unknown = set(raw) - {"name", *FIELDS}
        missing = set(FIELDS) - set(raw)
        if unknown or missing:
            raise ConfigError(f"tariff: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}; "
                              f"allowed keys {sorted({'name', *FIELDS})}")
        return cls(raw["buy_eur_per_kwh"], raw["sell_eur_per_kwh"], str(raw.get("name", "custom")))

    def __eq__(self, other):
        return (isinstance(other, Tariff) and self.name == other.name
                and all(np.array_equal(getattr(self, f), getattr(other, f)) for f in FIELDS))


def _period_steps(k, start_hour, end_hour):
    """Step indices of [start_hour, end_hour), wrapping past midnight when start > end.

    start_hour in [0, 24), end_hour in [0, 24] where an end of 0 means midnight (24).
    """
    start = _hour_to_step(k, "start_hour", start_hour, hi_open=True)
    end = _hour_to_step(k, "end_hour", end_hour, hi_open=False) or STEPS_PER_DAY
    if start == end:
        raise ConfigError(f"periods[{k}]: start_hour {start_hour!r} equals end_hour {end_hour!r}; "
                          f"a period must not be empty")
    if start < end:
        return np.arange(start, end)
    return np.concatenate([np.arange(start, STEPS_PER_DAY), np.arange(0, end)])


def _hour_to_step(k, label, hour, hi_open):
    h = check_range(f"periods[{k}].{label}", hour, 0.0, 24.0, hi_open=hi_open)
    if h / STEP_H != round(h / STEP_H):
        raise ConfigError(f"periods[{k}].{label}: {hour!r} is not a multiple of {STEP_H} h")
    return int(round(h / STEP_H))


def _clock(step):
    minutes = int(step) * int(STEP_H * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


# ---- presets ---------------------------------------------------------------------------------
FEED_IN_EUR_PER_KWH = 0.08

TARIFFS = {
    "flat": lambda: Tariff.flat(0.25, FEED_IN_EUR_PER_KWH, name="flat"),
    # off-peak night, shoulder day, evening peak 17-21 h; feed-in flat (as for most small PV)
    "tou": lambda: Tariff.time_of_use([
        (22, 6, 0.17, FEED_IN_EUR_PER_KWH),
        (6, 17, 0.25, FEED_IN_EUR_PER_KWH),
        (17, 21, 0.36, FEED_IN_EUR_PER_KWH),
        (21, 22, 0.25, FEED_IN_EUR_PER_KWH),
    ], name="tou"),
}
"""preset name -> factory returning a fresh Tariff"""


def make_tariff(name):
    """The preset ``name`` from TARIFFS (ConfigError naming 'tariff' if unknown)."""
    return TARIFFS[check_choice("tariff", name, TARIFFS)]()
