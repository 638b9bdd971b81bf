"""The reward's voltage credit (agents/env.py) and the replay of demonstrations under another reward."""

import dataclasses
import json

import numpy as np
import pytest

from agents.env import EnvConfig, P2PEnv, _violation_pu, relabel_rewards
from agents.marl.config import TrainConfig
from agents.marl.train import train
from simulators.grid.models import make_grid
from simulators.prosumer.policies import PolicyContext, make_policy
from simulators.scenario import PRESETS
from simulators.validation import ConfigError

STRESSED = PRESETS["ieee33_high_pv"]
SUNNY = "2016-04-06"  # a training day on which the rule policy leaves the band on the stressed feeder


def _rule_day(env, day):
    """(obs, actions, info) of every step of the rule policy's day in ``env``."""
    policy = make_policy("rule", PolicyContext(env.specs, tariff=env.tariff))
    obs, done, rows = env.reset_batch(day=day), False, []
    while not done:
        act = policy.act(obs, np.arange(env.n_agents)).astype(np.float32)  # as write_demonstrations records
        rows.append((obs, act))
        obs, reward, done, info = env.step_batch(act)
        rows[-1] += (reward, info)
    return rows


def _exact_without(env, info, i, step):
    """The power flow of ``info``'s step with agent i's meter power removed, by a fresh grid model."""
    res = info["step"]
    p_mw = np.bincount(env.bus_pos, res.net_kw / 1000.0, minlength=env.n_bus)
    q_mvar = np.bincount(env.bus_pos, res.net_kvar / 1000.0, minlength=env.n_bus)
    p_mw[env.bus_pos[i]] -= res.net_kw[i] / 1000.0
    q_mvar[env.bus_pos[i]] -= res.net_kvar[i] / 1000.0
    if env.background.active:
        dp, dq = env.background.delta(env.dates[0], step)
        p_mw, q_mvar = p_mw + dp, q_mvar + dq
    return make_grid(env.cfg.grid_model, env.net, sorted({s.bus for s in env.specs})).solve(p_mw, q_mvar)


def test_difference_credit_charges_what_each_agent_adds_to_the_feeders_violation():
    env = P2PEnv(EnvConfig(network=STRESSED.network, specs=STRESSED.specs, voltage_credit="difference"))
    shared = P2PEnv(EnvConfig(network=STRESSED.network, specs=STRESSED.specs))
    penalty = env.cfg.voltage_penalty_eur_per_pu
    checked = credited = 0
    for step, (row, twin) in enumerate(zip(_rule_day(env, SUNNY), _rule_day(shared, SUNNY))):
        info, v = row[3], twin[3]["violation_pu"]
        # the counterfactual flows leave the real one alone: the same voltages as without them
        np.testing.assert_allclose(info["power_flow"].vm_pu, twin[3]["power_flow"].vm_pu, atol=1e-9)
        np.testing.assert_allclose(-(twin[2] + twin[3]["cost_eur"]), penalty * (v[env.bus_pos] + v.mean()),
                                   atol=1e-9)  # the default credit: own bus plus the feeder's mean
        charged = -(row[2] + info["cost_eur"]) / penalty
        total = info["violation_pu"].sum()
        for i in range(0, env.n_agents, 4) if total > 0 else ():
            exact = total - _violation_pu(_exact_without(env, info, i, step).vm_pu).sum()
            assert charged[i] == pytest.approx(exact, abs=1e-6), (step, i)
            checked += 1
            credited += abs(exact) > 1e-3
    assert checked > 50 and credited > 10  # the day leaves the band, and agents move it


@pytest.mark.parametrize("credit", ["shared", "difference"])
def test_network_losses_are_charged_at_their_price_by_the_credit_rule(credit):
    price = 0.3
    env = P2PEnv(EnvConfig(network=STRESSED.network, specs=STRESSED.specs, voltage_credit=credit,
                           loss_price_eur_per_kwh=price))
    unpaid = P2PEnv(EnvConfig(network=STRESSED.network, specs=STRESSED.specs, voltage_credit=credit))
    checked = 0
    for step, (row, twin) in enumerate(zip(_rule_day(env, SUNNY), _rule_day(unpaid, SUNNY))):
        info, losses_kwh = row[3], row[3]["power_flow"].losses_mw * 1000.0 * 0.25
        np.testing.assert_allclose(info["power_flow"].vm_pu, twin[3]["power_flow"].vm_pu, atol=1e-9)
        charged = (twin[2] - row[2]) / price  # the reward without the price minus the one with it [kWh]
        if credit == "shared":
            np.testing.assert_allclose(charged, losses_kwh / env.n_agents, rtol=1e-6, atol=1e-9)
            checked += 1
            continue
        for i in range(step % 4, env.n_agents, 8):
            marginal = losses_kwh - _exact_without(env, info, i, step).losses_mw * 1000.0 * 0.25
            assert charged[i] == pytest.approx(marginal, abs=1e-5), (step, i)  # NR tolerance of two solves
            checked += abs(marginal) > 1e-3
    assert checked > 90


