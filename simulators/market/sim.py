"""mosaik adapter for the P2P market: a thin layer over ``simulators.market.clearing.clear``.

Models: one ``Market`` (community-wide prices and volumes) and one ``Participant`` per
prosumer.  Each step the participants' bids of this step (signed energy, limit price) are
cleared once; every participant then serves its own energies and cost and repeats the
market prices, so a prosumer connected to its participant (time-shifted) sees last prices::

    market_sim = world.start("Market", step_size=900, mechanism="sdr", tariff=tariff.to_dict())
    market = market_sim.Market.create(1)[0]
    participants = market_sim.Participant.create(n)

A participant without input at a step bids 0 kWh; one with a quantity but no limit price
is a price taker (bids λ_B when buying, asks λ_S when selling).  Several sources into one
participant: quantities add up, limit prices are averaged.
"""

import mosaik_api_v3
import numpy as np

from simulators.market.clearing import clear, make_market
from simulators.market.tariffs import Tariff, make_tariff
from simulators.units import STEP_S, STEPS_PER_DAY
from simulators.validation import ConfigError

PRICES = {  # attr -> field of the step's values; served by the market and by every participant
    "price_buy[EUR/kWh]": "price_buy_eur_per_kwh", "price_sell[EUR/kWh]": "price_sell_eur_per_kwh",
    "tariff_buy[EUR/kWh]": "tariff_buy_eur_per_kwh", "tariff_sell[EUR/kWh]": "tariff_sell_eur_per_kwh",
}

# one table drives META, the inputs read in step() and the outputs served by get_data()
MODELS = {
    "Market": {
        "inputs": {},
        "outputs": {**PRICES, "supply[kWh]": "supply_kwh", "demand[kWh]": "demand_kwh",
                    "traded[kWh]": "traded_kwh", "mechanism": "mechanism"},
    },
    "Participant": {
        "inputs": {"bid_E[kWh]": "quantity_kwh", "bid_price[EUR/kWh]": "limit_price_eur_per_kwh"},
        "outputs": {"E_p2p_buy[kWh]": "p2p_buy_kwh", "E_p2p_sell[kWh]": "p2p_sell_kwh",
                    "E_grid_buy[kWh]": "grid_buy_kwh", "E_grid_sell[kWh]": "grid_sell_kwh",
                    "cost[EUR]": "cost_eur", **PRICES},
    },
}

META = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {
        name: {"public": True, "params": [], "attrs": list(table["inputs"]) + list(table["outputs"])}
        for name, table in MODELS.items()
    },
}


class MarketSim(mosaik_api_v3.Simulator):
    def __init__(self):
        super().__init__(META)
        self.market_eid = None
        self.participants = {}  # eid -> position in the bid vector
        self.values = None  # field -> scalar or (N,) array of the last clearing

    def init(self, sid, time_resolution=1.0, step_size=STEP_S, mechanism="sdr", tariff=None, start_step=0,
             params=None):
        """``step_size`` in mosaik time units, one 15-minute interval; ``tariff``: a dict from
        Tariff.to_dict() (default: the 'flat' preset); ``start_step``: step of the day at
        mosaik time 0; ``params``: mechanism options, e.g. {"k": 0.5} for the double auction."""
        if not isinstance(step_size, (int, np.integer)) or step_size <= 0:
            raise ConfigError(f"step_size: {step_size!r} must be a positive integer")
        if abs(step_size * float(time_resolution) - STEP_S) > 1e-9:
            raise ConfigError(f"step_size: {step_size} x time_resolution {time_resolution} s must span one "
                              f"market interval of {STEP_S} s (the tariff has one value per interval)")
        if not isinstance(start_step, (int, np.integer)) or not 0 <= start_step < STEPS_PER_DAY:
            raise ConfigError(f"start_step: {start_step!r} outside the allowed range [0, {STEPS_PER_DAY - 1}]")
        self.params = dict(params or {})
        make_market(mechanism, **self.params)  # fail on bad names before the run starts
        self.mechanism = mechanism
        if tariff is None:
            self.tariff = make_tariff("flat")
        else:
            self.tariff = tariff if isinstance(tariff, Tariff) else Tariff.from_dict(tariff)
        self.step_size = int(step_size)
        self.start_step = int(start_step)
        return self.meta

    def create(self, num, model):
        if model == "Market":
            if num != 1 or self.market_eid is not None:
                raise ConfigError(f"Market: {num} requested; a MarketSim holds exactly one Market entity")
            self.market_eid = "Market"
            return [{"eid": self.market_eid, "type": model}]
        start = len(self.participants)
        entities = []
        for i in range(start, start + num):
            eid = f"Participant_{i}"
            self.participants[eid] = i
            entities.append({"eid": eid, "type": model})
        return entities

    def step(self, time, inputs, max_advance):
        buy, sell = self.tariff.at(self.start_step + time // self.step_size)
        q = self._gather(inputs, "bid_E[kWh]", np.sum, 0.0)
        price = self._gather(inputs, "bid_price[EUR/kWh]", np.mean, np.nan)
        price = np.where(np.isnan(price), np.where(q > 0, buy, sell), price)
        result = clear(q, price, buy, sell, self.mechanism, **self.params)
        self.values = {**vars(result), "tariff_buy_eur_per_kwh": buy, "tariff_sell_eur_per_kwh": sell}
        return time + self.step_size

    def _gather(self, inputs, attr, combine, default):
        """(N,) vector of one input attribute over participants, ``combine`` over sources."""
        out = np.full(len(self.participants), default)
        for eid, attrs in inputs.items():
            sources = attrs.get(attr)
            if eid in self.participants and sources:
                out[self.participants[eid]] = combine([float(v) for v in sources.values()])
        return out

    def get_data(self, outputs):
        data = {}
        for eid, attrs in outputs.items():
            table = MODELS["Market" if eid == self.market_eid else "Participant"]["outputs"]
            data[eid] = {attr: self._value(table[attr], eid) for attr in attrs}
        return data

    def _value(self, field, eid):
        if self.values is None:
            return None
        value = self.values[field]
        if isinstance(value, np.ndarray):
            return float(value[self.participants[eid]])
        return value if isinstance(value, str) else float(value)


def main():
    return mosaik_api_v3.start_simulation(MarketSim())


if __name__ == "__main__":
    main()
