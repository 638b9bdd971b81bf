"""Free-text preferences -> structured preferences, by an LLM under a JSON-schema grammar.

The LLM reads one wording at a time (after fixed instructions and few-shot examples, the same
for every call, so the backend's prefix KV cache serves them all) and writes one JSON object of
agents/expert/preferences.py's STRUCTURE_SCHEMA; a local backend is constrained token by token
to that schema (agents/llm/grammar.py), so its answer always parses. What the answer *means* is
checked by the trusted side (``preferences.to_preference``: units, device present, window), never
believed: an answer that fails there is reported with the reason and the preference is refused.

Variants (``VARIANTS``): one object per wording, or one small question per group of fields
(what, amount, when, scope) each seeing the earlier answers; in 'choices' a question whose readings
the wording's tagged mentions leave few (its amounts, before/after its one clock time, inside or
only-in the window) is a pick among those readings under a grammar of its own (``Decoder.run``
takes one per prompt), with an "another ..." option that falls back to the free question.

``resolve_specs`` runs this for every preference the hand-written parser does not know (all in
one batch) and returns specs whose free-text preferences are replaced by their structure (the
original wording kept under "text"); the scenario then runs with those specs.
"""

import dataclasses
import json
import re
from pathlib import Path

from agents.expert.preferences import (STRUCTURE_FIELDS, STRUCTURE_SCHEMA, TIMES, UNITS, parse_text, to_preference,
                                       window_steps)
from agents.llm import mentions
from agents.llm.grammar import JsonSchema
from simulators.validation import ConfigError

PHRASINGS = Path(__file__).with_name("data") / "preference_phrasings.json"
"""the benchmark: wordings with their ground truth; split 'fewshot' feeds the prompt, 'test' is held out"""

_QUANTITY_RULES = """- quantity: generator_power (output of the generator, genset, diesel, CHP), battery_energy (energy
  stored in the battery, its state of charge), grid_import (power drawn, taken, bought or imported
  from the grid), grid_export (power fed in, sold, injected or exported into the grid),
  flexible_load_power (power of a controllable or shiftable load: dishwasher, washing machine,
  tumble dryer, heat pump, EV charger, pool pump), pv_curtailment (solar power thrown away).
"""
"""the quantity field's rules, shared by the one-object prompt and the 'what' question"""

SYSTEM = """You turn one energy-management preference of a household (a prosumer) into JSON.
Fields, in this order:
""" + _QUANTITY_RULES + """- sense: at_most or at_least.
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


# ---- the field-wise variant: four small questions, each with its own rules and grammar -------------
FIELD_SYSTEMS = {
    "what": "You read one energy-management preference of a household (a prosumer) and say what it limits.\n"
            + "Fields, in this order:\n" + _QUANTITY_RULES
            + """- sense: at_most when the wording sets a ceiling (no more than, at most, up to, limit, cap, below,
  off, never, don't, not, no, only ... at some times); at_least when it sets a floor (at least, or more,
  above, minimum, not below, keep ... in reserve, keep ... charged, keep ... running). A negation
  turns a floor word into a ceiling ("never above", "no more than") and back ("not below").
  Words that usually name a quantity and comparison words with the sense they give may be listed
  under the text.
Answer with the JSON object only.""",
    "amount": """You read one energy-management preference of a household (a prosumer) whose quantity and sense
are known, and give its bound.
- bound: the number as written; unit: W, kW, MW, Wh, kWh, MWh or percent (of battery capacity), as
  written. The amounts the text mentions are listed under it.
- A wording without an amount that switches something off, forbids it or allows none of it ("off",
  "no export", "never run", "not at all", "do not curtail", "only run ... after 6 pm") has bound 0 kW.
Answer with the JSON object only.""",
    "when": """You read one energy-management preference of a household (a prosumer) whose quantity, sense and