def test_an_agents_difference_charge_moves_exactly_as_the_feeders_total_with_its_own_action():
    cfg = EnvConfig(network=STRESSED.network, specs=STRESSED.specs, voltage_credit="difference")
    rows = _rule_day(P2PEnv(cfg), SUNNY)
    step = next(k for k, r in enumerate(rows) if r[3]["violation_pu"].sum() > 0.01)
    q_col = P2PEnv(cfg).fleet.action_fields.index("pv_q")
    outcomes = []
    for shift in (0.0, 0.5):  # agent i alone moves its reactive power at that step
        env = P2PEnv(cfg)
        env.reset_batch(day=SUNNY)
        for k in range(step):
            env.step_batch(rows[k][1])
        act = rows[step][1].copy()
        i = max(range(env.n_agents), key=lambda k: sum(pv.kwp for pv in env.specs[k].pv))  # the largest PV
        q = act[i, q_col]
        act[i, q_col] = q + (shift if q < 0.5 else -shift)
        _, reward, _, info = env.step_batch(act)
        outcomes.append((-(reward + info["cost_eur"]) / cfg.voltage_penalty_eur_per_pu, info["violation_pu"].sum()))
    (before, total_before), (after, total_after) = outcomes
    assert abs(total_after - total_before) > 1e-4  # the move changes the feeder's violation
    assert after[i] - before[i] == pytest.approx(total_after - total_before, abs=1e-7)
    others = np.delete(after - before, i)
    assert np.abs(others - (total_after - total_before)).max() > 1e-5  # theirs is not simply the total's


@pytest.mark.parametrize("bad, match", [(dict(voltage_credit="own"), r"voltage_credit: 'own' is not one of"),
                                        (dict(voltage_penalty_eur_per_pu=float("nan")),
                                         r"voltage_penalty_eur_per_pu: nan is outside \[0, 1e9\]"),
                                        (dict(voltage_penalty_eur_per_pu=-1.0),
                                         r"voltage_penalty_eur_per_pu: -1.0 is outside"),
                                        (dict(loss_price_eur_per_kwh=float("inf")),
                                         r"loss_price_eur_per_kwh: inf is outside \[0, 10\] EUR/kWh"),
                                        (dict(loss_price_eur_per_kwh=-0.1), r"loss_price_eur_per_kwh: -0.1")])
def test_reward_options_are_checked(bad, match):
    with pytest.raises(ConfigError, match=match):
        P2PEnv(EnvConfig(max_prosumers=2, **bad))


def _write_rule_demos(path, cfg, dates):
    """The rule policy's days in P2PEnv(cfg), saved as agents.expert.policy.write_demonstrations saves."""
    env = P2PEnv(cfg)
    rec = {k: [] for k in ("obs", "actions", "reward", "cost_eur", "day", "step")}
    for d, date in enumerate(dates):
        for k, (obs, act, reward, info) in enumerate(_rule_day(env, date)):
            for key, value in zip(rec, (obs, act, reward, info["cost_eur"], d, k)):
                rec[key].append(value)
    meta = {"env_config": dataclasses.asdict(cfg), "dates": list(dates)}
    np.savez(path, **{k: np.asarray(v, dtype=np.float32 if k in ("obs", "actions") else None)
                      for k, v in rec.items()}, metadata=json.dumps(meta))
    return {k: np.asarray(v) for k, v in rec.items()}


def test_demonstrations_are_replayed_for_the_training_reward(tmp_path):
    cfg = EnvConfig(network=STRESSED.network, specs=STRESSED.specs, max_prosumers=6, days=SUNNY)
    demos = _write_rule_demos(tmp_path / "demos.npz", cfg, [SUNNY])
    penalty = demos["reward"] + demos["cost_eur"]
    assert (penalty < -1e-3).any()  # the recorded day is charged for leaving the band
    same = relabel_rewards(P2PEnv(cfg), demos["obs"], demos["actions"], demos["day"], [SUNNY])
    np.testing.assert_allclose(same, demos["reward"], atol=1e-4)
    ten = P2PEnv(dataclasses.replace(cfg, voltage_penalty_eur_per_pu=2000.0))
    np.testing.assert_allclose(relabel_rewards(ten, demos["obs"], demos["actions"], demos["day"], [SUNNY]),
                               demos["cost_eur"] * -1 + 10 * penalty, atol=1e-3)
    other = P2PEnv(dataclasses.replace(cfg, seed=5))  # other profiles: the replay departs at once
    with pytest.raises(ConfigError, match=r"demos: replaying day 2016-04-06 .* departs from the recorded "
                                          r"observations at row 0"):
        relabel_rewards(other, demos["obs"], demos["actions"], demos["day"], [SUNNY])

    # a training run whose reward differs from the demonstrations' learns from the replayed rewards
    tc = TrainConfig(algo="imitative_diffattn", demos=str(tmp_path / "demos.npz"), demo_replay=True,
                     env_options={**dataclasses.asdict(cfg), "voltage_penalty_eur_per_pu": 2000.0},
                     total_steps=4, learning_starts=4, pretrain_steps=1, critic_pretrain_steps=1, eval_episodes=0,
                     results_dir=str(tmp_path), run_name="relabel", threads=1)
    run_dir = train(tc)
    with np.load(run_dir / "buffer.npz") as f:
        np.testing.assert_allclose(f["data_rew"][:96], -demos["cost_eur"] + 10 * penalty, atol=1e-3)
