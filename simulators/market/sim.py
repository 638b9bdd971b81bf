"""mosaik adapter for the P2P market: a thin layer over ``simulators.market.clearing.clear``.

Models: one ``Market`` (community-wide prices and volumes) and one ``Participant`` per
prosumer.  Each step the participants' bids of this step (signed energy, limit price) are
cleared once; every participant then serves its own energies and cost and repeats the
market prices, so a prosumer connected to its participant (time-shifted) sees last prices::

    market_sim = world.start("Market", step_size=900, mechanism="sdr", tariff=tariff.to_dict())
    market = market_sim.Market.create(1)[0]
    participants = market_sim.Participant.create(n)

Every participant needs a bid quantity at every step (a participant that receives none is an
error: simulators/attrs.py); one with a quantity but no limit price is a price taker (bids λ_B
when buying, asks λ_S when selling).  Several sources into one participant: quantities add up,
limit prices are averaged.  Limit prices must lie in the step's tariff band.  The Market entity
also serves ``participants``: every participant's recorded outputs (energies and cost) as one
table {"eid": [participant ids], <attr>: [values], ...}, so a recorder takes them through one
mosaik value instead of five per participant.  Attribute table: simulators/tables.py MARKET_SIM;
out of process: ``python -m simulators.market.sim HOST:PORT``.
"""

import mosaik_api_v3
import numpy as np

from simulators.attrs import ON_INVALID, InputReader, check_unknown, meta
from simulators.market.clearing import clear, make_market
from simulators.market.tariffs import Tariff, make_tariff
from simulators.tables import MARKET, MARKET_SIM, PARTICIPANT
from simulators.units import STEP_S, STEPS_PER_DAY
from simulators.validation import ConfigError, check_choice, check_range

META = meta(MARKET_SIM)


class MarketSim(mosaik_api_v3.Simulator):
    def __init__(self):
        super().__init__(META)
        self.market_eid = None
        self.participants = {}  # eid -> position in the bid vector
        self.bid_max = []  # largest |bid| per participant [kWh]
        self.values = None  # field -> scalar or (N,) array of the last clearing
        self.columns = {}  # Attr -> the last clearing's value as served (list over participants), built on request
        self.outputs = {m.name: {a.name: a for a in m.outputs} for m in (MARKET, PARTICIPANT)}

    def init(self, sid, time_resolution=1.0, step_size=STEP_S, mechanism="sdr", tariff=None, start_step=0,
             params=None, on_invalid="raise", **unknown):
        """See simulators/tables.py MARKET_SIM.init for every parameter."""
        check_unknown("Market init", unknown, MARKET_SIM.init)
        if not isinstance(step_size, (int, np.integer)) or step_size <= 0:
            raise ConfigError(f"step_size: {step_size!r} must be a positive integer")
        if abs(step_size * check_range("time_resolution", time_resolution, 0.0, 1e9, lo_open=True) - STEP_S) > 1e-9:
            raise ConfigError(f"step_size: {step_size} x time_resolution {time_resolution} s must span one "
                              f"market interval of {STEP_S} s (the tariff has one value per interval)")
        if not isinstance(start_step, (int, np.integer)) or not 0 <= start_step < STEPS_PER_DAY:
            raise ConfigError(f"start_step: {start_step!r} outside the allowed range [0, {STEPS_PER_DAY - 1}]")
        if params is not None and not isinstance(params, dict):
            raise ConfigError(f"params: {params!r} must be a dict of mechanism options")
        self.params = dict(params or {})
        make_market(mechanism, **self.params)  # fail on bad names before the run starts
        self.mechanism = mechanism
        if tariff is None:
            self.tariff = make_tariff("flat")
        else:
            self.tariff = tariff if isinstance(tariff, Tariff) else Tariff.from_dict(tariff)
        self.step_size = int(step_size)
        self.start_step = int(start_step)
        self.on_invalid = check_choice("on_invalid", on_invalid, ON_INVALID)
        return self.meta

    def create(self, num, model, **params):
        if model == "Market":
            check_unknown("Market create", params, MARKET.params)
            if num != 1 or self.market_eid is not None:
                raise ConfigError(f"Market: {num} requested; a MarketSim holds exactly one Market entity")
            self.market_eid = "Market"
            return [{"eid": self.market_eid, "type": model}]
        bid_max_kwh = params.pop("bid_max_kwh", None)
        check_unknown("Participant create", params, PARTICIPANT.params)
        limits = bid_max_kwh if isinstance(bid_max_kwh, (list, tuple)) else [bid_max_kwh] * num
        if len(limits) != num:
            raise ConfigError(f"bid_max_kwh: {len(limits)} limits given for {num} participants")
        start = len(self.participants)
        entities = []
        for i, limit in zip(range(start, start + num), limits):
            eid = f"Participant_{i}"
            self.participants[eid] = i
            self.bid_max.append(np.inf if limit is None else check_range("bid_max_kwh", limit, 0.0, np.inf))
            entities.append({"eid": eid, "type": model})
        return entities

    def setup_done(self):
        self.reader = InputReader("Market", PARTICIPANT, list(self.participants), self.on_invalid)
        self.reader.set_range("bid_E[kWh]", -np.array(self.bid_max), np.array(self.bid_max), "bid_max_kwh")

    def step(self, time, inputs, max_advance):
        buy, sell = self.tariff.at(self.start_step + time // self.step_size)
        self.reader.set_range("bid_price[EUR/kWh]", sell, buy, "the step's tariff band")
        x = self.reader.read(time, inputs)
        q, price = x["bid_E[kWh]"], x["bid_price[EUR/kWh]"]
        price = np.where(np.isnan(price), np.where(q > 0, buy, sell), price)
        result = clear(q, price, buy, sell, self.mechanism, **self.params)
        self.values = {**vars(result), "tariff_buy_eur_per_kwh": buy, "tariff_sell_eur_per_kwh": sell,
                       "inputs_clipped": self.reader.clipped}
        self.columns = {}
        return time + self.step_size

    def get_data(self, outputs):
        if self.values is None:  # asked before the first clearing
            return {eid: {attr: None for attr in attrs} for eid, attrs in outputs.items()}
        data = {}
        for eid, attrs in outputs.items():
            market = eid == self.market_eid
            table = self.outputs["Market" if market else "Participant"]
            row = data[eid] = {}
            for name in attrs:
                value = self._column(table[name])
                row[name] = value[self.participants[eid]] if isinstance(value, list) and not market else value
        return data

    def _column(self, attr):
        """The last clearing's value of ``attr``: a number, a string, a table, or a list over participants."""
        if attr not in self.columns:
            if attr.field == "participants":
                value = {"eid": list(self.participants),
                         **{a.name: self._column(a) for a in PARTICIPANT.outputs if a.record}}
            else:
                value = self.values[attr.field]
                if isinstance(value, np.ndarray):
                    value = (value * attr.factor).tolist()
                elif not isinstance(value, str):
                    value = float(value) * attr.factor
            self.columns[attr] = value
        return self.columns[attr]


def main():
    return mosaik_api_v3.start_simulation(MarketSim())


if __name__ == "__main__":
    main()
