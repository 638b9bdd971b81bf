"""Run the LLM expert workflow for every prosumer of a scenario's spec file and write a report.

    python -m scenarios.expert_workflow                      # Qwen2.5-Coder-0.5B, all prosumers, decomposed
    python -m scenarios.expert_workflow --model smollm2-135m-instruct --prosumers p000,p026   # the tiny model
    python -m scenarios.expert_workflow --variant oneshot --max-prosumers 4 --max-repairs 1
    python -m scenarios.expert_workflow --model /path/to/model_folder_or.gguf
    python -m scenarios.expert_workflow --backend recorded --recorded replies.json
    python -m scenarios.expert_workflow --demonstrations 2016-03-01     # + demonstrations.npz

``--variant decomposed`` (default; agents/llm/decomposed.py) has the LLM edit one reference code
block at a time (a device type or a preference); ``edit`` (agents/llm/edit_code.py) has it edit
another prosumer's whole reference code into this prosumer's in one reply; ``oneshot``
(agents/llm/workflow.py) runs the paper's stages on the whole model from its text description.

Free-text preferences the hand-written parser does not know are first turned into structured
preferences by the LLM (batched, JSON-schema constrained, three questions with hints by default;
agents/llm/preference_extraction.py);
the run folder's specs.json holds the specs with them, ready for
``python -m scenarios.ieee33_day --specs <run folder>/specs.json``, and preferences.json every
wording with the LLM's answer.

The run folder results/<scenario>__expert-workflow__<seed>__<timestamp>/ holds config.json,
report.json (every stage's prompt, raw output, verdict and seconds), report.md (the table)
and experts/<name>.py (accepted generated models). Prosumers whose generated model is
rejected fall back to the reference model (agents/expert/reference.py); the report says which.
With ``--demonstrations`` the accepted experts, coupled (agents/llm/coupled.py), also record
demonstrations.npz for imitation learning; its metadata names the prosumers that fell back.
"""

import argparse
import dataclasses
import datetime
import json
import time
from dataclasses import dataclass
from pathlib import Path

from agents.llm.preference_extraction import DEFAULT_VARIANT as DEFAULT_PREFERENCE_VARIANT
from agents.llm.preference_extraction import VARIANTS as PREFERENCE_VARIANTS
from simulators.profiles.data import TEST_EVERY, is_test_day
from simulators.prosumer.spec import load_specs, save_specs
from simulators.recorder.recorder import new_run_dir
from simulators.scenario import DATA_DIR
from simulators.validation import ConfigError, check_choice, check_range


@dataclass
class ExpertRunConfig:
    scenario: str = "ieee33_day"
    """scenario name; the first part of the run folder's name"""
    specs: str = str(DATA_DIR / "ieee33_prosumers.json")
    """prosumer spec file (JSON)"""
    max_prosumers: int = 0
    """use only the first N prosumers (0 = all)"""
    prosumers: str = ""
    """comma-separated prosumer names to run (empty = all, after max_prosumers)"""
    variant: str = "decomposed"
    """workflow: decomposed (the LLM edits one reference code block at a time, agents/llm/decomposed.py) |
    edit (the LLM edits the closest other prosumer's whole reference code into this one's, agents/llm/edit_code.py) |
    oneshot (the paper's five stages on the whole model, agents/llm/workflow.py)"""
    backend: str = "hf"
    """LLM backend: a name from BACKENDS (hf | recorded)"""
    model: str = ""
    """hf backend: a packaged model's name (python -m agents.llm.models --help), a local model folder or a
    .gguf file; empty = Qwen2.5-Coder-0.5B-Instruct (agents/llm/llm.py DEFAULT_MODEL)"""
    dtype: str = "auto"
    """hf backend: compute dtype auto (float32 on the CPU, as stored on a GPU) | float32 | bfloat16"""
    preference_variant: str = DEFAULT_PREFERENCE_VARIANT
    """free-text preferences: choices (the default: kind, what, amount, when as small questions, the
    readings the tagged mentions allow as options) | fields (what, amount, when, scope, written out) |
    chat | hints | joint (one JSON object); agents/llm/preference_extraction.py VARIANTS"""
    only_preferences: bool = False
    """only turn free-text preferences into structured ones (specs.json), no expert generation"""
    recorded: str = ""
    """recorded backend: JSON file of recorded replies"""
    device: str = "auto"
    """hf backend: auto | cpu | cuda"""
    threads: int = 1
    """hf backend: torch CPU threads (0 = torch default)"""
    seed: int = 0
    """seeds generation and the profile assignment of the test states"""
    max_repairs: int = 2
    """repair prompts after a failed execution"""
    max_new_tokens: int = 700
    """generation budget of the code, repair and review stages"""
    rel_tol: float = 0.01
    """accepted relative objective gap vs the reference model"""
    retrieval: str = "minilm"
    """atom-doc search: minilm (sentence embeddings) | bm25"""
    test_states: int = 3
    """test states per prosumer (spread over one training day, DEFAULT_TRAIN_DAY: acceptance steers prompt choices)"""
    use_cache: bool = True
    """reuse and store accepted experts in the cache"""
    allow_unjailed: bool = False
    """run generated code without the jail when bubblewrap/seccomp are unavailable (not recommended)"""
    demonstrations: str = ""
    """comma-separated dates: after the run, write demonstrations.npz into the run folder with the accepted
    generated experts coupled (agents/llm/coupled.py; the others use the reference), e.g. 2016-03-01"""
    results_dir: str = "results"
    """parent folder of the run folder"""
    run_name: str = ""
    """run folder name; empty = <scenario>__expert-workflow__<seed>__<timestamp>"""


