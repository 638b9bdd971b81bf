"""Reward shaping with the value of stored energy: the expert's duals are the derivative of its optimum, the
potential reads each agent's stored energy, the shaped day telescopes, and a training run learns from the
shaped rewards and reads its potential back on resume."""

import json

import numpy as np
import pytest

from agents.env import EnvConfig, P2PEnv
from agents.expert.joint import day_start_state, perfect_foresight, stored_energy_value
from agents.expert.policy import expert_options, joint_expert
from agents.marl import shaping, train as train_module
from agents.marl.config import TrainConfig, validate
from agents.marl.shaping import StoragePotential, spread_days
from simulators.profiles.data import prosumer_days
from simulators.prosumer.interface import ACT
from simulators.validation import ConfigError

DAY = "2016-07-11"  # a training-split day


def test_stored_energy_value_is_the_derivative_of_the_optimum():
    env = P2PEnv(EnvConfig(max_prosumers=4, days=DAY))
    _, expert = joint_expert(env.specs, env.tariff, "ieee33", expert_options({"network_limits": False}))
    profiles = prosumer_days(env.bank, env.specs, env.assignment, [DAY])
    value = stored_energy_value(expert, profiles)
    owners = [i for i, s in enumerate(env.specs) for _ in s.batteries]
    assert value.shape == (96, 4) and owners and len(owners) < 4
    assert np.isnan(value[:, [i for i in range(4) if i not in owners]]).all()
    assert np.isfinite(value[:, owners]).all() and (value[:, owners] > 0).all()
    base = perfect_foresight(expert, profiles)["total_eur"]
    for unit, prosumer in enumerate(owners):
        state = {k: np.array(v, dtype=float) for k, v in day_start_state(env.specs).items()}
        state["soc_kwh"][unit] += 0.2
        saved = (base - perfect_foresight(expert, profiles, state=state)["total_eur"]) / 0.2
        assert saved == pytest.approx(value[0, prosumer], rel=1e-3)


def test_potential_reads_stored_energy_and_the_shaped_day_telescopes():
    env = P2PEnv(EnvConfig(max_prosumers=4, days=DAY))
    value = np.linspace(0.1, 0.4, 96)
    potential = StoragePotential(value, env.fleet.scale_kw, env.obs_fields)
    battery = env.fleet.devices["batteries"]
    rng = np.random.default_rng(0)
    obs, done, t = env.reset_batch(day=DAY), False, 0
    start, raw, shaped = potential(obs), [], []
    while not done:
        usable_kwh = battery.total(battery.soc_kwh - battery.soc_lo_kwh)
        np.testing.assert_allclose(potential(obs), value[t] * usable_kwh, rtol=1e-6, atol=1e-9)
        action = rng.uniform(-1, 1, size=(env.n_agents, env.act_dim))
        action[:, ACT["battery"]] = np.sign(np.sin(t / 7.0))  # full charge and discharge phases
        next_obs, reward, done, _ = env.step_batch(action)
        raw.append(reward)
        shaped.append(potential.shape(reward, obs, next_obs, done))
        obs, t = next_obs, t + 1
    assert (start > 0).any()
    assert np.ptp(np.stack(shaped) - np.stack(raw), axis=0).max() > 0.1  # shaping moved the per-step rewards
    np.testing.assert_allclose(np.sum(shaped, axis=0), np.sum(raw, axis=0) - start, rtol=1e-4, atol=1e-3)


def test_shaping_errors_name_the_field():
    env = P2PEnv(EnvConfig(max_prosumers=2, days=DAY))
    with pytest.raises(ConfigError, match="value_eur_per_kwh: expected 96 finite values"):
        StoragePotential(np.ones(95), env.fleet.scale_kw, env.obs_fields)
    with pytest.raises(ConfigError, match="1 non-finite"):
        StoragePotential(np.r_[np.ones(95), np.nan], env.fleet.scale_kw, env.obs_fields)
    with pytest.raises(ConfigError, match=r"missing \['soc'\]"):
        StoragePotential(np.ones(96), env.fleet.scale_kw, [f for f in env.obs_fields if f != "soc"])
    with pytest.raises(ConfigError, match="shaping: 'storage' shapes the critic's rewards; algo 'bc' has no critic"):
        validate(TrainConfig(algo="bc", shaping="storage"))
    with pytest.raises(ConfigError, match="shaping"):
        validate(TrainConfig(shaping="potential"))
    with pytest.raises(ConfigError, match="shaping_days"):
        validate(TrainConfig(shaping="storage", shaping_days=0))
    assert spread_days(list("abcdefg"), 3) == ["a", "d", "g"] and spread_days(list("ab"), 5) == ["a", "b"]


def test_training_learns_from_shaped_rewards_and_resumes_with_its_potential(tmp_path, monkeypatch):
    cfg = TrainConfig(algo="matd3", env_options={"max_prosumers": 3, "days": DAY}, total_steps=96,
                      learning_starts=96, log_every=96, eval_episodes=0, shaping="storage", shaping_days=2,
                      results_dir=str(tmp_path), run_name="shaped", progress=False, threads=1)
    run_dir = train_module.train(cfg)
    saved = json.loads((run_dir / "shaping.json").read_text())
    assert len(saved["value_eur_per_kwh"]) == 96 and len(saved["days"]) == 2
    env = P2PEnv(EnvConfig(max_prosumers=3, days=DAY))
    potential = StoragePotential.from_dict(saved, env.obs_fields)
    with np.load(run_dir / "buffer.npz") as f:
        episode = {k: f[f"data_{k}"][:96] for k in ("obs", "rew", "done")}
    assert episode["done"][-1] == 1 and not episode["done"][:-1].any()
    logged = float(np.genfromtxt(run_dir / "progress.csv", delimiter=",", names=True)["episode_return"])
    # the buffer holds the shaped rewards: the day's sum is the true return (logged) minus the first potential
    assert episode["rew"].sum(0).mean() == pytest.approx(logged - potential(episode["obs"][0]).mean(), rel=1e-4)
    assert potential(episode["obs"][0]).mean() > 1.0

    def recompute(*args, **kwargs):
        raise AssertionError("a resumed run reads its potential back instead of recomputing it")

    monkeypatch.setattr(train_module, "make_potential", recompute)
    train_module.train(TrainConfig(**{**cfg.__dict__, "total_steps": 100}), resume=run_dir)
    assert shaping.SHAPINGS == ("none", "storage")
