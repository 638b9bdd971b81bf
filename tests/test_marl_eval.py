"""The evaluation command end to end on a tiny budget: training, co-simulation, table, paired statistics, plots."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agents.marl.evaluate import (BOUND, LEDGER, EvalConfig, earlier_test_days, evaluate, evaluation_days, load_config,
                                  record_test_days, spread, split_pool)
from agents.marl.report import paired, summarize
from simulators.validation import ConfigError

ALGOS = "imitative_diffattn,iddpg"


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    cfg = EvalConfig(algos=ALGOS, seeds="0,1", total_steps=120, max_prosumers=3, days=1, demo_days=1,
                     baselines="rule", progress=False, snapshot_every=60, bootstrap=200, split="validation",
                     train_options={"imitative_diffattn": {"pretrain_steps": 50, "critic_pretrain_steps": 200,
                                                           "label_every": 40},
                                    "iddpg": {"env_options": {"voltage_penalty_eur_per_pu": 500.0}},
                                    "*": {"batch_size": 64, "eval_episodes": 1, "eval_every": 60}},
                     results_dir=str(tmp_path_factory.mktemp("eval")), run_name="eval")
    return evaluate(cfg)


def test_folder_holds_table_runs_plots_and_every_run(evaluation):
    for name in ("config.json", "demos_p0.npz", "runs.csv", "table.csv", "table.md", "comparisons.csv",
                 "energy_by_period.csv", "learning_curves.png", "voltage_envelopes.png", "training.csv",
                 "test_curve.csv", "test_curve.png"):
        assert (evaluation / name).is_file(), name
    runs = pd.read_csv(evaluation / "runs.csv")
    learned = ["imitative_diffattn", "iddpg"]
    assert sorted(runs.method.unique()) == sorted(learned + [f"{a}@last" for a in learned] + ["rule", BOUND])
    assert len(runs) == 1 + 1 + 2 * 2 * 2  # bound, rule, two algorithms x two seeds x (kept, last), one day
    assert runs.dropna(subset=["controllable_rate"]).controllable_rate.between(0, 1).all()
    assert runs[runs.method != BOUND].controllable_rate.notna().all()
    for run_dir in runs.run_dir.dropna():
        assert (pd.read_csv(f"{run_dir}/prosumers.csv").prosumer.nunique()) == 3
    for algo in learned:
        for seed in (0, 1):
            run = evaluation / "train" / f"{algo}__p0__s{seed}"
            assert (run / "actor.pt").is_file() and (run / "snapshots" / "actor_0.pt").is_file()
            progress = pd.read_csv(run / "progress.csv")
            assert progress.q_corr.notna().any() and progress.q_bias.notna().any()  # the critic's fit, logged
    curve = pd.read_csv(evaluation / "test_curve.csv")
    assert sorted(curve.step.unique()) == [0, 60, 120] and len(curve) == 2 * 2 * 3


def test_energy_by_period_recomputed_from_the_prosumers_files(evaluation, tmp_path):
    from agents.marl.report import main as report_main

    energy = pd.read_csv(evaluation / "energy_by_period.csv").set_index("method")
    runs = pd.read_csv(evaluation / "runs.csv")
    assert sorted(energy.index) == sorted(runs.dropna(subset=["run_dir"]).method.unique())
    for method in ("iddpg", "rule"):
        files = [pd.read_csv(evaluation / "cosim" / Path(d).name / "prosumers.csv")
                 for d in runs.query("method == @method").run_dir]
        evening = np.mean([f.loc[f.step >= 68, "grid_buy_kwh"].sum() for f in files])
        assert energy.loc[method, "grid_buy_kwh 17-24"] == pytest.approx(evening, rel=1e-9, abs=1e-9)
        for col in ("grid_buy_kwh", "grid_sell_kwh", "p2p_buy_kwh"):  # the periods cover the day once
            whole = np.mean([f[col].sum() for f in files])
            parts = sum(energy.loc[method, f"{col} {n}"] for n in ("00-07", "07-17", "17-24"))
            assert parts == pytest.approx(whole, rel=1e-9, abs=1e-9), (method, col)
    assert "Energy by period of the day" in (evaluation / "table.md").read_text()
    (evaluation / "energy_by_period.csv").rename(tmp_path / "written_by_evaluate.csv")
    try:  # the command for older folders writes the very same file
        report_main([str(evaluation)])
        assert pd.read_csv(evaluation / "energy_by_period.csv").equals(pd.read_csv(tmp_path / "written_by_evaluate.csv"))
    finally:
        (tmp_path / "written_by_evaluate.csv").replace(evaluation / "energy_by_period.csv")
    with pytest.raises(SystemExit, match="has no runs.csv"):
        report_main([str(tmp_path)])


def test_pooling_counts_each_run_once_and_refuses_conflicts(evaluation, tmp_path):
    from agents.marl.pool import main as pool_main
    from agents.marl.pool import write_pooled

    runs = pd.read_csv(evaluation / "runs.csv")
    more = tmp_path / "more"  # the same days, other training seeds; the deterministic rows again
    more.mkdir()
    learned = ~runs.method.isin(["rule", BOUND])  # kept and @last actors
    runs.assign(seed=np.where(learned, runs.seed + 2, runs.seed),
                cost_eur=np.where(learned, runs.cost_eur + 10.0, runs.cost_eur)).to_csv(more / "runs.csv", index=False)
    out = pool_main([str(evaluation), str(more), "--out", str(tmp_path / "pooled"), "--bootstrap", "200"])
    pooled = pd.read_csv(out / "runs.csv")
    assert len(pooled) == 2 * len(runs) - 2  # rule and the bound counted once
    assert sorted(pooled.query("method == 'iddpg'").seed.unique()) == [0, 1, 2, 3]
    assert (pooled.method == "rule").sum() == 1 and (pooled.method == BOUND).sum() == 1
    comparison = pd.read_csv(out / "comparisons.csv").set_index("other")
    expected = paired(pooled, "imitative_diffattn", "iddpg", n_boot=200)
    assert comparison.loc["iddpg", "cost_eur_diff"] == pytest.approx(expected["diff"])
    assert "training seeds per method" in (out / "table.md").read_text()
    with pytest.raises(ConfigError, match="exists"):
        write_pooled([evaluation, more], out)
    rule = runs.method == "rule"
    runs.assign(cost_eur=np.where(rule, runs.cost_eur + 1.0, runs.cost_eur)).to_csv(more / "runs.csv", index=False)
    with pytest.raises(ConfigError, match="'method': 'rule'.* one run cannot have two results"):
        write_pooled([evaluation, more], tmp_path / "conflict")
    runs.assign(day="2016-01-04").to_csv(more / "runs.csv", index=False)
    with pytest.raises(ConfigError, match="covers different .* units"):
        write_pooled([evaluation, more], tmp_path / "other_days")
    assert not (tmp_path / "conflict").exists() and not (tmp_path / "other_days").exists()


def test_pooling_a_rerun_of_the_proposed_method_with_first_wins(evaluation, tmp_path):
    import shutil

    from agents.marl.pool import write_pooled

    runs = pd.read_csv(evaluation / "runs.csv")
    rerun = tmp_path / "rerun"  # the proposed method alone under a new recipe: same units and seeds, other figures
    rerun.mkdir()
    proposed = runs.method.str.startswith("imitative_diffattn") | (runs.method == BOUND)
    runs[proposed].assign(cost_eur=lambda r: np.where(r.method == BOUND, r.cost_eur, r.cost_eur - 5.0)).to_csv(
        rerun / "runs.csv", index=False)
    shutil.copyfile(evaluation / "config.json", rerun / "config.json")
    with pytest.raises(ConfigError, match="one run cannot have two results"):
        write_pooled([rerun, evaluation], tmp_path / "plain")
    out = write_pooled([rerun, evaluation], tmp_path / "pooled", n_boot=200, first_wins=True)
    pooled = pd.read_csv(out / "runs.csv")
    mine = pooled.query("method == 'imitative_diffattn'").sort_values(["seed", "day"]).cost_eur.to_numpy()
    before = runs.query("method == 'imitative_diffattn'").sort_values(["seed", "day"]).cost_eur.to_numpy()
    np.testing.assert_allclose(mine, before - 5.0)                        # the rerun's figures, each run once
    assert len(pooled) == len(runs) and (pooled.method == "rule").sum() == (runs.method == "rule").sum()
    comparison = pd.read_csv(out / "comparisons.csv").set_index("other")
    assert comparison.loc["iddpg", "cost_eur_diff"] == pytest.approx(paired(pooled, "imitative_diffattn", "iddpg",
                                                                            n_boot=200)["diff"])
    assert "With --first-wins, each method from the first folder holding it: rerun: imitative_diffattn, " \
           "imitative_diffattn@last; " in (out / "table.md").read_text()
    # a second rerun folder (another method): each method from the first folder that holds it
    iddpg = tmp_path / "iddpg"
    iddpg.mkdir()
    runs[runs.method.str.startswith("iddpg")].assign(cost_eur=lambda r: r.cost_eur + 7.0).to_csv(
        iddpg / "runs.csv", index=False)
    three = pd.read_csv(write_pooled([rerun, iddpg, evaluation], tmp_path / "three", n_boot=200,
                                     first_wins=True) / "runs.csv")
    np.testing.assert_allclose(three.query("method == 'iddpg'").sort_values(["seed", "day"]).cost_eur,
                               runs.query("method == 'iddpg'").sort_values(["seed", "day"]).cost_eur + 7.0)
    assert "; iddpg: iddpg, iddpg@last; " in (tmp_path / "three" / "table.md").read_text()
    # the rerun at one more profile seed than the earlier evaluation holds: that one's units come from the rerun
    both = pd.read_csv(rerun / "runs.csv")
    pd.concat([both, both.assign(pseed=both.pseed + 1)]).to_csv(rerun / "runs.csv", index=False)
    wider = pd.read_csv(write_pooled([rerun, evaluation], tmp_path / "wider", n_boot=200, first_wins=True) / "runs.csv")
    pseeds = sorted({*runs.pseed, *(runs.pseed + 1)})
    assert sorted(wider.query("method == 'imitative_diffattn'").pseed.unique()) == pseeds
    assert set(wider.query("method == 'iddpg'").pseed) == set(runs.pseed)


def test_pooling_other_profile_seeds_adds_units_and_needs_common_training_seeds(evaluation, tmp_path):
    from agents.marl.pool import main as pool_main
    from agents.marl.pool import write_pooled

    runs = pd.read_csv(evaluation / "runs.csv")
    learned = ~runs.method.isin(["rule", BOUND])
    other = tmp_path / "p1"  # the same days at another profile seed: new units, every training seed once more
    other.mkdir()
    shutil.copy(evaluation / "config.json", other / "config.json")
    p1 = runs.assign(pseed=runs.pseed + 1, cost_eur=runs.cost_eur - 7.0)
    p1.to_csv(other / "runs.csv", index=False)
    out = write_pooled([evaluation, other], tmp_path / "both", n_boot=200)
    pooled = pd.read_csv(out / "runs.csv")
    assert len(pooled) == 2 * len(runs) and sorted(pooled.pseed.unique()) == [0, 1]
    comparison = pd.read_csv(out / "comparisons.csv").set_index("other")
    assert comparison.loc["iddpg", "cost_eur_units"] == 2 * runs.day.nunique()
    same = paired(runs, "imitative_diffattn", "iddpg")["diff"]  # every method 7 EUR cheaper at profile seed 1
    assert comparison.loc["iddpg", "cost_eur_diff"] == pytest.approx(same)
    p1[~learned | (p1.seed == 0)].to_csv(other / "runs.csv", index=False)  # one training seed only at profile seed 1
    with pytest.raises(ConfigError, match=r"'[\w@]+' has training seeds \{0: \[0, 1\], 1: \[0\]\}.*--seeds"):
        write_pooled([evaluation, other], tmp_path / "uneven")
    assert not (tmp_path / "uneven").exists()
    out = pool_main([str(evaluation), str(other), "--seeds", "0", "--out", str(tmp_path / "seed0"),
                     "--bootstrap", "200"])
    pooled = pd.read_csv(out / "runs.csv")
    assert set(pooled[pooled.method == "iddpg"].seed) == {0} and (pooled.method == "rule").sum() == 2  # baselines kept
    with pytest.raises(SystemExit, match="seeds: '0,x' is not a comma-separated list of integers"):
        pool_main([str(evaluation), str(other), "--seeds", "0,x", "--out", str(tmp_path / "bad")])
    p1.assign(day="2016-01-04").to_csv(other / "runs.csv", index=False)
    with pytest.raises(ConfigError, match="covers different .* units"):  # other profile seeds, but other days too
        write_pooled([evaluation, other], tmp_path / "other_days")


def test_environment_days_equal_the_co_simulation_days(evaluation):
    """The @last rows and the test curve come from the training environment: same numbers as mosaik."""
    from agents.env import P2PEnv
    from agents.marl.evaluate import env_config, env_day, scenario_config
    from agents.marl.policy import load_actor

    cfg = load_config(evaluation)
    runs = pd.read_csv(evaluation / "runs.csv").query("method == 'iddpg' and seed == 0").iloc[0]
    env = P2PEnv(env_config(scenario_config(cfg, 0)))
    mine = env_day(env, load_actor(evaluation / "train" / "iddpg__p0__s0" / "actor.pt"), runs.day)
    for metric in ("cost_eur", "voltage_violation_rate", "controllable_rate"):
        assert mine[metric] == pytest.approx(runs[metric], rel=1e-6, abs=1e-9), metric


def test_train_options_merge_and_every_choice_uses_validation_days(evaluation):
    import json

    proposed = json.loads((evaluation / "train" / "imitative_diffattn__p0__s0" / "config.json").read_text())
    baseline = json.loads((evaluation / "train" / "iddpg__p0__s0" / "config.json").read_text())
    assert proposed["demo_replay"] is True and proposed["pretrain_steps"] == 50  # TRAIN_OPTIONS, then ours
    assert proposed["expert"] == "policy:expert" and proposed["label_every"] == 40  # DAgger labels of visited states
    labels = pd.read_csv(evaluation / "train" / "imitative_diffattn__p0__s0" / "progress.csv").labels.iloc[-1]
    assert labels == 96 + 120 // 40  # one demonstration day, then a label every 40th step
    assert proposed["batch_size"] == baseline["batch_size"] == 64                # "*" reaches every algorithm
    assert baseline["demo_replay"] is False and baseline["pretrain_steps"] == 0
    assert proposed["eval_days"] == baseline["eval_days"] == "validation" and baseline["keep_best"]
    # env_options of train_options go over the scenario's environment, not instead of it
    assert baseline["env_options"]["voltage_penalty_eur_per_pu"] == 500.0
    assert proposed["env_options"]["voltage_penalty_eur_per_pu"] == 200.0
    assert baseline["env_options"]["max_prosumers"] == proposed["env_options"]["max_prosumers"] == 3
    assert baseline["env_options"]["network"] == proposed["env_options"]["network"] == "ieee33"
    for run in ("imitative_diffattn__p0__s0", "iddpg__p0__s1"):  # the evaluated actor is the kept one
        best = json.loads((evaluation / "train" / run / "best.json").read_text())
        assert pd.read_csv(evaluation / "train" / run / "progress.csv").eval_return.max() <= best["eval_return"] + 1e-5 * abs(best["eval_return"])
    first = pd.read_csv(evaluation / "train" / "imitative_diffattn__p0__s0" / "progress.csv").iloc[0]
    assert first.step == 0 and first.imitation_loss > 0 and 0 < first.critic_pretrain_steps <= 200


def test_table_gap_is_cost_over_bound_and_bound_is_lowest(evaluation):
    runs = pd.read_csv(evaluation / "runs.csv")
    table = pd.read_csv(evaluation / "table.csv").set_index("method")
    bound = runs[runs.method == BOUND].cost_eur.sum()
    for method, g in runs[runs.method != BOUND].groupby("method"):
        assert (g.cost_eur >= bound - 1e-6).all(), f"{method} beat the perfect-foresight bound"
        gaps = (g.groupby("seed").cost_eur.sum() - bound) / abs(bound)  # = cost / bound - 1 when bound > 0
        assert table.loc[method, "gap_median"] == pytest.approx(gaps.median())
        assert table.loc[method, "cost_eur_q75"] == pytest.approx(g.groupby("seed").cost_eur.mean().quantile(0.75))
    assert table.loc["rule", "runs"] == 1 and table.loc["iddpg", "runs"] == 2
    training = pd.read_csv(evaluation / "training.csv")
    assert len(training) == 4 and (training.wall_s > 0).all()
    comparisons = pd.read_csv(evaluation / "comparisons.csv").set_index("other")
    assert {"iddpg", "rule", "imitative_diffattn@last"} <= set(comparisons.index)
    assert "Paired per-day differences of imitative_diffattn" in (evaluation / "table.md").read_text()


def test_paired_bootstrap_finds_a_real_difference_and_not_a_fake_one():
    rng = np.random.default_rng(0)
    rows = []
    for day in range(20):
        level = rng.uniform(50, 150)  # days differ far more than the methods
        for seed in range(5):
            rows.append({"method": "a", "pseed": 0, "seed": seed, "day": day, "cost_eur": level - 2 + rng.normal(0, 1)})
            rows.append({"method": "b", "pseed": 0, "seed": seed, "day": day, "cost_eur": level + rng.normal(0, 1)})
            rows.append({"method": "c", "pseed": 0, "seed": seed, "day": day, "cost_eur": level + rng.normal(0, 1)})
    runs = pd.DataFrame(rows)
    ab, bc = paired(runs, "a", "b", n_boot=2000), paired(runs, "b", "c", n_boot=2000)
    assert ab["hi"] < 0 and ab["lo"] < -2 < ab["hi"] and ab["units"] == 20  # paired: the day levels cancel
    assert bc["lo"] < 0 < bc["hi"]
    with pytest.raises(ValueError, match="no rows of method 'z'"):
        paired(runs, "a", "z")


def test_summary_is_median_and_iqr_over_runs():
    runs = pd.DataFrame([{"method": m, "pseed": 0, "seed": s, "day": "d", "cost_eur": c}
                         for m, s, c in [("a", 0, 10.0), ("a", 1, 20.0), ("a", 2, 60.0), (BOUND, 0, 5.0)]])
    row = summarize(runs).set_index("method").loc["a"]
    assert row.cost_eur_median == 20.0 and row.cost_eur_q25 == 15.0 and row.cost_eur_q75 == 40.0
    assert row.gap_median == pytest.approx(3.0)  # (20 - 5) / 5


def test_reusing_trained_actors_skips_training(evaluation, tmp_path):
    cfg = EvalConfig(algos="iddpg", seeds="1", max_prosumers=3, days=1, baselines="", progress=False,
                     split="validation", train_dir=str(evaluation / "train"), results_dir=str(tmp_path),
                     run_name="again")
    again = evaluate(cfg)
    first = pd.read_csv(evaluation / "runs.csv").query("method == 'iddpg' and seed == 1").cost_eur.iloc[0]
    assert pd.read_csv(again / "runs.csv").query("method == 'iddpg'").cost_eur.iloc[0] == pytest.approx(first)
    assert not (again / "demos_p0.npz").exists()
    snapshots = (evaluation / "train" / "iddpg__p0__s1" / "snapshots").iterdir()
    steps = sorted(int(f.stem.split("_")[1]) for f in snapshots)
    assert steps and sorted(pd.read_csv(again / "test_curve.csv").step) == steps  # the reused run's snapshots


@pytest.mark.parametrize("change, field", [({"algos": "ppo"}, "algos"), ({"seeds": "a,b"}, "seeds"),
                                           ({"scenario_seeds": ""}, "scenario_seeds"),
                                           ({"algo_seeds": {"ppo": "1"}}, "algo_seeds"),
                                           ({"algo_seeds": {"bc": "x"}}, r"algo_seeds\.bc"),
                                           ({"baselines": "oracle"}, "baselines"), ({"scenario": "nowhere"}, "scenario"),
                                           ({"split": "train"}, "split"),
                                           ({"train_dir": "/no/such/folder"}, "train_dir"),
                                           ({"train_options": {"ppo": {}}}, "train_options"),
                                           ({"train_options": {"*": {"learning_rate": 1}}}, r"train_options\.\*"),
                                           ({"train_options": {"bc": {"env_options": {"days": "test"}}}},
                                            r"train_options\.bc\.env_options: .* only \['voltage_penalty"),
                                           ({"demo_experts": "/no/such/folder"}, "demo_experts"),
                                           ({"demo_experts": "reference", "demo_options": {"network_limits": False}},
                                            "demo_experts"),
                                           ({"demo_experts": "reference", "demo_days": 0}, "demo_experts")])
def test_bad_config_names_the_field(tmp_path, change, field):
    with pytest.raises(ConfigError, match=field):
        evaluate(EvalConfig(results_dir=str(tmp_path), progress=False, **change))
    assert not any(tmp_path.iterdir())


def test_resume_keeps_finished_runs_and_redoes_interrupted_ones(evaluation, tmp_path):
    import dataclasses
    import json
    import shutil

    folder = shutil.copytree(evaluation, tmp_path / "eval")
    cfg = dataclasses.replace(load_config(folder), results_dir=str(tmp_path))
    for name in ("runs.csv", "table.csv", "table.md", "training.csv"):
        (folder / name).unlink()
    (folder / "train" / "iddpg__p0__s1" / "checkpoint.pt").unlink()       # killed before its end
    cut = next((folder / "cosim").glob("imitative_diffattn__p0__s0__*"))
    (cut / "summary.json").write_text(json.dumps({"incomplete": True}))                # killed mid-day
    kept = {p: p.read_bytes() for p in (folder / "demos_p0.npz", folder / "train" / "iddpg__p0__s0" / "actor.pt")}

    evaluate(dataclasses.replace(cfg, resume=True))
    for path, content in kept.items():
        assert path.read_bytes() == content, f"{path} was rewritten"
    assert len(list((folder / "train").glob("iddpg__p0__s1.interrupted-*"))) == 1       # set aside, not deleted
    assert len(list((folder / "cosim").glob(f"{cut.name}.interrupted-*"))) == 1
    again, first = (pd.read_csv(d / "runs.csv").set_index(["method", "seed", "day"]).cost_eur
                    for d in (folder, evaluation))
    pd.testing.assert_series_equal(again.sort_index(), first.sort_index(), rtol=1e-9)  # same seeds, same numbers
    assert (pd.read_csv(folder / "training.csv").wall_s > 0).all()


def test_resume_refuses_other_settings_or_a_missing_folder(evaluation):
    import dataclasses

    cfg = dataclasses.replace(load_config(evaluation), resume=True)
    with pytest.raises(ConfigError, match=r"resume: settings differ .*\['total_steps'\]"):
        evaluate(dataclasses.replace(cfg, total_steps=99))
    with pytest.raises(ConfigError, match=r"resume: settings differ .*\['effective_train_options', 'train_options'\]"):
        evaluate(dataclasses.replace(cfg, train_options={"*": {"batch_size": 32}}))
    with pytest.raises(ConfigError, match="resume: needs run_name"):
        evaluate(dataclasses.replace(cfg, run_name="nothing_here"))


def test_resume_of_a_folder_older_than_a_setting_takes_the_setting_at_its_default(evaluation, tmp_path):
    from agents.marl.evaluate import check_resumable

    old = tmp_path / "old"
    old.mkdir()
    recorded = json.loads((evaluation / "config.json").read_text())
    for added in ("dates", "unseen_days", "fresh_days", "evaluated_days"):  # settings newer than that folder
        recorded.pop(added, None)
    (old / "config.json").write_text(json.dumps({**recorded, "run_name": "old", "results_dir": str(tmp_path)}))
    cfg = dataclasses.replace(load_config(evaluation), resume=True, results_dir=str(tmp_path), run_name="old")
    check_resumable(cfg)  # at their defaults: no difference
    with pytest.raises(ConfigError, match=r"resume: settings differ .*\['unseen_days'\]"):
        check_resumable(dataclasses.replace(cfg, unseen_days=True))


def test_compare_reads_the_evaluation_runs_by_method_and_seed(evaluation):
    """load_runs (scenarios.compare) on the evaluation's co-simulation runs: method and training seed as columns."""
    from simulators.recorder.runs import load_runs

    runs = load_runs(str(evaluation / "cosim" / "*"))
    assert runs.fields == ["method", "train_seed"]
    mine = runs.summaries.set_index("run")
    for _, row in pd.read_csv(evaluation / "runs.csv").dropna(subset=["run_dir"]).iterrows():
        run = mine.loc[row.run_dir.rsplit("/", 1)[-1]]
        assert run.method == row.method and run.cost_eur == pytest.approx(row.cost_eur)
        assert pd.isna(run.train_seed) if row.method == "rule" else run.train_seed == row.seed


