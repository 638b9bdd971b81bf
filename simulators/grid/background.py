"""The grid's own loads and generators that are no prosumer's: background that follows its profiles.

A grid model keeps the native loads and static generators at buses without a prosumer
(simulators/grid/models.py).  On SimBench grids every element names its profile in the column
``profile``; those the ProfileBank holds (standard load profiles H0-*, G*, L*, and PV1..PV8) follow
it here: p(t) = p_mw · scaling · f(t), q(t) = q_mvar · scaling · f(t), with f the profile normalized
to its yearly peak, as the prosumers' own loads and PV (simulators/profiles/data.py).  Elements
without a known profile (wind, biomass, hydro; nets without a ``profile`` column such as case33bw)
stay at their nominal value.  Without this, a SimBench MV/LV grid with 1000 of its 5131 load buses
as prosumers would carry ~10 MW of rooftop PV at full power through the night.

``Background(net, bus_ids, bank).delta(date, row)`` gives the change against the nominal background
per bus at one 15-minute row of a day; the co-simulation's grid adapter and the training
environment add it to the prosumers' demand, so both see the same grid.
"""

import numpy as np

from simulators.units import STEPS_PER_DAY
from simulators.validation import ConfigError

TABLES = {"load": 1.0, "sgen": -1.0}
"""element table -> sign in the load convention (> 0 consumption)"""


class Background:
    """Profile-following background of a grid model's net (prosumer buses already emptied)."""

    def __init__(self, net, bus_ids, bank):
        self.bank = bank
        self.n_bus = len(bus_ids)
        pos = {int(b): i for i, b in enumerate(bus_ids)}
        self.parts = []  # (bus positions (K,), p (K,) [MW], q (K,) [MVar], kind, profile columns (K,))
        for table, sign in TABLES.items():
            df = net[table]
            if "profile" not in df or not len(df):
                continue
            on = df["in_service"].to_numpy(dtype=bool)
            scale = df["scaling"].to_numpy(dtype=float) * on * sign
            p, q = df["p_mw"].to_numpy(dtype=float) * scale, df["q_mvar"].to_numpy(dtype=float) * scale
            names = df["profile"].astype(str).to_numpy()
            for kind, known in (("load", bank.load_types), ("pv", bank.pv_types)):
                col = {n: j for j, n in enumerate(known)}
                take = np.array([n in col for n in names]) & ((p != 0) | (q != 0))
                if take.any():
                    buses = np.array([pos[int(b)] for b in df["bus"].to_numpy()[take]])
                    self.parts.append((buses, p[take], q[take], kind, np.array([col[n] for n in names[take]])))

    @property
    def active(self):
        """True when some element follows a profile (else delta is always zero)."""
        return bool(self.parts)

    def delta(self, date, row):
        """(dp (n_bus,) [MW], dq (n_bus,) [MVar]): profile-following background minus its nominal
        value at 15-minute ``row`` of ``date``, load convention."""
        if not 0 <= row < STEPS_PER_DAY:
            raise ConfigError(f"row: {row!r} outside the allowed range [0, {STEPS_PER_DAY - 1}] "
                              "(15-minute rows of a day)")
        dp, dq = np.zeros(self.n_bus), np.zeros(self.n_bus)
        t = self.bank.rows(date).start + row
        for buses, p, q, kind, cols in self.parts:
            factor = (self.bank.load_p if kind == "load" else self.bank.pv)[t, cols] - 1.0
            dp += np.bincount(buses, p * factor, minlength=self.n_bus)
            dq += np.bincount(buses, q * factor, minlength=self.n_bus)
        return dp, dq