def _hf(cfg):
    from agents.llm.llm import HFBackend

    return HFBackend(cfg.model or None, device=cfg.device, seed=cfg.seed, threads=cfg.threads, dtype=cfg.dtype)


def _recorded(cfg):
    from agents.llm.llm import RecordedBackend

    return RecordedBackend(cfg.recorded)


BACKENDS = {"hf": _hf, "recorded": _recorded}


def _oneshot(cfg, backend, specs, states):
    from agents.llm.retrieval import AtomIndex
    from agents.llm.workflow import ExpertWorkflow, WorkflowConfig

    workflow = ExpertWorkflow(backend, WorkflowConfig(max_repairs=cfg.max_repairs, max_new_tokens=cfg.max_new_tokens,
                                                      rel_tol=cfg.rel_tol, use_cache=cfg.use_cache,
                                                      allow_unjailed=cfg.allow_unjailed),
                              AtomIndex.build(embed=cfg.retrieval == "minilm"))
    results = workflow.run_fleet(specs, states)
    for r in results:
        print(f"  {r.name}: {'accepted' if r.accepted else 'fallback to reference'} ({r.source}, {r.seconds:.1f} s)",
              flush=True)
    return results, {"retrieval": workflow.index.method}


def _decomposed(cfg, backend, specs, states, workflow_class=None):
    from agents.llm.decomposed import DecomposedWorkflow

    workflow_class = workflow_class or DecomposedWorkflow
    workflow = workflow_class(backend, workflow_class.config_class(
        max_repairs=cfg.max_repairs, rel_tol=cfg.rel_tol, use_cache=cfg.use_cache, allow_unjailed=cfg.allow_unjailed))
    results = workflow.run_fleet(specs, states)
    for r in results:
        print(f"  {r.name}: {'accepted' if r.accepted else 'fallback to reference'} ({r.source})", flush=True)
    return results, {}


def _edit(cfg, backend, specs, states):
    from agents.llm.edit_code import EditWorkflow

    return _decomposed(cfg, backend, specs, states, EditWorkflow)


VARIANTS = {"decomposed": _decomposed, "edit": _edit, "oneshot": _oneshot}


def validate(cfg):
    """Check every field before anything runs; raises ConfigError naming field, value and range."""
    check_choice("variant", cfg.variant, VARIANTS)
    check_choice("backend", cfg.backend, BACKENDS)
    check_choice("preference_variant", cfg.preference_variant, PREFERENCE_VARIANTS)
    check_choice("device", cfg.device, ("auto", "cpu", "cuda"))
    check_choice("dtype", cfg.dtype, ("auto", "float32", "bfloat16"))
    check_range("max_prosumers", cfg.max_prosumers, 0, 100000)
    check_range("max_repairs", cfg.max_repairs, 0, 10)
    check_range("threads", cfg.threads, 0, 256)
    check_range("max_new_tokens", cfg.max_new_tokens, 16, 8192)
    check_range("rel_tol", cfg.rel_tol, 0.0, 1.0, lo_open=True)
    check_range("test_states", cfg.test_states, 1, 20)
    check_choice("retrieval", cfg.retrieval, ("minilm", "bm25"))
    for date in (d.strip() for d in cfg.demonstrations.split(",") if d.strip()):
        try:
            datetime.date.fromisoformat(date)
        except ValueError:
            raise ConfigError(f"demonstrations: {date!r} is not a date YYYY-MM-DD") from None
        if is_test_day(date):  # demonstrations train actors: test days stay untouched
            raise ConfigError(f"demonstrations: {date!r} is a test day (day of the year divisible by "
                              f"{TEST_EVERY}); demonstrations are recorded on training days only")
    if cfg.backend == "recorded" and not Path(cfg.recorded).is_file():
        raise ConfigError(f"recorded: file {cfg.recorded!r} not found (required by --backend recorded)")
    from agents.llm.models import MODELS

    if cfg.model and cfg.model not in MODELS and not Path(cfg.model).exists():
        raise ConfigError(f"model: {cfg.model!r} is neither a packaged model ({', '.join(MODELS)}) nor an "
                          "existing model folder or .gguf file")
    specs = load_specs(cfg.specs)
    if cfg.max_prosumers:
        specs = specs[: cfg.max_prosumers]
    if cfg.prosumers:
        wanted = [n.strip() for n in cfg.prosumers.split(",") if n.strip()]
        known = {s.name for s in specs}
        for name in wanted:
            check_choice("prosumers", name, known)
        specs = [s for s in specs if s.name in wanted]
    return specs