def test_demonstrations_are_reused_only_when_they_are_the_same(evaluation, tmp_path):
    import dataclasses

    from agents.marl.evaluate import scenario_config
    from agents.marl.jobs import write_demos

    cfg = dataclasses.replace(load_config(evaluation), demo_dir=str(evaluation))
    copy = write_demos(cfg, scenario_config(cfg, 0), tmp_path)
    assert copy.read_bytes() == (evaluation / "demos_p0.npz").read_bytes()
    other = dataclasses.replace(cfg, demo_options={"network_limits": False})
    with pytest.raises(ConfigError, match=r"demo_dir: .* differs .* in \['options'\]"):
        write_demos(other, scenario_config(other, 0), tmp_path / "x")


def test_demo_experts_take_only_codes_generated_for_the_same_specs(tmp_path):
    from agents.llm.coupled import accepted_codes
    from agents.llm.reference_code import reference_code
    from simulators.prosumer.spec import load_specs, save_specs
    from simulators.scenario import DATA_DIR

    specs = load_specs(DATA_DIR / "ieee33_prosumers.json")[:3]
    folder = tmp_path / "workflow"
    (folder / "experts").mkdir(parents=True)
    save_specs(specs, folder / "specs.json")
    (folder / "experts" / "p001.py").write_text(reference_code(specs[1]))
    assert accepted_codes(folder, specs) == {"p001": reference_code(specs[1])}  # p000, p002: no accepted expert
    other = [specs[0], dataclasses.replace(specs[1], load_peak_kw=specs[1].load_peak_kw + 1), specs[2]]
    with pytest.raises(ConfigError, match="demo_experts: the expert of p001 .* was generated for another spec"):
        accepted_codes(folder, other)
    with pytest.raises(ConfigError, match="is not an expert-workflow run folder"):
        accepted_codes(tmp_path, specs)


