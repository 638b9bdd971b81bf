"""ExpertPolicy: the joint optimization expert as a co-simulation policy, and demonstration data sets.

The expert knows the scenario (specs, dates, seed, tariff, network: PolicyContext), rebuilds
the profiles every prosumer sees (simulators/profiles/data.py with the context's seed) and
drives its own Fleet with its own actions.  Since the real fleet applies the same actions to the
same profiles, both fleets hold the same state; ``act`` checks this on every call by comparing
the observation rows it receives with the ones its own fleet produces (every column except the
feedback columns vm_dev and the last P2P prices) and raises if they differ, e.g. when the
context's dates or seed do not match the run, or other policies act for some prosumers.

One joint solve per step is shared by every ExpertPolicy instance of a process that has the
same context (per-prosumer mosaik simulators, each holding one prosumer): the first instance
asking for step t solves it, the others read the cached actions.

Options (PolicyContext.options): forecast 'perfect' | 'yesterday' (joint.FORECASTS), fine_hours
(default 3), v_margin_pu (default 0.0), solver (default 'CLARABEL'), network_limits (default
true; false: the voltage band is left out of the plan, an expert that ignores the network).
"""

import hashlib
import json
import time as wallclock
from collections import OrderedDict

import numpy as np

from agents.expert.joint import (
    FORECASTS,
    VOLTAGE_PENALTY_EUR_PER_PU,
    JointExpert,
    RecedingHorizon,
    evaluate,
    forecast_profiles,
    plan_from_fleet,
)
from simulators.prosumer.interface import ACTION_FIELDS, FORECAST_COLUMNS, OBS, OBS_FIELDS
from simulators.prosumer.policies import Policy, PolicyContext
from simulators.units import STEPS_PER_DAY
from simulators.validation import ConfigError, check_choice

DEFAULT_OPTIONS = {"forecast": "perfect", "fine_hours": 3, "v_margin_pu": 0.0, "solver": "CLARABEL",
                   "network_limits": True}
FEEDBACK_COLUMNS = ("vm_dev", "price_buy_last", "price_sell_last", *FORECAST_COLUMNS)
"""observation columns from the grid and the market, which the expert's own fleet cannot know, and the
forecast columns, which the expert does not read (it plans with its own ``forecast`` option)"""
STATE_COLUMNS = np.array([OBS[f] for f in OBS_FIELDS if f not in FEEDBACK_COLUMNS])
"""the built-in observation columns the expert's own fleet reproduces (added device types' columns
come after them and are not compared)"""
OBS_TOL = 1e-6
_EXPERTS = OrderedDict()   # compiled JointExpert per (specs, tariff, network, options)
_RUNS = OrderedDict()      # RecedingHorizon per full context (dates, seed included)
CACHE_SIZE = 2


def _key(*parts):
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _cached(cache, key, build):
    if key not in cache:
        cache[key] = build()
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return cache[key]


def expert_options(options):
    """DEFAULT_OPTIONS updated with ``options``, checked (ConfigError names the option)."""
    opts = dict(DEFAULT_OPTIONS)
    unknown = sorted(set(options) - set(opts))
    if unknown:
        raise ConfigError(f"policy_options: unknown option(s) {unknown} for policy 'expert'; allowed: {sorted(opts)}")
    opts.update(options)
    check_choice("policy_options.forecast", opts["forecast"], FORECASTS)
    if not isinstance(opts["network_limits"], bool):
        raise ConfigError(f"policy_options.network_limits: {opts['network_limits']!r} must be true or false")
    return opts


def joint_expert(specs, tariff, network, opts):
    """The compiled JointExpert for these specs, tariff, network name and options (cached per process)."""
    from simulators.grid.networks import make_network

    def build():
        penalty = VOLTAGE_PENALTY_EUR_PER_PU if opts["network_limits"] else 0.0
        return JointExpert(specs, tariff, make_network(network), solver=opts["solver"],
                           v_margin_pu=opts["v_margin_pu"], fine_hours=opts["fine_hours"],
                           voltage_penalty_eur_per_pu=penalty)

    key = _key([s.to_dict() for s in specs], tariff.to_dict(), network, opts["fine_hours"], opts["v_margin_pu"],
               opts["solver"], opts["network_limits"])
    return key, _cached(_EXPERTS, key, build)


