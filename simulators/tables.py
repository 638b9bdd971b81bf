"""The attribute tables of every mosaik adapter: the one source of META, wiring, recorder columns
and the README's simulator reference (simulators/attrs.py explains the fields).

Plain module (no mosaik), so the training environment and the recorder read the same tables.
The prosumer table depends on the registered device types: ``prosumer_sim()`` builds it now.
"""

from simulators.attrs import Attr, ModelTable, SimTable
from simulators.prosumer.devices import DEVICES
from simulators.units import KW_PER_MW

MW = 1.0 / KW_PER_MW
"""factor from kW (the models' unit) to MW (mosaik's)"""
LOAD_MARGIN = 2.0
"""a household load (or its reactive power) above LOAD_MARGIN x load_peak_kw is taken for a unit
mix-up: load_peak_kw is the yearly peak of the profile, which the seeded jitter scales by <= 1.1"""
V_RANGE_PU = (0.5, 1.5)
ON_INVALID_DOC = "'raise' (default): a bad input value stops the run with an error; 'clip': clip it, count it"

# ---- profiles ------------------------------------------------------------------------------
FORECAST_ATTRS = (
    (Attr("P_load_fc4h[MW]", "load_fc4h_kw", MW, "forecast mean load over the next 4 h (the steps after this "
          "one, cut at midnight; 0 at the day's last step): yesterday's same hours"), "load"),
    (Attr("P_pv_fc4h[MW]", "pv_fc4h_kw", MW, "forecast mean available PV power over the next 4 h, as "
          "P_load_fc4h"), "pv"),
    (Attr("E_load_fc_day[MWh]", "load_fc_day_kwh", MW, "forecast load energy from the next step to midnight: "
          "yesterday's same hours"), "load"),
    (Attr("E_pv_fc_day[MWh]", "pv_fc_day_kwh", MW, "forecast available PV energy from the next step to "
          "midnight"), "pv"),
)
"""the persistence forecast (simulators/profiles/data.py forecast_features) as mosaik attributes, each
with what bounds it (the prosumer's load or PV); trained actors observe them, other policies need not"""
PROFILE = ModelTable(
    "ProsumerProfile", "the SimBench load and PV profiles of one prosumer and its persistence forecast of them",
    params={"specs": "one ProsumerSpec dict per entity (its name is the entity id)",
            "dates": "consecutive days 'YYYY-MM-DD' (2016); time 0 is 00:00 of the first",
            "seed": "seeds the profile assignment (simulators/profiles/data.py), default 0",
            "household_only": "draw household (H0) load profiles only, default true",
            "jitter": "scale each load by a seeded factor in 0.9..1.1, default true"},
    outputs=(Attr("P_load[MW]", "load_kw", MW, "household load, > 0 consumption"),
             Attr("Q_load[MVar]", "load_kvar", MW, "household reactive load, > 0 absorbs"),
             Attr("P_pv_avail[MW]", "pv_avail_kw", MW, "PV power available before curtailment, >= 0"),
             *(a for a, _ in FORECAST_ATTRS)))
PROFILES_SIM = SimTable(
    "Profiles", "simulators.profiles.sim", "Load and PV profiles per prosumer (simulators/profiles/data.py).",
    init={"step_size": "mosaik time units per step, default 900",
          "device_modules": "modules to import that register extra device types (specs using them)"},
    models=(PROFILE,), time="serves the 15-minute interval holding the current time (zero-order hold)")