def test_pair_compares_the_same_methods_of_two_evaluations(tmp_path):
    from agents.marl.pair import compare, main

    def folder(name, shift, days=("2016-01-05", "2016-02-09")):
        rows = [{"method": m, "seed": s, "pseed": 0, "day": d, "cost_eur": 100.0 + 10 * k + (shift if m == "bc" else 0),
                 "voltage_violation_rate": 0.0, "controllable_rate": 1.0}
                for m in ("bc", BOUND) for s in (0, 1) for k, d in enumerate(days)]
        (tmp_path / name).mkdir()
        pd.DataFrame(rows).to_csv(tmp_path / name / "runs.csv", index=False)
        return tmp_path / name

    a, b = folder("a", 7.0), folder("b", 0.0)
    table = compare(a, b, labels=("llm", "reference"), n_boot=200)
    assert table["method"].tolist() == ["bc"] and table["runs"].iloc[0] == "4 / 4"
    assert table["Δ cost [EUR/day]"].iloc[0].startswith("+7.0 [+7.0, +7.0]")
    with pytest.raises(ConfigError, match="different"):
        compare(a, folder("c", 0.0, days=("2016-03-01",)), n_boot=10)
    with pytest.raises(SystemExit, match="no runs.csv"):
        main([str(a), str(tmp_path)])


