"""The decomposed workflow: the LLM edits one reference code block at a time; trusted code assembles.

A whole multi-device model in one reply is beyond the small models that run here (README, LLM
expert). This variant keeps the paper's stages (edit a basic model, code it, repair, verify) at
the granularity of one block (agents/llm/block_code.py): one device type of a prosumer (all its
units) or one of its preferences. Per block:

1. block   the LLM gets the block's contract, the static checker's rules, few-shot examples of the
           same block rendered for *other* prosumers (their units' numbers next to their reference
           code) and this prosumer's numbers, and edits the example into this prosumer's block;
           all blocks of all prosumers go in one batched call.
2. check   trusted code assembles the model with this block and the reference's other blocks and
           verifies it (agents/llm/verification.py: static check, build in the jail, the parent's
           own solve, device limits, balance, objective against the reference on the test states),
           so a failure is the block's own.
3. repair  failing blocks only go back to the LLM with the reasons, batched, up to ``max_repairs``
           rounds. A repair reply that repeats the failing block (greedy decoding copies the code
           it is shown: both repairs of the 1.5B's fleet run did, README) is asked again, in the
           same round, as a fresh edit with the closest example and the next ones of the pool.
Then the accepted blocks are assembled into ``prosumer(state)`` and verified as a whole. A prosumer
with a block that still fails falls back to the reference model; the result says which block
failed and why. Accepted experts are cached like the one-shot workflow's (agents/llm/workflow.py).
"""

import json
import textwrap
import time
from dataclasses import dataclass

from agents.expert.preferences import parse_preferences, to_preference
from agents.llm import prompts as P
from agents.llm.block_code import (
    BLOCK_CONTRACT,
    DEVICE_CODE,
    WHOLE,
    assemble,
    block_ids,
    block_params,
    preference_params,
    render,
)
from agents.llm.preference_extraction import few_shot_examples
from agents.llm.sandbox import run_many
from agents.llm.verification import assess, reference_records, verify
from agents.llm.workflow import ExpertCache, ExpertConfig, ExpertResult, StageLog, jailed_or_refused, refuse
from simulators.prosumer.devices import DEVICES
from simulators.validation import ConfigError

VARIANT = "decomposed"
BLOCK_PROMPT_VERSION = "blocks-5"
"""enters the cache key of accepted experts with VARIANT: bump it whenever a block prompt or block_code.py changes"""

SYSTEM = f"""You edit one block of Python code with cvxpy that models part of a household's energy system.
{BLOCK_CONTRACT}
{P.CVXPY_RULES}
{P.CODE_RULES}
Answer with the edited block only, in one ```python block."""
EDIT = {"device": """Edit the example block for these units: keep its code, put in their numbers, and write the
lines once per unit, numbered 1, 2, ... (state index [0], [1], ...).""",
        "preference": """Edit the example block for this preference: keep its code, put in its quantity, its sign
(1 for at_most, -1 for at_least), its bound and its window (from_step, to_step)."""}
REPAIR = """Your block failed the check:
{reasons}

Your block:
```python
{code}
```
Correct it. The units: {units}"""


@dataclass
class DecomposedConfig(ExpertConfig):
    max_new_tokens: int = 400
    """generation budget of one block"""
    shots: int = 2
    """few-shot examples per block (from other prosumers)"""


def units_text(spec, block_id, params=None):
    """The numbers of a block as prompt lines: one line per unit (``BESS1: {...}``) or the preference;
    for the whole body (WHOLE) those of every block of ``spec``."""
    if block_id == WHOLE:
        return "\n".join(units_text(spec, b) for b in block_ids(spec))
    params = block_params(spec, block_id) if params is None else params
    if block_id.startswith("pref"):
        return f"  preference {block_id[4:]}: {json.dumps(_rounded(params))}"
    tag = DEVICES[block_id].tag
    return "\n".join(f"  {tag}{i}: {json.dumps(_rounded(u))}" for i, u in enumerate(params, 1))


def _rounded(params):
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in params.items()}


def merged_pool(specs, pool):
    """The fleet's specs, then the example pool's that differ from them. Compared by content, not by
    name: another spec file's "p008" is another prosumer (it stays, the fleet's own is kept too),
    the same prosumer twice is one example."""
    out = []
    for s in [*specs, *pool]:
        if s not in out:
            out.append(s)
    return out