bound are known, and give the time window it names.
- from, to: times "HH:MM" on quarter hours, or null for the start or the end of the day. The clock
  times and named periods the text mentions are listed under it.
  "before T" or "until T" = from null to T; "after T" or "from T on" = from T to null;
  "between A and B" or "from A to B" = from A to B. A window may wrap past midnight (from 22:00 to
  06:00). Night means 22:00 to 06:00, noon 12:00, midnight 00:00 as a start and 24:00 as an end;
  no time means the whole day (null, null).
Answer with the JSON object only.""",
    "scope": """You read one energy-management preference of a household (a prosumer) whose quantity, sense,
bound and time window are known, and say how the window is meant. The words of the text that
restrict something to a window (only, exclusively, ...) are listed under it.
- only_in_window: true if the text allows something ONLY in the window, so the bound holds at every
  other time ("the washing machine may only run between 9am and 3pm", "let the heat pump run only
  after 6 pm"); false if the bound holds during the window ("never start the generator between
  22:30 and 05:00", "take no more than 9 kW before 7 am", "keep the battery above 40 % until 6 pm").
Answer with the JSON object only.""",
}
SCOPE_KEY = "only_in_window"
"""the scope question's answer: true = applies 'outside' (allowed only in the window), false = 'inside'"""
FIELD_GROUPS = {"what": ("quantity", "sense"), "amount": ("bound", "unit"), "when": ("from", "to"),
                "scope": ("applies",)}
"""the questions of the 'fields' variant, asked in this order; each sees the answers before it. A
whole-day window is not asked about its scope: only 'inside' fits (the schema's rule), so trusted
code writes it"""
VARIANTS = ("joint", "hints", "chat", "fields", "choices")
"""joint: one JSON object per wording (SYSTEM), the examples inside one user message; hints: the
same with the clock times and amounts that trusted code finds in the wording (agents/llm/mentions.py)
listed under it; chat: hints, with the examples as earlier chat turns; fields: four questions
(what, amount, when, scope) as chat turns with hints, each seeing the earlier answers; choices: the
kind first (limit, or only = allowed only in a window: sense, bound and scope follow), then what (the
words that usually name a quantity listed), amount and (for wordings with at most one clock time and
no named period) window as a pick among the readings the tagged mentions allow (one grammar per
wording; "another ..." falls back to the free question)"""
CHAT_VARIANTS = ("chat", "fields", "choices")
DEFAULT_VARIANT = "choices"

CHOICE_KEYS = {"amount": "amount", "when": "window", "scope": "holds"}
"""the choice questions of the 'choices' variant and the key of their one-field answer ('scope' only
for a limit whose window is an exception: mentions.exception_mentions)"""
OTHER = {"amount": "another amount", "when": "another window"}
"""the option that sends a wording on to the free question of its group"""
KIND_KEY = "kind"
KINDS = {"limit": {"applies": "inside"},
         "only": {"sense": "at_most", "bound": 0, "unit": "kW", "applies": "outside"}}
"""the first question of the 'choices' variant: a limit that holds in its window (or all day; where
the window is an exception, "except 5 to 8 pm", the scope question says whether it holds in the
window or at every other time), or something allowed only in a window (at most 0 kW at every other
time: the whole structure but the quantity and the window follows; where the wording names a battery
energy or percent amount, only the scope: see ``_ask_kind``). One-word answers: the 0.5B model
answered "a limit" to all 78 dev wordings when the options were "a limit" / "allowed only at some
times" (the token "a" dominates). A third kind, "except" (a limit lifted in a window: 4 of 248 dev wordings), made it read 24 bans
in a window ("genset off from 11pm to 7am") as exceptions: dev 87.9 %, so it was left out"""
BANNED_WINDOW = {"sense": "at_most", "bound": 0, "unit": "kW", "applies": "inside"}
"""the fields of a wording that grants something but takes a window out (mentions.permission_exception:
"the pool pump can run any time except 17-20"), whatever kind the model answered: the window is banned"""
KIND_SYSTEM = """You read one energy-management preference of a household (a prosumer) and say which kind it is:
- "limit": it caps something, keeps it above a floor, bans it or switches it off, all day or
  during some hours ("never start the generator between 22:30 and 05:00", "no curtailment from 8
  to 16", "keep the battery above 40 % until 6 pm", "avoid exporting in the evening");
- "only": it lets something run or happen only in a time window, so it is off at every other
  time ("the washing machine may only run between 9am and 3pm", "heat pump just after 6 pm", "no
  generator except at night").
The words of the text that restrict something to a window (only, exclusively, ...) are listed
under it. Answer with the JSON object only."""
CHOICE_SYSTEMS = {
    "amount": """You read one energy-management preference of a household (a prosumer) whose quantity and sense
are known, and pick its bound from the options listed under it: an amount the text mentions, "0 kW"
when the text switches something off, forbids it or allows none of it ("off", "no export", "never
run", "do not curtail", "only run ... after 6 pm"), or "another amount" if no option is the bound.
Answer with the JSON object only.""",
    "when": """You read one energy-management preference of a household (a prosumer) whose quantity, sense and
bound are known, and pick the time window it names from the options listed under it:
"before T" (before, until, till, by, up to T; the option may carry the text's own word, "until T"),
"after T" (after, from T on, since T; or the text's own word, "from T"), "all day" (the text names
no time), or "another window" if no option is the window. The clock times the text mentions are
listed under it with the word before each.
Answer with the JSON object only.""",
    "scope": """You read one energy-management preference of a household (a prosumer) whose quantity, sense,
bound and time window are known; the window is an exception ("except", "apart from", "outside",
"other than", "at no other time"). Say when the bound holds: "during the window" when the window is what the text
forbids or limits ("the pool pump may run any time except from 17:00 to 20:00" = pump at most 0 kW
during 17:00-20:00), or "at every other time" when the text states a rule and the window is where it
is lifted ("keep the battery above 30 % except from 5 to 9" = at least 30 % at every other time;
"apart from 1 to 4 am import at most 6 kW"; "no generator except at night" = off at every other time;
"the dryer runs from 1 to 5 pm and at no other time" = at most 0 kW at every other time).
Answer with the JSON object only.""",
}
SCOPE_OPTIONS = [("during the window", {"applies": "inside"}), ("at every other time", {"applies": "outside"})]


def _window_label(start, end):
    if start is None and end is None:
        return "all day"
    if start is None:
        return f"before {end}"
    return f"after {start}" if end is None else f"from {start} to {end}"


def window_options(text):
    """[(label, {'from', 'to'}), ...] of a wording with at most one clock time and no named period:
    for a time T 'before T' and 'after T' (midnight as an end is 24:00), then 'all day', each window
    once, last the fallback (fields None). Where the wording's time word says which side of T it
    means ("until", "after", ...: mentions.BEFORE_WORDS, AFTER_WORDS), only that side is a reading,
    labelled with the wording's word ("until 06:45" instead of "before 06:45"), and 'all day' is
    not (the time bounds the window): the 0.5B model, offered both sides, picked "after" for
    "until", "till" and "before noon" (12 of 248 dev wordings); offered the side and 'all day', it
    picked 'all day' for 8 bans ("no feed-in to the grid after 8pm"). Two clock times joined as a
    range (mentions.clock_range: "between 11 am and 2 pm") offer 'from A to B' and the fallback
    only: the range is the window whether the bound holds in it or at every other time (all 178
    such dev wordings), and the 0.5B model, asked the free question, wrote one-sided windows for
    some ("no PV curtailment between 10 and 14" = before 10:00); offered one-sided and all-day
    readings too, it picked them (README). None for other wordings with more times or a named
    period: they are the free question's."""
    span = mentions.clock_range(text)
    if span is not None:
        return [(f"from {span[0]} to {span[1]}", {"from": span[0], "to": span[1]}), (OTHER["when"], None)]
    leads = mentions.clock_leads(text)
    if len(leads) > 1 or mentions.period_mentions(text):
        return None
    before = [(None, "24:00" if t == "00:00" else t, w) for t, w in leads if w not in mentions.AFTER_WORDS]
    windows = before + [(t, None, w) for t, w in leads if w not in mentions.BEFORE_WORDS]
    sided = any(w in mentions.BEFORE_WORDS + mentions.AFTER_WORDS for _, w in leads)
    out, seen, day = [], set(), frozenset(window_steps(None, None))
    for a, b, lead in windows + ([] if sided else [(None, None, None)]):
        try:
            steps = frozenset(window_steps(a, b))
        except ConfigError:
            continue
        a, b = (None, None) if steps == day else (a, b)
        if steps not in seen:
            seen.add(steps)
            label = _window_label(a, b)
            side = mentions.BEFORE_WORDS if a is None else mentions.AFTER_WORDS
            if lead in side and b != "24:00" and (a, b) != (None, None):  # the wording's own word: "until 06:45"
                label = f"{lead} {a or b}"
            out.append((label, {"from": a, "to": b}))
    return out + [(OTHER["when"], None)]


def amount_options(text, quantity):
    """[(label, {'bound', 'unit'}), ...]: the amounts the wording mentions whose unit fits
    ``quantity`` (energy and percent for battery_energy, power otherwise), '0 kW' for the power
    quantities, then the fallback (fields None)."""
    battery = quantity == "battery_energy"
    out = [(f"{n:g} {u}", {"bound": n, "unit": u}) for _, n, u in mentions.amount_mentions(text)
           if (UNITS[u][0] != "kW") == battery]
    if not battery:
        out.append(("0 kW", {"bound": 0, "unit": "kW"}))
    unique = list(dict(out).items())
    return unique + [(OTHER["amount"], None)]


def choice_options(group, text, known):
    """The options of one choice question for one wording (``known``: the fields answered so far;
    None: not a choice for this wording)."""
    if group == "scope":
        windowed = known.get("from") is not None or known.get("to") is not None
        return list(SCOPE_OPTIONS) if windowed and mentions.exception_mentions(text) else None
    return amount_options(text, known["quantity"]) if group == "amount" else window_options(text)


def _choice_label(group, text, structure):
    """The option a ground-truth structure picks (the fallback when none matches; None when the
    question is not a choice for this wording): few-shot answers."""
    options = choice_options(group, text, structure)
    if options is None:
        return None
    if group == "when":
        truth = frozenset(window_steps(structure["from"], structure["to"]))
        match = [label for label, w in options if w and frozenset(window_steps(w["from"], w["to"])) == truth]
    else:
        fields = {f: structure[f] for f in FIELD_GROUPS[group]}
        match = [label for label, f in options if f == fields]
    return match[0] if match else OTHER[group]


def _window_schema():
    """JSON schema of (from, to) that leaves out the empty windows (from == to, or null to 00:00),
    which the trusted side refuses anyway: one alternative per start."""
    alternatives = [{"type": "object", "properties": {"from": {"const": start}, "to": {"enum": [
        None, *(t for t in TIMES if t != start)]}}} for start in TIMES[:-1]]
    alternatives.append({"type": "object", "properties": {"from": {"const": None}, "to": {"enum": [
        None, *(t for t in TIMES if t != "00:00")]}}})
    return {"anyOf": alternatives}


def _field_schema(group, quantity=None):
    """JSON schema of one question: STRUCTURE_SCHEMA's alternatives cut to the group's fields (for
    'amount', those that fit ``quantity``), duplicates removed; for 'when' no empty window."""
    if group == "when":
        return _window_schema()
    if group == "scope":
        return {"type": "object", "properties": {SCOPE_KEY: {"type": "boolean"}}}
    fields = FIELD_GROUPS[group]
    alternatives = []
    for alt in STRUCTURE_SCHEMA["anyOf"]:
        props = alt["properties"]
        if quantity is not None and quantity not in props["quantity"]["enum"]:
            continue
        cut = {"type": "object", "properties": {f: props[f] for f in fields}}
        if cut not in alternatives:
            alternatives.append(cut)
    return alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}


