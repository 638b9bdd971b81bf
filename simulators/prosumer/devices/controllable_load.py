"""The controllable (shiftable) load device type: spec, physics, observation and action columns."""

from dataclasses import dataclass

import numpy as np

from simulators.prosumer.devices.base import Action, DeviceStep, DeviceType, Output, register_device, safe_div
from simulators.units import STEP_H, STEPS_PER_DAY
from simulators.validation import check_range


@dataclass(frozen=True)
class ControllableLoadSpec:
    """Shiftable load (CL): a daily energy need served at any power in [0, p_max_kw]."""

    energy_kwh: float
    """energy to serve each day between earliest_step and deadline_step"""
    p_max_kw: float
    earliest_step: int = 0
    """first 15-minute step (0..95) at which the load may run"""
    deadline_step: int = STEPS_PER_DAY
    """the energy must be served before this step (1..96)"""
    unserved_penalty_eur_per_kwh: float = 0.5
    """cost of energy still unserved at the deadline"""

    def validate(self, where):
        check_range(f"{where}.p_max_kw", self.p_max_kw, 0.0, 1e5, lo_open=True)
        check_range(f"{where}.earliest_step", self.earliest_step, 0, STEPS_PER_DAY - 1)
        check_range(f"{where}.deadline_step", self.deadline_step, self.earliest_step + 1, STEPS_PER_DAY)
        window_h = (self.deadline_step - self.earliest_step) * 0.25
        check_range(f"{where}.energy_kwh", self.energy_kwh, 0.0, self.p_max_kw * window_h)
        check_range(f"{where}.unserved_penalty_eur_per_kwh", self.unserved_penalty_eur_per_kwh, 0.0, 100.0)


@register_device
class ControllableLoad(DeviceType):
    """Serves its daily energy inside its window; what is missing at the deadline is penalized once."""

    key, tag, spec, sign, state = "controllable_loads", "CL", ControllableLoadSpec, 1, "cl_remaining_kwh"
    obs = (("cl_remaining", "controllable-load energy still to serve today [kWh / (scale * 1 h)]"),
           ("cl_p_max", "controllable-load rating [kW / scale]"),
           ("cl_steps_left", "steps left before the controllable-load deadline, / 96"))
    actions = (Action("controllable_load", 0.0, 1.0, "fraction of controllable-load rating"),)
    outputs = (Output("cl_kw", "P_cl[MW]", 1e-3, "controllable-load power"),
               Output("cl_unserved_kwh", "E_cl_unserved[kWh]", 1.0,
                      "energy written off at the deadline (penalized in cost_device)"))

    def reset(self):
        self.p_max = self.total(self.p_max_kw)
        super().reset()

    def initial_state(self):
        return self.energy_kwh.copy()

    def new_day(self):
        self.cl_remaining_kwh = self.energy_kwh.copy()

    def planning_state(self, new_day):
        # before apply() of a new day's first step the loads already count as unserved
        return (self.energy_kwh if new_day else self.cl_remaining_kwh).copy()

    def observe(self, step, scale_kw, new_day):
        steps_left = np.clip(self.deadline_step - step, 0, None)
        return {"cl_remaining": self.total(self.planning_state(new_day)) / scale_kw,
                "cl_p_max": self.p_max / scale_kw, "cl_steps_left": self.unit_max(steps_left) / STEPS_PER_DAY}

    def apply(self, a, ctx):
        step = ctx.step
        active = (self.earliest_step <= step) & (step < self.deadline_step)
        p = np.where(active, self.spread(a[:, 0]) * self.p_max_kw, 0.0)
        p = np.minimum(p, self.cl_remaining_kwh / STEP_H)
        self.cl_remaining_kwh = np.maximum(self.cl_remaining_kwh - p * STEP_H, 0.0)
        # the energy still missing when the window closes is charged once, then written off
        closing = step == self.deadline_step - 1
        unserved = np.where(closing, self.cl_remaining_kwh, 0.0)
        self.cl_remaining_kwh = np.where(closing, 0.0, self.cl_remaining_kwh)
        total = self.total(p)
        return DeviceStep(total, self.total(unserved * self.unserved_penalty_eur_per_kwh),
                          {"cl_kw": total, "cl_unserved_kwh": self.total(unserved)})

    def to_actions(self, setpoints, ctx):
        return safe_div(np.asarray(setpoints["cl_kw"], float), self.p_max)[:, None]