def examples(spec, block_id, pool, shots, skip=0):
    """[(units text, reference code)] of the same block for up to ``shots`` other prosumers of ``pool``
    (other = a different spec; a prosumer never sees its own blocks)
    (for a block asked afresh, ``skip`` = how many were shown before: the closest one is kept, the others
    are the next ones; the closest is often the only one with the same unit count, and without it the
    0.5B model wrote one battery of two):
    device blocks prefer the same unit count; preference blocks (the pool's and the preference benchmark's
    few-shot structures) the same sense, then a window of the same kind (across midnight or not), then
    the same quantity; rendered with this block's id, so the names match."""
    if block_id.startswith("pref"):
        want = block_params(spec, block_id)
        mine = [(s.name, p) for s in pool if s != spec for p in _preference_params(s)]
        cands = [(p["sense"] != want["sense"], (p["from_step"] > p["to_step"]) != (want["from_step"] > want["to_step"]),
                  p["quantity"] != want["quantity"], name, p) for name, p in mine + _benchmark_preferences(pool)]
    else:
        n = len(getattr(spec, block_id))
        cands = [(len(getattr(s, block_id)) != n, 0, 0, s.name, block_params(s, block_id))
                 for s in pool if s != spec and getattr(s, block_id)]
    ranked = [(units_text(spec, block_id, c[-1]), c[-1]) for c in sorted(cands, key=lambda c: c[:4])]
    return pick(ranked, units_text(spec, block_id), shots, skip, lambda params: render(block_id, params))


def pick(ranked, own, shots, skip, code):
    """[(units text, code(item))] of the first ``skip + shots`` distinct (units text, item) of ``ranked``
    (best first), none with the units text ``own`` (an identical example would leave nothing to edit); for
    a fresh ask (``skip`` > 0) the closest one and the ``shots - 1`` after the ``skip`` shown before."""
    out, seen = [], {own}
    for text, item in ranked:
        if text not in seen:
            seen.add(text)
            out.append((text, code(item)))
        if len(out) == skip + shots:
            break
    keep = 1 if skip and shots > 1 else 0
    return out[:keep] + out[skip:][:shots - keep]


def _preference_params(spec):
    return [preference_params(p) for p in parse_preferences(spec)]


def _benchmark_preferences(pool):
    """[(name, params)] of the preference benchmark's few-shot structures (never its dev or test wordings),
    read for a prosumer of the pool that owns every device type (battery percent needs a capacity):
    examples of senses and quantities the pool's prosumers may lack."""
    carrier = next((s for s in pool if all(getattr(s, key) for key in DEVICE_CODE)), None)
    if carrier is None:
        return []
    return [(f"fewshot{k}", preference_params(to_preference(structure, carrier, f"fewshot{k}")))
            for k, (_, structure) in enumerate(few_shot_examples())]


def block_prompt(spec, block_id, pool, shots, skip=0):
    shown = examples(spec, block_id, pool, shots, skip)
    if not shown:
        raise ConfigError(f"prosumer {spec.name!r}: no other prosumer of the example pool has a block "
                          f"{block_id!r} to show the LLM; add one to the pool (DecomposedWorkflow(pool=...))")
    parts = [f"Example {k}: the block for these units:\n{text}\n```python\n{code}```"
             for k, (text, code) in enumerate(shown, 1)]
    kind = "preference" if block_id.startswith("pref") else "device"
    return "\n\n".join(parts + [EDIT[kind], f"Units:\n{units_text(spec, block_id)}"])


def extract_block(raw):
    """The block's lines from a reply: the first fenced block (or the reply up to a fence), dedented."""
    text = raw.split("```python", 1)[1] if "```python" in raw else raw
    return textwrap.dedent(text.split("```", 1)[0]).strip("\n") + "\n"


