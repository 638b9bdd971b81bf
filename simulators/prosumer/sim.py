"""mosaik adapter for prosumer agents: a thin layer over Fleet and a Policy.

One simulator instance holds one prosumer (per-prosumer mode: any agent can run in its own
process or on another host, ``python -m simulators.prosumer.sim HOST:PORT``) or many (grouped
mode, for large scenarios; several grouped instances, each holding a block of prosumers, can run
in worker processes or on other hosts).  Each step it reads its prosumers' profiles of this step and the
feedback of the last step (own bus voltage, market prices; connected with ``time_shifted=True``
and ``initial_data``), checks every input against the prosumer's spec (simulators/attrs.py),
asks the policy for actions from local observations only, applies them to the devices and
publishes meter power and the bid.  Besides one ``Prosumer`` entity per prosumer, an instance
offers one ``Prosumers`` entity whose ``prosumers`` output is the step's outputs of all its
prosumers as one table ({"eid": [entity ids], <output attr>: [values], ...}): a recorder takes a
block of N prosumers through one mosaik value instead of one per prosumer and attribute.  Its
attribute table is simulators/tables.py ``prosumer_sim()``::

    sim = world.start("Prosumer", step_size=900, policy="rule",
                      context={"specs": [s.to_dict() for s in specs], "tariff": tariff.to_dict()})
    prosumers = sim.Prosumer.create(len(specs))            # all of them, or agent_ids=[...]
"""

import mosaik_api_v3
import numpy as np

from simulators.attrs import ON_INVALID, InputError, InputReader, check_unknown, meta
from simulators.market.tariffs import Tariff
from simulators.prosumer.devices import load_device_modules
from simulators.prosumer.fleet import Fleet
from simulators.prosumer.policies import PolicyContext, make_policy
from simulators.prosumer.spec import spec_from_dict
from simulators.tables import FORECAST_ATTRS, LOAD_MARGIN, TABLE, V_RANGE_PU, prosumer_sim
from simulators.units import KW_PER_MW, STEP_S, STEPS_PER_DAY
from simulators.validation import ConfigError, check_choice, check_range

CONTEXT_KEYS = {"specs": True, "tariff": True, "dates": False, "seed": False, "network": False, "options": False}
"""init(context=...) keys -> required"""
META = meta(prosumer_sim())
"""META of the built-in device types (an instance regenerates it after loading device_modules)"""


def parse_context(context):
    """(specs, tariff, PolicyContext keyword arguments) of an init ``context``; ConfigError naming bad keys."""
    if not isinstance(context, dict):
        raise ConfigError(f"context: {context!r} must be a dict with {sorted(CONTEXT_KEYS)}")
    missing = sorted(k for k, required in CONTEXT_KEYS.items() if required and k not in context)
    unknown = sorted(set(context) - set(CONTEXT_KEYS))
    if missing or unknown:
        raise ConfigError(f"context: missing key(s) {missing}, unknown key(s) {unknown}; required: 'specs', "
                          "'tariff'; optional: 'dates', 'seed', 'network', 'options'")
    rest = dict(context)
    if not isinstance(rest["specs"], (list, tuple)) or not rest["specs"]:
        raise ConfigError("context['specs']: expected a non-empty list of prosumer spec dicts")
    specs = [spec_from_dict(s, i) for i, s in enumerate(rest.pop("specs"))]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"context['specs']: prosumer names must be unique, repeated: "
                          f"{sorted({n for n in names if names.count(n) > 1})}")
    raw_tariff = rest.pop("tariff")
    tariff = raw_tariff if isinstance(raw_tariff, Tariff) else Tariff.from_dict(raw_tariff)
    for key, ok, what in (("dates", lambda v: isinstance(v, (list, tuple)) and all(isinstance(d, str) for d in v),
                           "a list of 'YYYY-MM-DD' strings"),
                          ("seed", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                           "an integer >= 0"),
                          ("network", lambda v: isinstance(v, str), "a network name"),
                          ("options", lambda v: isinstance(v, dict), "a dict of policy options")):
        if key in rest and not ok(rest[key]):
            raise ConfigError(f"context[{key!r}]: {rest[key]!r} must be {what}")
    return specs, tariff, rest


