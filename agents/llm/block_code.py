"""The reference model as separate code blocks: one per device type and one per preference.

The decomposed workflow (agents/llm/decomposed.py) asks the LLM for one block at a time, and
trusted code assembles the blocks into the ``prosumer(state)`` of the contract. A block is a few
lines of generated-style code with the unit's numbers written in; it reads the names the
trusted head defines and updates the running model (BLOCK_CONTRACT says which). The reference
block of a prosumer is rendered here from its spec by the same writers that render the few-shot
examples from other prosumers, and ``assemble(spec, {block id: code})`` fills every block not
given with the reference's, so a candidate block is judged alone: the whole model with only that
block swapped must match the reference model (agents/llm/verification.py, through the jail).

Block ids: the device key (``"batteries"``) for all units of a type, ``"pref1"``, ``"pref2"``, ...
for the preferences in spec order; ``WHOLE`` for the whole body (the edit variant's one block).
The assembled model is the reference model of
agents/llm/reference_code.py unit by unit (same variables, constraints and costs).
"""

import textwrap

import numpy as np

from agents.expert.preferences import PREFERENCE_PENALTY_EUR, parse_preferences
from simulators.units import STEPS_PER_DAY
from simulators.validation import ConfigError

HEAD = '''import cvxpy as cp
import numpy as np


def window(steps, start, end):
    if start <= end:
        return np.where((steps >= start) & (steps < end), 1.0, 0.0)
    return np.where((steps >= start) | (steps < end), 1.0, 0.0)


def prosumer(state):
    T = state["horizon"]
    dt = state["dt_h"]
    now = state["time"]
    steps = now + np.arange(T)
    load = state["load_kw"]
    pv_avail = np.maximum(state["pv_avail_kw"], 0.0)
    lambda_B = state["tariff_buy"]
    lambda_S = state["tariff_sell"]
    constraints = []
    actions = {}
    cost = 0.0
    net = load
    q_ex = cp.Constant(np.zeros(T))
    pv_sum = 0.0
    soc_sum = 0.0
    gen_sum = 0.0
    cl_sum = 0.0
'''
QUANTITIES = '''    quantity = {"gen_kw": gen_sum, "soc_kwh": soc_sum, "net_kw": net, "export_kw": -net, "cl_kw": cl_sum,
                "curtail_kw": pv_avail - pv_sum}
'''
TAIL = '''    P_B = cp.Variable(T, nonneg=True)
    P_S = cp.Variable(T, nonneg=True)
    P_P2P = cp.Variable(T)
    constraints.append(net - P_B + P_S - P_P2P == 0)
    actions["P_B"] = P_B
    actions["P_S"] = P_S
    objective = dt * (lambda_B @ P_B - lambda_S @ P_S) + cost
    p_ex = P_S - P_B - P_P2P
    p_p2p = P_P2P
    return actions, objective, constraints, p_ex, q_ex, p_p2p
'''
BLOCK_CONTRACT = """The block is part of the body of prosumer(state). Already defined before it:
  T (steps to the end of the day), dt (0.25 h), now (step of the day), steps = now + np.arange(T),
  state (dict; state["soc_kwh"], state["gen_last_kw"], state["cl_remaining_kwh"] are lists, one
  value per unit, indexed from 0), pv_avail (available PV power, numpy array (T,) [kW]),
  constraints (list: add with constraints += [...]), cost (add with cost = cost + ...),
  actions (dict: actions["<KEY>"] = variable of shape (T,)), net (meter power: add what a unit
  consumes, subtract what it produces), q_ex, pv_sum, soc_sum, gen_sum, cl_sum (running totals),
  and, for preferences, quantity (dict of the prosumer's totals: "gen_kw", "soc_kwh", "net_kw",
  "export_kw", "cl_kw", "curtail_kw", each of shape (T,)) and window(steps, start, end) (1.0 at the
  steps of the day from start up to end excluded, across midnight when start > end, else 0.0).
Write only the block's lines (no def, no return, no import); keep every name of the example."""


def num(x):
    """A number as code text: short, exact enough (6 significant digits)."""
    return f"{float(x):.6g}"


# ---- device blocks: parameters the code uses, and the code of one unit ---------------------------------
def _pv_params(spec):
    total = sum(p.kwp for p in spec.pv)
    return [{"share": p.kwp / total if total > 0 else 0.0, "s_kva": p.s_kva} for p in spec.pv]


