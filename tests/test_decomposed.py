"""The decomposed workflow: reference blocks assemble into an accepted model, a failing block is
repaired alone, a block that stays wrong makes the prosumer fall back, few-shot examples come
from other prosumers. Recorded replies drive the LLM; the generated code runs in the jail."""

import json

import pytest

from agents.expert.preferences import parse_preferences
from agents.llm.block_code import assemble, block_ids, reference_block, render, windows
from agents.llm.checker import static_check
from agents.llm.decomposed import (
    BLOCK_PROMPT_VERSION,
    SYSTEM,
    VARIANT,
    DecomposedConfig,
    DecomposedWorkflow,
    block_prompt,
    examples,
    extract_block,
    merged_pool,
    units_text,
)
from agents.llm.llm import RecordedBackend, prompt_key
from agents.llm.report import write_report
from agents.llm.verification import make_test_states
from agents.llm.workflow import cache_key
from simulators.prosumer.spec import load_specs, save_specs, spec_from_dict
from simulators.scenario import DATA_DIR
from simulators.validation import ConfigError
from test_llm_preferences import recorded_stages

SPEC = spec_from_dict({
    "name": "t1", "bus": 1, "load_peak_kw": 5.0, "pv": [{"kwp": 6.0}],
    "batteries": [{"capacity_kwh": 10.0, "p_max_kw": 5.0, "cost_eur_per_kwh": 0.01},
                  {"capacity_kwh": 4.0, "p_max_kw": 2.0, "cost_eur_per_kwh": 0.02}],
    "generators": [{"p_max_kw": 4.0, "ramp_kw_per_step": 2.0, "cost_a_eur_per_kw2h": 0.002,
                    "cost_b_eur_per_kwh": 0.2}],
    "controllable_loads": [{"energy_kwh": 6.0, "p_max_kw": 2.0, "earliest_step": 32, "deadline_step": 72}],
    "preferences": ["don't run the generator at night", {"quantity": "grid_export", "sense": "at_most",
                                                        "bound": 3, "unit": "kW", "from": "11:00", "to": "15:00"}]})
POOL = load_specs(DATA_DIR / "ieee33_prosumers.json")


@pytest.fixture(scope="module")
def states():
    return make_test_states([SPEC], n=1)["t1"]


class Asked(RecordedBackend):
    """Recorded replies that also keep every batch asked: (tag, prompts)."""

    def generate_batch(self, prompts, **kw):
        self.asked = getattr(self, "asked", []) + [(kw["tag"], prompts)]
        return super().generate_batch(prompts, **kw)


def replies(blocks, **stages):
    """Recorded replies of the 'block' stage in block order (the reference block unless overridden),
    plus other stages' lists; each reply ends with the closing fence, as the stop string leaves it."""
    first = [blocks.get(b, reference_block(SPEC, b)) + "```" for b in block_ids(SPEC)]
    return Asked({"block": first, **{k: [r + "```" for r in v] for k, v in stages.items()}})


def test_assembled_reference_blocks_pass_the_static_check():
    for spec in [SPEC, *POOL]:
        assert static_check(assemble(spec)) == []
    assert block_ids(SPEC) == ["pv", "batteries", "generators", "controllable_loads", "pref1", "pref2"]


def test_prompt_shows_other_prosumers_blocks_the_rules_and_this_prosumers_numbers():
    prompt = block_prompt(SPEC, "batteries", POOL, 2)
    assert prompt.count("```python") == 2 and "BESS2" in prompt.split("Units:")[-1]
    assert '"capacity_kwh": 4.0' in prompt.split("Units:")[-1]
    mine = reference_block(SPEC, "batteries")
    assert mine not in prompt  # the answer is never among the examples
    pref = block_prompt(SPEC, "pref2", POOL, 2)
    assert "eps2" in pref and reference_block(SPEC, "pref2") not in pref


def test_another_files_prosumer_of_the_same_name_stays_in_the_example_pool():
    twin = spec_from_dict({**json.loads(json.dumps(SPEC.to_dict())), "name": POOL[8].name})  # p008, other devices
    pool = merged_pool([twin, POOL[8]], POOL)
    assert pool[:2] == [twin, POOL[8]] and len(pool) == len(POOL) + 1  # by content: the same p008 once
    shown = [text for text, _ in examples(twin, "batteries", pool, 2)]
    assert units_text(twin, "batteries") not in shown
    assert units_text(POOL[8], "batteries") in shown  # the pool's p008 (two batteries too) is another prosumer


