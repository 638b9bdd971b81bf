"""Potential-based reward shaping with the value of stored energy (Ng, Harada and Russell 1999).

The critic of a day-long episode has to learn what a kWh left in a battery at 05:00 is worth at the 17-21 h
peak from returns 50 steps away, and with demonstrations that hold one state-of-charge path per day it never
sees a different SoC at the same hour (README, "How the recipe was chosen").  Shaping hands it that value at
once: every agent's reward becomes

    r'_i = r_i + Φ_i(o') - Φ_i(o),   Φ_i(o) = v(t) · E_i(o),   Φ_i = 0 after the day's last step,

with E_i the usable energy in agent i's batteries (observation columns soc x battery_energy x scale_kw) and
v(t) [EUR/kWh] the marginal value of stored energy at step t of the day: the duals of the batteries' energy
balance in the joint expert's perfect-foresight solve (agents.expert.joint.stored_energy_value), the median
over a spread of *training* days and over the batteries.  With γ = 1 the shaped return of a day is the true
one minus Φ(o_0), which no action changes, so the optimal policies are the same (the critic learns
Q(s, a) - Φ(s), whose action gradient is Q's); what changes is that charging now earns v(t) per kWh at once
instead of an uncertain payoff hours later.  The evaluation's reported returns stay the true ones.
"""

import json
from collections import OrderedDict

import numpy as np

from simulators.units import STEPS_PER_DAY
from simulators.validation import ConfigError

SHAPINGS = ("none", "storage")
"""reward shaping of the critic's targets: none | storage (this module)"""
COLUMNS = ("step_frac", "soc", "battery_energy")
"""observation columns the potential reads"""


class StoragePotential:
    """Φ(obs (..., N, F)) -> (..., N) [EUR]: the value table (96,) [EUR/kWh] times each agent's stored energy."""

    def __init__(self, value_eur_per_kwh, scale_kw, obs_fields):
        value = np.asarray(value_eur_per_kwh, dtype=float)
        if value.shape != (STEPS_PER_DAY,) or not np.isfinite(value).all():
            raise ConfigError(f"value_eur_per_kwh: expected {STEPS_PER_DAY} finite values (one per step of the "
                              f"day), got shape {value.shape} with {int(np.size(value) - np.isfinite(value).sum())} "
                              f"non-finite")
        missing = [c for c in COLUMNS if c not in obs_fields]
        if missing:
            raise ConfigError(f"obs_fields: storage shaping reads the observation columns {list(COLUMNS)}; "
                              f"missing {missing}")
        self.value = value
        self.scale_kw = np.asarray(scale_kw, dtype=float)
        self.cols = [list(obs_fields).index(c) for c in COLUMNS]

    def __call__(self, obs):
        obs = np.asarray(obs, dtype=float)
        step_frac, soc, energy = (obs[..., c] for c in self.cols)
        step = np.clip(np.rint(step_frac * STEPS_PER_DAY).astype(int), 0, STEPS_PER_DAY - 1)
        return self.value[step] * soc * energy * self.scale_kw

    def shape(self, rew, obs, next_obs, done):
        """Shaped rewards (..., N): rew + (1 - done) Φ(next_obs) - Φ(obs); ``done`` scalar or (...,)."""
        alive = 1.0 - np.asarray(done, dtype=float)[..., None]
        return (np.asarray(rew, dtype=float) + alive * self(next_obs) - self(obs)).astype(np.float32)

    def to_dict(self):
        return {"value_eur_per_kwh": self.value.tolist(), "scale_kw": self.scale_kw.tolist()}

    @classmethod
    def from_dict(cls, d, obs_fields):
        return cls(d["value_eur_per_kwh"], d["scale_kw"], obs_fields)

    def save(self, path, days):
        path.write_text(json.dumps({**self.to_dict(), "days": list(days)}, indent=1))


def spread_days(pool, k):
    """``k`` dates spread evenly over ``pool`` (all of it when k >= its length)."""
    if k >= len(pool):
        return list(pool)
    return [pool[int(i)] for i in np.linspace(0, len(pool) - 1, k).round()]


def storage_value_table(env, expert_options, days):
    """(96,) median over ``days`` and over the prosumers with batteries of the joint expert's marginal value of
    stored energy per step (agents.expert.joint.stored_energy_value) [EUR/kWh]; computed once per process for
    the same expert, profile seed and days (every run of one evaluation in a worker shares it)."""
    from agents.expert.policy import _cached, _key, expert_options as checked, joint_expert

    key, expert = joint_expert(env.specs, env.tariff, env.cfg.network, checked(dict(expert_options)))
    return _cached(_TABLES, _key(key, env.cfg.seed, list(days)), lambda: _table(expert, env, days)).copy()


_TABLES = OrderedDict()
"""value tables per (expert, profile seed, days)"""


def _table(expert, env, days):
    from agents.expert.joint import stored_energy_value
    from simulators.profiles.data import prosumer_days

    values = [stored_energy_value(expert, prosumer_days(env.bank, env.specs, env.assignment, [d])) for d in days]
    stacked = np.stack(values)  # (days, 96, N)
    if np.isnan(stacked).all():
        raise ConfigError("shaping: 'storage' needs prosumers with batteries; this scenario has none")
    return np.nanmedian(stacked.transpose(1, 0, 2).reshape(STEPS_PER_DAY, -1), axis=1)


def make_potential(env, expert_options, n_days):
    """The StoragePotential of ``env`` from ``n_days`` training days spread over the year; returns (potential, days)."""
    from simulators.profiles.data import train_days

    days = spread_days([str(d.date()) for d in train_days(env.bank)], n_days)
    table = storage_value_table(env, expert_options, days)
    return StoragePotential(table, env.fleet.scale_kw, env.obs_fields), days
