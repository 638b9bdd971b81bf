"""A short training run at 1000 agents: does the proposed method learn on SimBench's MV/LV grid?

    python -m scenarios.train_scale                                  # the defaults below
    python -m scenarios.train_scale --total-steps 1920 --batch-size 64 --run-name mvlv1000_long

Trains ``imitative_diffattn`` on the 1000 prosumers of scenarios/simbench_mvlv_1000 (exact AC power
flow) with the critic's attention within each prosumer's feeder plus over the feeders' means
(``critic_neighbourhood='feeder'``, agents/marl/critics.py) and the rule policy as online expert.
Every ``eval_every`` steps the deterministic actor plays ``eval_episodes`` days drawn from the
training split (fixed seeds); the same days are played by the rule policy, the idle policy and
the zero action.  The run folder (agents/marl/train.py's: progress.csv, actor.pt, config.json)
gets ``baselines.json`` and ``learning.png`` (evaluation return per step against the baselines).
Returns are the mean over agents of a day's summed reward [EUR, negative = cost].
"""

import argparse
import dataclasses
import json

import numpy as np
import pandas as pd

from agents.marl.train import TrainConfig, evaluate, evaluation_days, make_env, train
from simulators.cli import add_config_flags, given_flags
from simulators.prosumer.interface import ACTION_FIELDS
from simulators.prosumer.policies import PolicyContext, make_policy
from simulators.scenario import PRESETS

SCENARIO = PRESETS["simbench_mvlv_1000"]
DEFAULTS = TrainConfig(
    scenario="simbench_mvlv_1000", algo="imitative_diffattn", critic_neighbourhood="feeder", expert="policy:rule",
    env_options={"network": SCENARIO.network, "specs": "generate", "n_prosumers": SCENARIO.n_prosumers},
    shared_actor=True, eval_days="train", total_steps=576, learning_starts=96, batch_size=32, update_every=4,
    buffer_size=576, imitation_anneal_steps=576, eval_every=96, eval_episodes=2, log_every=96, checkpoint_every=576,
    threads=2)
"""sized for 2 shared cores: 6 simulated days of 1000 agents, 120 gradient steps of batch 32 (x 1000 agents);
one actor network shared by all agents (with an agent-id embedding), so every step teaches it from
32 000 agent-samples; the first evaluation (step 96, before any update: learning starts after step
96) is the untrained actor"""


class _Fixed:
    """A policy of simulators.prosumer.policies (or the zero action) behind the learner's act()."""

    def __init__(self, name, env):
        self.policy = None if name == "zero" else make_policy(name, PolicyContext(specs=env.specs, tariff=env.tariff))
        self.ids = np.arange(env.n_agents)

    def act(self, obs, explore=False):
        if self.policy is None:
            return np.zeros((len(obs), len(ACTION_FIELDS)))
        return self.policy.act(obs, self.ids)


def baselines(cfg):
    """Evaluation return of the rule policy, the idle policy and the zero action on cfg's evaluation days."""
    env = make_env(cfg, evaluation=True)
    days = evaluation_days(env, cfg.eval_episodes)  # the days the training run evaluates on
    return {name: evaluate(_Fixed(name, env), env, days)[0] for name in ("rule", "idle", "zero")}


def plot(run_dir, progress, base):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    rows = progress.dropna(subset=["eval_return"])
    ax.plot(rows["step"], rows["eval_return"], "o-", label="imitative_diffattn (feeder attention)")
    for (name, value), style in zip(base.items(), ("--", ":", "-.")):
        ax.axhline(value, linestyle=style, color="grey", label=name)
    ax.set_xlabel("environment step (1000 agents each)")
    ax.set_ylabel("evaluation return [EUR / agent / day]")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run_dir / "learning.png", dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cfg = dataclasses.replace(DEFAULTS, **given_flags(add_config_flags(parser, TrainConfig, DEFAULTS).parse_args(argv)))
    run_dir = train(cfg)
    base = baselines(cfg)
    (run_dir / "baselines.json").write_text(json.dumps(base, indent=1))
    progress = pd.read_csv(run_dir / "progress.csv")
    plot(run_dir, progress, base)
    print(f"results: {run_dir}")
    print(progress[["step", "episode_return", "eval_return", "critic_loss", "imitation_loss", "wall_s"]].to_string())
    print("baselines:", {k: round(v, 3) for k, v in base.items()})
    return run_dir, base


if __name__ == "__main__":
    main()