# ---- prosumer ------------------------------------------------------------------------------
def _prosumer_model():
    core_in = (
        Attr("P_load[MW]", "load_kw", MW, "household load of this step", allowed="0 .. 2 x load_peak_kw (the "
             "yearly peak of the prosumer's load profile)"),
        Attr("Q_load[MVar]", "load_kvar", MW, "household reactive load; absent: from load_pf", required=False,
             allowed="|Q| <= 2 x load_peak_kw"),
        Attr("P_pv_avail[MW]", "pv_avail_kw", MW, "available PV power of this step",
             allowed="0 .. inverter rating (0 without PV)"),
        Attr("Vm[pu]", "vm_pu", 1.0, "own bus voltage of the last step (NaN: the flow did not converge)",
             shifted=True, nan_ok=True, allowed=f"{V_RANGE_PU[0]} .. {V_RANGE_PU[1]} or NaN"),
        Attr("price_buy[EUR/kWh]", "price_buy", 1.0, "buyers' average price of the last step (market)",
             shifted=True, allowed="within the tariff band"),
        Attr("price_sell[EUR/kWh]", "price_sell", 1.0, "sellers' average price of the last step (market)",
             shifted=True, allowed="within the tariff band"),
        Attr("tariff_buy[EUR/kWh]", "tariff_buy", 1.0, "the market's retail tariff of the last step: checked "
             "to equal this simulator's tariff", required=False, shifted=True),
        Attr("tariff_sell[EUR/kWh]", "tariff_sell", 1.0, "the market's feed-in tariff of the last step: checked "
             "to equal this simulator's tariff", required=False, shifted=True),
        *(Attr(a.name, a.field, a.factor, f"{a.doc} (absent: the forecast observation columns are NaN, "
               "which trained actors refuse)", required=False,
               allowed=("0 .. 24 h x " if a.name.startswith("E_") else "0 .. ")
               + ("2 x load_peak_kw" if what == "load" else "the PV inverter rating")) for a, what in FORECAST_ATTRS),
    )
    devices = tuple(Attr(o.attr, o.field, o.factor, f"{o.doc} [{d.key}]") for d in DEVICES.values()
                    for o in d.outputs)
    outputs = (
        Attr("P[MW]", "net_kw", MW, "meter power, load convention (> 0 drawn from the grid)"),
        Attr("Q[MVar]", "net_kvar", MW, "meter reactive power, load convention"),
        Attr("bid_E[kWh]", "bid_kwh", 1.0, "bid: net energy of the step, > 0 buys"),
        Attr("bid_price[EUR/kWh]", "bid_price_eur_per_kwh", 1.0, "bid's limit price, within the tariff band"),
        Attr("P_load_served[MW]", "load_kw", MW, "household load served"),
        *devices,
        Attr("cost_device[EUR]", "device_cost_eur", 1.0, "device costs of the step (fuel, wear, penalties)"),
        Attr("inputs_clipped", "inputs_clipped", 1.0, "input values clipped at this step (on_invalid='clip')"),
    )
    return ModelTable("Prosumer", "one prosumer: its devices, its policy, its meter and its bid",
                      params={"agent_ids": "positions in the context's specs of the prosumers this instance "
                                           "simulates (required unless it creates all of them); the entity "
                                           "id is the spec's name"},
                      inputs=core_in, outputs=outputs)


TABLE = "Prosumers"
"""the prosumer adapter's model whose one entity serves all its prosumers' outputs as one table"""
PROSUMERS = ModelTable(
    TABLE, "every prosumer of this simulator instance at once (exactly one per instance, no parameters)",
    outputs=(Attr("prosumers", "prosumers", 1.0, "the step's outputs of all Prosumer entities of the instance as "
                  "one table: {'eid': [entity ids], <Prosumer output>: [values]}; one mosaik value instead of "
                  "one per entity and attribute (what the scenario's recorder takes)", record=False),))


def prosumer_sim():
    """The prosumer adapter's table for the device types registered now."""
    return SimTable(
        "Prosumer", "simulators.prosumer.sim",
        "Prosumer agents over simulators/prosumer/fleet.py and a policy; one instance holds one prosumer "
        "(per-prosumer mode, any process or host) or many (grouped).",
        init={"step_size": "mosaik time units per step; step_size x time_resolution must be 900 s",
              "policy": "policy name (simulators/prosumer/policies.py POLICIES), default 'rule'",
              "context": "dict: 'specs' (list of spec dicts) and 'tariff' (Tariff.to_dict()) required; "
                         "optional 'dates', 'seed', 'network', 'options' (policy options)",
              "start_step": "step of the day at mosaik time 0 (0..95), default 0",
              "on_invalid": ON_INVALID_DOC,
              "device_modules": "modules to import that register extra device types"},
        models=(_prosumer_model(), PROSUMERS),
        time="acts on this step's profiles and the last step's voltage and prices (time-shifted inputs)")


