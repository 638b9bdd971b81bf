"""Multi-agent training environment over the very modules the mosaik co-simulation uses.

One step is exactly the co-simulation's step (simulators/cosim.py): profiles of step t ->
Fleet.observe/apply with the voltage and prices of step t-1 -> market clear() -> grid solve()
-> reward.  Nothing is re-implemented here, so a policy produces the same trajectory in both
(tests/test_env.py checks it).

Two APIs over one core:
- batched arrays for fast training: ``reset_batch() -> obs (N, F)``,
  ``step_batch(actions (N, A)) -> (obs, reward (N,), done, info)``, ``state()`` for critics;
- PettingZoo ``ParallelEnv`` style dicts keyed by prosumer name: ``reset()``, ``step()``.

Reward of prosumer i at a step: -(market cost + device cost) [EUR] minus
``voltage_penalty_eur_per_pu`` x its share of the voltage violation [p.u. outside 0.95..1.05],
which ``voltage_credit`` defines:
- 'shared' (default): violation at its own bus + mean violation over all buses, so each agent pays
  for its own bus and shares the feeder's;
- 'difference': the violation summed over all buses minus the same sum without agent i's meter
  power (a difference reward, Wolpert and Tumer 2002), each counterfactual an exact power flow of
  the configured grid model (one more per agent and step; the warm start of the real flow is
  kept).  The counterfactual does not depend on agent i's action, so the gradient of its penalty
  in its own action is that of the feeder's total, while the other agents' moves, which it cannot
  change, drop out of its reward; an agent that relieves a violation earns a credit.  A failed
  power flow charges every agent the whole feeder's violation; a failed counterfactual charges
  that agent nothing.
``loss_price_eur_per_kwh`` (default 0) also charges each agent for network losses, shared by the same rule:
'shared' an equal share of the feeder's losses, 'difference' the losses minus the same without agent i's
meter power (its marginal losses, from the very counterfactual flow above; marginal shares sum to about
twice the losses, as marginal loss factors do).  Without it, absorbing reactive power is free for the
prosumer however much current it draws through the lines.
The grid model is the configured one (exact AC power flow through lightsim2grid by default;
no approximation unless grid_model='lindistflow' is chosen).
"""

import datetime as dt
from dataclasses import dataclass

import numpy as np

from simulators.grid.background import Background
from simulators.grid.models import make_grid
from simulators.market.clearing import clear
from simulators.profiles.data import (ProfileBank, assign_profiles, forecast_features, persistence_days,
                                     prosumer_days, test_days, train_days, validation_days)
from simulators.prosumer.fleet import Fleet
from simulators.tables import MARKET, PARTICIPANT
from simulators.units import KW_PER_MW, STEP_H, STEPS_PER_DAY, V_MAX_PU, V_MIN_PU
from simulators.validation import ConfigError


VOLTAGE_CREDITS = ("shared", "difference")
"""the voltage_credit values: how the reward splits the feeder's voltage violation among the agents"""
REWARD_FIELDS = ("voltage_penalty_eur_per_pu", "voltage_credit", "loss_price_eur_per_kwh")
"""EnvConfig fields that define the reward and nothing else (demonstrations recorded under other values are
relabelled by replay: relabel_rewards)"""


@dataclass
class EnvConfig:
    network: str = "ieee33"
    """feeder name (simulators.grid.networks.NETWORKS) or simbench:<code>"""
    grid_model: str = "ac"
    """power-flow model (simulators.grid.models.GRIDS)"""
    specs: str = ""
    """prosumer spec file or 'generate'; empty = the default scenario's file"""
    max_prosumers: int = 0
    """use only the first N prosumers (0 = all)"""
    n_prosumers: int = 0
    """with specs 'generate': prosumers on this many load buses drawn with the seed (0 = every load bus)"""
    market: str = "sdr"
    """clearing mechanism (simulators.market.clearing.MARKETS)"""
    tariff: str = "tou"
    """tariff preset (simulators.market.tariffs.TARIFFS)"""
    days: str = "train"
    """days an episode is drawn from: 'train', 'validation', 'test' (simulators.profiles.data), or a comma-separated list of dates"""
    episode_days: int = 1
    """consecutive days per episode"""
    voltage_penalty_eur_per_pu: float = 200.0
    """weight of the voltage-violation term of the reward [EUR per p.u. outside the band per step]"""
    voltage_credit: str = "shared"
    """each agent's share of the violation in its reward (VOLTAGE_CREDITS): shared | difference (module docstring)"""
    loss_price_eur_per_kwh: float = 0.0
    """price of the network losses charged in the reward [EUR/kWh], each agent's share by ``voltage_credit`` (module
    docstring; 0 = losses unpaid, as in the market)"""
    seed: int = 0
    """profile assignment seed (the same meaning as the scenario's --seed)"""


