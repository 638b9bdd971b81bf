"""The evaluation command end to end on a tiny budget: training, co-simulation, table, plots."""

import pandas as pd
import pytest

from agents.marl.evaluate import BOUND, EvalConfig, evaluate, load_config
from simulators.validation import ConfigError


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    cfg = EvalConfig(algos="imitative_diffattn,iddpg", seeds="0,1", total_steps=120, max_prosumers=3,
                     test_days=1, demo_days=1, baselines="rule", progress=False,
                     train_options={"imitative_diffattn": {"pretrain_steps": 50}, "*": {"batch_size": 64}},
                     results_dir=str(tmp_path_factory.mktemp("eval")), run_name="eval")
    return evaluate(cfg)


def test_folder_holds_table_runs_plots_and_every_run(evaluation):
    for name in ("config.json", "demos.npz", "runs.csv", "table.csv", "table.md", "learning_curves.png",
                 "voltage_envelopes.png", "training.csv"):
        assert (evaluation / name).is_file(), name
    runs = pd.read_csv(evaluation / "runs.csv")
    assert sorted(runs.method.unique()) == sorted(["imitative_diffattn", "iddpg", "rule", BOUND])
    assert len(runs) == 1 + 1 + 2 * 2  # bound, rule, two algorithms x two seeds, one day
    for run_dir in runs.run_dir.dropna():
        assert (pd.read_csv(f"{run_dir}/prosumers.csv").prosumer.nunique()) == 3
    for algo in ("imitative_diffattn", "iddpg"):
        for seed in (0, 1):
            assert (evaluation / "train" / f"{algo}__s{seed}" / "actor.pt").is_file()


def test_train_options_merge_over_the_method_defaults(evaluation):
    import json

    proposed = json.loads((evaluation / "train" / "imitative_diffattn__s0" / "config.json").read_text())
    baseline = json.loads((evaluation / "train" / "iddpg__s0" / "config.json").read_text())
    assert proposed["demo_replay"] is True and proposed["pretrain_steps"] == 50  # TRAIN_OPTIONS, then ours
    assert proposed["batch_size"] == baseline["batch_size"] == 64                # "*" reaches every algorithm
    assert baseline["demo_replay"] is False and baseline["pretrain_steps"] == 0
    assert proposed["keep_best"] and baseline["keep_best"] and baseline["eval_days"] == "train"  # "*" defaults
    for run in ("imitative_diffattn__s0", "iddpg__s1"):  # the evaluated actor is the kept one
        best = json.loads((evaluation / "train" / run / "best.json").read_text())
        assert pd.read_csv(evaluation / "train" / run / "progress.csv").eval_return.max() <= best["eval_return"] + 1e-4
    first = pd.read_csv(evaluation / "train" / "imitative_diffattn__s0" / "progress.csv").iloc[0]
    assert first.step == 0 and first.imitation_loss > 0  # the pretraining row


def test_table_gap_is_cost_over_bound_and_bound_is_lowest(evaluation):
    runs = pd.read_csv(evaluation / "runs.csv")
    table = pd.read_csv(evaluation / "table.csv").set_index("method")
    bound = runs[runs.method == BOUND].cost_eur.sum()
    assert table.loc[BOUND, "cost_eur_mean"] == pytest.approx(bound)
    for method, g in runs[runs.method != BOUND].groupby("method"):
        assert (g.cost_eur >= bound - 1e-6).all(), f"{method} beat the perfect-foresight bound"
        gaps = (g.groupby("seed").cost_eur.sum() - bound) / abs(bound)  # = cost / bound - 1 when bound > 0
        assert table.loc[method, "gap_mean"] == pytest.approx(gaps.mean())
        assert table.loc[method, "cost_eur_std"] == pytest.approx(g.groupby("seed").cost_eur.sum().std(ddof=0))
    assert table.loc["rule", "cost_eur_std"] == 0.0 and table.loc["iddpg", "seeds"] == 2
    training = pd.read_csv(evaluation / "training.csv")
    assert len(training) == 4 and (training.wall_s > 0).all()
    assert table.loc["iddpg", "train_wall_s_mean"] == pytest.approx(training.query("method == 'iddpg'").wall_s.mean())


def test_test_days_spread_over_the_year():
    from agents.marl.evaluate import spread

    pool = list(range(45))
    assert spread(pool, 0) == pool and spread(pool, 1) == [22] and spread(pool, 3) == [7, 22, 37]


def test_reusing_trained_actors_skips_training(evaluation, tmp_path):
    cfg = EvalConfig(algos="iddpg", seeds="1", max_prosumers=3, test_days=1, baselines="", progress=False,
                     train_dir=str(evaluation / "train"), results_dir=str(tmp_path), run_name="again")
    again = evaluate(cfg)
    first = pd.read_csv(evaluation / "runs.csv").query("method == 'iddpg' and seed == 1").cost_eur.iloc[0]
    assert pd.read_csv(again / "runs.csv").query("method == 'iddpg'").cost_eur.iloc[0] == pytest.approx(first)
    assert not (again / "demos.npz").exists()


@pytest.mark.parametrize("change, field", [({"algos": "ppo"}, "algos"), ({"seeds": "a,b"}, "seeds"),
                                           ({"baselines": "oracle"}, "baselines"), ({"scenario": "nowhere"}, "scenario"),
                                           ({"train_dir": "/no/such/folder"}, "train_dir"),
                                           ({"train_options": {"ppo": {}}}, "train_options"),
                                           ({"train_options": {"*": {"learning_rate": 1}}}, r"train_options\.\*")])
def test_bad_config_names_the_field(tmp_path, change, field):
    with pytest.raises(ConfigError, match=field):
        evaluate(EvalConfig(results_dir=str(tmp_path), progress=False, **change))


def test_resume_keeps_finished_runs_and_redoes_interrupted_ones(evaluation, tmp_path):
    import dataclasses
    import json
    import shutil

    folder = shutil.copytree(evaluation, tmp_path / "eval")
    cfg = dataclasses.replace(load_config(folder), results_dir=str(tmp_path))
    for name in ("runs.csv", "table.csv", "table.md", "training.csv"):
        (folder / name).unlink()
    (folder / "train" / "iddpg__s1" / "checkpoint.pt").unlink()       # killed before its end
    cut = next((folder / "cosim").glob("imitative_diffattn__s0__*"))
    (cut / "summary.json").write_text(json.dumps({"incomplete": True}))                # killed mid-day
    kept = {p: p.read_bytes() for p in (folder / "demos.npz", folder / "train" / "iddpg__s0" / "actor.pt")}

    evaluate(dataclasses.replace(cfg, resume=True))
    for path, content in kept.items():
        assert path.read_bytes() == content, f"{path} was rewritten"
    assert len(list((folder / "train").glob("iddpg__s1.interrupted-*"))) == 1       # set aside, not deleted
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
