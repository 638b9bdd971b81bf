"""The edit-the-code workflow: the LLM edits another prosumer's whole reference model into this one's.

The paper's first stage edits a basic model. Here the model is code, not prose: the prompt shows the
reference body of ``prosumer(state)`` (agents/llm/block_code.py: one block per device type and per
preference, between the trusted head and tail) of the closest *other* prosumer of the example pool,
with that prosumer's numbers, and this prosumer's numbers; the LLM writes this prosumer's whole body
in one reply: it deletes the blocks of devices the prosumer lacks, writes each device's lines once
per unit, puts in the numbers and writes one block per preference. The closest example has every
device type of the prosumer (so no block has to be written from nothing), then as few other types,
unit counts as close and a preference count as close as the pool allows; an example without
preferences for a prosumer with some is shown with the preference blocks the decomposed workflow
would show.

Trusted code puts the reply between the head and the tail and judges it as the decomposed workflow
judges a block (agents/llm/decomposed.py, whose machinery this subclass reuses with one block, the
whole body): static check, build in the jail, the parent's own solve, device limits, balance,
objective against the reference on every test state; repairs get the reasons; a repair that repeats
the body is asked afresh with the next example. This is the granularity between the one-shot
workflow (the whole model from a text description, agents/llm/workflow.py) and the decomposed one
(one block at a time).
"""

import textwrap
from dataclasses import dataclass

from agents.llm import prompts as P
from agents.llm.block_code import BLOCK_CONTRACT, DEVICE_CODE, QUANTITIES, WHOLE, block_ids, body
from agents.llm.decomposed import DecomposedConfig, DecomposedWorkflow, examples, pick, units_text
from simulators.validation import ConfigError

VARIANT = "edit"
EDIT_PROMPT_VERSION = "edit-1"
"""enters the cache key of accepted experts with VARIANT: bump it whenever the prompt or block_code.py changes"""

BODY_CONTRACT = (BLOCK_CONTRACT.replace("The block is part of the body of", "The code is the body of", 1)
                 .replace("Write only the block's lines", "Write only the body's lines", 1))
assert BODY_CONTRACT.count("body") == BLOCK_CONTRACT.count("body") + 1, "BLOCK_CONTRACT changed: reword BODY_CONTRACT"
SYSTEM = f"""You edit the Python code with cvxpy that models a household's energy system: the whole body
of prosumer(state), one block per device type and one per preference.
{BODY_CONTRACT}
{P.CVXPY_RULES}
{P.CODE_RULES}
Answer with the edited body only, in one ```python block."""
EDIT = """Edit the example's code for these units: delete the blocks of device types they do not have,
write each device block's lines once per unit, numbered 1, 2, ... (state index [0], [1], ...), put in
their numbers, and write one preference block per preference, numbered 1, 2, ..., with its quantity,
its sign (1 for at_most, -1 for at_least), its bound and its window (from_step, to_step); keep the
line quantity = {...} before the first preference block."""


@dataclass
class EditConfig(DecomposedConfig):
    max_new_tokens: int = 1600
    """generation budget of one body (a four-device prosumer with two preferences is ~900 tokens)"""
    shots: int = 1
    """example bodies per prompt (other prosumers; a body is 25-60 lines)"""


def _types(spec):
    return {key: len(getattr(spec, key)) for key in DEVICE_CODE if getattr(spec, key)}


def model_examples(spec, pool, shots, skip=0):
    """[(units text, reference body)] of up to ``shots`` other prosumers of ``pool`` whose device types
    include all of ``spec``'s, closest first: fewest other device types, closest unit counts, closest
    preference count; ``skip`` as in decomposed.pick. Where ``spec`` has preferences and the example has
    none, the example gets the preference blocks the decomposed workflow would show for ``spec``'s (other
    prosumers' or the preference benchmark's few-shot structures, never ``spec``'s own)."""
    mine = _types(spec)
    borrowed = [shown[0] for k in range(1, len(spec.preferences) + 1)
                if (shown := examples(spec, f"pref{k}", pool, 1))]
    cands = []
    for s in pool:
        theirs = _types(s)
        if s == spec or not set(mine) <= set(theirs):
            continue
        try:
            block_ids(s)
        except ConfigError:  # a device type without code cannot be an example
            continue
        n_pref = len(s.preferences) or (len(borrowed) if spec.preferences else 0)
        cands.append((len(set(theirs) - set(mine)), sum(abs(theirs[k] - n) for k, n in mine.items()),
                      abs(n_pref - len(spec.preferences)), s.name, s))
    ranked = [(_example_text(s, borrowed), s) for *_, s in sorted(cands, key=lambda c: c[:4])]
    return pick(ranked, units_text(spec, WHOLE), shots, skip, lambda s: _example_body(s, borrowed))


def _example_text(s, borrowed):
    extra = [text for text, _ in borrowed] if borrowed and not s.preferences else []
    return "\n".join([units_text(s, WHOLE), *extra])


def _example_body(s, borrowed):
    if not borrowed or s.preferences:
        return body(s)
    return body(s) + textwrap.dedent(QUANTITIES) + "".join(
        f"# ---- block pref{k}\n{code}" for k, (_, code) in enumerate(borrowed, 1))


def edit_prompt(spec, pool, shots, skip=0):
    shown = model_examples(spec, pool, shots, skip)
    if not shown:
        raise ConfigError(f"prosumer {spec.name!r}: no other prosumer of the example pool has every device type "
                          f"of it ({sorted(_types(spec))}) to show the LLM; add one to the pool "
                          "(EditWorkflow(pool=...))")
    parts = [f"Example {k}: the code for these units:\n{text}\n```python\n{code}```"
             for k, (text, code) in enumerate(shown, 1)]
    return "\n\n".join(parts + [EDIT, f"Units:\n{units_text(spec, WHOLE)}"])


class EditWorkflow(DecomposedWorkflow):
    """The decomposed workflow's machinery with one block per prosumer: the whole body (WHOLE).
    Stage names are the decomposed ones ('block' tries with detail 'model: ...', 'blocks', 'repair',
    'verify'), so the report's block counts are whole models here."""

    variant, prompt_version, system, config_class = VARIANT, EDIT_PROMPT_VERSION, SYSTEM, EditConfig

    def task_ids(self, spec):
        return [WHOLE] if block_ids(spec) else []  # (block_ids: ConfigError for a device type without code)

    def prompt(self, spec, block_id, pool, skip=0):
        return edit_prompt(spec, pool, self.config.shots, skip)
