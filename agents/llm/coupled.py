"""The LLM as the expert: accepted generated prosumer models, coupled, as the demonstration source.

``CoupledExpert(specs, tariff, net, models)`` plans like agents/expert/joint.py's JointExpert
(same ``plan`` and the attributes ``evaluate`` reads), but each prosumer's model is a contract
callable ``state -> 6-tuple``: a GeneratedExpert of agents/llm/worker.py (the generated code runs
in one jailed worker; the parent gets problem data and builds its own cvxpy objects) or, where no
generated expert was accepted, the in-process reference model. Each step ``couple`` (joint.py)
adds Σ p_p2p = 0 and the LinDistFlow voltage band, at full 15-minute resolution to the end of the
day, and the parent solves it. A generated model that the parent rejects at run time (a garbled
reply, a killed worker) is replaced by the reference from that step on and named in
``runtime_fallbacks``: nothing the generated code reports about itself is believed.

``write_generated_demonstrations(path, dates, codes)`` writes the demonstrations of
agents/expert/policy.py's ``write_demonstrations`` with this expert; the metadata names the
prosumers whose model was generated and those that fell back to the reference.
"""

import time as wallclock

import numpy as np

from agents.expert.joint import Plan, couple
from agents.expert.reference import DEFAULT_SOLVER, build_reference
from agents.expert.voltage import VoltageModel
from agents.llm.problem_data import Rejected
from agents.llm.worker import GeneratedExpert, GeneratedFleet
from simulators.prosumer.devices import DEVICES
from simulators.units import STEP_H, STEPS_PER_DAY, V_MAX_PU, V_MIN_PU

SETPOINTS = {"pv_kw": "P_RDG", "pv_q_kvar": "Q_RDG", "battery_kw": "P_BESS", "gen_kw": "P_CDG", "cl_kw": "P_CL"}
"""Fleet set-point total -> the contract's action-key prefix whose units it sums"""


class CoupledExpert:
    """Community optimum over prosumer models given as contract callables (see module docstring)."""

    def __init__(self, specs, tariff, net, models, solver=DEFAULT_SOLVER, v_margin_pu=0.0):
        self.specs, self.n, self.tariff, self.net = list(specs), len(specs), tariff, net
        self.models = dict(models)
        self.solver, self.v_margin = solver, v_margin_pu
        self.buy = np.asarray(tariff.buy_eur_per_kwh, float)
        self.sell = np.asarray(tariff.sell_eur_per_kwh, float)
        self.voltage = VoltageModel(net, self.specs)
        self.v_lo, self.v_hi = V_MIN_PU + v_margin_pu, V_MAX_PU - v_margin_pu
        self.runtime_fallbacks = {}
        """name -> reason, for generated models rejected during a run (the reference took over)"""

    def _states(self, time, load_kw, pv_avail_kw, state):
        """Contract state per prosumer; ``state``'s per-unit arrays split in spec order (the Fleet's)."""
        first = {name: 0 for name in state}
        out = []
        for i, spec in enumerate(self.specs):
            st = {"time": int(time), "horizon": STEPS_PER_DAY - int(time), "dt_h": STEP_H,
                  "load_kw": load_kw[:, i], "pv_avail_kw": pv_avail_kw[:, i],
                  "tariff_buy": self.buy[time:], "tariff_sell": self.sell[time:]}
            for name, values in state.items():
                k = len(getattr(spec, next(key for key, d in DEVICES.items() if d.state == name)))
                st[name] = [float(v) for v in np.asarray(values)[first[name]:first[name] + k]]
                first[name] += k
            out.append(st)
        return out

    def sources(self):
        """Which model each prosumer used: {'generated': [...], 'reference': [...], 'runtime_fallbacks': {...}}."""
        generated = [s.name for s in self.specs if isinstance(self.models[s.name], GeneratedExpert)
                     and self.models[s.name].source == "generated"]
        return {"generated": generated, "reference": [s.name for s in self.specs if s.name not in generated],
                "runtime_fallbacks": dict(self.runtime_fallbacks)}

    def _tuple(self, spec, st):
        try:
            return self.models[spec.name](st)
        except Rejected as exc:
            self.runtime_fallbacks[spec.name] = f"step {st['time']}: {exc}"
            self.models[spec.name] = build_reference(spec)
            return self.models[spec.name](st)

    def plan(self, time, load_kw, load_kvar, pv_avail_kw, state, full=False):
        """Solve steps time..95 (every step a row; ``full`` is accepted for JointExpert's interface)."""
        t0 = wallclock.perf_counter()
        load_kw, pv = np.asarray(load_kw, float), np.asarray(pv_avail_kw, float)
        tuples = [self._tuple(s, st) for s, st in zip(self.specs, self._states(time, load_kw, pv, state))]
        problem, info = couple(tuples, self.specs, self.net, load_kvar, self.v_margin)
        # a fresh problem every step: compiling it for re-solves with the reference models' Parameters
        # (DPP) only costs time, and with 32 reference models it needed more than 20 GB
        problem.solve(solver=self.solver, ignore_dpp=True)
        if problem.status not in ("optimal", "optimal_inaccurate"):
            raise RuntimeError(f"coupled expert at step {time}: solver {self.solver} returned {problem.status}")
        setpoints = {total: np.array([sum(float(np.atleast_1d(v.value)[0]) for k, v in t[0].items()
                                          if k.startswith(prefix) and k[len(prefix):].isdigit()) for t in tuples])
                     for total, prefix in SETPOINTS.items()}
        setpoints["curtail_kw"] = np.clip(pv[0] - setpoints["pv_kw"], 0.0, None)
        net_kw = -np.column_stack([np.asarray(t[3].value, float) for t in tuples])
        slack = info["v_slack"][0].value + info["v_slack"][1].value
        return Plan(time=time, status=problem.status, objective_eur=float(problem.value),
                    solve_s=wallclock.perf_counter() - t0,
                    rows=np.ones(STEPS_PER_DAY - time, dtype=int), net_kw=net_kw, setpoints=setpoints,
                    vm_pu=np.asarray(info["vm"].value), v_slack_pu=float(np.max(slack, initial=0.0)))