class ExpertPolicy(Policy):
    """``act(obs, agent_ids)`` -> the joint expert's actions for those prosumers at the observed step."""

    name = "expert"

    def __init__(self, context, make_expert=None):
        """``make_expert``: None for the JointExpert of the options; else a callable (specs, tariff, net)
        -> an expert with JointExpert's ``plan`` (agents/llm/coupled.py: generated prosumer models)."""
        super().__init__(context)
        opts = expert_options(context.options)
        if context.tariff is None or not context.dates:
            raise ConfigError("policy 'expert': the context needs a tariff and at least one date")
        self.options = opts
        if make_expert is None:
            expert_key, self.expert = joint_expert(context.specs, context.tariff, context.network, opts)
            run_key = _key(expert_key, list(context.dates), context.seed, opts["forecast"])
            self.run = _cached(_RUNS, run_key, self._build_run)
        else:  # an expert of its own models: never shared through the caches
            from simulators.grid.networks import make_network

            self.expert = make_expert(context.specs, context.tariff, make_network(context.network))
            self.run = self._build_run()
        self.reset()

    def _build_run(self):
        from simulators.profiles.data import ProfileBank, assign_profiles, prosumer_days

        c = self.context
        bank = ProfileBank.simbench()
        assignment = assign_profiles(c.specs, c.seed, bank)
        truth = prosumer_days(bank, c.specs, assignment, c.dates)
        forecast = forecast_profiles(self.options["forecast"], bank, c.specs, assignment, c.dates)
        return _CheckedRun(self.expert, truth, forecast)

    def reset(self):
        self._day, self._last_step = 0, -1

    def act(self, obs, agent_ids):
        obs = np.asarray(obs, dtype=float)
        agent_ids = np.asarray(agent_ids, dtype=np.int64)
        width = len(self.run.fleet.obs_fields)  # every registered device type's columns
        if obs.ndim != 2 or obs.shape != (len(agent_ids), width):
            raise ValueError(f"obs: expected shape ({len(agent_ids)}, {width}), got {obs.shape}")
        step = int(round(obs[0, OBS["step_frac"]] * STEPS_PER_DAY)) % STEPS_PER_DAY
        if step <= self._last_step:  # a step that does not increase starts the next day, as in Fleet
            self._day += 1
        self._last_step = step
        g = self._day * STEPS_PER_DAY + step
        actions = self.run.act(g)
        self.run.check(g, obs, agent_ids)
        return actions[agent_ids].copy()


class _CheckedRun(RecedingHorizon):
    """RecedingHorizon that also keeps its own fleet's observation of each step, for ``check``."""

    def __init__(self, expert, truth, forecast):
        super().__init__(expert, truth, forecast)
        self.obs = []

    def _advance(self, g):
        step, tr = g % STEPS_PER_DAY, self.truth
        buy, sell = self.expert.tariff.at(step)
        n = self.fleet.n
        self.obs.append(self.fleet.observe(step, tr.load_kw[g], tr.pv_avail_kw[g], np.ones(n), buy, sell, buy, sell))
        super()._advance(g)

    def check(self, g, obs, agent_ids):
        mine = self.obs[g][np.ix_(agent_ids, STATE_COLUMNS)]
        bad = np.abs(mine - obs[:, STATE_COLUMNS]) > OBS_TOL * np.maximum(1.0, np.abs(mine))
        if bad.any():
            i, j = np.argwhere(bad)[0]
            field = OBS_FIELDS[STATE_COLUMNS[j]]
            raise ConfigError(f"policy 'expert': observation {field!r} of prosumer {int(agent_ids[i])} at step {g} is "
                              f"{obs[i, STATE_COLUMNS[j]]:.6g}, the expert's own fleet has {mine[i, j]:.6g}; the "
                              "context (specs, dates, seed, tariff) must match the run and every prosumer must "
                              "follow the expert")


