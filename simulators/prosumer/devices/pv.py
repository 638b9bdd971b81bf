"""The rooftop PV device type: spec, physics (curtailment, inverter reactive power), action columns."""

from dataclasses import dataclass

import numpy as np

from simulators.prosumer.devices.base import Action, DeviceStep, DeviceType, Output, register_device, safe_div
from simulators.validation import check_range


@dataclass(frozen=True)
class PVSpec:
    """Rooftop PV (RDG) with an inverter that can curtail and provide reactive power."""

    kwp: float
    """peak power [kW]; the normalized profile (peak 1) is multiplied by this"""
    inverter_kva: float = 0.0
    """apparent-power rating [kVA], at least kwp (the inverter is not modelled as clipping);
    0 means 1.1 x kwp"""

    def validate(self, where):
        check_range(f"{where}.kwp", self.kwp, 0.0, 1e5)
        if self.inverter_kva:
            check_range(f"{where}.inverter_kva", self.inverter_kva, self.kwp, 1e5)

    @property
    def s_kva(self):
        return self.inverter_kva if self.inverter_kva > 0 else 1.1 * self.kwp


@register_device
class PV(DeviceType):
    """Feeds in its available power minus curtailment; its inverter's spare capacity gives reactive power.

    Several units of a prosumer run as one inverter of their summed rating.
    """

    key, tag, spec, sign = "pv", "RDG", PVSpec, -1
    actions = (Action("pv_curtail", 0.0, 1.0, "fraction of available PV power curtailed"),
               Action("pv_q", -1.0, 1.0, "fraction of the inverter's spare reactive capability, > 0 injects"))
    outputs = (Output("pv_kw", "P_pv[MW]", 1e-3, "PV power fed in after curtailment"),
               Output("pv_q_kvar", "Q_pv[MVar]", 1e-3, "PV inverter reactive power, > 0 injects"),
               Output("curtailed_kw", "P_curtailed[MW]", 1e-3, "available PV power curtailed"))

    def reset(self):
        self.kwp_total = self.total(self.kwp)
        self.s_kva_total = self.total(np.array([u.s_kva for u in self.units], dtype=float))

    def rating_kw(self):
        return self.kwp_total

    def _q_cap(self, pv_kw):
        return np.sqrt(np.clip(self.s_kva_total ** 2 - pv_kw ** 2, 0.0, None))

    def apply(self, a, ctx):
        avail = np.asarray(ctx.pv_avail_kw, dtype=float)
        pv_kw = avail * (1.0 - a[:, 0])
        q = a[:, 1] * np.where(self.kwp_total > 0, self._q_cap(pv_kw), 0.0)
        return DeviceStep(-pv_kw, np.zeros(self.n), {"pv_kw": pv_kw, "pv_q_kvar": q, "curtailed_kw": avail - pv_kw},
                          q_kvar=-q)

    def to_actions(self, setpoints, ctx):
        avail = np.asarray(ctx.pv_avail_kw, float)
        curtail = np.asarray(setpoints["curtail_kw"], float)
        q_cap = self._q_cap(avail - curtail)
        return np.column_stack([safe_div(curtail, avail), safe_div(np.asarray(setpoints["pv_q_kvar"], float), q_cap)])
