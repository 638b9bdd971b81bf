"""A long-lived jailed worker that builds generated prosumer models and hands back problem data only.

``Worker(codes)`` starts one sandbox child (sandbox_child.py) in the jail (jail.py) holding
every code of a fleet; ``worker.build(name, state)`` returns the validated ProblemData of that
prosumer's model at that state (problem_data.py), or raises Rejected with the reason.  The
generated code never runs in this process: what comes back is numbers, which the parent turns
into its own cvxpy objects.

``GeneratedExpert(code, spec)`` wraps one prosumer for run-time use: calling it with a state
returns the contract's 6-tuple (actions, objective, constraints, p_ex, q_ex, p_p2p) as
parent-side cvxpy objects, the same shape the reference model returns, so
agents/expert/joint.py's ``couple`` takes generated and reference prosumers alike::

    fleet = GeneratedFleet({"p000": code0, "p006": code6}, specs)   # one jailed worker
    tuples = [fleet["p000"](state0), fleet["p006"](state6)]
    problem, info = couple(tuples, specs, net, load_kvar)
"""

import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from agents.llm import jail
from agents.llm.checker import static_check
from agents.llm.problem_data import ProblemData, Rejected, read_frame

CHILD = Path(__file__).with_name("sandbox_child.py")
PIPE_CAP = 64_000
"""bytes kept of the child's stdout and stderr (diagnostics only; the rest is read and dropped)"""
SIGNALS = {signal.SIGXCPU: "CPU time limit", signal.SIGKILL: "SIGKILL (CPU hard limit, memory, or the parent)",
           signal.SIGSEGV: "segmentation fault", signal.SIGSYS: "a forbidden system call"}


@dataclass
class Limits:
    """Resource limits of one jailed child."""

    cpu_s: int = 20
    """CPU seconds per request (loading the code counts as one) (RLIMIT_CPU; SIGXCPU kills it)"""
    wall_s: float = 40.0
    """wall-clock seconds per request before the parent kills the child"""
    startup_s: float = 60.0
    """wall-clock seconds for start-up (imports, warm-up) and loading the codes"""
    memory_mb: int = 1024
    """address space the child may add on top of numpy+cvxpy (RLIMIT_AS)"""
    lifetime_cpu_s: int = 3600
    """CPU seconds over the child's whole life (hard RLIMIT_CPU)"""