def generated_models(specs, codes, limits=None, reference_in_worker=False):
    """({name: contract callable}, fleet or None): GeneratedExperts in one jailed worker for the names in
    ``codes``, the reference for the others: in-process, or with ``reference_in_worker`` its code
    (reference_code.py) in the same worker, marked ``source = 'reference'`` (the coupled problem is
    built much faster from problem data than from in-process models: ~5 s vs ~65 s per step for 32).
    Close the fleet when done."""
    names = {s.name for s in specs}
    codes = {n: c for n, c in codes.items() if n in names}
    run = dict(codes)
    if reference_in_worker:
        from agents.llm.reference_code import reference_code

        run.update({s.name: reference_code(s) for s in specs if s.name not in codes})
    fleet = GeneratedFleet(run, [s for s in specs if s.name in run], limits) if run else None
    models = {s.name: fleet[s.name] if s.name in run else build_reference(s) for s in specs}
    for name in set(run) - set(codes):
        models[name].source = "reference"
    return models, fleet


def accepted_codes(folder, specs):
    """{name: code} of the accepted experts of an expert-workflow run folder (its experts/<name>.py),
    for the prosumers of ``specs``; each must have been generated for the very same spec (its
    specs.json entry), else a ConfigError names the prosumer."""
    from pathlib import Path

    from simulators.prosumer.spec import load_specs
    from simulators.validation import ConfigError

    folder = Path(folder)
    experts = folder / "experts"
    if not (folder / "specs.json").is_file() or not experts.is_dir():
        raise ConfigError(f"demo_experts: {str(folder)!r} is not an expert-workflow run folder (specs.json and "
                          "experts/ expected; python -m scenarios.expert_workflow writes them)")
    generated_for = {s.name: s.to_dict() for s in load_specs(folder / "specs.json")}
    codes = {}
    for spec in specs:
        path = experts / f"{spec.name}.py"
        if not path.is_file():
            continue
        if generated_for.get(spec.name) != spec.to_dict():
            raise ConfigError(f"demo_experts: the expert of {spec.name} in {str(folder)!r} was generated for "
                              "another spec (devices or preferences differ from this scenario's)")
        codes[spec.name] = path.read_text()
    return codes


def write_generated_demonstrations(path, dates, codes, env_config=None, limits=None, reference_in_worker=True):
    """``write_demonstrations`` with the CoupledExpert of the accepted generated ``codes`` ({name: code});
    the prosumers without a code use the reference (see generated_models). Returns the metadata
    (episodes name the sources)."""
    from agents.expert.policy import write_demonstrations

    fleets = []

    def make_expert(specs, tariff, net):
        models, fleet = generated_models(specs, codes, limits, reference_in_worker)
        fleets.append(fleet)
        return CoupledExpert(specs, tariff, net, models)

    try:
        return write_demonstrations(path, dates, env_config, make_expert=make_expert)
    finally:
        for fleet in fleets:
            if fleet is not None:
                fleet.close()
