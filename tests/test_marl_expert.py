"""The expert as a teacher of the learners: online labels of visited states (DAgger) and the stressed
scenario on which the network limits matter."""

import numpy as np
import pytest

from agents.env import EnvConfig, P2PEnv
from agents.expert.policy import ExpertPolicy
from agents.marl.train import TrainConfig, make_expert
from simulators.prosumer.interface import ACT
from simulators.prosumer.policies import PolicyContext, make_policy
from simulators.validation import ConfigError

DAY = "2016-07-11"  # a training-split day


def test_state_expert_labels_the_state_the_environment_is_in():
    env = P2PEnv(EnvConfig(max_prosumers=3, days=DAY))
    ids = np.arange(env.n_agents)
    obs = env.reset_batch(day=DAY)
    label = make_expert(TrainConfig(expert="policy:expert"), env)  # planned from the env's own state
    replay = ExpertPolicy(PolicyContext(specs=env.specs, dates=list(env.dates), seed=0, tariff=env.tariff,
                                        network="ieee33"))            # the closed loop of its own fleet
    for _ in range(3):  # on the expert's own path both agree
        action = replay.act(obs, ids)
        np.testing.assert_allclose(label(obs), action, atol=1e-6)
        obs, _, _, _ = env.step_batch(action)
    off = action.copy()
    off[:, ACT["battery"]] = 1.0  # leave the path: prosumer 0's battery charges fully for a step
    obs, _, _, _ = env.step_batch(off)
    relabel = label(obs)
    assert relabel.shape == off.shape and np.isfinite(relabel).all()
    with pytest.raises(ConfigError, match="observation 'soc' of prosumer 0"):
        replay.act(obs, ids)  # the replaying expert cannot label a state off its path; StateExpert can


def test_online_labels_of_other_policies_and_unknown_options():
    env = P2PEnv(EnvConfig(max_prosumers=3, days=DAY))
    obs = env.reset_batch(day=DAY)
    rule = make_policy("rule", PolicyContext(specs=env.specs, tariff=env.tariff))
    np.testing.assert_array_equal(make_expert(TrainConfig(expert="policy:rule"), env)(obs),
                                  rule.act(obs, np.arange(3)))
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['horizon'\]"):
        make_expert(TrainConfig(expert="policy:expert", expert_options={"horizon": 3}), env)


def test_stressed_feeder_is_its_spec_file_and_drives_the_rule_policy_out_of_band():
    from scenarios.ieee33_high_pv import SPECS, make_specs
    from simulators.prosumer.spec import load_specs
    from simulators.scenario import PRESETS

    assert [s.to_dict() for s in load_specs(SPECS)] == [s.to_dict() for s in make_specs()]
    assert PRESETS["ieee33_high_pv"].specs == str(SPECS)
    env = P2PEnv(EnvConfig(specs=str(SPECS)))
    rule = make_policy("rule", PolicyContext(specs=env.specs, tariff=env.tariff))
    obs, done, outside = env.reset_batch(day=DAY), False, []
    while not done:
        obs, _, done, info = env.step_batch(rule.act(obs, np.arange(env.n_agents)))
        vm = info["power_flow"].vm_pu
        outside.append(((vm < 0.95) | (vm > 1.05)).any())
    assert np.mean(outside) > 0.2  # a clear share of the day's steps has a bus out of band


def test_online_labels_do_not_depend_on_what_the_expert_solved_before():
    """The compiled expert is cached per process and shared by runs; a label must depend on the state alone
    (same seed, same numbers), not on which states, days or runs that process solved before."""
    from agents.expert import policy as expert_policy

    days = [DAY, "2016-03-09"]

    def labels(order):
        expert_policy._EXPERTS.clear()
        env = P2PEnv(EnvConfig(max_prosumers=3, days=",".join(days)))
        label, out = make_expert(TrainConfig(expert="policy:expert"), env), {}
        for day in order:
            obs = env.reset_batch(day=day)
            rng = np.random.default_rng(0)
            for t in range(6):
                out[day, t] = label(obs)
                obs, _, _, _ = env.step_batch(rng.uniform(env.fleet.action_low, env.fleet.action_high,
                                                          size=(env.n_agents, env.act_dim)).astype(np.float32))
        return out

    first, second = labels(days), labels(days[::-1])
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=str(key))
