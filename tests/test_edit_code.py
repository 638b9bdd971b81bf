"""The edit-the-code variant: the LLM edits another prosumer's whole reference body into this one's;
the example covers the prosumer's device types and is never the prosumer itself; a failing body is
repaired, a repeated repair asked afresh with the next example, a hostile body makes the prosumer fall
back. Recorded replies drive the LLM; the generated code runs in the jail."""

import json

import pytest
from test_decomposed import POOL, SPEC, Asked

from agents.llm.block_code import WHOLE, assemble, block_ids, body
from agents.llm.decomposed import units_text
from agents.llm.edit_code import (
    EDIT_PROMPT_VERSION,
    SYSTEM,
    VARIANT,
    EditConfig,
    EditWorkflow,
    edit_prompt,
    model_examples,
)
from agents.llm.llm import prompt_key
from agents.llm.verification import make_test_states
from agents.llm.workflow import cache_key
from simulators.prosumer.spec import save_specs
from simulators.validation import ConfigError

BAD = body(SPEC).replace("0.95 * P_ch1", "1.5 * P_ch1")  # a battery that makes energy: off the reference


@pytest.fixture(scope="module")
def states():
    return make_test_states([SPEC], n=1)["t1"]


def _types(spec):
    return {key for key, units in spec.devices if units}


def test_the_example_has_every_device_type_and_is_never_the_prosumer_itself():
    for spec in [SPEC, *POOL]:
        for text, code in model_examples(spec, POOL, 2):
            assert text != units_text(spec, WHOLE) and code != body(spec)
            assert all(f"# ---- block {key}" in code for key in _types(spec))
            assert text.count("  preference ") == code.count("# ---- block pref")  # the numbers of every block shown
            if spec.preferences:
                assert "quantity = {" in code and "# ---- block pref1" in code
    p004 = next(s for s in POOL if s.name == "p004")  # PV only: the closest example has no other device
    (_, code), = model_examples(p004, POOL, 1)
    assert code.count("# ---- block") == 1
    prompt = edit_prompt(SPEC, POOL, 1)
    assert prompt.count("```python") == 1 and body(SPEC) not in prompt
    asked = prompt.split("Units:")[-1]
    assert "BESS2" in asked and '"capacity_kwh": 4.0' in asked and "preference 2" in asked
    assert "delete the blocks of device types" in prompt and "Write only the body's lines" in SYSTEM


def test_an_example_without_preferences_shows_other_preference_blocks_never_the_prosumers_own():
    p026 = next(s for s in POOL if s.name == "p026")  # four device types, two preferences: no other such in POOL
    (text, code), = model_examples(p026, POOL, 1)
    assert code.count("# ---- block pref") == 2 and text.count("preference ") == 2
    for k in (1, 2):
        assert units_text(p026, f"pref{k}") not in text
    assert model_examples(SPEC, [p026], 1) == [(units_text(p026, WHOLE), body(p026))]  # its own preferences: as is


def test_no_example_with_every_device_type_is_a_clear_error():
    only_pv = [s for s in POOL if _types(s) == {"pv"}]
    with pytest.raises(ConfigError, match="p026.*no other prosumer of the example pool has every device type"):
        edit_prompt(next(s for s in POOL if s.name == "p026"), only_pv, 1)