def make_scenario(cfg):
    """Specs, network and tariff exactly as the co-simulation builds them for the same names."""
    from simulators.scenario import ScenarioConfig, prepare

    sc = ScenarioConfig(network=cfg.network, grid_model=cfg.grid_model, market=cfg.market,
                        tariff=cfg.tariff, max_prosumers=cfg.max_prosumers, n_prosumers=cfg.n_prosumers, seed=cfg.seed,
                        specs=cfg.specs or ScenarioConfig.specs, progress=False)
    _, specs, net, tariff = prepare(sc)
    return specs, net, tariff


class P2PEnv:
    metadata = {"name": "p2p_energy_trading_v0"}

    def __init__(self, cfg=None):
        self.cfg = cfg = cfg or EnvConfig()
        if cfg.voltage_credit not in VOLTAGE_CREDITS:
            raise ConfigError(f"voltage_credit: {cfg.voltage_credit!r} is not one of {list(VOLTAGE_CREDITS)}")
        if not np.isfinite(cfg.voltage_penalty_eur_per_pu) or not 0.0 <= cfg.voltage_penalty_eur_per_pu <= 1e9:
            raise ConfigError(f"voltage_penalty_eur_per_pu: {cfg.voltage_penalty_eur_per_pu!r} is outside [0, 1e9]")
        if not np.isfinite(cfg.loss_price_eur_per_kwh) or not 0.0 <= cfg.loss_price_eur_per_kwh <= 10.0:
            raise ConfigError(f"loss_price_eur_per_kwh: {cfg.loss_price_eur_per_kwh!r} is outside [0, 10] EUR/kWh")
        self.specs, self.net, self.tariff = make_scenario(cfg)
        self.fleet = Fleet(self.specs)
        self.grid = make_grid(cfg.grid_model, self.net, sorted({s.bus for s in self.specs}))
        self.bank = ProfileBank.simbench()
        self.background = Background(self.grid.net, self.grid.bus_ids, self.bank)
        self.assignment = assign_profiles(self.specs, cfg.seed, self.bank)
        self.n_agents = self.fleet.n
        self.obs_fields = self.fleet.obs_fields  # interface.py's layout of every registered device type
        self.obs_dim = len(self.obs_fields)
        self.act_dim = len(self.fleet.action_fields)
        pos = {int(b): i for i, b in enumerate(self.grid.bus_ids)}
        self.bus_pos = np.array([pos[s.bus] for s in self.specs])
        self.n_bus = len(self.grid.bus_ids)
        self.state_dim = self.n_agents * self.obs_dim + self.n_bus
        self.possible_agents = list(self.fleet.names)
        self.agents = list(self.possible_agents)
        self.rng = np.random.default_rng(cfg.seed)
        self.day_pool = self._resolve_days(cfg.days)

    def _resolve_days(self, days):
        splits = {"train": train_days, "validation": validation_days, "test": test_days}
        if days in splits:
            return [str(d.date()) for d in splits[days](self.bank)]
        pool = [d.strip() for d in days.split(",") if d.strip()]
        for d in pool:
            self.bank.day_index(d)
        return pool

    # ---- batched API -------------------------------------------------------------------
    def reset_batch(self, seed=None, day=None):
        """Start an episode on ``day`` (a date) or a day drawn from the pool; return obs (N, F)."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        start = day or self.day_pool[int(self.rng.integers(len(self.day_pool)))]
        d0 = dt.date.fromisoformat(str(start))
        self.dates = [(d0 + dt.timedelta(days=k)).isoformat() for k in range(self.cfg.episode_days)]
        self.profiles = prosumer_days(self.bank, self.specs, self.assignment, self.dates)
        self.forecast = forecast_features(persistence_days(self.bank, self.specs, self.assignment, self.dates))
        self.fleet.reset()
        self.grid.reset()
        self.t = 0
        buy, sell = self.tariff.at(0)
        self.vm_last = np.ones(self.n_bus)
        self.price_last = (buy, sell)
        self._obs = self._observe()
        return self._obs

    def _observe(self):
        step = self.t % STEPS_PER_DAY
        buy, sell = self.tariff.at(step)
        p = self.profiles
        return self.fleet.observe(step, p.load_kw[self.t], p.pv_avail_kw[self.t], self.vm_last[self.bus_pos],
                                  self.price_last[0], self.price_last[1], buy, sell,
                                  {k: v[self.t] for k, v in self.forecast.items()})

    def step_batch(self, actions):
        """Advance one 15-minute step; return (obs, reward (N,), done, info)."""
        actions = np.asarray(actions, dtype=float)
        if actions.shape != (self.n_agents, self.act_dim):
            raise ValueError(f"actions: expected shape {(self.n_agents, self.act_dim)}, got {actions.shape}")
        step = self.t % STEPS_PER_DAY
        buy, sell = self.tariff.at(step)
        p = self.profiles
        res = self.fleet.apply(step, actions, p.load_kw[self.t], p.load_kvar[self.t], p.pv_avail_kw[self.t],
                               buy, sell)
        mk = clear(res.bid_kwh, res.bid_price_eur_per_kwh, buy, sell, mechanism=self.cfg.market)
        p_mw = np.bincount(self.bus_pos, res.net_kw / 1000.0, minlength=self.n_bus)
        q_mvar = np.bincount(self.bus_pos, res.net_kvar / 1000.0, minlength=self.n_bus)
        if self.background.active:  # the grid's own loads and PV follow their profiles, as in the co-simulation
            dp, dq = self.background.delta(self.dates[self.t // STEPS_PER_DAY], step)
            p_mw, q_mvar = p_mw + dp, q_mvar + dq
        pf = self.grid.solve(p_mw, q_mvar)
        violation = _violation_pu(pf.vm_pu)
        cost = mk.cost_eur + res.device_cost_eur
        charged, losses_kwh = self._charged(violation, pf, res, p_mw, q_mvar)
        reward = -cost - self.cfg.voltage_penalty_eur_per_pu * charged - self.cfg.loss_price_eur_per_kwh * losses_kwh
        info = {"step": res, "market": mk, "power_flow": pf, "cost_eur": cost, "violation_pu": violation,
                "charged_losses_kwh": losses_kwh}
        self.t += 1
        self.vm_last = pf.vm_pu
        self.price_last = (mk.price_buy_eur_per_kwh, mk.price_sell_eur_per_kwh)
        done = self.t >= len(p.load_kw)
        if not done:
            self._obs = self._observe()
        return self._obs, reward, done, info

    def _charged(self, violation, pf, res, p_mw, q_mvar):
        """(N,) p.u. of violation and (N,) kWh of network losses each agent's reward is charged (``voltage_credit``,
        module docstring); ``pf`` the step's power flow of the demand ``p_mw``/``q_mvar`` (n_bus,) [MW]/[MVar]."""
        kwh_per_mw = KW_PER_MW * STEP_H
        losses_kwh = pf.losses_mw * kwh_per_mw if pf.converged and np.isfinite(pf.losses_mw) else 0.0
        if self.cfg.voltage_credit == "shared":
            return violation[self.bus_pos] + violation.mean(), np.full(self.n_agents, losses_kwh / self.n_agents)
        total = violation.sum()
        if not pf.converged:
            return np.full(self.n_agents, total), np.zeros(self.n_agents)
        charged, marginal = np.zeros(self.n_agents), np.zeros(self.n_agents)
        for i, b in enumerate(self.bus_pos):
            p, q = p_mw.copy(), q_mvar.copy()
            p[b] -= res.net_kw[i] / KW_PER_MW
            q[b] -= res.net_kvar[i] / KW_PER_MW
            without = self.grid.solve_aside(p, q)
            if without.converged:
                charged[i] = total - _violation_pu(without.vm_pu).sum()
                marginal[i] = losses_kwh - without.losses_mw * kwh_per_mw
        return charged, marginal

    def state(self):
        """Global state for centralized critics: all observations and last bus voltages."""
        vm = np.nan_to_num(self.vm_last, nan=1.0)
        return np.concatenate([self._obs.ravel(), (vm - 1.0) / 0.05])

    # ---- PettingZoo ParallelEnv API (tests/test_env.py runs pettingzoo's parallel_api_test) ---
    @property
    def unwrapped(self):
        return self

    def observation_space(self, agent):
        return self._spaces(agent)[0]

    def action_space(self, agent):
        return self._spaces(agent)[1]

    def _spaces(self, agent):
        """(observation, action) gymnasium Boxes of ``agent``, the same objects on every call."""
        if not hasattr(self, "_space_cache"):
            from gymnasium.spaces import Box

            self._space_cache = {a: (Box(-np.inf, np.inf, shape=(self.obs_dim,), dtype=np.float64),
                                     Box(self.fleet.action_low, self.fleet.action_high, dtype=np.float64))
                                 for a in self.possible_agents}
        return self._space_cache[agent]

    def reset(self, seed=None, options=None):
        obs = self.reset_batch(seed=seed, day=(options or {}).get("day"))
        self.agents = list(self.possible_agents)
        return self._as_dict(obs), {a: {} for a in self.agents}

    def step(self, actions):
        batch = np.stack([np.asarray(actions[a], dtype=float) for a in self.possible_agents])
        obs, reward, done, info = self.step_batch(batch)
        names = self.possible_agents
        costs = info["cost_eur"]
        infos = {a: {"cost_eur": float(costs[i])} for i, a in enumerate(names)}
        out = (self._as_dict(obs), self._as_dict(reward), {a: done for a in names}, {a: False for a in names}, infos)
        if done:
            self.agents = []
        return out

    def _as_dict(self, array):
        return {a: array[i] for i, a in enumerate(self.possible_agents)}


