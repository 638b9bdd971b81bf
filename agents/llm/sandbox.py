"""Generated prosumer code is hostile input: check it, build it in a jail, and judge it in the parent.

Three layers, each meant to hold on its own:

1. ``static_check`` (checker.py; the subset is documented in allowlist.py): an allowlist of
   syntax, names and typed attribute access; refused code never starts a process.
2. The jail (jail.py, sandbox_child.py): bubblewrap namespaces with a read-only view of the
   Python environment and no writable path, a fresh uid per run, a seccomp filter (no execve,
   sockets, file writes, signals), rlimits, restricted builtins.  The child only *builds* the
   model: it hands back numeric problem data through a length-prefixed frame.
3. The parent (problem_data.py): validates the data (shapes, finiteness, caps, convexity),
   solves it with its own solver and takes status, objective and actions from its own solution.
   Nothing the child says about itself is believed; a garbled reply is a rejection with a reason.

``run_prosumer(code, states)`` runs all three for the test states of one candidate and returns
plain records of the parent's solves (and of its feasible-set probes, support.py), which
verification.py then checks against the device limits, the balance, the reference objective and
the reference's feasible set.
"""

import time
from dataclasses import asdict, dataclass, field

from agents.llm.checker import static_check
from agents.llm.jail import JailUnavailable
from agents.llm.problem_data import Rejected
from agents.llm.support import action_ranges, support_values
from agents.llm.worker import Limits, Worker

NAME = "candidate"


@dataclass
class SandboxResult:
    """What one candidate gave: the parent's own solves of the problem data its code built."""

    ok: bool
    """static check passed, the code loaded, and every state's data solved to optimality in the parent"""
    reasons: list = field(default_factory=list)
    """why not ok, one clear sentence each (static findings, load error, rejections, kills, statuses)"""
    states: list = field(default_factory=list)
    """per state the parent's record: time, status, objective, actions, p_ex, q_ex, p_p2p (lists)"""
    enforced: dict = field(default_factory=dict)
    """the confinement the child reported (rlimits, seccomp), and 'jailed' / 'host_uid' from the parent"""
    printed: str = ""
    seconds: float = 0.0

    def to_dict(self):
        return asdict(self)


def run_prosumer(code, states, *, limits=None, solver="CLARABEL", check=True, allow_unjailed=False):
    """Build ``prosumer(state)`` of ``code`` for every state in one jailed child and solve each in the parent.

    states: contract state dicts (arrays as lists or numpy arrays).  Each model is solved
    stand-alone (p_p2p fixed to 0, no partner) with ``solver``.  ``check=False`` skips the
    static check (only to test the other layers on their own).  Raises JailUnavailable when the
    jail does not work here, unless ``allow_unjailed``.
    """
    t0 = time.perf_counter()
    result = SandboxResult(False)
    if check and (found := static_check(code)):
        result.reasons = ["refused by the static check: " + r for r in found]
        result.seconds = time.perf_counter() - t0
        return result
    try:
        with Worker({NAME: code}, limits or Limits(), check=False, allow_unjailed=allow_unjailed) as worker:
            result.enforced = {**worker.enforced, "jailed": worker.jail["available"], "host_uid": worker.host_id}
            for state in states:
                result.states.append(judge(worker, NAME, state, solver, result.reasons))
                if worker.dead:
                    break
            result.printed = "".join(worker.printed)[-8000:]
    except JailUnavailable:
        raise
    except Rejected as exc:  # start-up or loading failed
        result.reasons.append(str(exc))
    result.ok = not result.reasons and len(result.states) == len(states) > 0
    result.seconds = time.perf_counter() - t0
    return result


def run_many(codes, states, *, limits=None, solver="CLARABEL", allow_unjailed=False):
    """``run_prosumer`` for many candidates in one jailed worker: {key: SandboxResult}.

    codes: {key: code}; states: {key: [state, ...]}.  A candidate that kills the worker (CPU,
    memory, a forbidden call) gets that as its reason; the candidates after it go to a fresh
    worker, and a failed start-up falls back to one worker per candidate, so one hostile code
    cannot sink the others.
    """
    out = {}
    for key, code in codes.items():
        found = static_check(code)
        out[key] = SandboxResult(False, ["refused by the static check: " + r for r in found])
    pending = [k for k in codes if not out[k].reasons]
    while pending:
        t0 = time.perf_counter()
        try:
            worker = Worker({k: codes[k] for k in pending}, limits or Limits(), check=False,
                            allow_unjailed=allow_unjailed)
        except Rejected:  # start-up or loading failed: one worker per candidate finds whose fault it is
            out.update({k: run_prosumer(codes[k], states[k], limits=limits, solver=solver, check=False,
                                        allow_unjailed=allow_unjailed) for k in pending})
            break
        with worker:
            while pending:
                key = pending.pop(0)
                result = out[key]
                for state in states[key]:
                    result.states.append(judge(worker, key, state, solver, result.reasons))
                    if worker.dead:
                        break
                result.ok = not result.reasons and len(result.states) == len(states[key]) > 0
                result.seconds = time.perf_counter() - t0
                t0 = time.perf_counter()
                if worker.dead:
                    break
    return out


def judge(worker, name, state, solver="CLARABEL", reasons=None):
    """The parent's record of ``name``'s model at ``state``: its own solve of the child's data, or the
    rejection; the reasons go to ``reasons`` (a list)."""
    reasons = [] if reasons is None else reasons
    where = f"state at time {state['time']}"
    try:
        data = worker.build(name, state)
        rec = data.solve(solver)
        if rec["status"] == "optimal":  # what the model allows, beyond its optimum (only optimal ones are assessed)
            pieces = data.pieces()
            rec["support"] = support_values(pieces, int(state["horizon"]), solver)
            rec["action_ranges"] = action_ranges(pieces, solver)  # names the action if a probe fails
    except Rejected as exc:
        reasons.append(f"{where}: {exc}")
        return {"time": state["time"], "status": "rejected", "error": str(exc)}
    except Exception as exc:  # validated data that still trips cvxpy: a rejection too, never a crash
        reasons.append(f"{where}: the parent could not build or solve the model ({type(exc).__name__}: {exc})")
        return {"time": state["time"], "status": "rejected", "error": str(exc)[:300]}
    if rec["status"] not in ("optimal", "optimal_inaccurate"):
        reasons.append(f"{where}: the parent's solve of the model returned {rec['status']}"
                       + (f" ({rec['error']})" if rec.get("error") else ""))
    return rec