# ---- market --------------------------------------------------------------------------------
PRICES = (
    Attr("price_buy[EUR/kWh]", "price_buy_eur_per_kwh", 1.0,
         "buyers' average price per kWh demanded, P2P share and grid remainder together"),
    Attr("price_sell[EUR/kWh]", "price_sell_eur_per_kwh", 1.0,
         "sellers' average revenue per kWh offered, P2P share and grid remainder together"),
    Attr("price_p2p[EUR/kWh]", "price_p2p_eur_per_kwh", 1.0,
         "unit price of every P2P kWh (NaN when the double auction matched nothing)"),
    Attr("tariff_buy[EUR/kWh]", "tariff_buy_eur_per_kwh", 1.0, "grid retail tariff λ_B of the step"),
    Attr("tariff_sell[EUR/kWh]", "tariff_sell_eur_per_kwh", 1.0, "grid feed-in tariff λ_S of the step"),
)
MARKET = ModelTable(
    "Market", "the community's prices and volumes of the step (exactly one per simulator)",
    outputs=(*PRICES, Attr("supply[kWh]", "supply_kwh", 1.0, "energy offered"),
             Attr("demand[kWh]", "demand_kwh", 1.0, "energy demanded"),
             Attr("traded[kWh]", "traded_kwh", 1.0, "energy traded P2P"),
             Attr("mechanism", "mechanism", 1.0, "clearing mechanism name"),
             Attr("participants", "participants", 1.0, "every participant's recorded outputs as one table: "
                  "{'eid': [participant ids], <Participant output>: [values]}", record=False)))
PARTICIPANT = ModelTable(
    "Participant", "one prosumer's account: its bid in, its energies, cost and the prices out",
    params={"bid_max_kwh": "largest |bid| per participant [kWh] (a number or one per entity), default: any"},
    inputs=(Attr("bid_E[kWh]", "quantity_kwh", 1.0, "signed energy of the step, > 0 buys; several sources add up",
                 allowed="|bid| <= bid_max_kwh"),
            Attr("bid_price[EUR/kWh]", "limit_price_eur_per_kwh", 1.0, "limit price; absent: price taker "
                 "(λ_B buying, λ_S selling); several sources are averaged", required=False,
                 allowed="the step's tariff band [λ_S, λ_B]", combine="mean")),
    outputs=(Attr("E_p2p_buy[kWh]", "p2p_buy_kwh", 1.0, "energy bought from peers"),
             Attr("E_p2p_sell[kWh]", "p2p_sell_kwh", 1.0, "energy sold to peers"),
             Attr("E_grid_buy[kWh]", "grid_buy_kwh", 1.0, "energy bought from the grid at λ_B"),
             Attr("E_grid_sell[kWh]", "grid_sell_kwh", 1.0, "energy sold to the grid at λ_S"),
             Attr("cost[EUR]", "cost_eur", 1.0, "market cost, > 0 paid", column="market_cost_eur"),
             *(Attr(a.name, a.field, a.factor, a.doc, record=False) for a in PRICES),
             Attr("inputs_clipped", "inputs_clipped", 1.0, "input values clipped at this step", record=False)))
MARKET_SIM = SimTable(
    "Market", "simulators.market.sim", "The P2P market over simulators/market/clearing.py: one clearing per step.",
    init={"step_size": "mosaik time units per step; step_size x time_resolution must be 900 s",
          "mechanism": "clearing mechanism (simulators/market/clearing.py MARKETS), default 'sdr'",
          "tariff": "Tariff.to_dict() (the same tariff the prosumers get), default the 'flat' preset",
          "start_step": "step of the day at mosaik time 0 (0..95), default 0",
          "params": "mechanism options, e.g. {'k': 0.5} for the double auction",
          "on_invalid": ON_INVALID_DOC},
    models=(MARKET, PARTICIPANT), time="clears the bids of this step; serves the result of this step")


# ---- grid ----------------------------------------------------------------------------------
GRID = ModelTable(
    "Grid", "the feeder's power-flow outcome of the step (exactly one per simulator)",
    outputs=(Attr("converged", "converged", 1.0, "the power flow converged"),
             Attr("losses[MW]", "losses_mw", 1.0, "line and transformer losses"),
             Attr("P_slack[MW]", "p_slack_mw", 1.0, "power drawn from the external grid"),
             Attr("Vm_min[pu]", "vm_min_pu", 1.0, "lowest bus voltage (NaN if not converged)"),
             Attr("Vm_max[pu]", "vm_max_pu", 1.0, "highest bus voltage (NaN if not converged)"),
             Attr("loading_max[%]", "loading_max_percent", 1.0, "highest line loading"),
             Attr("n_violations", "n_violations", 1.0, "buses outside 0.95..1.05 p.u. (all if not converged)",
                  record=False),
             Attr("buses", "buses", 1.0, "every bus's voltage as one table: {'bus': [bus indices], 'Vm[pu]': "
                  "[values]} (NaN if not converged)", record=False)))
