"""Grammars for constrained decoding: a list of known names, and a JSON schema.

A grammar is a small state machine over characters: ``start()`` gives the initial state,
``step(state, ch)`` the state after one more character (None when ``ch`` cannot follow),
``complete(state)`` says whether the text read so far is a whole sentence and ``final(state)``
whether nothing may follow it (decoding stops there) and ``forced(state)`` the text that must
follow whatever the model chooses ('' where it has a choice). States are hashable, so the set of
vocabulary tokens allowed in a state is computed once (agents/llm/decoding.py walks a trie of
the vocabulary with ``step``).

``JsonSchema`` accepts the subset of JSON Schema that structured answers need: an object (or
``anyOf`` a list of objects) whose properties all appear, in the schema's order, once each;
values are ``enum``/``const`` (strings, numbers, booleans, null), ``{"type": "number"}`` /
``"integer"`` (optionally ``"minimum": 0``), ``{"type": "boolean"}``; numbers are JSON numbers
of at most 12 characters. The text is JSON as ``json.dumps`` writes it with its default
separators (``", "`` and ``": "``).
"""

import json
import os
import re
from dataclasses import dataclass

_NUMBER_PREFIX = re.compile(r"-?((0|[1-9]\d*)(\.\d*)?)?")
_NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?")
_INTEGER = re.compile(r"-?(0|[1-9]\d*)")


def matches(grammar, text):
    """The state after ``text``, or None when ``text`` is no prefix of a sentence."""
    state = grammar.start()
    for ch in text:
        state = grammar.step(state, ch)
        if state is None:
            return None
    return state


@dataclass(frozen=True)
class ChoiceList:
    """Grammar: ``name(, name)*`` of distinct names from ``names``, at most ``max_items`` of them."""

    names: tuple
    max_items: int = 8

    @property
    def alphabet(self):
        return frozenset("".join(self.names) + ", ")

    def allows(self, text):
        """True if ``text`` is a prefix of some sentence of the grammar."""
        parts = text.split(",")
        done = [p.strip() for p in parts[:-1]]
        if len(parts) > self.max_items or any(p not in self.names for p in done) or len(set(done)) < len(done):
            return False
        last = parts[-1]
        if last.startswith("  ") or "\n" in last:
            return False
        last = last.lstrip(" ")
        return any(n.startswith(last) and n not in done for n in self.names)

    def complete(self, text):
        parts = [p.strip() for p in text.split(",")]
        return all(p in self.names for p in parts) and len(set(parts)) == len(parts)

    def parse(self, text):
        """Known names in ``text`` in order of appearance (also for unconstrained backends)."""
        found = [p.strip().removeprefix("cp.").strip("`'\" .") for p in text.replace("\n", ",").split(",")]
        return list(dict.fromkeys(n for n in found if n in self.names))[: self.max_items]

    # state machine: the state is the text itself (the lists are short)
    def start(self):
        return ""

    def step(self, state, ch):
        text = state + ch
        return text if self.allows(text) else None

    def final(self, state):
        return False

    def forced(self, state):
        return ""