# ---- the workflow ----------------------------------------------------------------------------------------
class DecomposedWorkflow:
    """Runs the decomposed workflow for a fleet of prosumers with one LLM backend (batched per stage).

    Per prosumer the result logs every block attempt (stage 'block', detail '<block id>: ...') and
    the verdicts of report.DECOMPOSED_COLUMNS: 'blocks' (every block right at the first try),
    'repair' (every block right after the repairs; only if one was needed), 'verify' (the
    assembled model).

    ``pool``: specs the few-shot examples come from (a prosumer never sees its own blocks); the
    fleet itself plus, by default, the default scenario's prosumers.

    A subclass may change the granularity (agents/llm/edit_code.py: one block, the whole body) through
    ``task_ids``, ``prompt`` and the class attributes below.
    """

    variant, prompt_version, system, config_class = VARIANT, BLOCK_PROMPT_VERSION, SYSTEM, DecomposedConfig
    """name and prompt version (the cache key of accepted experts), system prompt, configuration class"""

    def __init__(self, backend, config=None, pool=None):
        self.backend = backend
        self.config = config or self.config_class()
        self.cache = ExpertCache(self.config.cache_dir, f"{self.variant}-{self.prompt_version}")
        self.pool = list(pool) if pool is not None else _default_pool()
        self._judged = {}

    def task_ids(self, spec):
        """The blocks the LLM writes for ``spec``, in assembly order (ConfigError for a device type without code)."""
        return block_ids(spec)

    def prompt(self, spec, block_id, pool, skip=0):
        """The first (or, with ``skip``, a fresh) prompt of one block."""
        return block_prompt(spec, block_id, pool, self.config.shots, skip)

    def run(self, spec, states):
        return self.run_fleet([spec], {spec.name: states})[0]

    def run_fleet(self, specs, states):
        """ExpertResult per spec (same order); ``states``: {name: test states}."""
        t0 = time.perf_counter()
        pool = merged_pool(specs, self.pool)
        results, todo = {}, []
        for spec in specs:
            cached = self.cache.load(spec, self.backend.model_id) if self.config.use_cache else None
            if cached:
                log = StageLog("cache", 0, "pass", f"accepted expert from {cached['path']}", 0.0)
                results[spec.name] = ExpertResult(spec.name, True, "cache", cached["code"], [log], 0,
                                                  cached["verification"])
                continue
            results[spec.name] = res = ExpertResult(spec.name, False, "reference")
            try:
                self.task_ids(spec)
            except ConfigError as exc:  # a device type without a code block: this prosumer keeps the reference
                refuse(res, "blocks", str(exc))
                continue
            todo.append(spec)
        todo = jailed_or_refused(todo, results, self.config.allow_unjailed)
        refs = {s.name: reference_records(s, states[s.name]) for s in todo}
        self._judged = {}  # (name, assembled code) -> its accepted verdict on these states (see _finish)
        tasks = [(s, b) for s in todo for b in self.task_ids(s)]
        blocks = self._blocks(tasks, states, refs, results, pool)
        for spec in todo:
            self._finish(spec, blocks, states[spec.name], refs[spec.name], results[spec.name])
        for res in results.values():
            res.seconds = res.seconds or (time.perf_counter() - t0) / max(len(specs), 1)
        return [results[s.name] for s in specs]

    def _blocks(self, tasks, states, refs, results, pool):
        """{(name, block id): (code, problems)} after the first try and the repair rounds."""
        cfg = self.config
        prompts = [self.prompt(s, b, pool) for s, b in tasks]
        replies = self._generate(prompts, "block", tasks, results)
        first = {(s.name, b): (s, extract_block(r), p, r) for (s, b), p, r in zip(tasks, prompts, replies)}
        out = self._check_round(first, states, refs, results, "block", 0)
        for attempt in range(1, cfg.max_repairs + 1):
            failing = [(s, b) for s, b in tasks if out[s.name, b][1]]
            if not failing:
                break
            prompts = [self.prompt(s, b, pool) + "\n\n" + REPAIR.format(
                reasons="\n".join(out[s.name, b][1][:4]), code=out[s.name, b][0].rstrip(),
                units=units_text(s, b).strip()) for s, b in failing]
            replies = self._generate(prompts, "repair", failing, results)
            prompts, replies, notes = self._afresh(failing, prompts, replies, out, pool, attempt, results)
            for spec, _ in failing:
                results[spec.name].repairs += 1
            out.update(self._check_round({(s.name, b): (s, extract_block(r), p, r)
                                          for (s, b), p, r in zip(failing, prompts, replies)},
                                         states, refs, results, "repair", attempt, notes))
        return out

    def _afresh(self, failing, prompts, replies, out, pool, attempt, results):
        """(prompts, replies, {(name, block id): note}) of a repair round where the replies that repeat
        the failing block are replaced by a fresh edit of the block (the closest example and ones not
        shown before; one batched call)."""
        shots = self.config.shots
        repeated = [k for k, (s, b) in enumerate(failing) if _same_code(extract_block(replies[k]), out[s.name, b][0])]
        fresh = {k: self.prompt(*failing[k], pool, skip=attempt * shots) for k in repeated}
        again = [k for k in repeated if not prompts[k].startswith(fresh[k])]  # (a pool with no other examples)
        fresh = [fresh[k] for k in again]
        answers = self._generate(fresh, "repair", [failing[k] for k in again], results)
        prompts, replies = list(prompts), list(replies)
        for k, prompt, reply in zip(again, fresh, answers):
            prompts[k], replies[k] = prompt, reply
        note = "the repair repeated the failing block; asked afresh with other examples: "
        return prompts, replies, {(failing[k][0].name, failing[k][1]): note for k in again}

    def _generate(self, prompts, tag, tasks, results):
        """One batched call; its seconds are shared out over the prosumers of the batch."""
        if not prompts:
            return []
        t = time.perf_counter()
        replies = self.backend.generate_batch(prompts, system=self.system, tag=tag, prefill="```python\n",
                                              stop=["```"], max_new_tokens=self.config.max_new_tokens)
        share = (time.perf_counter() - t) / len(prompts)
        for spec, _ in tasks:
            results[spec.name].seconds += share
        return replies

    def _check_round(self, items, states, refs, results, stage, attempt, notes=None):
        """{(name, block id): (code, problems)} of a round of candidate blocks, each judged inside the
        reference model of its prosumer, all in one jailed worker; every try is logged (``notes``: a
        text put before the verdict of some blocks)."""
        t = time.perf_counter()
        codes = {f"{n}/{b}": assemble(spec, {b: code}) for (n, b), (spec, code, _, _) in items.items()}
        runs = run_many(codes, {f"{n}/{b}": states[n] for n, b in items}, limits=self.config.limits,
                        allow_unjailed=self.config.allow_unjailed)
        share = (time.perf_counter() - t) / max(len(items), 1)
        out = {}
        for (_, bid), (spec, code, prompt, raw) in items.items():
            run = runs[f"{spec.name}/{bid}"]
            v = {"accepted": False, "reasons": [], "states": [], "max_abs_gap": None, "rel_tol": self.config.rel_tol,
                 "abs_tol_eur": self.config.abs_tol_eur}
            v = assess(v, spec, states[spec.name], run.states, run.reasons, refs[spec.name], self.config.rel_tol,
                       self.config.abs_tol_eur)
            problems = [] if v["accepted"] else v["reasons"] or ["not verified"]
            detail = f"{bid}: " + (notes or {}).get((spec.name, bid), "") + (
                "matches the reference block on every test state" if not problems else "; ".join(problems[:3]))
            results[spec.name].stages.append(StageLog("block", attempt, "fail" if problems else "pass", detail, share,
                                                      prompt if stage == "block" else prompt[-2000:], raw))
            results[spec.name].seconds += share
            out[spec.name, bid] = (code, problems)
            if not problems:
                self._judged[spec.name, codes[f"{spec.name}/{bid}"]] = v
        return out

    def _finish(self, spec, blocks, states, refs, res):
        """Stage verdicts, the assembled model's verification, the cache."""
        ids = self.task_ids(spec)
        logs = [s for s in res.stages if s.stage == "block"]
        first = [s for s in logs if s.attempt == 0]
        failed = [b for b in ids if blocks[spec.name, b][1]]
        res.stages.append(StageLog("blocks", 0, "fail" if any(s.verdict == "fail" for s in first) else "pass",
                                   f"{sum(s.verdict == 'pass' for s in first)} of {len(ids)} blocks right at the "
                                   "first try",
                                   0.0))
        if len(logs) > len(first):
            res.stages.append(StageLog("repair", 0, "fail" if failed else "pass",
                                       f"still failing: {failed}" if failed else "every block repaired", 0.0))
        if failed:
            res.verification = {"accepted": False, "max_abs_gap": None, "states": [],
                                "reasons": [f"block {b}: {blocks[spec.name, b][1][0]}" for b in failed]}
            res.stages.append(StageLog("verify", 0, "fail", "; ".join(res.verification["reasons"][:3]), 0.0))
            return
        t = time.perf_counter()
        res.code = assemble(spec, {b: blocks[spec.name, b][0] for b in ids})
        # where one block is the whole model (the edit variant, a prosumer with one block) the very code
        # was judged on the same states in the jail already: that verdict stands, not a second run
        res.verification = self._judged.get((spec.name, res.code)) or verify(
            res.code, spec, states, rel_tol=self.config.rel_tol, abs_tol_eur=self.config.abs_tol_eur,
            limits=self.config.limits, references=refs, allow_unjailed=self.config.allow_unjailed)
        res.accepted = res.verification["accepted"]
        res.source = "llm" if res.accepted else "reference"
        detail = "accepted" if res.accepted else "; ".join(res.verification["reasons"][:4])
        res.stages.append(StageLog("verify", 0, "pass" if res.accepted else "fail", detail, time.perf_counter() - t))
        res.seconds += time.perf_counter() - t
        if res.accepted and self.config.use_cache:
            self.cache.store(spec, self.backend.model_id, res)


def _same_code(a, b):
    """Whether two blocks are the same lines (indentation and blank lines aside)."""
    lines = lambda code: [line.strip() for line in code.splitlines() if line.strip()]  # noqa: E731
    return lines(a) == lines(b)


def _default_pool():
    from simulators.prosumer.spec import load_specs
    from simulators.scenario import DATA_DIR

    return load_specs(DATA_DIR / "ieee33_prosumers.json")