def parse_args(argv=None):
    """CLI generated from ExpertRunConfig (field docstrings become the help text)."""
    from simulators.cli import add_config_flags, given_flags

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args = given_flags(add_config_flags(parser, ExpertRunConfig, ExpertRunConfig()).parse_args(argv))
    return ExpertRunConfig(**args)


def run(cfg):
    """Run the workflow for the configured prosumers; returns (run folder, summary)."""
    from agents.llm.preference_extraction import resolve_specs
    from agents.llm.report import write_report
    from agents.llm.verification import make_test_states

    specs = validate(cfg)
    backend = BACKENDS[cfg.backend](cfg)
    specs, pref_rows = resolve_specs(specs, backend, variant=cfg.preference_variant)  # a refused LLM reading stops here, before any file
    folder = new_run_dir(cfg.results_dir, cfg.run_name, cfg.scenario, "expert-workflow", cfg.seed)
    (folder / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    save_specs(specs, folder / "specs.json")
    (folder / "preferences.json").write_text(json.dumps(pref_rows, indent=1))
    print(f"  free-text preferences turned into structured ones: {len(pref_rows)} (specs.json)", flush=True)
    if cfg.only_preferences:
        return folder, {"prosumers": len(specs), "accepted": 0, "fallback_to_reference": [],
                        "free_text_preferences": len(pref_rows)}
    states = make_test_states(specs, n=cfg.test_states, seed=cfg.seed)
    t0 = time.perf_counter()
    results, extra = VARIANTS[cfg.variant](cfg, backend, specs, states)
    meta = {"backend": backend.name, "model_id": backend.model_id, "specs": cfg.specs,
            "variant": cfg.variant, "wall_s": time.perf_counter() - t0, **extra,
            "load_s": getattr(backend, "load_s", None), "tokens_out": getattr(backend, "tokens_out", None),
            "generate_s": getattr(backend, "generate_s", None),
            "tokens_per_s": getattr(backend, "tokens_per_s", None),
            "truncated_prompts": getattr(backend, "truncated_prompts", None),
            "repetition_stops": getattr(backend, "repetition_stops", None),
            # where the generation time went (prompt positions run and reused, decoding steps)
            "decoder": dict(backend.decoder.stats) if hasattr(backend, "decoder") else None}
    summary = write_report(results, folder, meta)
    if cfg.demonstrations:
        summary["demonstrations"] = _demonstrations(cfg, folder, results)
    return folder, summary


def _demonstrations(cfg, folder, results):
    """Demonstrations of the run's prosumers (specs.json) with the accepted experts; where each came from."""
    from agents.env import EnvConfig
    from agents.llm.coupled import write_generated_demonstrations

    dates = [d.strip() for d in cfg.demonstrations.split(",") if d.strip()]
    codes = {r.name: r.code for r in results if r.accepted}
    meta = write_generated_demonstrations(folder / "demonstrations.npz", dates, codes,
                                          EnvConfig(specs=str(folder / "specs.json"), seed=cfg.seed))
    sources = meta["episodes"][0]["expert_sources"]
    print(f"  demonstrations.npz: generated experts {sources['generated'] or 'none'}; "
          f"fell back to the reference: {sources['reference'] or 'none'}", flush=True)
    return {"path": str(folder / "demonstrations.npz"), **sources}


def main(argv=None):
    cfg = parse_args(argv)
    try:
        folder, summary = run(cfg)
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"results: {folder}")
    print(f"  accepted {summary['accepted']} of {summary['prosumers']}; "
          f"fallback to reference: {summary['fallback_to_reference'] or 'none'}")
    return folder, summary


if __name__ == "__main__":
    main()