class _Object:
    """One JSON object schema as a sequence of segments: literal text, enum values, numbers."""

    def __init__(self, schema):
        if schema.get("type") != "object" or not schema.get("properties"):
            raise ValueError("JsonSchema: the schema must be an object with properties (or anyOf such objects)")
        self.segments = []  # ("lit", text) | ("enum", options) | ("num", (integer?, minimum 0?))
        text = "{"
        for k, (key, sub) in enumerate(schema["properties"].items()):
            text += (", " if k else "") + json.dumps(key) + ": "
            self.segments.append(("lit", text))
            self.segments.append(_value_segment(key, sub))
            text = ""
        self.segments.append(("lit", "}"))
        chars = "".join(s[1] for s in self.segments if s[0] == "lit")
        chars += "".join("".join(s[1]) for s in self.segments if s[0] == "enum")
        self.alphabet = frozenset(chars + ("-0123456789." if any(s[0] == "num" for s in self.segments) else ""))
        self.max_chars = sum(len(s[1]) if s[0] == "lit" else max(map(len, s[1])) if s[0] == "enum" else 12
                             for s in self.segments)

    def step(self, state, ch):
        i, part = state
        if i >= len(self.segments):
            return None
        kind, spec = self.segments[i]
        if kind == "lit":
            if spec[len(part)] != ch:
                return None
            return (i + 1, "") if len(part) + 1 == len(spec) else (i, part + ch)
        text = part + ch
        if kind == "enum":
            if any(o.startswith(text) for o in spec):
                return (i, text)
            return self.step((i + 1, ""), ch) if part in spec else None
        integer, nonneg = spec
        whole = (_INTEGER if integer else _NUMBER).fullmatch(text)
        if _NUMBER_PREFIX.fullmatch(text) and (len(text) < 12 or len(text) == 12 and whole) \
                and not (integer and "." in text) and not (nonneg and text.startswith("-")):  # completable
            return (i, text)
        return self.step((i + 1, ""), ch) if (_INTEGER if integer else _NUMBER).fullmatch(part) else None

    def forced(self, state):
        out, (i, part) = "", state
        while i < len(self.segments):
            kind, spec = self.segments[i]
            if kind == "lit":
                out, i, part = out + spec[len(part):], i + 1, ""
                continue
            options = [o for o in spec if o.startswith(part)] if kind == "enum" else []
            if len(options) != 1 or not part:
                break
            out, i, part = out + options[0][len(part):], i + 1, ""
        return out

    def complete(self, state):
        return state[0] == len(self.segments)


class JsonSchema:
    """Decoding grammar of one JSON object following ``schema``, or any of ``schema["anyOf"]``.

    The alternatives of anyOf are followed in parallel (the state holds one state per alternative,
    None once it is ruled out), so cross-field rules ("percent only with battery_energy") are
    exact: a text is allowed while at least one alternative allows it.
    """

    def __init__(self, schema):
        self.schema = schema
        self.alternatives = [_Object(a) for a in schema.get("anyOf", [schema])]
        self.alphabet = frozenset().union(*(a.alphabet for a in self.alternatives))
        self.max_chars = max(a.max_chars for a in self.alternatives)
        """length of the longest sentence: a token budget no tokenizer can exceed"""

    def start(self):
        return tuple((0, "") for _ in self.alternatives)

    def step(self, state, ch):
        new = tuple(a.step(s, ch) if s is not None else None for a, s in zip(self.alternatives, state))
        return new if any(s is not None for s in new) else None

    def forced(self, state):
        """Text that must follow ``state`` whatever the model chooses, cut where the model should resume.

        Literal JSON and the rest of an enum value once only one fits are forced; the text stops
        before trailing whitespace and never enters a value the model still chooses, so the model
        writes the tokens that join the two (BPE merges ' "' into one token; forcing '"at_' made
        Qwen2.5-0.5B pick at_least for every wording: measured on the benchmark's dev split).
        """
        texts = [a.forced(s) for a, s in zip(self.alternatives, state) if s is not None]
        return os.path.commonprefix(texts).rstrip()

    def complete(self, state):
        return any(s is not None and a.complete(s) for a, s in zip(self.alternatives, state))

    def final(self, state):
        return all(a.complete(s) for a, s in zip(self.alternatives, state) if s is not None)

    def allows(self, text):
        return matches(self, text) is not None

    def parse(self, text):
        """The decoded object, or None when ``text`` is not a whole sentence of this grammar."""
        state = matches(self, text)
        return json.loads(text) if state is not None and self.complete(state) else None


def _value_segment(key, sub):
    if "const" in sub:
        return ("enum", (json.dumps(sub["const"]),))
    if "enum" in sub:
        return ("enum", tuple(json.dumps(v) for v in sub["enum"]))
    kind = sub.get("type")
    if kind == "boolean":
        return ("enum", ("true", "false"))
    if kind in ("number", "integer"):
        if sub.get("minimum", -1) not in (-1, 0) or set(sub) - {"type", "minimum"}:
            raise ValueError(f"JsonSchema: property {key!r}: numbers support only 'minimum': 0, got {sub!r}")
        return ("num", (kind == "integer", sub.get("minimum") == 0))
    raise ValueError(f"JsonSchema: property {key!r}: only enum, const, boolean, number and integer are supported, "
                     f"got {sub!r}")
