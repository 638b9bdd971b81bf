"""A command line from a config dataclass: one --flag per field, its docstring as the help."""

import argparse
import ast
import dataclasses
import inspect
import json
import textwrap


def field_docs(cls):
    """Attribute docstrings of a dataclass (the string right after each field); empty when the
    source is not available (e.g. a frozen application)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = str(nxt.value.value)
    return docs


def json_object(text):
    """A JSON object from the command line (argparse reports the ValueError in one line)."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"{text!r} is not a JSON object")
    return value


json_object.__name__ = "JSON object"  # argparse names the expected type by it
_FLAG_TYPES = {int: int, "int": int, float: float, "float": float, dict: json_object, "dict": json_object}


def add_config_flags(parser, cls, defaults=None, choices=None, known=None):
    """One --flag per field of dataclass ``cls`` (its docstring as help, ``defaults`` shown in it);
    ``choices``: field -> allowed names (argparse shows them and rejects others); ``known``: field
    -> names listed in the help of a field that also takes other values (e.g. simbench:<code>).

    Every flag defaults to None, so ``given_flags(args)`` holds only what the user typed and can
    override a base config (the dataclass defaults, a saved config.json, a scenario's defaults).
    """
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("cli", True) is False:  # set from a saved config, not typed
            continue
        flag, shown = "--" + f.name.replace("_", "-"), getattr(defaults, f.name, None) if defaults else None
        helptext = docs.get(f.name, "") + (f" (default: {shown!r})" if defaults is not None else "")
        if f.name in (known or {}):
            helptext += "; known: " + ", ".join(sorted(known[f.name]))
        if f.type in (bool, "bool"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=helptext)
        else:
            allowed = sorted((choices or {})[f.name]) if f.name in (choices or {}) else None
            parser.add_argument(flag, type=_FLAG_TYPES.get(f.type, str), default=None, choices=allowed, help=helptext)
    return parser


def given_flags(args):
    """The flags of an argparse result that were given on the command line (not None)."""
    return {k: v for k, v in vars(args).items() if v is not None}