def _pv_code(i, u):
    return f'''P_RDG{i} = cp.Variable(T, nonneg=True)
Q_RDG{i} = cp.Variable(T)
constraints += [P_RDG{i} <= {num(u["share"])} * pv_avail, cp.SOC({num(u["s_kva"])} * np.ones(T), cp.vstack([P_RDG{i}, Q_RDG{i}]), axis=0)]
actions["P_RDG{i}"] = P_RDG{i}
actions["Q_RDG{i}"] = Q_RDG{i}
net = net - P_RDG{i}
pv_sum = pv_sum + P_RDG{i}
q_ex = q_ex + Q_RDG{i}
'''


def _battery_params(spec):
    return [{"capacity_kwh": b.capacity_kwh, "p_max_kw": b.p_max_kw, "eta_charge": b.eta_charge,
             "eta_discharge": b.eta_discharge, "soc_min": b.soc_min, "soc_max": b.soc_max,
             "cost_eur_per_kwh": b.cost_eur_per_kwh} for b in spec.batteries]


def _battery_code(i, u):
    p, cap = num(u["p_max_kw"]), num(u["capacity_kwh"])
    return f'''P_ch{i} = cp.Variable(T, nonneg=True)
P_dis{i} = cp.Variable(T, nonneg=True)
E{i} = max(state["soc_kwh"][{i - 1}], 0.0) + cp.cumsum(dt * ({num(u["eta_charge"])} * P_ch{i} - P_dis{i} / {num(u["eta_discharge"])}))
constraints += [P_ch{i} <= {p}, P_dis{i} <= {p}, E{i} >= {num(u["soc_min"])} * {cap}, E{i} <= {num(u["soc_max"])} * {cap}]
cost = cost + dt * {num(u["cost_eur_per_kwh"])} * cp.sum(P_ch{i} + P_dis{i})
actions["P_BESS{i}"] = P_ch{i} - P_dis{i}
net = net + P_ch{i} - P_dis{i}
soc_sum = soc_sum + E{i}
'''


def _generator_params(spec):
    return [{"p_max_kw": g.p_max_kw,
             "ramp_limit_kw": g.ramp_kw_per_step + g.p_min_kw if g.ramp_kw_per_step > 0 else 0.0,
             "cost_a": g.cost_a_eur_per_kw2h, "cost_b": g.cost_b_eur_per_kwh + g.cost_c_eur_per_h / g.p_max_kw}
            for g in spec.generators]


def _generator_code(i, u):
    ramp = ""
    if u["ramp_limit_kw"] > 0:
        lim = num(u["ramp_limit_kw"])
        ramp = (f'step{i} = cp.diff(cp.hstack([np.array([max(state["gen_last_kw"][{i - 1}], 0.0)]), P_CDG{i}]))\n'
                f"constraints += [step{i} <= {lim}, step{i} >= -{lim}]\n")
    return f'''P_CDG{i} = cp.Variable(T, nonneg=True)
constraints += [P_CDG{i} <= {num(u["p_max_kw"])}]
{ramp}cost = cost + dt * ({num(u["cost_a"])} * cp.sum_squares(P_CDG{i}) + {num(u["cost_b"])} * cp.sum(P_CDG{i}))
actions["P_CDG{i}"] = P_CDG{i}
net = net - P_CDG{i}
gen_sum = gen_sum + P_CDG{i}
'''


def _cl_params(spec):
    return [{"p_max_kw": c.p_max_kw, "earliest_step": c.earliest_step, "deadline_step": c.deadline_step,
             "penalty_eur_per_kwh": c.unserved_penalty_eur_per_kwh} for c in spec.controllable_loads]


def _cl_code(i, u):
    return f'''window{i} = np.where((steps >= {int(u["earliest_step"])}) & (steps < {int(u["deadline_step"])}), 1.0, 0.0)
need{i} = max(state["cl_remaining_kwh"][{i - 1}], 0.0)
P_CL{i} = cp.Variable(T, nonneg=True)
U{i} = cp.Variable(nonneg=True)
constraints += [P_CL{i} <= {num(u["p_max_kw"])} * window{i}, dt * cp.sum(P_CL{i}) <= need{i}, U{i} >= need{i} - dt * cp.sum(P_CL{i})]
cost = cost + {num(u["penalty_eur_per_kwh"])} * U{i}
actions["P_CL{i}"] = P_CL{i}
net = net + P_CL{i}
cl_sum = cl_sum + P_CL{i}
'''


