"""The battery device type: spec, physics, observation and action columns."""

from dataclasses import dataclass

import numpy as np

from simulators.prosumer.devices.base import Action, DeviceStep, DeviceType, Output, register_device, safe_div
from simulators.units import STEP_H
from simulators.validation import check_range


@dataclass(frozen=True)
class BatterySpec:
    """Battery (BESS); power > 0 charges (consumption from the bus's point of view)."""

    capacity_kwh: float
    p_max_kw: float
    """charge and discharge limit [kW]"""
    eta_charge: float = 0.95
    eta_discharge: float = 0.95
    soc_min: float = 0.1
    """lower SoC bound as a fraction of capacity"""
    soc_max: float = 0.9
    """upper SoC bound as a fraction of capacity"""
    soc_init: float = 0.5
    """SoC at the start of a run, fraction of capacity"""
    cost_eur_per_kwh: float = 0.0
    """degradation cost per kWh of throughput (charge + discharge)"""

    def validate(self, where):
        check_range(f"{where}.capacity_kwh", self.capacity_kwh, 0.0, 1e6, lo_open=True)
        check_range(f"{where}.p_max_kw", self.p_max_kw, 0.0, 1e5, lo_open=True)
        check_range(f"{where}.eta_charge", self.eta_charge, 0.0, 1.0, lo_open=True)
        check_range(f"{where}.eta_discharge", self.eta_discharge, 0.0, 1.0, lo_open=True)
        check_range(f"{where}.soc_min", self.soc_min, 0.0, 1.0)
        check_range(f"{where}.soc_max", self.soc_max, self.soc_min, 1.0)
        check_range(f"{where}.soc_init", self.soc_init, self.soc_min, self.soc_max)
        check_range(f"{where}.cost_eur_per_kwh", self.cost_eur_per_kwh, 0.0, 10.0)


@register_device
class Battery(DeviceType):
    """Charges and discharges within its power rating and SoC band, with efficiency losses."""

    key, tag, spec, sign, state = "batteries", "BESS", BatterySpec, 1, "soc_kwh"
    obs = (("soc", "battery energy above the lower bound, fraction of usable capacity [0, 1]"),
           ("battery_p_max", "battery power rating [kW / scale]"),
           ("battery_energy", "usable battery capacity [kWh / (scale * 1 h)]"))
    actions = (Action("battery", -1.0, 1.0, "fraction of battery power rating, > 0 charges"),)
    outputs = (Output("battery_kw", "P_battery[MW]", 1e-3, "battery power, > 0 charges"),
               Output("soc_kwh", "SoC[kWh]", 1.0, "stored energy at the end of the step"))

    def reset(self):
        self.soc_lo_kwh = self.soc_min * self.capacity_kwh
        self.soc_hi_kwh = self.soc_max * self.capacity_kwh
        self.p_max = self.total(self.p_max_kw)
        self.usable_kwh = self.total(self.soc_hi_kwh - self.soc_lo_kwh)
        super().reset()

    def initial_state(self):
        return self.soc_init * self.capacity_kwh

    def observe(self, step, scale_kw, new_day):
        return {"soc": safe_div(self.total(self.soc_kwh - self.soc_lo_kwh), self.usable_kwh),
                "battery_p_max": self.p_max / scale_kw, "battery_energy": self.usable_kwh / scale_kw}

    def apply(self, a, ctx):
        cmd = self.spread(a[:, 0]) * self.p_max_kw
        charge_max = (self.soc_hi_kwh - self.soc_kwh) / (self.eta_charge * STEP_H)
        discharge_max = (self.soc_kwh - self.soc_lo_kwh) * self.eta_discharge / STEP_H
        p = np.clip(cmd, -np.minimum(self.p_max_kw, np.maximum(discharge_max, 0.0)),
                    np.minimum(self.p_max_kw, np.maximum(charge_max, 0.0)))
        energy = np.where(p > 0, self.eta_charge * p, p / self.eta_discharge) * STEP_H
        self.soc_kwh = np.clip(self.soc_kwh + energy, self.soc_lo_kwh, self.soc_hi_kwh)
        cost = self.cost_eur_per_kwh * np.abs(p) * STEP_H
        total = self.total(p)
        return DeviceStep(total, self.total(cost), {"battery_kw": total, "soc_kwh": self.total(self.soc_kwh)})

    def to_actions(self, setpoints, ctx):
        return safe_div(np.asarray(setpoints["battery_kw"], float), self.p_max)[:, None]
