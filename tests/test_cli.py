"""The scenario command line: the README's main command run for real, exact reruns from config.json,
user errors (one line, status 2, no folder), Ctrl-C, quiet mosaik, choices in --help."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from scenarios.ieee33_day import main
from simulators.market import tariffs

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("prosumers", "market", "grid", "feeder")
QUICK = ["--grouping", "grouped", "--max-prosumers", "3", "--no-progress", "--no-plots"]


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _readme_scenario_command():
    """The scenario part of the README's first command: '.venv/bin/python -m scenarios.ieee33_day'."""
    block = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)[0].strip()
    command = block.split("&&")[-1].split()
    assert command[0] == ".venv/bin/python" and command[1:] == ["-m", "scenarios.ieee33_day"]
    return [sys.executable, *command[1:]]


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    """The README's main command, executed as written (results/ under a fresh working folder)."""
    cwd = tmp_path_factory.mktemp("readme")
    out = subprocess.run(_readme_scenario_command(), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)
    runs = list((cwd / "results").iterdir())
    return out, runs[0] if len(runs) == 1 else None


def test_readme_main_command_runs_the_default_scenario_quietly(readme_run):
    out, run_dir = readme_run
    assert out.returncode == 0, out.stderr[-2000:]
    assert run_dir is not None and run_dir.name.startswith("ieee33_day__rule__0__")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["incomplete"] is False and summary["steps"] == 96 and summary["prosumers"] == 32
    assert f"results: {Path('results') / run_dir.name}" in out.stdout
    assert "mosaik" not in out.stdout + out.stderr, "mosaik's banner and log lines are quiet without --verbose"
    assert (run_dir / "voltage_envelope.png").is_file()


def test_config_json_reruns_every_csv_byte_for_byte(readme_run, tmp_path):
    _, run_dir = readme_run
    again, _ = main(["--config", str(run_dir / "config.json"), "--results-dir", str(tmp_path), "--run-name", "again",
                     "--no-progress", "--no-plots"])
    for table in TABLES:
        assert (again / f"{table}.csv").read_bytes() == (run_dir / f"{table}.csv").read_bytes(), table


def test_rerun_uses_the_saved_specs_and_tariff_not_todays_files(tmp_path, monkeypatch):
    specs = json.loads((ROOT / "scenarios/data/ieee33_prosumers.json").read_text())
    spec_file = tmp_path / "specs.json"
    spec_file.write_text(json.dumps(specs))
    first, _ = main(QUICK + ["--specs", str(spec_file), "--results-dir", str(tmp_path), "--run-name", "first"])
    for p in specs["prosumers"]:
        p["load_peak_kw"] *= 2  # the file changes after the run ...
    spec_file.write_text(json.dumps(specs))
    monkeypatch.setitem(tariffs.TARIFFS, "tou", lambda: tariffs.Tariff.flat(0.4, 0.05, "tou"))  # ... and the preset
    rerun, _ = main(["--config", str(first / "config.json"), "--results-dir", str(tmp_path), "--run-name", "rerun"])
    fresh, _ = main(QUICK + ["--specs", str(spec_file), "--results-dir", str(tmp_path), "--run-name", "fresh"])
    typed, _ = main(["--config", str(first / "config.json"), "--specs", str(spec_file), "--results-dir", str(tmp_path),
                     "--run-name", "typed"])  # a spec file typed with --config replaces the saved specs
    for table in TABLES:
        assert (rerun / f"{table}.csv").read_bytes() == (first / f"{table}.csv").read_bytes(), table
    assert (fresh / "prosumers.csv").read_bytes() != (first / "prosumers.csv").read_bytes()
    load = {run: pd.read_csv(run / "prosumers.csv")["load_kw"] for run in (typed, fresh)}
    tariff = {run: pd.read_csv(run / "market.csv")["tariff_buy_eur_per_kwh"] for run in (typed, first)}
    assert load[typed].equals(load[fresh]) and tariff[typed].equals(tariff[first])  # today's file, saved tariff


def _bad_files(tmp_path):
    (tmp_path / "corrupt.json").write_text("{not json")
    (tmp_path / "a_file").write_text("")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "typo.json").write_text(json.dumps({"marktet": "sdr"}))


