"""Free-text preferences -> structured preferences, by an LLM under a JSON-schema grammar.

The LLM reads one wording at a time (after fixed instructions and few-shot examples, the same
for every call, so the backend's prefix KV cache serves them all) and writes one JSON object of
agents/expert/preferences.py's STRUCTURE_SCHEMA; a local backend is constrained token by token
to that schema (agents/llm/grammar.py), so its answer always parses. What the answer *means* is
checked by the trusted side (``preferences.to_preference``: units, device present, window), never
believed: an answer that fails there is reported with the reason and the preference is refused.

``resolve_specs`` runs this for every preference the hand-written parser does not know (all in
one batch) and returns specs whose free-text preferences are replaced by their structure (the
original wording kept under "text"); the scenario then runs with those specs.
"""

import dataclasses
import json
import re
from pathlib import Path

from agents.expert.preferences import STRUCTURE_SCHEMA, parse_text, to_preference
from agents.llm.grammar import JsonSchema
from simulators.validation import ConfigError

PHRASINGS = Path(__file__).with_name("data") / "preference_phrasings.json"
"""the benchmark: wordings with their ground truth; split 'fewshot' feeds the prompt, 'test' is held out"""

SYSTEM = """You turn one energy-management preference of a household (a prosumer) into JSON.
Fields, in this order:
- quantity: generator_power (output of the generator, genset, diesel, CHP), battery_energy (energy
  stored in the battery, its state of charge), grid_import (power drawn, taken, bought or imported
  from the grid), grid_export (power fed in, sold, injected or exported into the grid),
  flexible_load_power (power of a controllable or shiftable load: dishwasher, washing machine,
  tumble dryer, heat pump, EV charger, pool pump), pv_curtailment (solar power thrown away).
- sense: at_most or at_least.
- bound: the number as written; unit: W, kW, MW, Wh, kWh, MWh or percent (of battery capacity).
  "off", "no", "never run", "not at all" mean at_most 0 kW.
- from, to: times "HH:MM" on quarter hours, or null for the start or the end of the day:
  "before T" = from null to T; "after T" = from T to null; "between A and B" = from A to B.
  A window may wrap past midnight (from 22:00 to 06:00). Night means 22:00 to 06:00, noon 12:00,
  midnight 00:00 as a start and 24:00 as an end; no time means the whole day (null, null).
- applies: inside if the bound holds during the window (always inside for the whole day);
  outside if something may happen ONLY in the window ("run the dishwasher only between 9 and 15"
  = flexible_load_power at_most 0 kW, applies outside 09:00-15:00).
Answer with the JSON object only."""


def few_shot_examples(path=PHRASINGS):
    """(text, structure) of the benchmark's 'fewshot' split."""
    rows = json.loads(Path(path).read_text())["phrasings"]
    return [(r["text"], r["expected"]) for r in rows if r["split"] == "fewshot"]


def prompt(text, examples):
    """The user message: the examples, then the wording to turn into JSON."""
    shots = "\n\n".join(f"Preference: {t}\nJSON: {json.dumps(s)}" for t, s in examples)
    return f"{shots}\n\nPreference: {text}\nJSON:"


def parse_reply(raw):
    """The first JSON object in a reply (constrained replies are exactly one), or None."""
    m = re.search(r"\{.*?\}", raw, re.S)
    if not m:
        return None
    try:
        value = json.loads(m.group(0))
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def extract(backend, texts, examples=None):
    """Structured preference (dict) or None per text, and the raw replies; one batched call."""
    examples = few_shot_examples() if examples is None else examples
    grammar = JsonSchema(STRUCTURE_SCHEMA)
    raws = backend.generate_batch([prompt(t, examples) for t in texts], system=SYSTEM, tag="preference",
                                  grammar=grammar, max_new_tokens=grammar.max_chars)
    return [parse_reply(r) for r in raws], raws


def resolve_specs(specs, backend, examples=None):
    """Specs with every preference the parser does not know replaced by its LLM-extracted structure.

    Returns (specs, rows): one row per free-text preference (prosumer, text, structure, raw
    reply). A structure the trusted side refuses raises ConfigError naming prosumer, wording,
    the LLM's answer and the reason, before anything runs.
    """
    todo = [(i, k, p) for i, s in enumerate(specs) for k, p in enumerate(s.preferences)
            if isinstance(p, str) and parse_text(p) is None]
    if not todo:
        return list(specs), []
    structures, raws = extract(backend, [p for _, _, p in todo], examples)
    prefs = [list(s.preferences) for s in specs]
    rows = []
    for (i, k, text), structure, raw in zip(todo, structures, raws):
        where = f"prosumer {specs[i].name!r}.preferences[{k}]"
        rows.append({"prosumer": specs[i].name, "index": k, "text": text, "structure": structure, "raw": raw})
        if structure is None:
            raise ConfigError(f"{where}: {text!r}: the LLM expert gave no structured preference (reply {raw!r})")
        entry = {**structure, "text": text}
        try:
            to_preference(entry, specs[i], where)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {text!r} was read by the LLM as {json.dumps(structure)}, "
                              f"which is refused: {exc}") from None
        prefs[i][k] = entry
    return [dataclasses.replace(s, preferences=tuple(p)) for s, p in zip(specs, prefs)], rows