def test_preference_windows_are_circular_ranges():
    assert windows([*range(88, 96), *range(24)]) == [[88, 24]] and windows(range(96)) == [[0, 96]]
    assert windows([1, 2, 5]) == [[1, 3], [5, 6]] and windows([95]) == [[95, 0]]
    assert "window(steps, 1, 3) + window(steps, 5, 6)" in render("pref1", {
        "quantity": "net_kw", "sense": "at_most", "sign": 1, "bound": 2.0, "from_step": 1, "to_step": 3,
        "more_windows": [[5, 6]]})


def test_extract_block_takes_the_fenced_lines_dedented():
    assert extract_block("    a = 1\n    b = 2\n```\nprose") == "a = 1\nb = 2\n"
    assert extract_block("Sure:\n```python\n  x = 1\n```") == "x = 1\n"


def test_failing_block_is_repaired_alone_and_the_prosumer_accepted(tmp_path, states):
    good = reference_block(SPEC, "batteries")
    bad = good.replace("0.95 * P_ch1", "1.5 * P_ch1")  # a battery that makes energy: off the reference
    backend = replies({"batteries": bad}, repair=[good])
    cfg = DecomposedConfig(cache_dir=str(tmp_path / "experts"), max_repairs=2)
    res = DecomposedWorkflow(backend, cfg, POOL).run(SPEC, states)
    assert res.accepted and res.source == "llm" and res.repairs == 1
    tries = [(s.detail.split(":")[0], s.attempt, s.verdict) for s in res.stages if s.stage == "block"]
    assert ("batteries", 0, "fail") in tries and ("batteries", 1, "pass") in tries
    assert [t for t in tries if t[1] == 1] == [("batteries", 1, "pass")]  # the repair asked for that block only
    fail = next(s for s in res.stages if s.stage == "block" and s.verdict == "fail")
    assert "off the reference" in fail.detail or "stored energy" in fail.detail
    (tag, prompts), = [a for a in backend.asked if a[0] == "repair"]
    assert len(prompts) == 1 and "1.5 * P_ch1" in prompts[0] and "failed the check" in prompts[0]
    assert res.verdict("blocks") == "fail" and res.verdict("repair") == "pass" and res.verdict("verify") == "pass"
    assert res.code == assemble(SPEC)  # every block equals the reference's
    key = cache_key(SPEC, backend.model_id, f"{VARIANT}-{BLOCK_PROMPT_VERSION}")
    assert (tmp_path / "experts" / f"{key}.json").exists()
    summary = write_report([res], tmp_path / "run", {"model_id": backend.model_id})
    assert summary["block_success"] == {"blocks": 6, "first_try": 5, "after_repairs": 6}
    assert "blocks right at the first try" in (tmp_path / "run" / "report.md").read_text()


def test_a_repair_that_repeats_the_failing_block_is_asked_afresh_with_other_examples(tmp_path, states):
    good = reference_block(SPEC, "batteries")
    bad = good.replace("0.95 * P_ch1", "1.5 * P_ch1")
    backend = replies({"batteries": bad}, repair=["\n" + bad.replace("\n", "\n\n"), good])  # same lines, reflowed
    res = DecomposedWorkflow(backend, DecomposedConfig(use_cache=False, max_repairs=1), POOL).run(SPEC, states)
    assert res.accepted and res.repairs == 1  # the fresh ask belongs to the one repair round
    (_, [repair]), (_, [fresh]) = [a for a in backend.asked if a[0] == "repair"]
    assert "failed the check" in repair and "failed the check" not in fresh
    assert fresh == block_prompt(SPEC, "batteries", POOL, 2, skip=2)
    shown = lambda prompt: {line for line in prompt.split("Edit the example")[0].splitlines()  # noqa: E731
                            if line.startswith("  BESS")}  # the examples' unit lines
    first = block_prompt(SPEC, "batteries", POOL, 2)
    assert fresh.split("Example 2")[0] == first.split("Example 2")[0]  # the closest example is kept ...
    second = shown(fresh.split("Example 2")[1])
    assert second and not second & shown(first)  # ... the other is one not shown before
    log = next(s for s in res.stages if s.stage == "block" and s.attempt == 1)
    assert log.verdict == "pass" and log.detail.startswith("batteries: the repair repeated the failing block")
    # a repair that changes the block is checked as it is, with no second ask
    other = bad.replace("1.5 * P_ch1", "1.4 * P_ch1")
    backend = replies({"batteries": bad}, repair=[other, good])
    res = DecomposedWorkflow(backend, DecomposedConfig(use_cache=False, max_repairs=1), POOL).run(SPEC, states)
    assert not res.accepted and [a[0] for a in backend.asked] == ["block", "repair"]