def few_shot_examples(path=PHRASINGS):
    """(text, structure) of the benchmark's 'fewshot' split."""
    rows = json.loads(Path(path).read_text())["phrasings"]
    return [(r["text"], r["expected"]) for r in rows if r["split"] == "fewshot"]


def _known(structure, group):
    """The line of earlier answers a question of ``group`` is shown ('' for the first)."""
    if group in ("what", "kind"):
        return ""
    known = f"Known: quantity {structure['quantity']}, sense {structure['sense']}"
    if group in ("when", "scope"):
        known += f", bound {structure['bound']:g} {structure['unit']}"
    if group == "scope":
        known += f", window from {json.dumps(structure['from'])} to {json.dumps(structure['to'])}"
    return known + "\n"


def _query(text, variant, group=None, known=None):
    lines = f"Preference: {text}\n"
    if variant != "joint":
        lines += mentions.hints(text, lead_words=variant == "choices") + "\n"
    if group == "scope" and variant == "choices":  # asked only of windows that are exceptions
        lines += mentions.exception_hint(text) + "\n"
    elif group in ("scope", "kind"):
        lines += mentions.restricting_hint(text) + "\n"
    if variant == "choices" and group == "what":
        lines += mentions.quantity_hint(text) + "\n" + mentions.comparison_hint(text) + "\n"
    if group is not None:
        lines += _known(known, group)
    options = choice_options(group, text, known) if variant == "choices" and group in CHOICE_KEYS else None
    if options is not None:
        lines += "Options: " + ", ".join(json.dumps(label) for label, _ in options) + "\n"
    return lines + "JSON:"


