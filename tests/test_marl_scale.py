"""MARL at the 100+ agent scale: the training environment holds scenarios/simbench_100's 118
prosumers, and the proposed algorithm and the MLP-critic baselines train on it with the same code."""

import math

import pandas as pd
import pytest

from agents.marl.train import TrainConfig, make_env, train
from simulators.scenario import PRESETS, prepare

SIMBENCH_100_ENV = {"network": "simbench_lv_rural3", "specs": "generate"}
"""--env-options that give the training environment the prosumers of scenarios/simbench_100"""


@pytest.fixture(scope="module")
def env():
    return make_env(TrainConfig(env_options=SIMBENCH_100_ENV))


def test_env_options_give_the_simbench_100_prosumers(env):
    _, specs, _, _ = prepare(PRESETS["simbench_100"])  # same seed (0) as the TrainConfig default
    assert env.n_agents == len(specs) == 118
    assert [s.to_dict() for s in env.specs] == [s.to_dict() for s in specs]
    assert env.cfg.grid_model == PRESETS["simbench_100"].grid_model and env.grid.backend == "lightsim2grid"


@pytest.mark.parametrize("algo", ["imitative_diffattn", "maddpg", "matd3"])
def test_algorithms_train_with_118_agents(env, tmp_path, algo):
    cfg = TrainConfig(algo=algo, env_options=SIMBENCH_100_ENV, expert="policy:rule", total_steps=6,
                      learning_starts=3, batch_size=4, buffer_size=16, log_every=6, eval_episodes=0,
                      results_dir=str(tmp_path), progress=False, threads=1)
    run_dir = train(cfg, make_env=lambda cfg, evaluation: env)
    row = pd.read_csv(run_dir / "progress.csv").iloc[-1]
    assert row["step"] == 6 and math.isfinite(row["critic_loss"]) and math.isfinite(row["actor_loss"])
    assert (run_dir / "actor.pt").stat().st_size > 0


def test_train_scale_script_end_to_end(tmp_path):
    """scenarios/train_scale at a tiny size: trains with sampled feeder blocks, evaluates the actor
    and the rule / idle / zero baselines on the same training-split days, writes the plot."""
    import json

    from scenarios.train_scale import main

    run_dir, base = main(["--env-options", json.dumps({"network": "simbench_lv_rural3", "specs": "generate",
                                                      "n_prosumers": 30}),
                          "--total-steps", "8", "--learning-starts", "4", "--batch-size", "4", "--buffer-size", "16",
                          "--eval-every", "4", "--eval-episodes", "1", "--log-every", "4", "--checkpoint-every", "8",
                          "--imitation-anneal-steps", "8", "--critic-blocks", "1", "--threads", "1", "--no-progress",
                          "--results-dir", str(tmp_path), "--run-name", "tiny"])
    assert set(base) == {"rule", "idle", "zero"} and all(math.isfinite(v) for v in base.values())
    assert json.loads((run_dir / "baselines.json").read_text()) == base
    evals = pd.read_csv(run_dir / "progress.csv")["eval_return"].dropna()
    assert len(evals) == 2 and all(math.isfinite(v) for v in evals)
    assert (run_dir / "learning.png").stat().st_size > 0