def _fake_evaluation(results, name, split, days, runs=True, scenario="ieee33_day"):
    folder = results / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"scenario": scenario, "algos": "bc", "split": split,
                                                    "days": len(days)}))
    if runs:
        pd.DataFrame({"method": "bc", "seed": 0, "day": days, "cost_eur": 1.0}).to_csv(folder / "runs.csv", index=False)


def test_test_days_seen_names_earlier_test_evaluations_only(tmp_path):
    _fake_evaluation(tmp_path, "final_a", "test", ["2016-01-24", "2016-02-25"])
    _fake_evaluation(tmp_path, "val_b", "validation", ["2016-01-24"])
    _fake_evaluation(tmp_path, "unfinished", "test", ["2016-01-24"], runs=False)
    _fake_evaluation(tmp_path, "other_feeder", "test", ["2016-01-24"], scenario="ieee33_high_pv")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    assert earlier_test_days(tmp_path, ["2016-01-24", "2016-12-09"], "ieee33_day") == {"final_a": ["2016-01-24"]}
    assert earlier_test_days(tmp_path, ["2016-12-09"], "ieee33_day") == {}
    assert earlier_test_days(tmp_path, ["2016-01-24"], "ieee33_high_pv") == {"other_feeder": ["2016-01-24"]}


def test_final_on_test_days_seen_before_is_refused_with_fresh_days_and_recorded_without(evaluation, tmp_path):
    reuse = dict(algos="iddpg", seeds="1", max_prosumers=3, days=1, baselines="", progress=False, split="test",
                 train_dir=str(evaluation / "train"), results_dir=str(tmp_path))
    first = evaluate(EvalConfig(run_name="first", fresh_days=True, **reuse))
    assert json.loads((first / "test_days_seen.json").read_text()) == {}
    (day,) = pd.read_csv(first / "runs.csv").day.unique()
    with pytest.raises(ConfigError, match=rf"days: 1 of the 1 test days .*first: {day}"):
        evaluate(EvalConfig(run_name="second", fresh_days=True, **reuse))
    ledger = (tmp_path / LEDGER).read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first", LEDGER]  # nothing written, nothing lost
    assert ledger.count("\n") == 2  # the header and the first evaluation's day
    again = evaluate(EvalConfig(run_name="again", **reuse))
    assert json.loads((again / "test_days_seen.json").read_text()) == {"first": [day]}
    assert "1 of these test days were evaluated before" in (again / "table.md").read_text()
    ledger = pd.read_csv(tmp_path / LEDGER)
    assert ledger[["scenario", "day", "evaluation"]].values.tolist() == [["ieee33_day", day, "first"],
                                                                         ["ieee33_day", day, "again"]]
    for folder in ("first", "again"):  # a fresh clone has the ledger but not the folders
        shutil.rmtree(tmp_path / folder)
    with pytest.raises(ConfigError, match=rf"days: 1 of the 1 test days .*again: {day}; first: {day}"):
        evaluate(EvalConfig(run_name="third", fresh_days=True, **reuse))
    unseen = evaluate(EvalConfig(run_name="unseen", unseen_days=True, **reuse))
    (drawn,) = pd.read_csv(unseen / "runs.csv").day.unique()
    assert drawn != day and json.loads((unseen / "config.json").read_text())["evaluated_days"] == [drawn]
    assert json.loads((unseen / "test_days_seen.json").read_text()) == {}
    assert pd.read_csv(tmp_path / LEDGER).evaluation.tolist() == ["first", "again", "unseen"]
    # resume runs on the days recorded, although the ledger now names them as seen
    assert evaluation_days(EvalConfig(run_name="unseen", resume=True, unseen_days=True, **reuse)) == [drawn]


