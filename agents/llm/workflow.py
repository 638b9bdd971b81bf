"""The LLM expert workflow: five prompted stages, verification, cache and report.

Five stages per prosumer; ExpertWorkflow.run_fleet asks each stage as one batched LLM call over the
prosumers still in it (run = a fleet of one):
1. edit      basic model + devices + preferences -> personalized model text. Checked against
             the mechanical edit (prompts.edit_model_text); if the LLM's text misses a unit,
             keeps a device the prosumer lacks or drops a preference, the mechanical edit is used.
2. retrieve  the LLM names CVXPY atoms (decoding constrained to known names); the atom index
             returns their docs (by similarity to the model text if no name came back).
3. code      prosumer(state), generated after a pre-filled skeleton (imports, signature, state
             extraction); the code block is extracted robustly and the standard return line
             appended when the function lacks one.
4. execute   sandbox run on the first test state; on any error the error and code go back to
             the LLM (repair), up to ``max_repairs`` times.
5. review    an LLM review pass, kept only if its code still runs and returns the 6-tuple
             (the deterministic structural check in the sandbox child); else the stage-4 code stays.
Then verification.verify on all test states.  Without a working jail (agents/llm/jail.py) no
generated code runs: the workflow says so on stderr and falls back to the reference, unless
``allow_unjailed`` is set. Accepted experts are cached on disk, keyed by
hash(spec, model id, prompt version); a rejected one falls back to the reference model.
Every stage is logged with its prompt, raw output, verdict and seconds.
"""

import ast
import hashlib
import json
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from agents.expert.preferences import preference_text
from agents.llm import jail
from agents.llm import prompts as P
from agents.llm.llm import ChoiceList, cache_root
from agents.llm.sandbox import Limits, run_prosumer, static_check
from agents.llm.verification import check_limits, reference_records, verify

STAGES = ("edit", "retrieve", "code", "execute", "review", "verify")


@dataclass
class ExpertConfig:
    """What every workflow variant shares: repairs, acceptance tolerances, cache, sandbox."""

    max_repairs: int = 2
    """repair prompts (rounds) after a failed execution before giving up"""
    rel_tol: float = 0.01
    """accepted relative gap of the optimal objective vs the reference model"""
    abs_tol_eur: float = 0.01
    """plus this absolute gap [EUR], for objectives near zero"""
    use_cache: bool = True
    """reuse accepted experts from the cache (and store new ones)"""
    cache_dir: str = ""
    """cache folder of accepted experts; empty = <cache root>/experts"""
    limits: Limits = field(default_factory=Limits)
    """sandbox limits of every execution"""
    allow_unjailed: bool = False
    """run generated code without the jail (agents/llm/jail.py) when it is unavailable: rlimits and the
    parent's own solve only; off = no generated code is run or accepted on such a machine"""


@dataclass
class WorkflowConfig(ExpertConfig):
    max_new_tokens: int = 700
    """generation budget of the code, repair and review stages"""
    edit_tokens: int = 500
    """generation budget of the model-editing stage"""
    retrieval_k: int = 6
    """atom docs put into the code prompt"""


@dataclass
class StageLog:
    stage: str
    attempt: int
    verdict: str
    """'pass' or 'fail'"""
    detail: str
    seconds: float
    prompt: str = ""
    raw: str = ""


@dataclass
class ExpertResult:
    name: str
    accepted: bool
    source: str
    """'llm' (accepted now), 'cache' (accepted earlier) or 'reference' (fallback)"""
    code: str = ""
    stages: list = field(default_factory=list)
    repairs: int = 0
    verification: dict = field(default_factory=dict)
    seconds: float = 0.0

    def verdict(self, stage):
        """'pass' if the stage passed at its last attempt, 'fail' if it ran and failed, '' if it never ran."""
        logs = [s for s in self.stages if s.stage == stage]
        return logs[-1].verdict if logs else ""

    def to_dict(self):
        return asdict(self)