DEVICE_CODE = {"pv": (_pv_params, _pv_code), "batteries": (_battery_params, _battery_code),
               "generators": (_generator_params, _generator_code), "controllable_loads": (_cl_params, _cl_code)}
"""device key -> (params(spec) -> one dict per unit, code(i, unit params) -> lines of unit i); registry
order is the block order of the assembled model"""


# ---- preference blocks -----------------------------------------------------------------------------------
def windows(steps):
    """[start, end) circular step ranges of the day covering ``steps`` (end may wrap past midnight:
    start > end); all day is [0, 96)."""
    on = np.zeros(STEPS_PER_DAY, dtype=bool)
    on[list(steps)] = True
    if on.all():
        return [[0, STEPS_PER_DAY]]
    starts = [s for s in range(STEPS_PER_DAY) if on[s] and not on[s - 1]]
    out = []
    for s in starts:
        e = s
        while on[e % STEPS_PER_DAY]:
            e += 1
        out.append([s, e % STEPS_PER_DAY])
    return out


def preference_params(pref):
    """What the code of one preference uses: quantity key, sense and its sign, bound, window(s)."""
    (start, end), *more = windows(pref.steps)
    out = {"quantity": pref.quantity, "sense": "at_most" if pref.sense == "max" else "at_least",
           "sign": 1 if pref.sense == "max" else -1, "bound": pref.bound, "from_step": start, "to_step": end}
    return {**out, "more_windows": more} if more else out


def _preference_code(k, u):
    on = " + ".join(f"window(steps, {a}, {b})" for a, b in [(u["from_step"], u["to_step"]), *u.get("more_windows", [])])
    return f'''on{k} = {on}
eps{k} = cp.Variable(T, nonneg=True)
constraints += [cp.multiply(on{k}, {num(u["sign"])} * (quantity["{u["quantity"]}"] - {num(u["bound"])})) <= eps{k}]
cost = cost + {num(PREFERENCE_PENALTY_EUR)} * dt * cp.sum(eps{k})
'''


# ---- blocks of a spec, and the assembly ------------------------------------------------------------------
WHOLE = "model"
"""block id of the whole body, every device and preference block in one (agents/llm/edit_code.py)"""


def block_ids(spec):
    """Block ids of ``spec`` in assembly order: its device types (registry order), then pref1, pref2, ..."""
    other = [key for key, units in spec.devices if units and key not in DEVICE_CODE]
    if other:
        raise ConfigError(f"spec {spec.name!r}: the decomposed workflow writes only {list(DEVICE_CODE)}, not {other}")
    return [key for key in DEVICE_CODE if getattr(spec, key)] + [f"pref{k}" for k in
                                                                  range(1, len(spec.preferences) + 1)]


def block_params(spec, block_id):
    """The parameters of one block: a list of per-unit dicts (device) or one preference's dict."""
    if block_id.startswith("pref"):
        return preference_params(parse_preferences(spec)[int(block_id[4:]) - 1])
    return DEVICE_CODE[block_id][0](spec)


def render(block_id, params):
    """Reference code of a block (no indentation) from its parameters (see block_params)."""
    if block_id.startswith("pref"):
        return _preference_code(int(block_id[4:]), params)
    return "".join(DEVICE_CODE[block_id][1](i, u) for i, u in enumerate(params, 1))


def reference_block(spec, block_id):
    return render(block_id, block_params(spec, block_id))


def body(spec, blocks=None):
    """The body of ``prosumer(state)`` between the trusted head and tail, not indented: every block
    (``blocks[id]`` where given, else the reference block), the preference quantities before the first
    preference block."""
    blocks = blocks or {}
    parts = []
    for block_id in block_ids(spec):
        if block_id == "pref1":
            parts.append(textwrap.dedent(QUANTITIES))
        code = blocks[block_id] if block_id in blocks else reference_block(spec, block_id)
        parts.append(f"# ---- block {block_id}\n" + textwrap.dedent(code).strip("\n") + "\n")
    return "".join(parts)


def assemble(spec, blocks=None):
    """Source of ``prosumer(state)`` of ``spec``: the trusted head, the body (see ``body``; ``blocks[WHOLE]``,
    where given, is the whole body: the edit variant), and the trusted market tail."""
    blocks = blocks or {}
    text = textwrap.dedent(blocks[WHOLE] if WHOLE in blocks else body(spec, blocks)).strip("\n")
    return HEAD + (textwrap.indent(text + "\n", "    ") if text else "") + TAIL