def test_unseen_days_spread_over_the_test_days_no_evaluation_touched(tmp_path):
    pool = split_pool("test")
    record_test_days(tmp_path, "ieee33_day", spread(pool, 8), "final_a", "by hand")
    record_test_days(tmp_path, "ieee33_high_pv", pool[:30], "other_feeder")
    _fake_evaluation(tmp_path, "folder_only", "test", spread(pool, 6))
    cfg = EvalConfig(days=5, unseen_days=True, results_dir=str(tmp_path))
    touched = set(spread(pool, 8)) | set(spread(pool, 6))
    left = [d for d in pool if d not in touched]
    assert evaluation_days(cfg) == spread(left, 5) and not set(evaluation_days(cfg)) & touched
    assert len(evaluation_days(dataclasses.replace(cfg, days=len(left)))) == len(left)
    with pytest.raises(ConfigError, match=rf"days: unseen_days draws 1..{len(left)} .* got {len(left) + 1}"):
        evaluation_days(dataclasses.replace(cfg, days=len(left) + 1))
    with pytest.raises(ConfigError, match="unseen_days: draws test days"):
        evaluate(dataclasses.replace(cfg, split="validation"))
    assert earlier_test_days(tmp_path, pool, "ieee33_day") == {"final_a": spread(pool, 8),
                                                               "folder_only": spread(pool, 6)}