BUS = ModelTable(
    "Bus", "one bus of the feeder: demand in, voltage out",
    params={"bus": "pandapower bus index per entity (a list, or one index for all); each bus at most once"},
    inputs=(Attr("P[MW]", "p_mw", 1.0, "active demand, load convention; sources add up; absent: 0", required=False,
                 default=0.0, allowed="|P| <= p_max_mw"),
            Attr("Q[MVar]", "q_mvar", 1.0, "reactive demand, load convention; sources add up; absent: 0",
                 required=False, default=0.0, allowed="|Q| <= p_max_mw")),
    outputs=(Attr("Vm[pu]", "vm_pu", 1.0, "voltage magnitude (NaN if not converged)"),
             Attr("Va[deg]", "va_deg", 1.0, "voltage angle", record=False),
             Attr("P[MW]", "p_mw", 1.0, "total active demand at the bus: inputs + the feeder's own loads - sgens",
                  record=False),
             Attr("Q[MVar]", "q_mvar", 1.0, "total reactive demand at the bus: inputs + the feeder's own loads - "
                  "sgens", record=False),
             Attr("inputs_clipped", "inputs_clipped", 1.0, "input values clipped at this step", record=False)))
GRID_SIM = SimTable(
    "Grid", "simulators.grid.sim", "The feeder over simulators/grid/models.py: one power flow per step.",
    init={"step_size": "mosaik time units per step, default 900",
          "network": "feeder name (simulators/grid/networks.py NETWORKS) or simbench:<code>, default 'ieee33'",
          "model": "power-flow model (simulators/grid/models.py GRIDS), default 'ac'",
          "prosumer_buses": "buses whose native loads and sgens the prosumers replace",
          "p_max_mw": "largest |P|, |Q| per bus input [MW, MVar]; default 10 x (the feeder's total load + 1 MW)",
          "on_invalid": ON_INVALID_DOC,
          "dates": "days 'YYYY-MM-DD' of the run (time 0 = 00:00 of the first): the feeder's own loads and PV at "
                   "buses without a prosumer follow their SimBench profiles; default none: they stay nominal"},
    models=(GRID, BUS), time="solves the demand of this step; serves the flow of this step")

RECORDER_SIM = SimTable(
    "Recorder", "simulators.recorder.sim", "Writes a run folder (simulators/recorder/recorder.py) from the "
    "connected outputs of the tables above.",
    init={"step_size": "mosaik time units per step, default 900"},
    models=(ModelTable("Recorder", "one per run; takes any attribute (any_inputs)",
                       params={"run_dir": "run folder", "layout": "role of every connected source (see sim.py)",
                               "start": "ISO time of mosaik time 0"}),),
    time="records the values of this step")


def simulators():
    """Every adapter's table, in the order of the README reference."""
    return (PROFILES_SIM, prosumer_sim(), MARKET_SIM, GRID_SIM, RECORDER_SIM)


README_BEGIN = "<!-- simulator reference: begin (generated by python -m simulators.tables --readme; do not edit) -->"
README_END = "<!-- simulator reference: end -->"


def write_readme(path):
    """Replace the README's generated simulator reference with render_reference(simulators())."""
    from pathlib import Path

    from simulators.attrs import render_reference

    text = Path(path).read_text()
    head, rest = text.split(README_BEGIN)
    _, tail = rest.split(README_END)
    Path(path).write_text(f"{head}{README_BEGIN}\n{render_reference(simulators())}\n{README_END}{tail}")


if __name__ == "__main__":
    import sys
    from pathlib import Path

    from simulators.attrs import render_reference

    if sys.argv[1:] == ["--readme"]:
        write_readme(Path(__file__).resolve().parents[1] / "README.md")
    else:
        print(render_reference(simulators()))