def relabel_rewards(env, obs, actions, day, dates):
    """Rewards (T, N) of recorded actions (T, N, A) replayed in ``env`` day by day (``day`` (T,) index into
    ``dates``), for demonstrations recorded under other REWARD_FIELDS.  Every replayed observation must equal
    the recorded one (the environment is deterministic), else a ConfigError says where they part."""
    rew = np.zeros(np.shape(actions)[:2], dtype=np.float32)
    for d in np.unique(day):
        rows = np.flatnonzero(day == d)
        seen = env.reset_batch(day=str(dates[int(d)]))
        for t in rows:
            gap = float(np.max(np.abs(seen - obs[t]))) if len(seen) else 0.0
            if gap > 1e-3:
                raise ConfigError(f"demos: replaying day {dates[int(d)]} in this environment departs from the "
                                  f"recorded observations at row {int(t)} (max |difference| {gap:.3g}); the "
                                  f"demonstrations come from another scenario")
            seen, r, _, _ = env.step_batch(actions[t])
            rew[t] = r
    return rew


def _violation_pu(vm_pu):
    """p.u. outside the band per bus; a failed power flow counts as 0.1 p.u. at every bus."""
    vm = np.asarray(vm_pu, dtype=float)
    v = np.maximum(vm - V_MAX_PU, 0.0) + np.maximum(V_MIN_PU - vm, 0.0)
    return np.where(np.isnan(vm), 0.1, v)


