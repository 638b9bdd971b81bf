"""Trained actors as a co-simulation policy (registered as "actor" in simulators.prosumer.policies).

    python -m scenarios.ieee33_day --policy actor --policy-options '{"checkpoint": "results/<run>/actor.pt"}'

``act(obs (n, F), agent_ids (n,))`` returns the deterministic (mean) action of each listed
prosumer's own actor, so a per-prosumer simulator asks for its one row and a grouped simulator
for all of its rows; the result does not depend on how prosumers are grouped.
"""

from pathlib import Path

import numpy as np
import torch

from agents.marl.networks import Actor
from simulators.prosumer.interface import FORECAST_COLUMNS, obs_fields
from simulators.prosumer.policies import Policy
from simulators.tables import FORECAST_ATTRS
from simulators.validation import ConfigError


def save_actor(path, actor, algo="", step=0, obs_fields=()):
    """Write the actor's constructor arguments and weights (loadable with weights_only=True)."""
    torch.save({"spec": actor.spec, "state_dict": actor.state_dict(), "algo": algo, "step": int(step),
                "obs_fields": list(obs_fields)}, path)


def load_actor(path):
    """Actor from an actor.pt written by agents.marl.train (or from the run folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "actor.pt"
    if not path.is_file():
        raise ConfigError(f"checkpoint: file {str(path)!r} not found (give a run folder or its actor.pt)")
    saved = torch.load(path, weights_only=True)
    actor = Actor(**{**saved["spec"], "hidden": tuple(saved["spec"]["hidden"]),
                     "log_std_bounds": tuple(saved["spec"]["log_std_bounds"])})
    actor.load_state_dict(saved["state_dict"])
    actor.eval()
    fields = tuple(saved.get("obs_fields") or ())
    if fields and fields != obs_fields():  # every registered device type's columns
        raise ConfigError(f"checkpoint: {str(path)!r} was trained on observation fields {fields}, "
                          f"the interface now has {obs_fields()}")
    return actor


class ActorPolicy(Policy):
    """Deterministic actions of trained per-prosumer actors; needs options['checkpoint']."""

    name = "actor"

    def __init__(self, context):
        super().__init__(context)
        checkpoint = (getattr(context, "options", None) or {}).get("checkpoint")
        if not checkpoint:
            raise ConfigError("policy_options.checkpoint: the actor policy needs a checkpoint "
                              "(a training run folder or its actor.pt)")
        self.actor = load_actor(checkpoint)
        n_specs = len(getattr(context, "specs", None) or ())
        if n_specs and n_specs != self.actor.n_agents:
            raise ConfigError(f"policy_options.checkpoint: actors trained for {self.actor.n_agents} prosumers, "
                              f"the scenario has {n_specs}")

    @torch.no_grad()
    def act(self, obs, agent_ids):
        obs = np.asarray(obs, dtype=np.float32)
        ids = np.asarray(agent_ids, dtype=np.int64).reshape(-1)
        if obs.shape != (len(ids), self.actor.obs_dim):
            raise ValueError(f"obs: expected shape {(len(ids), self.actor.obs_dim)}, got {obs.shape}")
        if len(ids) and (ids.min() < 0 or ids.max() >= self.actor.n_agents):
            raise ValueError(f"agent_ids: expected values in [0, {self.actor.n_agents - 1}], got {ids.tolist()}")
        if not np.isfinite(obs).all():
            i, j = np.argwhere(~np.isfinite(obs))[0]
            specs = getattr(self.context, "specs", None) or ()
            who = specs[ids[i]].name if len(specs) > ids[i] else f"agent {int(ids[i])}"
            field = obs_fields()[j]
            hint = (f" (a forecast column: connect the ProsumerProfile outputs {[a.name for a, _ in FORECAST_ATTRS]} "
                    "to the prosumer)" if field in FORECAST_COLUMNS else "")
            raise ValueError(f"prosumer {who!r}: observation {field!r} is {obs[i, j]!r}; a trained actor needs "
                             f"every observation column finite{hint}")
        action = self.actor.mean_action(torch.from_numpy(obs).unsqueeze(0), torch.from_numpy(ids))
        return action.squeeze(0).double().numpy()