def prompt(text, examples, variant="joint", group=None, known=None):
    """What the model reads besides the system text: for 'joint' and 'hints' one user message
    (the examples with their answers, then the wording); for the chat variants chat turns, one
    user turn per example answered by an assistant turn, then the wording's user turn."""
    fields = FIELD_GROUPS.get(group, ()) if group else STRUCTURE_FIELDS
    answer = lambda t, s: json.dumps({f: s[f] for f in fields})  # noqa: E731
    if group == "scope":  # a yes/no question about windows whose key says what it means: windowed examples only
        examples = [(t, s) for t, s in examples if s["from"] is not None or s["to"] is not None]
        answer = lambda t, s: json.dumps({SCOPE_KEY: s["applies"] == "outside"})  # noqa: E731
    if group == "kind":  # the choices variant's first question
        answer = lambda t, s: json.dumps({KIND_KEY: _kind(s)})  # noqa: E731
    if variant == "choices" and group in CHOICE_KEYS:  # (the free question of a group is the fields variant's)
        examples = [(t, s) for t, s in examples if choice_options(group, t, s) is not None]
        answer = lambda t, s: json.dumps({CHOICE_KEYS[group]: _choice_label(group, t, s)})  # noqa: E731
    if variant in CHAT_VARIANTS:
        turns = []
        for t, s in examples:
            turns += [{"role": "user", "content": _query(t, variant, group, s)},
                      {"role": "assistant", "content": answer(t, s)}]
        return turns + [{"role": "user", "content": _query(text, variant, group, known)}]
    shots = "\n\n".join(f"{_query(t, variant, group, s)} {answer(t, s)}" for t, s in examples)
    return f"{shots}\n\n{_query(text, variant, group, known)}"


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


