"""Feasible-set probes (agents/llm/support.py): a generated model must allow what the reference
allows, not only reach the same optimum on the test states."""

import json
import re

import pytest

from agents.llm.reference_code import reference_code
from agents.llm.support import directions, support_mismatches
from agents.llm.verification import make_test_states, verify
from simulators.prosumer.spec import load_specs
from simulators.scenario import DATA_DIR

SPECS = {s.name: s for s in load_specs(DATA_DIR / "ieee33_prosumers.json")}


def _scaled(code, table, index, factor):
    """The reference code with one device constant of its first unit scaled (a plausible LLM slip)."""
    line = re.search(rf"^{table} = (\[\[.*\]\])$", code, re.MULTILINE)
    rows = [list(map(float, r.split(","))) for r in re.findall(r"\[([^\[\]]+)\]", line.group(1))]
    rows[0][index] *= factor
    return code.replace(line.group(0), f"{table} = {rows}")


@pytest.mark.parametrize("name,table,index,factor,action", [
    ("p006", "CDG", 0, 1.3, "P_CDG1"),   # generator p_max raised: the generator is idle at the test optima
    ("p006", "BESS", 1, 1.3, "P_BESS1"),  # battery power limit raised
    ("p006", "PV", 1, 1.3, "Q_RDG1"),    # inverter rating raised: only the reactive capability changes
])
def test_a_bound_slack_at_the_optimum_is_still_caught(name, table, index, factor, action):
    spec = SPECS[name]
    states = make_test_states([spec], n=2)[name]
    assert verify(reference_code(spec), spec, states)["accepted"]
    result = verify(_scaled(reference_code(spec), table, index, factor), spec, states)
    assert not result["accepted"]
    assert all(abs(row["rel_gap"]) < 1e-4 for row in result["states"])  # the optima alone would have passed
    assert any("feasible set differs from the reference's" in r for r in result["reasons"]), result["reasons"]
    # the reason names the action whose range changed (and only it), for the repair prompt
    named = {m for r in result["reasons"] for m in re.findall(r"(\w+): (?:least|most) ", r.split("range differs:")[-1])
             if "range differs:" in r}
    assert named == {action}, result["reasons"]


def test_support_mismatches_names_the_probe_and_treats_unbounded_as_different():
    ref = {"most export": 100.0, "most import": -20.0, "most reactive injection": None}
    assert support_mismatches({"most export": 100.05, "most import": -20.0, "most reactive injection": None}, ref) == []
    found = support_mismatches({"most export": 130.0, "most import": None, "most reactive injection": 5.0}, ref)
    assert len(found) == 3
    assert "most export is 130.000 kW" in found[0] and "unbounded or infeasible" in found[1]
    assert "kvar" in found[2] and "the reference allows unbounded or infeasible" in found[2]
    ranges = {"P_X": [0.0, 10.0, 0.0, 1.0], "P_Y": [0.0, 4.0, 0.0, 1.0]}
    named = support_mismatches({"most export": 130.0}, {"most export": 100.0},
                               {**ranges, "P_Y": [0.0, 5.0, 0.0, None]}, ranges)
    assert named[0].endswith("; actions whose range differs: P_Y: most sum over the steps 5.000 (the reference's "
                             "4.000), P_Y: most first-step value unbounded (the reference's 1.000)")


def test_probe_directions_are_fixed_and_cover_both_signs():
    a, b = directions(40), directions(40)
    assert [n for n, *_ in a] == [n for n, *_ in b] and all((x[1] == y[1]).all() for x, y in zip(a, b))
    mixed = a[4][1]
    assert len(mixed) == 40 and set(mixed) == {-1.0, 1.0}


def test_reverify_checks_a_runs_accepted_experts_again(tmp_path, capsys):
    from agents.llm.reverify import main
    from simulators.prosumer.spec import save_specs

    folder = tmp_path / "run"
    (folder / "experts").mkdir(parents=True)
    specs = [SPECS["p003"], SPECS["p006"]]
    save_specs(specs, folder / "specs.json")
    (folder / "config.json").write_text('{"test_states": 2, "seed": 0}')
    (folder / "experts" / "p003.py").write_text(reference_code(SPECS["p003"]))
    (folder / "experts" / "p006.py").write_text(_scaled(reference_code(SPECS["p006"]), "CDG", 0, 1.3))
    assert main([str(folder)]) == (1, 2)
    out = capsys.readouterr().out
    assert "p003 accepted" in out and "p006 REJECTED: state at time 0: feasible set differs" in out
    rows = json.loads((folder / "reverify.json").read_text())
    assert rows["p003"]["accepted"] and not rows["p006"]["accepted"]
    with pytest.raises(SystemExit):
        main([str(tmp_path)])
