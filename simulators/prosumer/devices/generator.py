"""The controllable generator device type: spec, physics, observation and action columns."""

from dataclasses import dataclass

import numpy as np

from simulators.prosumer.devices.base import Action, DeviceStep, DeviceType, Output, register_device, safe_div
from simulators.units import STEP_H
from simulators.validation import check_range


@dataclass(frozen=True)
class GeneratorSpec:
    """Controllable distributed generator (CDG) with ramp limits and quadratic cost."""

    p_max_kw: float
    p_min_kw: float = 0.0
    ramp_kw_per_step: float = 0.0
    """largest change of output between consecutive 15-minute steps; 0 means unlimited"""
    cost_a_eur_per_kw2h: float = 0.0002
    """quadratic cost coefficient: cost per hour = a p^2 + b p + c (p in kW)"""
    cost_b_eur_per_kwh: float = 0.12
    cost_c_eur_per_h: float = 0.0
    """no-load cost per hour, charged whenever the output is above zero"""

    def validate(self, where):
        check_range(f"{where}.p_max_kw", self.p_max_kw, 0.0, 1e5, lo_open=True)
        check_range(f"{where}.p_min_kw", self.p_min_kw, 0.0, self.p_max_kw)
        check_range(f"{where}.ramp_kw_per_step", self.ramp_kw_per_step, 0.0, 1e5)
        check_range(f"{where}.cost_a_eur_per_kw2h", self.cost_a_eur_per_kw2h, 0.0, 10.0)
        check_range(f"{where}.cost_b_eur_per_kwh", self.cost_b_eur_per_kwh, 0.0, 10.0)
        check_range(f"{where}.cost_c_eur_per_h", self.cost_c_eur_per_h, 0.0, 1e4)


@register_device
class Generator(DeviceType):
    """Follows its command within ramp limits; below p_min it is off (start-up may jump to p_min)."""

    key, tag, spec, sign, state = "generators", "CDG", GeneratorSpec, -1, "gen_last_kw"
    obs = (("gen_last", "generator output at the last step [kW / scale]"),
           ("gen_p_max", "generator rating [kW / scale]"),
           ("gen_cost", "generator marginal cost at half load [EUR/kWh]"))
    actions = (Action("generator", 0.0, 1.0, "fraction of generator rating (below p_min means off)"),)
    outputs = (Output("gen_kw", "P_gen[MW]", 1e-3, "generator output"),)

    def reset(self):
        self.p_max = self.total(self.p_max_kw)
        # marginal cost at half load, weighted by rating: what a policy compares with tariffs
        self.marginal = safe_div(self.total((self.cost_b_eur_per_kwh + self.cost_a_eur_per_kw2h * self.p_max_kw)
                                             * self.p_max_kw), self.p_max)
        super().reset()

    def observe(self, step, scale_kw, new_day):
        return {"gen_last": self.total(self.gen_last_kw) / scale_kw, "gen_p_max": self.p_max / scale_kw,
                "gen_cost": self.marginal}

    def apply(self, a, ctx):
        cmd = self.spread(a[:, 0]) * self.p_max_kw
        last = self.gen_last_kw
        ramp = np.where(self.ramp_kw_per_step > 0, self.ramp_kw_per_step, np.inf)
        want_on = (cmd >= self.p_min_kw) & (cmd > 0)
        # running: move towards the command within the ramp; start-up may jump to p_min;
        # shut-down is allowed once the ramp brings the output below p_min
        hi = np.minimum(np.maximum(last + ramp, self.p_min_kw), self.p_max_kw)
        lo = np.maximum(last - ramp, self.p_min_kw)
        p_on = np.clip(cmd, np.minimum(lo, hi), hi)
        p_off = np.maximum(last - ramp, 0.0)
        p_off = np.where(p_off < self.p_min_kw, 0.0, np.minimum(p_off, self.p_max_kw))
        p = np.where(want_on, p_on, p_off)
        self.gen_last_kw = p
        cost = (self.cost_a_eur_per_kw2h * p ** 2 + self.cost_b_eur_per_kwh * p
                + self.cost_c_eur_per_h * (p > 0)) * STEP_H
        total = self.total(p)
        return DeviceStep(-total, self.total(cost), {"gen_kw": total})

    def to_actions(self, setpoints, ctx):
        return safe_div(np.asarray(setpoints["gen_kw"], float), self.p_max)[:, None]
