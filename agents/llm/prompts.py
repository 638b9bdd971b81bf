"""Prompt templates of the five workflow stages, the basic prosumer model, and its mechanical edit.

The stage structure follows the paper's supplementary prompts (model editing, atom retrieval,
code generation, repair, review); the wording, the model text and the code skeleton are this
project's own. PROMPT_VERSION enters the cache key of accepted experts: bump it whenever a
template or the basic model changes.

Conventions the generated code must follow (the same as agents/expert/reference.py):
powers in kW, Δt = state["dt_h"] = 0.25 h, steps t = 0..T-1 from the current step to the end
of the day (T = state["horizon"]); device units numbered from 1 (BESS1, BESS2, ...); action
keys reference.ACTION_KEYS (P_RDG1, P_BESS1, P_CDG1, P_CL1, ...), one per unit; battery power > 0 charges;
p_ex = P_S - P_B - P_P2P is the prosumer's net injection (export positive, as in the paper);
the coordinator adds the P2P coupling, so p_p2p is a free Variable here.
"""

import json

from agents.expert.blocks import BLOCKS
from agents.expert.reference import (
    ACTION_KEYS,  # noqa: F401  re-exported: actions key per unit, e.g. "P_BESS{i}"
    action_keys as _action_keys,
)
from agents.llm.allowlist import RULES as CODE_RULES  # the static check's allowlist, in words
from simulators.prosumer.devices import DEVICES

PROMPT_VERSION = "p2p-expert-prompts-3"


def device_tags():
    """Unit tag per device type with an expert block (the device registry's ``tag``)."""
    return {key: DEVICES[key].tag for key in BLOCKS}


def device_blocks():
    """Model text per device type: each expert block's ``prompt`` (agents/expert/blocks.py)."""
    return {key: block.prompt for key, block in BLOCKS.items()}


DEVICE_TAGS = device_tags()
PREFERENCE_PENALTY = 1000.0
"""EUR per kWh (per kW and step, times Δt) of preference violation (the paper's 1000)"""

# ---- the basic model: every device once, unit index {i} ----------------------------------------
GRID_BLOCK = {
    "variables": ["P_B[t] >= 0: power bought from the grid [kW]",
                  "P_S[t] >= 0: power sold to the grid [kW]",
                  "P_P2P[t] (free): net power bought from peers [kW]; the coordinator couples it"],
    "constraints": ["power balance: P_load[t] + sum_i P_BESS{i}[t] + sum_i P_CL{i}[t] - sum_i P_RDG{i}[t]"
                    " - sum_i P_CDG{i}[t] - P_B[t] + P_S[t] - P_P2P[t] == 0",
                    "grid exchange: P_EX[t] = P_S[t] - P_B[t] - P_P2P[t] (net injection, export > 0)",
                    "reactive exchange: Q_EX[t] = sum_i Q_RDG{i}[t] (zero if no PV)"],
    "objective": ["C_EX = dt * sum_t(lambda_B[t] * P_B[t] - lambda_S[t] * P_S[t])"],
}
DEVICE_BLOCKS = device_blocks()
"""the built-in device types' model text"""
SECTIONS = ("variables", "constraints", "objective")


def _render(blocks):
    lines = []
    for section in SECTIONS:
        lines.append(f"{section.capitalize()}:")
        for tag, block in blocks:
            lines += [f"  [{tag}] {line}" for line in block[section]]
    lines.append("  total: minimize C_EX + sum of all device costs + sum of all preference penalties")
    return "\n".join(lines)


def _unit_block(block, i):
    return {s: [line.replace("{i}", str(i)).replace("{i0}", str(i - 1)) for line in block[s]] for s in SECTIONS}


def basic_model_text():
    """The basic model with one unit of every device (the paper's 'basic model')."""
    tags = device_tags()
    blocks = [("GRID", GRID_BLOCK)] + [(tags[k] + "1", _unit_block(b, 1)) for k, b in device_blocks().items()]
    return _render(blocks)


def edit_model_text(spec):
    """The mechanical edit the model-editing stage asks for, done deterministically.

    Deletes device types the prosumer lacks, repeats a block per unit (BESS1, BESS2, ...) and
    adds one soft constraint per preference. Used to check the LLM's edit and as its fallback.
    """
    blocks, tags = [("GRID", GRID_BLOCK)], device_tags()
    for kind, block in device_blocks().items():
        for i in range(1, len(getattr(spec, kind)) + 1):
            blocks.append((tags[kind] + str(i), _unit_block(block, i)))
    for k, pref in enumerate(spec.preferences, 1):
        blocks.append((f"PREF{k}", preference_block(pref, k, spec)))
    return _render(blocks)


