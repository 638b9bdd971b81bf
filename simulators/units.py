"""Time base, voltage band and sign convention shared by every module.

Sign convention (the README states it once): every power seen at a bus or at the prosumer's
meter uses the **load convention** -- positive means power drawn from the bus (consumption),
negative means power injected.  Device outputs of generating units (PV, controllable
generator) are reported as non-negative generation (``pv_kw``, ``gen_kw``) and enter the net
power with a minus sign, exactly as pandapower treats ``load`` and ``sgen``.  Battery power is
positive while charging (it is a consumption from the bus's point of view).  Reactive power
follows the same rule: ``q_kvar`` at the meter > 0 absorbs, ``pv_q_kvar`` > 0 injects.
"""

STEP_S = 900
"""seconds per market interval (15 minutes); also the mosaik step size with time_resolution=1"""
STEP_H = STEP_S / 3600.0
"""hours per market interval (0.25 h), the Δt of every energy and cost formula"""
STEPS_PER_DAY = 96
"""market intervals per day"""
KW_PER_MW = 1000.0
"""the models compute in kW / kWh, mosaik attributes carry MW / MVar"""

V_MIN_PU = 0.95
"""lower bound of the voltage band [p.u.]"""
V_MAX_PU = 1.05
"""upper bound of the voltage band [p.u.]"""