def test_dates_name_the_days_of_the_split(tmp_path):
    pool = split_pool("test")
    cfg = EvalConfig(dates=f"{pool[3]}, {pool[1]}", results_dir=str(tmp_path))
    assert evaluation_days(cfg) == [pool[3], pool[1]]
    with pytest.raises(ConfigError, match=r"dates: '2016-01-01' is not one of the 45 test days"):
        evaluation_days(dataclasses.replace(cfg, dates="2016-01-01"))
    with pytest.raises(ConfigError, match=r"dates: '.*' is not one of the .* validation days"):
        evaluation_days(dataclasses.replace(cfg, split="validation"))
    with pytest.raises(ConfigError, match="dates: give dates or unseen_days, not both"):
        evaluate(dataclasses.replace(cfg, unseen_days=True))


def test_a_ledger_that_cannot_be_read_is_an_error_naming_it(tmp_path):
    (tmp_path / LEDGER).write_text("scenario,day\nieee33_day,2016-01-24\n")
    with pytest.raises(ConfigError, match=r"ledger: .*test_days.csv' lacks the columns \['evaluation', 'source'\]"):
        earlier_test_days(tmp_path, ["2016-01-24"], "ieee33_day")
    (tmp_path / LEDGER).write_bytes(b'scenario,day,evaluation,source\n"unclosed')
    with pytest.raises(ConfigError, match="ledger: .* cannot be read as CSV"):
        earlier_test_days(tmp_path, ["2016-01-24"], "ieee33_day")