PREFERENCE_TERMS = {
    "gen_kw": "sum_i P_CDG{{i}}[t]",
    "soc_kwh": "sum_i E{{i}}[t]",
    "net_kw": "P_load[t] + sum_i P_BESS{{i}}[t] + sum_i P_CL{{i}}[t] - sum_i P_RDG{{i}}[t] - sum_i P_CDG{{i}}[t]",
    "export_kw": "-(P_load[t] + sum_i P_BESS{{i}}[t] + sum_i P_CL{{i}}[t] - sum_i P_RDG{{i}}[t] - sum_i P_CDG{{i}}[t])",
    "cl_kw": "sum_i P_CL{{i}}[t]",
    "curtail_kw": "pv_avail[t] - sum_i P_RDG{{i}}[t]",
}
"""model expression of each preference quantity of agents/expert/preferences.py"""


def preference_block(text, k, spec=None):
    """A preference as a soft constraint: slack eps{k}[t] >= 0 and a penalty in the objective.

    ``text``: a preference entry (text or structured). Preferences the project's parser
    understands and structured ones (agents/expert/preferences.py) are spelled out with their
    quantity, bound and steps; other free text is left for the LLM to interpret.
    """
    from agents.expert.preferences import parse_preference, preference_text

    entry, text = text, preference_text(text)
    rule = f"the preference '{text}' holds up to eps{k}[t] at every step t it concerns"
    try:
        pref = parse_preference(entry, spec, k - 1)
        term = PREFERENCE_TERMS[pref.quantity].format()
        op, slack = ("<=", f"+ eps{k}[t]") if pref.sense == "max" else (">=", f"- eps{k}[t]")
        rule = f"{term} {op} {pref.bound:g} {slack} for the steps with time + t in {_ranges(pref.steps)}"
    except Exception:
        pass
    return {"variables": [f"eps{k}[t] >= 0: violation of the preference '{text}'"],
            "constraints": [rule],
            "objective": [f"C_PREF{k} = {PREFERENCE_PENALTY:g} * dt * sum_t eps{k}[t]"]}


def _ranges(steps):
    """(0, 1, 2, 5, 6) -> '0..2, 5..6' (steps of the day)."""
    out, start = [], None
    for a, b in zip(steps, list(steps[1:]) + [None]):
        start = a if start is None else start
        if b != a + 1:
            out.append(f"{start}..{a}")
            start = None
    return ", ".join(out)


# ---- facts about one prosumer ------------------------------------------------------------------
def device_list(spec):
    """'RDG x1, BESS x2' style list of the devices a prosumer owns."""
    parts = [f"{tag} x{len(getattr(spec, k))}" for k, tag in device_tags().items() if getattr(spec, k)]
    return ", ".join(parts) or "no controllable devices (load only)"


def device_params(spec):
    """Device parameters as JSON, units in the names, one entry per unit (BESS1, BESS2, ...)."""
    out = {"load_peak_kw": spec.load_peak_kw}
    total_kwp = sum(p.kwp for p in spec.pv)
    for kind, tag in device_tags().items():
        for i, unit in enumerate(getattr(spec, kind), 1):
            entry = dict(vars(unit))
            if kind == "pv":
                entry.update(share_of_pv_avail=round(unit.kwp / total_kwp, 6), s_kva=unit.s_kva)
            out[f"{tag}{i}"] = entry
    return json.dumps(out, indent=1)


def action_keys(spec):
    keys = _action_keys()
    return [keys[k].format(i=i) for k in keys for i in range(1, len(getattr(spec, k)) + 1)]


STATE_DOC = """state (dict, read only):
  state["time"]: int, current step of the day (0..95)
  state["horizon"]: int, T = 96 - time, steps until the end of the day
  state["dt_h"]: float, 0.25 (hours per step)
  state["load_kw"], state["pv_avail_kw"]: numpy arrays (T,), household load and available PV power of
      all PV units together [kW]
  state["tariff_buy"], state["tariff_sell"]: numpy arrays (T,), grid prices lambda_B, lambda_S [EUR/kWh]
  state["soc_kwh"]: list, stored energy of each battery now [kWh]
  state["gen_last_kw"]: list, output of each generator at the last step [kW]
  state["cl_remaining_kwh"]: list, energy each controllable load still needs today [kWh]"""