def test_a_failing_body_is_repaired_and_the_prosumer_accepted(tmp_path, states, monkeypatch):
    import agents.llm.decomposed as decomposed

    def verify_again(*args, **kwargs):
        raise AssertionError("the accepted body was judged on these states already")

    monkeypatch.setattr(decomposed, "verify", verify_again)  # one body = the whole model: judged once
    backend = Asked({"block": [BAD + "```"], "repair": [body(SPEC) + "```"]})
    res = EditWorkflow(backend, EditConfig(cache_dir=str(tmp_path / "experts"), max_repairs=2), POOL).run(SPEC, states)
    assert res.accepted and res.source == "llm" and res.repairs == 1 and res.code == assemble(SPEC)
    assert [(s.detail.split(":")[0], s.attempt, s.verdict) for s in res.stages if s.stage == "block"] == [
        (WHOLE, 0, "fail"), (WHOLE, 1, "pass")]
    assert [tag for tag, _ in backend.asked] == ["block", "repair"]
    (_, [prompt]), (_, [repair]) = backend.asked
    assert prompt == edit_prompt(SPEC, POOL, 1) and "1.5 * P_ch1" in repair and "failed the check" in repair
    assert res.verdict("blocks") == "fail" and res.verdict("repair") == "pass" and res.verdict("verify") == "pass"
    v = res.verification
    assert v["accepted"] and v["max_abs_gap"] < 1e-6 and len(v["states"]) == 1 and v["rel_tol"] == 0.01
    key = cache_key(SPEC, backend.model_id, f"{VARIANT}-{EDIT_PROMPT_VERSION}")
    assert (tmp_path / "experts" / f"{key}.json").exists()


def test_a_repair_that_repeats_the_body_is_asked_afresh_with_the_next_example(states):
    backend = Asked({"block": [BAD + "```"], "repair": ["\n" + BAD.replace("\n", "\n\n") + "```", body(SPEC) + "```"]})
    res = EditWorkflow(backend, EditConfig(use_cache=False, max_repairs=1), POOL).run(SPEC, states)
    assert res.accepted and res.repairs == 1
    (_, [first]), (_, [repair]), (_, [fresh]) = backend.asked
    assert fresh == edit_prompt(SPEC, POOL, 1, skip=1) and "failed the check" not in fresh
    example = lambda prompt: prompt.split("```python")[1]  # noqa: E731
    assert example(fresh) != example(first)


def test_a_hostile_body_falls_back_to_the_reference_with_the_reason(states):
    hostile = 'print(open("/etc/passwd").read())\n```'
    res = EditWorkflow(Asked({"block": [hostile], "repair": [hostile]}), EditConfig(use_cache=False, max_repairs=1),
                       POOL).run(SPEC, states)
    assert not res.accepted and res.source == "reference" and res.code == ""
    assert res.verification["reasons"][0].startswith(f"block {WHOLE}: refused by the static check")


def test_whole_fleet_in_one_batch_and_a_prosumer_without_devices_needs_no_llm():
    specs = [s for s in POOL if s.name in ("p004", "p020", "p021")]  # PV; nothing controllable; PV + import limit
    assert block_ids(specs[1]) == []
    backend = Asked({"by_prompt": {prompt_key(edit_prompt(s, POOL, 1), SYSTEM, "```python\n"): body(s)
                                   for s in specs if block_ids(s)}})
    results = EditWorkflow(backend, EditConfig(use_cache=False), POOL).run_fleet(specs, make_test_states(specs, n=1))
    assert [r.accepted for r in results] == [True, True, True] and backend.misses == 0
    assert [(tag, len(prompts)) for tag, prompts in backend.asked] == [("block", 2)]


def test_cli_runs_the_edit_variant(tmp_path, monkeypatch):
    from scenarios import expert_workflow

    spec = next(s for s in POOL if s.name == "p011")  # PV and a generator
    save_specs([spec], tmp_path / "specs.json")
    (tmp_path / "replies.json").write_text(json.dumps({"block": [body(spec) + "```"]}))
    monkeypatch.setenv("P2P_COSIM_CACHE", str(tmp_path / "cache"))
    folder, summary = expert_workflow.main([
        "--variant", "edit", "--backend", "recorded", "--recorded", str(tmp_path / "replies.json"),
        "--specs", str(tmp_path / "specs.json"), "--results-dir", str(tmp_path / "results"), "--test-states", "1",
        "--scenario", "unit"])
    assert summary["accepted"] == 1 and summary["block_success"] == {"blocks": 1, "first_try": 1, "after_repairs": 1}
    assert json.loads((folder / "report.json").read_text())["meta"]["variant"] == "edit"
    assert (folder / "experts" / "p011.py").read_text() == assemble(spec)