def test_block_that_stays_wrong_falls_back_with_the_block_named(tmp_path, states):
    hostile = 'print(open("/etc/passwd").read())\n'
    backend = replies({"pref2": hostile}, repair=[hostile])
    cfg = DecomposedConfig(use_cache=False, max_repairs=1)
    res = DecomposedWorkflow(backend, cfg, POOL).run(SPEC, states)
    assert not res.accepted and res.source == "reference" and res.repairs == 1
    assert res.verification["reasons"][0].startswith("block pref2: refused by the static check")
    assert "open" in res.verification["reasons"][0]
    assert res.verdict("verify") == "fail" and res.code == ""


def test_whole_fleet_in_one_batch_per_stage():
    specs = [s for s in POOL if s.name in ("p004", "p021")]  # PV only; PV and a grid-import limit
    backend = Asked({"by_prompt": {prompt_key(block_prompt(s, b, POOL, 2), SYSTEM, "```python\n"): reference_block(s, b)
                                   for s in specs for b in block_ids(s)}})
    results = DecomposedWorkflow(backend, DecomposedConfig(use_cache=False), POOL).run_fleet(
        specs, make_test_states(specs, n=1))
    assert [r.accepted for r in results] == [True, True] and backend.misses == 0
    assert [(tag, len(prompts)) for tag, prompts in backend.asked] == [("block", 3)]
    assert json.dumps([r.to_dict() for r in results])


def test_cli_free_text_preference_to_an_accepted_generated_expert(tmp_path, monkeypatch):
    """A wording the parser does not know: the LLM reads it (JSON-schema constrained), the decomposed
    workflow writes its block, the run folder's specs.json holds the structure the scenario runs with."""
    from scenarios import expert_workflow

    free = "keep the diesel genset off while we sleep, 11pm to 7am"
    structure = {"quantity": "generator_power", "sense": "at_most", "bound": 0, "unit": "kW", "from": "23:00",
                 "to": "07:00", "applies": "inside"}
    spec = next(s for s in POOL if s.name == "p011")  # PV and a generator
    spec = spec_from_dict({**spec.to_dict(), "preferences": [free]})
    with pytest.raises(ConfigError, match="does not know this phrase.*LLM expert"):
        parse_preferences(spec)
    resolved = spec_from_dict({**spec.to_dict(), "preferences": [{**structure, "text": free}]})
    save_specs([spec], tmp_path / "specs.json")
    blocks = [reference_block(resolved, b) + "```" for b in block_ids(resolved)]
    (tmp_path / "replies.json").write_text(json.dumps({**recorded_stages(structure), "block": blocks}))
    monkeypatch.setenv("P2P_COSIM_CACHE", str(tmp_path / "cache"))
    folder, summary = expert_workflow.main([
        "--backend", "recorded", "--recorded", str(tmp_path / "replies.json"), "--specs", str(tmp_path / "specs.json"),
        "--results-dir", str(tmp_path / "results"), "--test-states", "1", "--scenario", "unit"])
    assert summary["accepted"] == 1 and summary["columns"] == ["blocks", "repair", "verify"]
    assert load_specs(folder / "specs.json")[0].preferences[0]["from"] == "23:00"
    assert "eps1" in (folder / "experts" / "p011.py").read_text()


@pytest.mark.slow
def test_default_model_runs_the_decomposed_workflow_on_two_prosumers(tmp_path):
    """The default local model (agents/llm/llm.py DEFAULT_MODEL, Qwen2.5-Coder-0.5B) on p000 (four device
    blocks) and p026 (four device blocks and two preferences): both were accepted in the README's runs;
    at least one must be (greedy decoding, but another CPU may round differently)."""
    from agents.llm.llm import HFBackend

    specs = [s for s in POOL if s.name in ("p000", "p026")]
    backend = HFBackend(seed=0)
    results = DecomposedWorkflow(backend, DecomposedConfig(use_cache=False, max_repairs=1), POOL).run_fleet(
        specs, make_test_states(specs, n=2))
    assert backend.tokens_out > 0
    for res in results:
        tried = {s.detail.split(":")[0] for s in res.stages if s.stage == "block"}
        assert tried == set(block_ids(next(s for s in specs if s.name == res.name)))
        assert res.verdict("blocks") in ("pass", "fail") and res.verdict("verify") in ("pass", "fail")
        assert res.accepted == (res.source == "llm") and (res.accepted or res.verification["reasons"])
    assert any(res.accepted for res in results), [res.verification["reasons"] for res in results]
