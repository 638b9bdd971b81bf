"""mosaik adapter for prosumer agents: a thin layer over Fleet and a Policy.

One simulator instance holds one prosumer (per-prosumer mode: any agent can run in its own
process or on another host) or many (grouped mode, for large scenarios).  Each step it reads
its prosumers' profiles of this step and the feedback of the last step (own bus voltage,
market prices; connected with ``time_shifted=True``), asks the policy for actions from local
observations only, applies them to the devices and publishes meter power and the bid.
"""

import mosaik_api_v3
import numpy as np

from simulators.market.tariffs import Tariff
from simulators.prosumer.fleet import Fleet
from simulators.prosumer.policies import PolicyContext, make_policy
from simulators.prosumer.spec import spec_from_dict
from simulators.units import STEPS_PER_DAY

KW_PER_MW = 1000.0

# one table drives META and the code that reads inputs / serves outputs
MODEL = {
    "params": ["agent_ids"],
    "inputs": {  # attr -> default when nothing arrived (first step of the feedback loop)
        "P_load[MW]": 0.0, "Q_load[MVar]": 0.0, "P_pv_avail[MW]": 0.0,
        "Vm[pu]": 1.0, "price_buy[EUR/kWh]": None, "price_sell[EUR/kWh]": None,
    },
    "outputs": {  # attr -> (StepResult field, factor from kW / kVar / kWh / EUR)
        "P[MW]": ("net_kw", 1 / KW_PER_MW), "Q[MVar]": ("net_kvar", 1 / KW_PER_MW),
        "bid_E[kWh]": ("bid_kwh", 1.0), "bid_price[EUR/kWh]": ("bid_price_eur_per_kwh", 1.0),
        "P_load_served[MW]": ("load_kw", 1 / KW_PER_MW), "P_pv[MW]": ("pv_kw", 1 / KW_PER_MW),
        "Q_pv[MVar]": ("pv_q_kvar", 1 / KW_PER_MW), "P_curtailed[MW]": ("curtailed_kw", 1 / KW_PER_MW),
        "P_battery[MW]": ("battery_kw", 1 / KW_PER_MW), "SoC[kWh]": ("soc_kwh", 1.0),
        "P_gen[MW]": ("gen_kw", 1 / KW_PER_MW), "P_cl[MW]": ("cl_kw", 1 / KW_PER_MW),
        "E_cl_unserved[kWh]": ("cl_unserved_kwh", 1.0), "cost_device[EUR]": ("device_cost_eur", 1.0),
    },
}

META = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {
        "Prosumer": {
            "public": True,
            "params": MODEL["params"],
            "attrs": list(MODEL["inputs"]) + list(MODEL["outputs"]),
        },
    },
}


class ProsumerSim(mosaik_api_v3.Simulator):
    def __init__(self):
        super().__init__(META)
        self.eids = []
        self.agent_ids = np.zeros(0, dtype=np.int64)
        self.result = None

    def init(self, sid, time_resolution=1.0, step_size=900, policy="rule", context=None, start_step=0):
        """``context``: JSON-able dict with 'specs' (list of spec dicts), 'dates', 'seed',
        'tariff' (Tariff.to_dict()), 'network', 'options' -- the same for every instance."""
        context = dict(context or {})
        self.specs = [spec_from_dict(s, i) for i, s in enumerate(context.pop("specs"))]
        self.tariff = Tariff.from_dict(context.pop("tariff"))
        self.policy_name = policy
        self.context = PolicyContext(specs=self.specs, tariff=self.tariff, **context)
        self.step_size = step_size
        self.start_step = start_step
        return self.meta

    def create(self, num, model, agent_ids=None):
        ids = list(range(len(self.eids), len(self.eids) + num)) if agent_ids is None else list(agent_ids)
        if len(ids) != num:
            raise ValueError(f"agent_ids: expected {num} ids, got {len(ids)}")
        entities = []
        for agent in ids:
            eid = self.specs[agent].name
            self.eids.append(eid)
            entities.append({"eid": eid, "type": model})
        index = {s.name: i for i, s in enumerate(self.specs)}
        self.agent_ids = np.array([index[e] for e in self.eids], dtype=np.int64)
        self.position = {eid: i for i, eid in enumerate(self.eids)}
        return entities

    def setup_done(self):
        self.fleet = Fleet([self.specs[i] for i in self.agent_ids])
        self.policy = make_policy(self.policy_name, self.context)

    def step(self, time, inputs, max_advance):
        step = (self.start_step + time // self.step_size) % STEPS_PER_DAY
        buy, sell = self.tariff.at(step)
        x = {attr: self._gather(inputs, attr, default) for attr, default in MODEL["inputs"].items()}
        # before any clearing, the last P2P prices default to the grid tariffs of this step
        price_buy = np.where(np.isnan(x["price_buy[EUR/kWh]"]), buy, x["price_buy[EUR/kWh]"])
        price_sell = np.where(np.isnan(x["price_sell[EUR/kWh]"]), sell, x["price_sell[EUR/kWh]"])
        load_kw = x["P_load[MW]"] * KW_PER_MW
        pv_kw = x["P_pv_avail[MW]"] * KW_PER_MW
        obs = self.fleet.observe(step, load_kw, pv_kw, x["Vm[pu]"], price_buy, price_sell, buy, sell)
        actions = self.policy.act(obs, self.agent_ids)
        self.result = self.fleet.apply(step, actions, load_kw, x["Q_load[MVar]"] * KW_PER_MW, pv_kw, buy, sell)
        return time + self.step_size

    def _gather(self, inputs, attr, default):
        fill = np.nan if default is None else default
        out = np.full(len(self.eids), fill, dtype=float)
        for i, eid in enumerate(self.eids):
            values = inputs.get(eid, {}).get(attr)
            if values:
                out[i] = sum(float(v) for v in values.values())
        return out

    def get_data(self, outputs):
        data = {}
        for eid, attrs in outputs.items():
            i = self.position[eid]
            row = {}
            for attr in attrs:
                field, factor = MODEL["outputs"][attr]
                row[attr] = float(getattr(self.result, field)[i]) * factor if self.result else None
            data[eid] = row
        return data


def main():
    return mosaik_api_v3.start_simulation(ProsumerSim())


if __name__ == "__main__":
    main()