def record_step(recorder, env, info, step_index, time):
    """Write one env step into a RunRecorder (same tables, columns from simulators/tables.py)."""
    res, mk, pf = info["step"], info["market"], info["power_flow"]
    buy, sell = env.tariff.at(step_index % STEPS_PER_DAY)
    pros = {f: getattr(res, f) for f in res.fields}
    pros.update({a.recorder_column: getattr(mk, a.field) for a in PARTICIPANT.recorded()})
    pros.update(cost_eur=info["cost_eur"], inputs_clipped=np.zeros(env.n_agents))
    values = {**vars(mk), "tariff_buy_eur_per_kwh": buy, "tariff_sell_eur_per_kwh": sell}
    market = {a.recorder_column: values[a.field] for a in MARKET.recorded()}
    vm = pf.vm_pu
    feeder = {"converged": pf.converged, "losses_mw": pf.losses_mw, "p_slack_mw": pf.p_slack_mw,
              "vm_min_pu": np.nanmin(vm) if pf.converged else np.nan,
              "vm_max_pu": np.nanmax(vm) if pf.converged else np.nan,
              "loading_max_percent": pf.loading_max_percent if pf.converged else np.nan}  # lines and trafos, as GridSim
    recorder.record(step_index, time, pros, market, vm, feeder)