PARENT = textwrap.dedent("""
    import os, time
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context
    from agents.marl.jobs import exit_with_parent
    if __name__ == "__main__":
        with ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=exit_with_parent,
                                 initargs=(os.getpid(), 0.1)) as pool:
            print(pool.submit(os.getpid).result(), flush=True)
            pool.submit(time.sleep, 120)
            time.sleep(120)
""")


def _running(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_pool_workers_end_when_the_evaluation_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    root = Path(__file__).resolve().parents[1]
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=root)
    worker = int(parent.stdout.readline())
    assert _running(worker)
    parent.kill()  # SIGKILL: no clean-up of the pool runs
    parent.wait()
    deadline = time.monotonic() + 30
    while _running(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    orphaned = _running(worker)
    if orphaned:
        os.kill(worker, signal.SIGKILL)  # leave no sleeping worker behind a failure
    assert not orphaned


def test_training_in_two_worker_processes_gives_the_same_runs(evaluation, tmp_path):
    first = load_config(evaluation)
    again = evaluate(dataclasses.replace(first, algos="iddpg", workers=2, snapshot_every=0, results_dir=str(tmp_path),
                                         run_name="parallel"))
    cost = {folder: pd.read_csv(folder / "runs.csv").query("method == 'iddpg'").set_index(["seed", "day"]).cost_eur
            for folder in (evaluation, again)}
    assert len(cost[again]) == 2
    pd.testing.assert_series_equal(cost[again], cost[evaluation].loc[cost[again].index])