def _pick(backend, prompts, key, options, system, tag):
    """One reply per prompt, decoded under a grammar of that prompt's options (``options``: its
    labels). (Scoring every option's whole reply by its log-probability instead read fewer dev
    wordings right, 89.1 % against 91.5 %, in 45 % more time: README.)"""
    grammars = [JsonSchema({"type": "object", "properties": {key: {"enum": list(opts)}}}) for opts in options]
    return backend.generate_batch(prompts, system=system, tag=tag, grammar=grammars,
                                  max_new_tokens=max(g.max_chars for g in grammars))


def _batches(group, structures):
    """[(quantity the question's schema is cut for, or None; indices to ask)] of one question: the
    wordings still alive and unanswered; 'amount' in one batch per unit kind (battery energy or
    power), so each gets only the units that fit the quantity read first; 'what' for wordings whose
    kind fixed a kW bound cut to the power quantities."""
    live = [k for k, s in enumerate(structures) if s is not None and not set(FIELD_GROUPS[group]) <= set(s)]
    if group == "what":  # a kind that fixed a power bound (only in a window): power quantities only
        power = [k for k in live if "bound" in structures[k]]  # only the 'only' kind fixes a bound this early
        return [(q, ks) for q, ks in (("grid_import", power), (None, [k for k in live if k not in power])) if ks]
    if group != "amount":
        return [(None, live)] if live else []
    battery = [k for k in live if structures[k]["quantity"] == "battery_energy"]
    power = [k for k in live if k not in battery]
    return [(q, ks) for q, ks in (("battery_energy", battery), ("grid_import", power)) if ks]