SKELETON_HEAD = '''import cvxpy as cp
import numpy as np


def prosumer(state):
    T = state["horizon"]
    dt = state["dt_h"]
    now = state["time"]
    load = state["load_kw"]
    pv_avail = state["pv_avail_kw"]
    lambda_B = state["tariff_buy"]
    lambda_S = state["tariff_sell"]
    constraints = []
'''
RETURN_LINE = "    return actions, objective, constraints, p_ex, q_ex, p_p2p"
CONTRACT = f"""The function returns exactly six things, in this order:
  actions: dict {{name: cvxpy Variable of shape (T,)}} with the keys {{keys}}
  objective: the total cost as a cvxpy expression (do NOT wrap it in cp.Minimize)
  constraints: a list of cvxpy constraints
  p_ex: P_S - P_B - P_P2P, shape (T,); q_ex: reactive exchange, shape (T,); p_p2p: the P2P Variable (T,)
Never call .solve(): a coordinator builds the problem from these pieces.
End the function with:
{RETURN_LINE}"""

CVXPY_RULES = """CVXPY rules: constant * expression for scaling; cp.multiply(a, b) for elementwise products;
@ only for matrix products; never multiply two Variables; cp.square/cp.sum_squares for quadratic
costs; keep every expression convex in the objective and in '<=' constraints."""

# ---- stage prompts ---------------------------------------------------------------------------
EDIT_SYSTEM = """You edit an energy management model mechanically. Follow the rules exactly:
1. Delete every block of a device type the prosumer does not own.
2. For a device owned N times, repeat its block N times and number the names (BESS1, BESS2, ...).
3. Turn each preference into a soft constraint: a slack variable eps[t] >= 0, the preference
   holding up to eps[t], and a penalty 1000 * dt * sum(eps) added to the objective. Keep the
   physical constraints as they are.
Keep the sections Variables, Constraints, Objective in this order. Output only the edited model
inside a ```model block, no explanations."""
EDIT_USER = """Devices of the prosumer: {devices}
Preferences: {preferences}

Basic model:
```model
{basic}
```"""

RETRIEVE_SYSTEM = """You know the CVXPY library well. Name the CVXPY functions (atoms) needed to write
the given optimization model in code. Answer with a comma-separated list of function names only."""
RETRIEVE_USER = """Model:
{model}

Known CVXPY functions: {names}

CVXPY functions needed (comma-separated):"""

CODE_SYSTEM = f"""You write Python code with cvxpy for the energy management of one prosumer. Write the
function prosumer(state) that models the problem from the current step to the end of the day.
Use only cvxpy (as cp) and numpy (as np). Write the device parameters as numbers in the code.
Include only the devices listed. {CVXPY_RULES}
{CODE_RULES}
Answer with one complete ```python block."""
CODE_USER = """Devices: {devices}
Device parameters (JSON):
{params}

{state_doc}

Model:
{model}

CVXPY functions:
{atoms}

{contract}

Complete this code:
```python
{skeleton}    ...
{return_line}
```"""

REPAIR_SYSTEM = f"""You fix Python code with cvxpy so that it runs and follows the contract. Keep what is
correct, change what the error points at. {CVXPY_RULES}
{CODE_RULES}
Answer with the complete corrected function in one ```python block."""
REPAIR_USER = """Error:
{error}

Code:
```python
{code}
```

Devices: {devices}
Device parameters (JSON):
{params}

{state_doc}

{contract}"""

REVIEW_SYSTEM = """You review Python code with cvxpy that models one prosumer. Check and correct:
- the power balance load + batteries + controllable loads - PV - generators - P_B + P_S - P_P2P == 0;
- p_ex = P_S - P_B - P_P2P, q_ex and p_p2p of shape (T,);
- the actions dict and its keys;
- the return of exactly six things and no cp.Minimize, no .solve().
Answer with the complete code in one ```python block."""
REVIEW_USER = """{contract}

Code:
```python
{code}
```"""


def context(spec):
    """Fields shared by the code, repair and review prompts."""
    return {"devices": device_list(spec), "params": device_params(spec), "state_doc": STATE_DOC,
            "contract": CONTRACT.replace("{keys}", ", ".join(repr(k) for k in action_keys(spec)) or "(none)")}