class StateExpert:
    """The joint expert planned from the state a training environment is in: labels of visited states.

    ``label(env) -> actions (N, A)``: the expert's plan from the environment's current step, its
    fleet's device state (SoC, generator output, controllable-load energy left) and the episode's
    profiles (its options' forecast for the rest of the day, the truth for the current step),
    turned into actions as in the closed loop (RecedingHorizon).  This is DAgger's expert: it
    labels the states the learner's own actions lead to, which demonstrations never visit.
    One solve per call (~0.2 s for 32 prosumers after ~6 s of compiling on first use).
    """

    def __init__(self, env, options=None):
        self.options = expert_options(options or {})
        self.env = env
        _, self.expert = joint_expert(env.specs, env.tariff, env.cfg.network, self.options)
        self._dates, self._forecast = None, None

    def label(self, env=None):
        env = env or self.env
        if self._dates != env.dates:
            self._dates = list(env.dates)
            self._forecast = forecast_profiles(self.options["forecast"], env.bank, env.specs, env.assignment,
                                               env.dates)
        _, actions = plan_from_fleet(self.expert, env.fleet, env.t, env.profiles, self._forecast)
        return actions


# ---- demonstrations ------------------------------------------------------------------------------
def write_demonstrations(path, dates, env_config=None, options=None, make_expert=None):
    """Run the expert in the training environment (agents/env.py) on each of ``dates`` and save an .npz.

    Arrays: obs (T, N, F) and actions (T, N, A) float32 exactly as P2PEnv observes and receives
    them, reward and cost_eur (T, N), day (T,) index into dates, step (T,) step of the day;
    'metadata' a JSON string (fields, env config, options, seed, dates, timings, expert costs).
    One episode per date of ``env_config.episode_days`` days.  ``make_expert``: see ExpertPolicy (each
    episode's metadata then holds the expert's ``sources()``: which prosumers used which model).
    Returns the metadata dict.
    """
    import dataclasses
    from pathlib import Path

    import cvxpy as cp

    from agents.env import EnvConfig, P2PEnv

    cfg = env_config or EnvConfig()
    env = P2PEnv(cfg)
    n = env.n_agents
    rec = {k: [] for k in ("obs", "actions", "reward", "cost_eur", "day", "step")}
    episodes, t0 = [], wallclock.perf_counter()
    for d, date in enumerate(dates):
        obs = env.reset_batch(day=str(date))
        policy = ExpertPolicy(PolicyContext(specs=env.specs, dates=list(env.dates), seed=cfg.seed, tariff=env.tariff,
                                            network=cfg.network, options=dict(options or {})), make_expert)
        done, k = False, 0
        while not done:
            actions = policy.act(obs, np.arange(n)).astype(np.float32)  # the env gets exactly what is recorded,
            rec["obs"].append(obs.astype(np.float32))                      # so a replay (relabel_rewards) repeats it
            rec["actions"].append(actions)
            obs, reward, done, info = env.step_batch(actions)
            rec["reward"].append(reward)
            rec["cost_eur"].append(info["cost_eur"])
            rec["day"].append(d)
            rec["step"].append(k % STEPS_PER_DAY)
            k += 1
        ev = evaluate(policy.expert, policy.run.run())
        episodes.append({"date": str(date), "env_cost_eur": float(np.sum(rec["cost_eur"][-k:])),
                         "expert_total_eur": ev["total_eur"], "v_slack_pu": ev["v_slack_pu"],
                         "solve_s_median": float(np.median(ev["solve_s"])),
                         **({"expert_sources": policy.expert.sources()} if make_expert else {})})
    meta = {"obs_fields": list(OBS_FIELDS), "action_fields": list(ACTION_FIELDS), "n_agents": n,
            "env_config": dataclasses.asdict(cfg), "options": {**DEFAULT_OPTIONS, **(options or {})},
            "seed": cfg.seed, "dates": [str(d) for d in dates], "agents": list(env.possible_agents),
            "episodes": episodes, "wall_s": wallclock.perf_counter() - t0, "cvxpy": cp.__version__}
    arrays = {k: np.asarray(v) for k, v in rec.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.npz")  # an interrupted write never leaves a truncated file
    np.savez_compressed(partial, **arrays, dates=np.array([str(d) for d in dates]), metadata=json.dumps(meta))
    partial.replace(path)
    return meta


def load_demonstrations(path):
    """(arrays dict, metadata dict) of a file written by write_demonstrations."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != "metadata"}
        meta = json.loads(str(data["metadata"]))
    return arrays, meta