# ---- code extraction ---------------------------------------------------------------------------
def extract_code(raw, prefill=""):
    """The prosumer function from an LLM reply: fenced or not, with or without the prefill.

    Picks the code block that defines prosumer (else the prefill + reply), cuts trailing prose
    until the text parses, drops top-level statements that are not imports, defs or assignments
    (usage examples, ``if __name__ == ...``), and ends prosumer with the standard return line
    if its body does not end with a return.
    """
    text = raw if "def prosumer" in raw else prefill + raw
    blocks = re.split(r"^\s*```[a-zA-Z]*\s*$", text, flags=re.M)
    lines = next((b for b in blocks if "def prosumer" in b), blocks[0]).strip("\n").splitlines()
    first = next((i for i, line in enumerate(lines) if re.match(r"(import |from |def )", line)), 0)
    lines = lines[first:]  # prose before the code
    if not any(line.startswith("import cvxpy") for line in lines):
        lines = ["import cvxpy as cp", "import numpy as np", ""] + lines
    tree = None
    for cut in range(min(len(lines), 60) + 1):
        try:
            tree = ast.parse("\n".join(lines[: len(lines) - cut]))
            lines = lines[: len(lines) - cut]
            break
        except SyntaxError:
            continue
    if tree is None:
        return "\n".join(lines) + "\n"
    keep = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.Assign)
    drop = [n for n in tree.body if not isinstance(n, keep)]
    for node in reversed(drop):
        del lines[node.lineno - 1: node.end_lineno]
    code = "\n".join(lines).rstrip() + "\n"
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "prosumer"), None)
    if fn is not None and not isinstance(fn.body[-1], ast.Return):
        lines = code.splitlines()
        lines.insert(fn.end_lineno, P.RETURN_LINE)
        code = "\n".join(lines) + "\n"
    return code


def check_edit(text, spec):
    """Problems of an edited model text against the mechanical edit of ``spec``.

    Editing is copy, delete and renumber, so every device line of the mechanical edit must be
    there verbatim (whitespace aside), each preference needs its slack eps<k> and the 1000
    penalty, no unit the prosumer lacks may appear, and the text may not be padded by loops.
    """
    norm = lambda line: " ".join(line.split())
    got = [norm(line) for line in text.splitlines() if line.strip()]
    want = [norm(line) for line in P.edit_model_text(spec).splitlines() if line.strip() and "[PREF" not in line]
    have = set(got)
    missing = [line for line in want if line not in have]
    problems = [f"{len(missing)} of {len(want)} model lines missing, e.g. {missing[0]!r}"] if missing else []
    for kind, tag in P.DEVICE_TAGS.items():
        n = len(getattr(spec, kind))
        if f"{tag}{n + 1}" in text:
            problems.append(f"has {tag}{n + 1} but the prosumer owns {n} {tag}")
    problems += [f"preference {k} has no slack eps{k} with the 1000 penalty"
                 for k in range(1, len(spec.preferences) + 1) if f"eps{k}" not in text or "1000" not in text]
    if len(got) > 1.5 * (len(want) + 3 * len(spec.preferences)) + 5:
        problems.append(f"{len(got)} lines where about {len(want) + 3 * len(spec.preferences)} are expected")
    return problems


def _undefined(code):
    """Names of the standard return line that prosumer never assigns (the bare skeleton assigns none)."""
    fn = next(n for n in ast.parse(code).body if isinstance(n, ast.FunctionDef) and n.name == "prosumer")
    ret = fn.body[-1].value if isinstance(fn.body[-1], ast.Return) else None
    returned = [e.id for e in getattr(ret, "elts", []) if isinstance(e, ast.Name)]
    assigned = {t.id for t in ast.walk(fn) if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store)}
    missing = [v for v in returned if v not in assigned and v != "constraints"]
    return [f"prosumer never defines {', '.join(missing)}"] if missing else []