def _kind(structure):
    """The kind a ground-truth structure is (few-shot answers)."""
    return "only" if all(structure[f] == v for f, v in KINDS["only"].items()) else "limit"


def _energy_amount(text):
    """Whether the wording names a battery energy or percent amount (a fact about the text)."""
    return any(UNITS[u][0] != "kW" for _, _, u in mentions.amount_mentions(text))


def _power_bound(text):
    """Whether the wording bounds a power by an amount above 0 (a fact about the text: an amount and
    a comparison word, "cap 5kw", "never ... more than 7.4 kW"): the 'only' kind fixes the bound at
    0 kW, so such a wording is a limit with that amount, whatever the kind answered ("run the 3 kW
    pump only between 10 and 16" has no comparison word and stays as answered). On the 812
    benchmark wordings of the twelfth session none of the 89 of the 'only' kind names a power
    amount above 0; the 0.5B model read "Export cap 5kw except 11am-2pm" and "the EV charger is the
    only thing you can control ... never let it pull more than 7.4 kW" as 'only'."""
    return bool(mentions.comparison_mentions(text)) and any(
        value > 0 and UNITS[unit][0] == "kW" for _, value, unit in mentions.amount_mentions(text))


def _ask_kind(backend, texts, examples, structures, raws):
    """The choices variant's first question: each wording's kind fills the fields that kind fixes.

    Returns the indices whose 'only' is about a battery's energy ("may only drop below 25 % between
    4 and 10 pm"): energy is never off, so "X only in the window" cannot be a ban; it says "not X at
    every other time", so only the scope is fixed and the sense read from the wording ("below" =
    at_most) is flipped once read (``_negate_lifted``). A limit with an excepted window right after
    its exception word (mentions.exception_window: "except 11am-2pm") holds at every other time; one
    with an exception word elsewhere leaves the scope to its own question. A wording that grants
    something and takes a window out of the grant (mentions.permission_exception) bans the window
    whatever the kind answered (``BANNED_WINDOW``), one whose grammar restricts it to a window
    (mentions.only_window) is the 'only' kind whatever the kind answered, and a plain ban
    (mentions.plain_ban: a denial, no restricting or exception word) or a power bound above 0
    (``_power_bound``) is never the 'only' kind."""
    replies = _pick(backend, [prompt(t, examples, "choices", "kind", {}) for t in texts], KIND_KEY,
                    [list(KINDS)] * len(texts), KIND_SYSTEM, "preference-kind")
    lifted = set()
    for k, raw in enumerate(replies):
        raws[k].append(raw)
        kind = (parse_reply(raw) or {}).get(KIND_KEY)
        if kind in KINDS and mentions.only_window(texts[k]):  # "washing machine just between 11 and 15"
            kind = "only"
        elif kind == "only" and (mentions.plain_ban(texts[k]) or _power_bound(texts[k])):
            kind = "limit"  # "pump off from 19:00 to 07:00", "export cap 5kw except 11am-2pm"
        structures[k] = dict(KINDS[kind]) if kind in KINDS else None  # (unconstrained backends)
        if kind in KINDS and mentions.permission_exception(texts[k]):  # "can run any time except 17-20"
            structures[k] = dict(BANNED_WINDOW)
        elif kind == "only" and _energy_amount(texts[k]):
            structures[k], lifted = {"applies": "outside"}, lifted | {k}
        elif kind == "limit" and mentions.exception_window(texts[k]):  # "at least 2 kWh apart from 0-6 am"
            structures[k] = {"applies": "outside"}
        elif kind == "limit" and mentions.exception_mentions(texts[k]):
            structures[k] = {}
    return lifted


