"""The training environment reproduces the mosaik co-simulation step for step."""

import numpy as np
import pandas as pd
import pytest

from agents.env import EnvConfig, P2PEnv, record_step
from simulators.cosim import run
from simulators.prosumer.interface import ACTION_FIELDS, FORECAST_COLUMNS
from simulators.prosumer.policies import POLICIES, PolicyContext, RuleBasedPolicy, make_policy
from simulators.recorder.recorder import RunRecorder
from simulators.scenario import ScenarioConfig, validate


def _env_run(env, policy, day, out_dir):
    obs = env.reset_batch(day=day)
    rec = RunRecorder(out_dir, env.fleet.names, env.fleet.buses, env.grid.bus_ids)
    done, k = False, 0
    while not done:
        actions = policy.act(obs, np.arange(env.n_agents))
        obs, reward, done, info = env.step_batch(actions)
        record_step(rec, env, info, k, f"{day} {k}")
        k += 1
    rec.close()
    return k


@pytest.mark.parametrize("market", ["sdr", "double_auction"])
def test_env_and_cosimulation_give_the_same_trajectory(tmp_path, market):
    cfg = ScenarioConfig(results_dir=str(tmp_path), progress=False, plots=False, grouping="grouped",
                         market=market, run_name="cosim", seed=3)
    cosim_dir, _ = run(cfg)
    env = P2PEnv(EnvConfig(market=market, seed=3))
    policy = make_policy("rule", PolicyContext(env.specs, tariff=env.tariff))
    steps = _env_run(env, policy, validate(cfg).start_date, tmp_path / "env")
    assert steps == 96
    for table, drop in (("prosumers", ["time"]), ("market", ["time"]), ("grid", ["time"]), ("feeder", ["time"])):
        a = pd.read_csv(cosim_dir / f"{table}.csv").drop(columns=drop)
        b = pd.read_csv(tmp_path / "env" / f"{table}.csv").drop(columns=drop)
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-9)


class _Spy(RuleBasedPolicy):
    """The rule policy, keeping every observation it is given (class-wide, it runs inside the simulator)."""

    name = "spy"
    seen = []

    def act(self, obs, agent_ids):
        _Spy.seen.append(np.array(obs, dtype=float))
        return super().act(obs, agent_ids)


def test_cosimulation_observes_what_the_env_observes_forecasts_included(tmp_path, monkeypatch):
    """Every observation column, the persistence forecast included, is the same in training and co-simulation."""
    monkeypatch.setitem(POLICIES, "spy", _Spy)
    _Spy.seen = []
    cfg = ScenarioConfig(results_dir=str(tmp_path), progress=False, plots=False, grouping="grouped",
                         run_name="cosim", seed=4, start_date="2016-03-14", policy="spy")
    run(cfg)
    cosim = np.stack(_Spy.seen)
    _Spy.seen = []
    env = P2PEnv(EnvConfig(seed=4))
    _env_run(env, make_policy("spy", PolicyContext(env.specs, tariff=env.tariff)), "2016-03-14", tmp_path / "env")
    trained = np.stack(_Spy.seen)
    assert cosim.shape == trained.shape == (96, env.n_agents, env.obs_dim)
    fc = [env.obs_fields.index(c) for c in FORECAST_COLUMNS]
    assert np.isfinite(cosim).all() and (cosim[:, :, fc].max(axis=(0, 1)) > 0).all()
    np.testing.assert_allclose(cosim, trained, rtol=1e-9, atol=1e-9)
    # the columns hold the persistence forecast per scale (energies per 24 h x scale)
    scale = env.fleet.scale_kw
    for column, field, hours in (("load_fc4h", "load_fc4h_kw", 1.0), ("pv_fc_day", "pv_fc_day_kwh", 24.0)):
        np.testing.assert_allclose(trained[:, :, env.obs_fields.index(column)],
                                   env.forecast[field][:96] / (hours * scale), rtol=1e-6, atol=1e-6)


def test_parallel_env_api_and_reward():
    env = P2PEnv(EnvConfig(max_prosumers=5, days="2016-07-14"))
    obs, infos = env.reset(seed=1)
    assert set(obs) == set(env.possible_agents) and obs[env.possible_agents[0]].shape == (env.obs_dim,)
    assert env.action_space(env.possible_agents[0]).shape == (len(ACTION_FIELDS),)
    total = 0
    for _ in range(96):
        actions = {a: env.action_space(a).sample() * 0 for a in env.agents}
        obs, rewards, terms, truncs, infos = env.step(actions)
        total += 1
        for a in rewards:
            assert rewards[a] <= -infos[a]["cost_eur"] + 1e-9  # the voltage penalty only lowers reward
    assert total == 96 and all(terms.values()) and env.agents == []
    assert env.state().shape == (env.state_dim,)


def test_episodes_on_the_same_day_repeat():
    env = P2PEnv(EnvConfig(max_prosumers=6))
    policy = make_policy("rule", PolicyContext(env.specs, tariff=env.tariff))

    def episode(day):
        obs, out, done = env.reset_batch(day=day), [], False
        while not done:
            obs, reward, done, info = env.step_batch(policy.act(obs, np.arange(env.n_agents)))
            out.append(np.concatenate([reward, info["power_flow"].vm_pu]))
        return np.array(out)

    first = episode("2016-06-08")
    episode("2016-01-17")  # another day in between moves the warm start elsewhere
    # (lightsim2grid keeps factorization state that moves round-off, see GridModel.reset)
    np.testing.assert_allclose(episode("2016-06-08"), first, rtol=0, atol=1e-10)


def test_env_rejects_wrong_action_shape():
    env = P2PEnv(EnvConfig(max_prosumers=3))
    env.reset_batch(seed=0)
    with pytest.raises(ValueError, match="expected shape"):
        env.step_batch(np.zeros((2, len(ACTION_FIELDS))))


def test_pettingzoo_parallel_api():
    """pettingzoo's own API test on P2PEnv (one full day per episode), warnings as errors."""
    import warnings

    from pettingzoo.test import parallel_api_test

    env = P2PEnv(EnvConfig(max_prosumers=3, days="2016-07-14"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parallel_api_test(env, num_cycles=100)
    assert env.observation_space(env.possible_agents[0]) is env.observation_space(env.possible_agents[0])