@pytest.mark.parametrize("argv, says", [
    (["--config", "{tmp}/missing.json"], "config: cannot read"),
    (["--config", "{tmp}/corrupt.json"], "is not valid JSON"),
    (["--config", "{tmp}/list.json"], "must hold a JSON object"),
    (["--config", "{tmp}/typo.json"], "unknown key(s) ['marktet']"),
    (["--results-dir", "{tmp}/a_file"], "is a file, not a folder"),
    (["--seed", "-1"], "seed: -1 outside the allowed range"),
    (["--policy", "actor"], "needs a checkpoint"),
    (["--policy", "actor", "--policy-options", '{"checkpoint": "{tmp}/none.pt"}'], "not found"),
    (["--policy", "rule", "--policy-options", '{"horizon": 4}'], "not taken by policy 'rule'"),
    (["--policy-options", "[1, 2]"], "--policy-options"),
    (["--market", "vickrey"], "invalid choice: 'vickrey' (choose from 'double_auction', 'mmr', 'sdr')"),
    (["--on-invalid", "ignore"], "invalid choice: 'ignore'"),
    (["--days", "two"], "invalid int value"),
    (["--days", "0"], "days: 0 outside"),
    (["--start-date", "2016-02-30"], "start_date"),
    (["--specs", "{tmp}/a_file"], "spec file"),
    (["--network", "ieee9000"], "network"),
    (["--run-name", "../escape"], "plain folder name"),
    (["--device-modules", "no_such_module"], "device_modules: 'no_such_module' cannot be imported"),
])
def test_user_errors_exit_2_with_one_line_and_leave_no_folder(tmp_path, capsys, argv, says):
    _bad_files(tmp_path)
    results = tmp_path / "results"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as exc:
        main(["--results-dir", str(results), "--no-progress", "--no-plots", *argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and says in err, err
    assert not results.exists()


def test_user_error_exit_status_of_the_process(tmp_path):
    out = subprocess.run([sys.executable, "-m", "scenarios.ieee33_day", "--seed", "-1", "--results-dir",
                          str(tmp_path / "r")], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and not (tmp_path / "r").exists()


def test_ctrl_c_keeps_rows_marks_incomplete_one_line(tmp_path):
    run_dir = tmp_path / "interrupted"
    proc = subprocess.Popen([sys.executable, "-m", "scenarios.ieee33_day", "--results-dir", str(tmp_path),
                             "--run-name", run_dir.name, *QUICK, "--days", "7"],
                            cwd=ROOT, env={**_env(), "PYTHONFAULTHANDLER": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    feeder = run_dir / "feeder.csv"
    try:
        while not (feeder.exists() and len(feeder.read_text().splitlines()) > 4):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:  # show where it hangs (faulthandler prints the stacks on SIGABRT)
            proc.send_signal(signal.SIGABRT)
            pytest.fail(f"no exit 120 s after Ctrl-C: {proc.communicate()[1][-4000:]}")
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err.strip().splitlines() == [f"interrupted: the rows recorded so far are kept, summary.json is marked "
                                        f"incomplete (run folder: {run_dir})"]
    rows = len(feeder.read_text().splitlines()) - 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["incomplete"] is True and 4 <= rows < 7 * 96 and summary["steps"] == rows


def test_ctrl_c_is_raised_between_loop_callbacks_and_the_handler_restored():
    """SIGINT during the run raises KeyboardInterrupt from a loop callback (never inside asyncio's
    own bookkeeping), and the default handler is back afterwards."""
    import asyncio

    from simulators.cosim import _interrupt_between_callbacks

    loop = asyncio.new_event_loop()
    try:
        with _interrupt_between_callbacks(loop):
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
            loop.call_later(0.05, os.kill, os.getpid(), signal.SIGINT)
            with pytest.raises(KeyboardInterrupt):
                loop.run_until_complete(asyncio.sleep(5))
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        loop.close()


def test_verbose_shows_mosaik(tmp_path, capfd):
    from loguru import logger

    lines = []
    sink = logger.add(lines.append, level="INFO", filter="mosaik")
    try:
        main(QUICK + ["--max-prosumers", "1", "--results-dir", str(tmp_path), "--verbose"])
    finally:
        logger.remove(sink)
        logger.disable("mosaik")
    assert "mosaik: " in capfd.readouterr().err  # the banner
    assert any("Starting simulation" in line for line in lines)


def test_help_shows_the_allowed_values(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for shown in ("{ac,ac_runpp,lindistflow}", "{double_auction,mmr,sdr}", "{flat,tou}", "{actor,expert,idle,rule}",
                  "{grouped,per_prosumer}", "{cmd,connect,python}", "{clip,raise}"):
        assert shown in out
    from simulators.grid.networks import NETWORKS

    assert all(name in " ".join(out.split()) for name in NETWORKS)  # --network lists its names