def _negate_lifted(structures, lifted):
    """The sense of each 'only' about battery energy, read from the wording, turned into the rule at
    every other time: "may only drop below 25 %" (at_most) holds as at_least 25 % outside."""
    for k in lifted:
        if structures[k] is not None and "sense" in structures[k]:
            structures[k] = {**structures[k], "sense": mentions.FLIP[structures[k]["sense"]]}


def _sense_from_comparison(texts, structures, free):
    """Where the wording's comparison words give one sense (mentions.comparison_mentions: "at least",
    "<=", "must not fall under"), that sense overrules the answer of the wordings in ``free`` (those
    whose kind left the sense to the model). A fact of grammar: on the 554 benchmark wordings of the
    eighth session, where the comparison words gave one sense it was the true one in 352 of 355, the
    3 others being battery floors lifted in a window ("may only drop below 40 % between 18 and 22"),
    whose sense ``_negate_lifted`` flips afterwards; the 0.5B model read "must feed at least 1.5 MW
    into the grid" as at_most."""
    for k in free:
        senses = {sense for _, sense in mentions.comparison_mentions(texts[k])}
        if structures[k] is not None and "sense" in structures[k] and len(senses) == 1:
            structures[k] = {**structures[k], "sense": senses.pop()}


def _ask_choice(backend, group, texts, examples, structures, raws):
    """One choice question for every live wording not yet answered (one grammar per wording, its
    options); a picked option fills the group's fields, the fallback leaves them to the free question."""
    asked = {k: choice_options(group, texts[k], structures[k]) for _, ks in _batches(group, structures) for k in ks}
    todo = [k for k, opts in asked.items() if opts is not None]
    if not todo:
        return
    options = [dict(asked[k]) for k in todo]
    replies = _pick(backend, [prompt(texts[k], examples, "choices", group, structures[k]) for k in todo],
                    CHOICE_KEYS[group], options, CHOICE_SYSTEMS[group], f"preference-{group}-choice")
    for k, opts, raw in zip(todo, options, replies):
        raws[k].append(raw)
        label = (parse_reply(raw) or {}).get(CHOICE_KEYS[group])
        if label not in opts:  # (unconstrained backends)
            structures[k] = None
        elif opts[label] is not None:
            structures[k] = {**opts[label], **structures[k]}


NON_NEGATIVE = ("generator_power", "battery_energy", "flexible_load_power", "pv_curtailment")
"""quantities that are never below 0 (grid import and export are: the meter power has a sign)"""


