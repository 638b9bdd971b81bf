"""Policies: map local observations to normalized actions (see interface.py).

Every policy sees only its own prosumers' rows of the observation matrix.  Policies are
chosen by name from POLICIES; heavy ones (the optimization expert, trained actors) are
registered as "module:Class" strings and imported on first use, so the co-simulation core does
not need cvxpy or torch.
"""

import importlib
from dataclasses import dataclass, field

import numpy as np

from simulators.prosumer.interface import ACT, OBS, idle_actions
from simulators.validation import ConfigError, check_choice


@dataclass
class PolicyContext:
    """Everything a policy may know before the run: the scenario, not the other prosumers' data."""

    specs: list
    """ProsumerSpec of every prosumer (global indices = agent ids)"""
    dates: list = field(default_factory=list)
    """simulated days, 'YYYY-MM-DD'"""
    seed: int = 0
    tariff: object = None
    """simulators.market.tariffs.Tariff"""
    network: str = "ieee33"
    options: dict = field(default_factory=dict)
    """policy-specific options (e.g. a checkpoint path for trained actors)"""


class Policy:
    """Base class: ``act(obs (n, F), agent_ids (n,)) -> actions (n, A)``."""

    name = "base"
    option_names = None
    """the option names the policy takes (PolicyContext.options); None: the policy checks them itself"""

    def __init__(self, context):
        self.context = context
        given = set(getattr(context, "options", None) or {})
        if self.option_names is not None and given - set(self.option_names):
            raise ConfigError(f"policy_options: {sorted(given - set(self.option_names))} not taken by policy "
                              f"{self.name!r} (it takes {sorted(self.option_names) or 'no options'})")

    def reset(self):
        """Called once before the first step of a run."""

    def act(self, obs, agent_ids):
        raise NotImplementedError


class RuleBasedPolicy(Policy):
    """Self-consumption first, then voltage support, then cheap generation.

    - the battery absorbs PV surplus and covers deficits; it charges fully when the own bus
      voltage was near the upper limit and discharges fully near the lower limit;
    - the controllable load runs on leftover surplus, and at full power once the remaining
      energy needs every remaining step before the deadline;
    - the generator covers the remaining deficit when its marginal cost is below retail;
    - PV is curtailed progressively above 0.9 of the upper band and its inverter follows a
      Volt-VAR droop (inject Q below nominal, absorb above, 0.2 dead band);
    - bids at the middle of the tariff band.
    """

    name = "rule"
    option_names = ()

    def act(self, obs, agent_ids):
        o = lambda name: obs[:, OBS[name]]
        a = idle_actions(obs.shape[0])
        vm = o("vm_dev")
        surplus = o("pv_avail") - o("load")

        bat = _ratio(surplus, o("battery_p_max"))
        bat = np.where(vm > 0.8, 1.0, np.where(vm < -0.8, -1.0, bat))
        a[:, ACT["battery"]] = np.clip(bat, -1.0, 1.0)
        left = surplus - np.clip(bat, -1.0, 1.0) * o("battery_p_max")

        steps_left = o("cl_steps_left") * 96.0
        must_run = o("cl_remaining") >= o("cl_p_max") * 0.25 * (steps_left - 1.0)
        cl = np.where(must_run, 1.0, _ratio(np.maximum(left, 0.0), o("cl_p_max")))
        a[:, ACT["controllable_load"]] = np.clip(cl, 0.0, 1.0)
        left = left - np.clip(cl, 0.0, 1.0) * o("cl_p_max")

        cheap = o("gen_cost") < o("tariff_buy")
        gen = np.where(cheap, _ratio(np.maximum(-left, 0.0), o("gen_p_max")), 0.0)
        gen = np.where(cheap & (vm < -0.8), 1.0, gen)
        a[:, ACT["generator"]] = np.clip(gen, 0.0, 1.0)

        a[:, ACT["pv_curtail"]] = np.clip((vm - 0.9) / 0.1, 0.0, 1.0)
        a[:, ACT["pv_q"]] = np.clip(-np.sign(vm) * np.maximum(np.abs(vm) - 0.2, 0.0) / 0.6, -1.0, 1.0)
        a[:, ACT["bid_price"]] = 0.5
        return a


class IdlePolicy(Policy):
    """No flexibility used: batteries, generators and controllable loads idle, PV uncurtailed.

    The controllable load still runs at full power when it must, to meet its deadline.
    This is the passive baseline every other policy is compared against.
    """

    name = "idle"
    option_names = ()

    def act(self, obs, agent_ids):
        a = idle_actions(obs.shape[0])
        steps_left = obs[:, OBS["cl_steps_left"]] * 96.0
        must_run = obs[:, OBS["cl_remaining"]] >= obs[:, OBS["cl_p_max"]] * 0.25 * (steps_left - 1.0)
        a[:, ACT["controllable_load"]] = np.where(must_run & (obs[:, OBS["cl_remaining"]] > 0), 1.0, 0.0)
        a[:, ACT["bid_price"]] = 0.5
        return a


def _ratio(num, den):
    return np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 1e-12)


POLICIES = {
    "rule": RuleBasedPolicy,
    "idle": IdlePolicy,
    "expert": "agents.expert.policy:ExpertPolicy",
    "actor": "agents.marl.policy:ActorPolicy",
}


def resolve_policy(name):
    """Return the policy class registered under ``name`` (imports lazy entries)."""
    check_choice("policy", name, POLICIES)
    entry = POLICIES[name]
    if isinstance(entry, str):
        module, cls = entry.split(":")
        entry = getattr(importlib.import_module(module), cls)
    return entry


def make_policy(name, context):
    policy = resolve_policy(name)(context)
    policy.reset()
    return policy