def cache_key(spec, model_id, variant="oneshot"):
    payload = json.dumps({"spec": spec.to_dict(), "model": model_id, "prompts": P.PROMPT_VERSION,
                          **({"variant": variant} if variant != "oneshot" else {})}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


class ExpertCache:
    """Accepted experts on disk, one JSON file per hash(spec, model id, prompt version, variant)."""

    def __init__(self, cache_dir, variant="oneshot"):
        self.dir = Path(cache_dir or cache_root() / "experts")
        self.variant = variant

    def path(self, spec, model_id):
        return self.dir / f"{cache_key(spec, model_id, self.variant)}.json"

    def load(self, spec, model_id):
        """The stored record of ``spec`` by ``model_id`` with its 'path', or None."""
        path = self.path(spec, model_id)
        if not path.exists():
            return None
        return {**json.loads(path.read_text()), "path": str(path)}

    def store(self, spec, model_id, res):
        self.dir.mkdir(parents=True, exist_ok=True)
        record = {"name": spec.name, "model_id": model_id, "variant": self.variant, "prompt_version": P.PROMPT_VERSION,
                  "code": res.code, "verification": res.verification}
        self.path(spec, model_id).write_text(json.dumps(record, indent=1))


def refused(reason):
    """The verification record of a prosumer whose generated expert was never judged, and why."""
    return {"accepted": False, "reasons": [reason], "states": [], "max_abs_gap": None}


def refuse(res, stage, reason):
    """Fail ``res`` at ``stage`` before any generated code runs (it keeps the reference model)."""
    res.stages.append(StageLog(stage, 0, "fail", reason, 0.0))
    res.verification = refused(reason)


def jailed_or_refused(specs, results, allow_unjailed):
    """``specs`` if generated code may run on this machine (agents/llm/jail.py); else none, each of their
    ``results`` failed at a 'jail' stage that says why, and a warning on stderr."""
    try:
        jail.require(allow_unjailed)
    except jail.JailUnavailable as exc:
        print(f"WARNING: {exc}", file=sys.stderr, flush=True)
        for spec in specs:
            refuse(results[spec.name], "jail", str(exc))
        return []
    return list(specs)


# ---- the workflow --------------------------------------------------------------------------------
class ExpertWorkflow:
    """Runs the five stages for a fleet of prosumers with one LLM backend: every stage is one batched
    call over the prosumers still in it (decoding on CPU is memory-bound, so a batch of 8 costs little
    more than one prosumer), every check and sandbox run stays per prosumer."""

    def __init__(self, backend, config=None, index=None):
        from agents.llm.retrieval import AtomIndex

        self.backend = backend
        self.config = config or WorkflowConfig()
        self.index = index or AtomIndex.build()
        self.cache = ExpertCache(self.config.cache_dir)

    def run(self, spec, states):
        """Build, check and verify an expert for ``spec``; ``states``: its test states (first = execution)."""
        return self.run_fleet([spec], {spec.name: states})[0]

    def run_fleet(self, specs, states):
        """One ExpertResult per spec, in their order; ``states``: {name: test states (first = execution)}.
        A prosumer's ``seconds`` is its share of each batched call plus its own checks and runs."""
        results, todo = {}, []
        for spec in specs:
            t = time.perf_counter()
            cached = self.cache.load(spec, self.backend.model_id) if self.config.use_cache else None
            if cached:
                log = StageLog("cache", 0, "pass", f"accepted expert from {cached['path']}", 0.0)
                results[spec.name] = ExpertResult(spec.name, True, "cache", cached["code"], [log], 0,
                                                  cached["verification"], time.perf_counter() - t)
            else:
                results[spec.name] = ExpertResult(spec.name, False, "reference")
                todo.append(spec)
        todo = jailed_or_refused(todo, results, self.config.allow_unjailed) if todo else []
        if todo:
            rows = [(spec, results[spec.name]) for spec in todo]
            models = self._edit(rows)
            atoms = self._retrieve(rows, models)
            codes = self._generate(rows, models, atoms)
            codes = self._execute_and_repair(rows, codes, states)
            codes = self._review(rows, codes, states)
            for spec, res in rows:
                self._verify(spec, res, codes[spec.name], states[spec.name])
        return [results[spec.name] for spec in specs]

    def _verify(self, spec, res, code, states):
        t = time.perf_counter()
        try:
            references = reference_records(spec, states)
        except Exception as exc:
            res.verification = refused(f"reference model unavailable: {exc}")
        else:
            res.verification = verify(code, spec, states, rel_tol=self.config.rel_tol,
                                      abs_tol_eur=self.config.abs_tol_eur, limits=self.config.limits,
                                      references=references, allow_unjailed=self.config.allow_unjailed)
        ok = res.verification["accepted"]
        detail = "accepted" if ok else "; ".join(res.verification["reasons"][:4])
        res.stages.append(StageLog("verify", 0, "pass" if ok else "fail", detail, time.perf_counter() - t))
        res.code, res.accepted, res.source = code, ok, "llm" if ok else "reference"
        if ok and self.config.use_cache:
            self.cache.store(spec, self.backend.model_id, res)
        res.seconds += time.perf_counter() - t

    # ---- stages: each takes rows = [(spec, result)] and returns {name: value} ----
    def _ask(self, rows, stage, attempt, system, prompts, check, **kw):
        """One batched LLM call, a prompt per row; ``check(spec, raw) -> (verdict, detail, value)`` per reply,
        logged as the row's StageLog with its share of the call's seconds."""
        t = time.perf_counter()
        replies = self.backend.generate_batch(prompts, system=system, tag=stage, **kw)
        share = (time.perf_counter() - t) / len(rows)
        values = {}
        for (spec, res), prompt, raw in zip(rows, prompts, replies):
            t = time.perf_counter()
            verdict, detail, values[spec.name] = check(spec, raw)
            seconds = share + time.perf_counter() - t
            res.stages.append(StageLog(stage, attempt, verdict, detail, seconds, prompt, raw))
            res.seconds += seconds
        return values

    def _edit(self, rows):
        def prompt(spec):
            prefs = "; ".join(preference_text(p) for p in spec.preferences) or "none"
            return P.EDIT_USER.format(devices=P.device_list(spec), preferences=prefs, basic=P.basic_model_text())

        def check(spec, raw):
            text = _fenced(raw)
            problems = check_edit(text, spec)
            if not problems:
                return "pass", "edited model covers every unit and preference", text
            return "fail", "used the mechanical edit: " + "; ".join(problems[:5]), P.edit_model_text(spec)

        return self._ask(rows, "edit", 0, P.EDIT_SYSTEM, [prompt(spec) for spec, _ in rows], check,
                         max_new_tokens=self.config.edit_tokens, prefill="```model\n", stop=["```"])

    def _retrieve(self, rows, models):
        grammar = ChoiceList(tuple(d.name for d in self.index.docs), max_items=self.config.retrieval_k)

        def check(spec, raw):
            names = grammar.parse(raw)
            if names:
                docs = self.index.query(names, self.config.retrieval_k)
                return "pass", "atoms: " + ", ".join(names), "\n".join(d.text() for d in docs)
            docs = self.index.query(models[spec.name], self.config.retrieval_k)
            return ("fail", "no known atom named; by similarity: " + ", ".join(d.name for d in docs),
                    "\n".join(d.text() for d in docs))

        prompts = [P.RETRIEVE_USER.format(model=models[spec.name], names=", ".join(grammar.names)) for spec, _ in rows]
        return self._ask(rows, "retrieve", 0, P.RETRIEVE_SYSTEM, prompts, check, max_new_tokens=48, grammar=grammar,
                         stop=["\n"])

    def _generate(self, rows, models, atoms):
        prompts = [P.CODE_USER.format(model=models[spec.name], atoms=atoms[spec.name], skeleton=P.SKELETON_HEAD,
                                      return_line=P.RETURN_LINE, **P.context(spec)) for spec, _ in rows]
        return self._ask(rows, "code", 0, P.CODE_SYSTEM, prompts, self._code_check, **self._code_kw())

    def _code_kw(self):
        return {"max_new_tokens": self.config.max_new_tokens, "prefill": "```python\n" + P.SKELETON_HEAD,
                "stop": ["```"]}

    @staticmethod
    def _code_check(spec, raw):
        code = extract_code(raw, P.SKELETON_HEAD)
        problems = ["static check: " + p for p in static_check(code)[:4]] or _undefined(code)
        if problems:
            return "fail", "; ".join(problems), code
        return "pass", "static check passed, returned names defined", code

    def _execute_and_repair(self, rows, codes, states):
        """Run each code on its first test state; the failing ones are repaired together, one batched
        call per round, up to ``max_repairs`` rounds. Returns {name: code}."""
        codes, pending = dict(codes), list(rows)
        for attempt in range(self.config.max_repairs + 1):
            failing = []
            for spec, res in pending:
                t = time.perf_counter()
                problems, _ = self._run(spec, codes[spec.name], states[spec.name][:1])
                verdict = "fail" if problems else "pass"
                detail = "; ".join(problems[:4]) or "runs, solves, returns the 6-tuple with every action key"
                seconds = time.perf_counter() - t
                res.stages.append(StageLog("execute", attempt, verdict, detail, seconds, "", codes[spec.name]))
                res.seconds += seconds
                if problems and attempt < self.config.max_repairs:
                    failing.append((spec, res, problems))
            if not failing:
                break
            pending = [(spec, res) for spec, res, _ in failing]
            for _, res in pending:
                res.repairs += 1
            prompts = [P.REPAIR_USER.format(error="\n".join(problems[:6]), code=codes[spec.name], **P.context(spec))
                       for spec, _, problems in failing]
            codes.update(self._ask(pending, "repair", attempt + 1, P.REPAIR_SYSTEM, prompts, self._code_check,
                                   **self._code_kw()))
        return codes

    def _run(self, spec, code, states):
        """Problems of ``code`` on ``states``: static, runtime, structure, action keys and limits."""
        run = run_prosumer(code, states, limits=self.config.limits, allow_unjailed=self.config.allow_unjailed)
        problems = list(run.reasons)
        if run.ok:
            for st, rec in zip(states, run.states):
                problems += [f"state at time {st['time']}: {p}" for p in check_limits(spec, st, rec)]
        return problems, run

    def _review(self, rows, codes, states):
        """The review pass for every row; a reviewed code is kept only if it still runs and returns the
        6-tuple, else the stage-4 code stays. Returns {name: code}."""
        prompts = [P.REVIEW_USER.format(code=codes[spec.name], contract=P.context(spec)["contract"])
                   for spec, _ in rows]
        reviewed = self._ask(rows, "review", 0, P.REVIEW_SYSTEM, prompts,
                             lambda spec, raw: ("pass", "", extract_code(raw, P.SKELETON_HEAD)), **self._code_kw())
        kept = {}
        for spec, res in rows:
            log, code, new = res.stages[-1], codes[spec.name], reviewed[spec.name]
            t = time.perf_counter()
            problems = (self._run(spec, new, states[spec.name][:1])[0] if not static_check(new)
                        else ["static check"])
            seconds = time.perf_counter() - t
            log.seconds += seconds
            res.seconds += seconds
            if not problems:
                log.detail = "reviewed code runs and returns the 6-tuple"
                kept[spec.name] = new
                continue
            stage4_ok = res.verdict("execute") == "pass"
            log.verdict = "fail"
            log.detail = ("reviewed code rejected (" + "; ".join(problems[:3]) + "); "
                          + ("kept the stage-4 code" if stage4_ok else "stage-4 code also failed"))
            kept[spec.name] = code
        return kept


def _fenced(raw):
    """Content of the first fenced block, else the whole reply (the prefill opened the fence)."""
    m = re.search(r"```[a-zA-Z]*[ \t]*\n(.*?)(?:```|\Z)", raw, re.S)
    return m.group(1) if m else raw