def _zero_is_a_ceiling(structure):
    """A floor of 0 on a quantity that is never below 0 says nothing: an answer of "at_least 0" (the
    0.5B model read "keep the generator silent" so) can only mean "at_most 0" (off)."""
    if (structure is not None and structure.get("bound") == 0 and structure.get("sense") == "at_least"
            and structure.get("quantity") in NON_NEGATIVE):
        return {**structure, "sense": "at_most"}
    return structure


def extract(backend, texts, examples=None, variant=DEFAULT_VARIANT):
    """Structured preference (dict) or None per text, and the raw replies (per text: one string,
    or for 'fields' and 'choices' the answers joined by newlines); batched calls."""
    if variant not in VARIANTS:
        raise ConfigError(f"preference extraction variant {variant!r} is not one of {list(VARIANTS)}")
    examples = few_shot_examples() if examples is None else examples
    if variant not in ("fields", "choices"):
        grammar = JsonSchema(STRUCTURE_SCHEMA)
        raws = backend.generate_batch([prompt(t, examples, variant) for t in texts], system=SYSTEM,
                                      tag="preference", grammar=grammar, max_new_tokens=grammar.max_chars)
        return [parse_reply(r) for r in raws], raws
    structures, raws, lifted, free = [{} for _ in texts], [[] for _ in texts], set(), []
    if variant == "choices":
        lifted = _ask_kind(backend, texts, examples, structures, raws)
        free = [k for k, s in enumerate(structures) if s is not None and "sense" not in s]
    for group in FIELD_GROUPS:
        if group == "scope":  # the whole day: only 'inside' fits, nothing to ask
            for k, s in enumerate(structures):
                if s is not None and s["from"] is None and s["to"] is None:
                    structures[k] = {**s, "applies": "inside"}
                    raws[k].append(json.dumps({SCOPE_KEY: False}))
        if variant == "choices" and group in CHOICE_KEYS:
            _ask_choice(backend, group, texts, examples, structures, raws)
        asked = "fields" if variant == "choices" and group in CHOICE_KEYS else variant  # the free question
        for quantity, todo in _batches(group, structures):
            grammar = JsonSchema(_field_schema(group, quantity))
            replies = backend.generate_batch([prompt(texts[k], examples, asked, group, structures[k]) for k in todo],
                                             system=FIELD_SYSTEMS[group], tag=f"preference-{group}", grammar=grammar,
                                             max_new_tokens=grammar.max_chars)
            for k, raw in zip(todo, replies):
                raws[k].append(raw)
                part = parse_reply(raw)
                if group == "scope" and part is not None and isinstance(part.get(SCOPE_KEY), bool):
                    part = {"applies": "outside" if part[SCOPE_KEY] else "inside"}
                ok = part is not None and set(part) == set(FIELD_GROUPS[group])  # (unconstrained backends)
                structures[k] = {**part, **structures[k]} if ok else None  # fields fixed earlier (kind) stay
        if group == "what":
            _sense_from_comparison(texts, structures, free)
            _negate_lifted(structures, lifted)
    structures = [_zero_is_a_ceiling(s) for s in structures]
    ordered = [None if s is None else {f: s[f] for f in STRUCTURE_FIELDS} for s in structures]
    return ordered, ["\n".join(r) for r in raws]


def resolve_specs(specs, backend, examples=None, variant=DEFAULT_VARIANT):
    """Specs with every preference the parser does not know replaced by its LLM-extracted structure.

    Returns (specs, rows): one row per free-text preference (prosumer, text, structure, raw
    reply). A structure the trusted side refuses raises ConfigError naming prosumer, wording,
    the LLM's answer and the reason, before anything runs.
    """
    todo = [(i, k, p) for i, s in enumerate(specs) for k, p in enumerate(s.preferences)
            if isinstance(p, str) and parse_text(p) is None]
    if not todo:
        return list(specs), []
    structures, raws = extract(backend, [p for _, _, p in todo], examples, variant)
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