class ProsumerSim(mosaik_api_v3.Simulator):
    def __init__(self):
        super().__init__(META)
        self.eids = []
        self.result = None
        self.columns = None  # output attr -> this step's values as a list, built on first request
        self.table_eid = None

    def init(self, sid, time_resolution=1.0, step_size=STEP_S, policy="rule", context=None, start_step=0,
             on_invalid="raise", device_modules=(), **unknown):
        """See simulators/tables.py prosumer_sim().init for every parameter."""
        check_unknown("Prosumer init", unknown, prosumer_sim().init)
        load_device_modules(device_modules)
        self.table = prosumer_sim()
        self.meta = {**self.meta, **meta(self.table)}
        resolution = check_range("time_resolution", time_resolution, 0.0, 1e9, lo_open=True)
        if not isinstance(step_size, (int, np.integer)) or step_size <= 0 or \
                abs(step_size * resolution - STEP_S) > 1e-9:
            raise ConfigError(f"step_size: {step_size!r} x time_resolution {time_resolution} s must be one market "
                              f"interval of {STEP_S} s")
        if isinstance(start_step, bool) or not isinstance(start_step, (int, np.integer)):
            raise ConfigError(f"start_step: {start_step!r} must be an integer step of the day (0..95)")
        self.start_step = int(check_range("start_step", start_step, 0, STEPS_PER_DAY - 1))
        self.specs, self.tariff, rest = parse_context(context)
        self.context = PolicyContext(specs=self.specs, tariff=self.tariff, **rest)
        self.policy = make_policy(policy, self.context)  # bad names and options fail here, not at a step
        self.step_size = int(step_size)
        self.on_invalid = check_choice("on_invalid", on_invalid, ON_INVALID)
        self.index = {s.name: i for i, s in enumerate(self.specs)}
        return self.meta

    def create(self, num, model, agent_ids=None, **unknown):
        """``agent_ids``: positions in context['specs']; without them the instance must create all prosumers.
        Model ``Prosumers``: the one table entity of the instance (no parameters)."""
        if model == TABLE:
            if num != 1 or self.table_eid is not None or agent_ids is not None or unknown:
                raise ConfigError(f"{TABLE}: one entity per simulator and no parameters; asked for {num} more "
                                  f"with {sorted(unknown) + (['agent_ids'] if agent_ids is not None else [])}")
            self.table_eid = TABLE
            return [{"eid": TABLE, "type": model}]
        check_unknown("Prosumer create", unknown, self.table.models[0].params)
        if agent_ids is None:
            if num + len(self.eids) != len(self.specs):
                raise ConfigError(f"agent_ids: required when creating {num} of the context's {len(self.specs)} "
                                  "prosumers (say which: agent_ids=[...]); two instances without them would "
                                  "both simulate the same prosumers")
            agent_ids = range(len(self.eids), len(self.specs))
        if not isinstance(agent_ids, (list, tuple, range, np.ndarray)):
            raise ConfigError(f"agent_ids: {agent_ids!r} must be a list of positions in context['specs']")
        ids = [int(check_range("agent_ids", a, 0, len(self.specs) - 1)) for a in agent_ids]
        if len(ids) != num:
            raise ConfigError(f"agent_ids: expected {num} ids, got {len(ids)}")
        entities = []
        for agent in ids:
            eid = self.specs[agent].name
            if eid in self.eids:
                raise ConfigError(f"agent_ids: prosumer {agent} ({eid!r}) already has an entity in this simulator")
            self.eids.append(eid)
            entities.append({"eid": eid, "type": model})
        return entities

    def setup_done(self):
        specs = [self.specs[self.index[e]] for e in self.eids]
        self.agent_ids = np.array([self.index[e] for e in self.eids], dtype=np.int64)
        self.position = {eid: i for i, eid in enumerate(self.eids)}
        self.fleet = Fleet(specs)
        self.reader = InputReader("Prosumer", self.table.models[0], self.eids, self.on_invalid)
        peak = self.fleet.load_peak_kw / KW_PER_MW
        pv = self.fleet.devices["pv"].s_kva_total / KW_PER_MW
        self.reader.set_range("P_load[MW]", 0.0, LOAD_MARGIN * peak, f"load_peak_kw x {LOAD_MARGIN}")
        self.reader.set_range("Q_load[MVar]", -LOAD_MARGIN * peak, LOAD_MARGIN * peak, f"load_peak_kw x {LOAD_MARGIN}")
        self.reader.set_range("P_pv_avail[MW]", 0.0, pv, "the PV inverter rating; 0 without PV")
        self.reader.set_range("Vm[pu]", *V_RANGE_PU, "a voltage in p.u.")
        for attr, what in FORECAST_ATTRS:  # a forecast is bounded as the profile it forecasts (x 24 h for energies)
            high, why = (LOAD_MARGIN * peak, f"load_peak_kw x {LOAD_MARGIN}") if what == "load" else (
                pv, "the PV inverter rating")
            hours = 24.0 if attr.name.startswith("E_") else 1.0
            self.reader.set_range(attr.name, 0.0, high * hours, why + (" x 24 h" if hours > 1.0 else ""))
        band = (float(np.min(self.tariff.sell_eur_per_kwh)), float(np.max(self.tariff.buy_eur_per_kwh)))
        for attr in ("price_buy[EUR/kWh]", "price_sell[EUR/kWh]"):
            self.reader.set_range(attr, *band, "the tariff's band, feed-in to retail")
        self.tan_phi = np.tan(np.arccos([s.load_pf for s in specs]))

    def step(self, time, inputs, max_advance):
        step = (self.start_step + time // self.step_size) % STEPS_PER_DAY
        buy, sell = self.tariff.at(step)
        x = self.reader.read(time, inputs)
        if time > 0:
            self._check_tariff(time, x, *self.tariff.at(step - 1))
        load_kw = x["P_load[MW]"] * KW_PER_MW
        load_kvar = np.where(np.isnan(x["Q_load[MVar]"]), load_kw * self.tan_phi, x["Q_load[MVar]"] * KW_PER_MW)
        pv_kw = x["P_pv_avail[MW]"] * KW_PER_MW
        forecast = {a.field: x[a.name] / a.factor for a, _ in FORECAST_ATTRS}  # NaN where not connected
        obs = self.fleet.observe(step, load_kw, pv_kw, x["Vm[pu]"], x["price_buy[EUR/kWh]"],
                                 x["price_sell[EUR/kWh]"], buy, sell, forecast)
        actions = self.policy.act(obs, self.agent_ids)
        self.result = self.fleet.apply(step, actions, load_kw, load_kvar, pv_kw, buy, sell)
        self.columns = None
        return time + self.step_size

    def _check_tariff(self, time, x, buy, sell):
        """The market's tariff of the last step (when connected) must be this simulator's."""
        for attr, mine in (("tariff_buy[EUR/kWh]", buy), ("tariff_sell[EUR/kWh]", sell)):
            got = x[attr]
            bad = ~np.isnan(got) & (np.abs(got - mine) > 1e-9)
            if bad.any():
                i = int(np.argmax(bad))
                raise InputError(f"Prosumer entity {self.eids[i]!r}: input {attr!r} = {got[i]!r} at time {time} "
                                 f"differs from this simulator's tariff ({mine!r} at the last step): give the "
                                 "market and the prosumers the same tariff")

    def get_data(self, outputs):
        if self.result is None:  # asked before the first step
            return {eid: {name: None for name in names} for eid, names in outputs.items()}
        if self.columns is None:
            self.columns = {a.name: self.reader.clipped.tolist() if a.field == "inputs_clipped"
                            else (getattr(self.result, a.field) * a.factor).tolist()
                            for a in self.table.models[0].outputs}
        data = {}
        for eid, names in outputs.items():
            if eid == self.table_eid:
                data[eid] = {"prosumers": {"eid": self.eids, **self.columns}}
            else:
                i = self.position[eid]
                data[eid] = {name: self.columns[name][i] for name in names}
        return data


def main():
    return mosaik_api_v3.start_simulation(ProsumerSim())


if __name__ == "__main__":
    main()