class Worker:
    """One jailed child holding ``codes`` ({name: code}); ``build(name, state)`` -> ProblemData.

    One request at a time (not thread-safe).  The child dies with this process (bwrap's
    --die-with-parent) if ``close()`` is never called.

    ``check``: run the static check on every code first (a refused code is not sent; building
    it raises Rejected with the findings).  ``allow_unjailed``: run the child without bubblewrap
    when the jail is unavailable (loud warning; rlimits and the parent's judgement only).
    """

    def __init__(self, codes, limits=None, check=True, allow_unjailed=False):
        self.limits = limits or Limits()
        self.refused = {n: ["refused by the static check: " + r for r in static_check(c)] if check else []
                        for n, c in codes.items()}
        self.codes = {n: c for n, c in codes.items() if not self.refused[n]}
        self.jail = jail.require(allow_unjailed)
        self.proc, self.host_id, self.dead, self._fd = None, None, None, None
        self.enforced, self.load_errors, self.printed = {}, {}, []
        self._err = [bytearray(), bytearray()]
        self._start()

    def _start(self):
        read_fd, write_fd = os.pipe()
        argv = [sys.executable, "-I", "-c", CHILD.read_text(), str(write_fd)]
        try:
            if self.jail["available"]:
                self.proc, self.host_id = jail.spawn(argv, pass_fds=(write_fd,))
            else:
                self.proc = jail.spawn_unjailed(argv, pass_fds=(write_fd,))
        finally:
            os.close(write_fd)
        self._fd = read_fd
        for pipe, buf in zip((self.proc.stdout, self.proc.stderr), self._err):
            threading.Thread(target=_drain, args=(pipe, buf), daemon=True).start()
        setup = {"codes": self.codes, "cpu_s": self.limits.cpu_s, "memory_mb": self.limits.memory_mb,
                 "lifetime_cpu_s": self.limits.lifetime_cpu_s,
                 "seccomp": jail.seccomp_program().hex() if self.jail["seccomp_bytes"] else ""}
        self._send(setup)
        header, _ = self._frame("start-up and loading", self.limits.startup_s)
        errors, enforced = header.get("errors"), header.get("enforced")
        if header.get("kind") != "loaded" or not isinstance(errors, dict) or not isinstance(enforced, dict):
            self._fail("garbled reply: expected the 'loaded' frame")
        self.load_errors = {n: str(errors.get(n))[:4000] for n in self.codes if errors.get(n)}
        self.enforced = enforced  # the child's own account of its confinement: shown, never relied on
        self.printed.append(str(header.get("printed", ""))[:4000])

    def _send(self, obj):
        try:
            self.proc.stdin.write((json.dumps(obj) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._fail("the child is not running")

    def _frame(self, what, wall_s=None):
        if self.dead:
            raise Rejected(self.dead)
        try:
            return read_frame(self._fd, time.monotonic() + (wall_s or self.limits.wall_s))
        except Rejected as exc:
            self._fail(f"{what}: {exc}")

    def _fail(self, reason):
        """Kill the child, remember why (plus how it ended), raise Rejected."""
        self.close()
        self.dead = reason + self._ending()
        raise Rejected(self.dead)

    def _ending(self):
        code = self.proc.returncode
        sig = -code if code is not None and code < 0 else (code - 128 if code and code > 128 else None)
        tail = " | ".join(self._err[1].decode(errors="replace").strip().splitlines()[-3:])
        why = f"; it ended by {SIGNALS[sig]}" if sig in SIGNALS else f"; exit code {code}" if code else ""
        return why + (f" ({tail})" if tail and not sig else "")

    def build(self, name, state):
        """ProblemData of ``name``'s model at ``state`` (a contract state dict); Rejected with the reason."""
        if self.refused.get(name):
            raise Rejected("; ".join(self.refused[name]))
        if name in self.load_errors:
            raise Rejected("the code failed to load: " + self.load_errors[name])
        if name not in self.codes:
            raise Rejected(f"no code named {name!r}")
        self._send({"name": name, "state": _plain(state)})
        header, arrays = self._frame("the model's reply")
        self.printed.append(str(header.get("printed", ""))[:4000])
        if header.get("kind") != "state" or header.get("name") != name or header.get("time") != state["time"]:
            self._fail("garbled reply: the frame does not answer the request")
        return ProblemData.from_frame(header, arrays, int(state["horizon"]))

    def close(self):
        """Stop the child (idempotent); its namespaces and processes go with it."""
        if self.proc is not None and self.proc.returncode is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=2)
            except Exception:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _plain(state):
    return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in state.items()}


def _drain(pipe, buf):
    """Read a pipe to its end, keeping at most PIPE_CAP bytes (a chatty child cannot fill our memory)."""
    while chunk := pipe.read(65536):
        if len(buf) < PIPE_CAP:
            buf.extend(chunk[: PIPE_CAP - len(buf)])


# ---- generated experts at run time ---------------------------------------------------------------
class GeneratedExpert:
    """``prosumer(state)`` of generated ``code`` for ``spec``, built in a jailed worker, returned as
    parent-side cvxpy pieces (the reference's 6-tuple shape).  ``data(state)`` gives the ProblemData."""

    source = "generated"
    """'reference' when the code is the reference model written as code (agents/llm/coupled.py)"""

    def __init__(self, code, spec, worker=None, limits=None):
        self.spec, self.name = spec, spec.name
        self.owns_worker = worker is None
        self.worker = worker or Worker({spec.name: code}, limits)
        self.build_s = []
        """seconds per call: the worker's round trip and the parent's pieces"""

    def data(self, state):
        return self.worker.build(self.name, state)

    def __call__(self, state):
        t0 = time.perf_counter()
        pieces = self.data(state).pieces()
        self.build_s.append(time.perf_counter() - t0)
        return pieces

    def close(self):
        """Stop the worker if this expert started it (a GeneratedFleet's worker is the fleet's)."""
        if self.owns_worker:
            self.worker.close()


class GeneratedFleet(dict):
    """{name: GeneratedExpert} of several prosumers sharing one jailed Worker; ``close()`` stops it."""

    def __init__(self, codes, specs, limits=None):
        by_name = {s.name: s for s in specs}
        self.worker = Worker(dict(codes), limits)
        super().__init__({n: GeneratedExpert(c, by_name[n], self.worker) for n, c in codes.items()})

    def close(self):
        self.worker.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
