"""The parent's side of the result channel: read frames, validate the problem data, build and solve it.

A jailed child (sandbox_child.py) hands back, per state, the conic form of the model the
generated code built: min ½xᵀPx + cᵀx + offset s.t. Ax + s = b, s in zero x nonneg x
second-order cones, plus the columns of x that hold each contract item.  Everything in a frame
is untrusted: ``read_frame`` and ``ProblemData.from_frame`` turn any garbled, oversized,
non-finite or inconsistent reply into a ``Rejected`` exception with one plain reason, never into
another exception.  ``ProblemData.pieces()`` rebuilds the model as parent-side cvxpy objects in
the contract's 6-tuple shape (so agents/expert/joint.py's ``couple`` takes it like the
reference's), and ``ProblemData.solve()`` solves it stand-alone with the parent's own solver:
status, objective and actions are the parent's, never the child's.
"""

import json
import os
import select
import struct
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

MAGIC = b"P2PDATA1"
MAX_HEADER_BYTES = 1 << 20
MAX_BLOB_BYTES = 64 << 20
MAX_VARIABLES = 100_000
MAX_ROWS = 200_000
MAX_QUAD_BLOCK = 600
"""largest non-diagonal quadratic block the parent factorizes (dense eigen-decomposition)"""
MAX_ACTIONS = 64
DTYPES = {"<f8": np.float64, "<i8": np.int64}
CONTRACT = ("p_ex", "q_ex", "p_p2p")


class Rejected(Exception):
    """A reply the parent does not accept; the message is the reason."""


def read_exact(fd, n, deadline):
    """n bytes from ``fd`` before ``deadline`` (time.monotonic()); Rejected on EOF or timeout."""
    out = bytearray()
    while len(out) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise Rejected("no reply within the wall-clock limit")
        chunk = os.read(fd, min(n - len(out), 1 << 20))
        if not chunk:
            raise Rejected("the child closed the result channel (it died or was killed)")
        out += chunk
    return bytes(out)


def read_frame(fd, deadline):
    """(header dict, arrays dict) of the next frame on ``fd``; Rejected with the reason otherwise."""
    prefix = read_exact(fd, len(MAGIC) + 16, deadline)
    if prefix[:len(MAGIC)] != MAGIC:
        raise Rejected("garbled reply: no frame marker")
    n_head, n_blob = struct.unpack("<QQ", prefix[len(MAGIC):])
    if n_head > MAX_HEADER_BYTES or n_blob > MAX_BLOB_BYTES:
        raise Rejected(f"reply of {n_head} + {n_blob} bytes exceeds the caps {MAX_HEADER_BYTES} + {MAX_BLOB_BYTES}")
    try:
        header = json.loads(read_exact(fd, n_head, deadline))
    except (ValueError, RecursionError) as exc:
        raise Rejected(f"garbled reply header: {type(exc).__name__}") from None
    blob = read_exact(fd, n_blob, deadline)
    if not isinstance(header, dict):
        raise Rejected("garbled reply header: not an object")
    return header, _arrays(header.get("arrays", []), blob)


def _arrays(spec, blob):
    if not isinstance(spec, list) or len(spec) > 16:
        raise Rejected("garbled reply: bad array list")
    out, pos = {}, 0
    for item in spec:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str) and item[1] in DTYPES
                and isinstance(item[2], int) and item[2] >= 0):
            raise Rejected("garbled reply: bad array description")
        name, dtype, count = item
        size = count * 8
        if pos + size > len(blob):
            raise Rejected(f"garbled reply: array {name[:40]!r} runs past the data")
        out[name] = np.frombuffer(blob, dtype=DTYPES[dtype], count=count, offset=pos)
        pos += size
    if pos != len(blob):
        raise Rejected("garbled reply: data left over after the arrays")
    return out


# ---- validation ----------------------------------------------------------------------------
def _int(x, what, lo=0, hi=MAX_ROWS):
    if type(x) is not int or not lo <= x <= hi:
        raise Rejected(f"{what}: {str(x)[:40]!r} is not an integer in [{lo}, {hi}]")
    return x


def _csc(arrays, prefix, shape):
    """A validated scipy CSC matrix of ``shape`` from the indptr/indices/data arrays."""
    try:
        indptr, indices, data = (arrays[f"{prefix}_{k}"] for k in ("indptr", "indices", "data"))
    except KeyError:
        raise Rejected(f"matrix {prefix} missing") from None
    rows, cols = shape
    if indptr.shape != (cols + 1,) or indptr[0] != 0 or (np.diff(indptr) < 0).any() or indptr[-1] != len(indices) \
            or len(indices) != len(data):
        raise Rejected(f"matrix {prefix}: inconsistent column pointers")
    if len(indices) and (indices.min() < 0 or indices.max() >= rows):
        raise Rejected(f"matrix {prefix}: row index out of range")
    if not np.isfinite(data).all():
        raise Rejected(f"matrix {prefix}: NaN or infinite entries")
    return sp.csc_matrix((data.astype(float), indices.astype(np.int64), indptr.astype(np.int64)), shape=shape)


def _factor(P):
    """(columns, F) with ½xᵀPx = ½‖F x[columns]‖²; Rejected if P is not symmetric PSD."""
    P = P.tocsc()
    scale = max(1.0, float(np.abs(P.data).max(initial=0.0)))
    if abs(P - P.T).max() > 1e-9 * scale:
        raise Rejected("quadratic objective matrix P is not symmetric")
    active = np.flatnonzero(np.asarray(abs(P).sum(axis=0)).ravel() > 0)
    block = P[active][:, active]
    if block.nnz == np.count_nonzero(block.diagonal()):  # diagonal: the usual sum of squares
        d = block.diagonal()
        if (d < -1e-12 * scale).any():
            raise Rejected("quadratic objective is not convex (negative diagonal of P)")
        return active, sp.diags(np.sqrt(np.clip(d, 0.0, None)))
    if active.size > MAX_QUAD_BLOCK:
        raise Rejected(f"quadratic objective couples {active.size} variables (at most {MAX_QUAD_BLOCK})")
    lam, vec = np.linalg.eigh(block.toarray())
    if lam.min() < -1e-9 * scale:
        raise Rejected(f"quadratic objective is not convex (eigenvalue {lam.min():.3g} of P)")
    return active, np.sqrt(np.clip(lam, 0.0, None))[:, None] * vec.T


@dataclass
class ProblemData:
    """A validated conic problem of one state and where its contract items sit in x."""

    name: str
    time: int
    P: sp.csc_matrix
    c: np.ndarray
    A: sp.csc_matrix
    b: np.ndarray
    offset: float
    zero: int
    nonneg: int
    soc: list
    columns: dict
    """'action:<key>', 'p_ex', 'q_ex', 'p_p2p' -> slice of x"""
    build_s: float = 0.0
    """CPU seconds the code took to build the model in the child (its own report, for timing only)"""
    quad: tuple = None
    """(columns, F) of the quadratic term: ½xᵀPx = ½‖F x[columns]‖² (set by from_frame)"""

    @classmethod
    def from_frame(cls, header, arrays, horizon):
        """Validate a state frame against the caps and the contract of ``horizon`` steps."""
        if header.get("error"):
            raise Rejected(str(header["error"])[:4000])
        try:
            return cls._parse(header, arrays, horizon)
        except Rejected:
            raise
        except Exception as exc:  # any other surprise in untrusted data is a rejection too
            raise Rejected(f"garbled problem data ({type(exc).__name__}: {str(exc)[:200]})") from None

    @classmethod
    def _parse(cls, header, arrays, horizon):
        dims = header["dims"]
        if dims.get("exp") or dims.get("psd") or dims.get("power") or header.get("bounds"):
            raise Rejected("the model needs exponential, semidefinite or power cones or variable bounds; "
                           "prosumer models need only linear, quadratic and second-order-cone terms")
        m, n = (_int(v, "shape") for v in header["shape"])
        if n > MAX_VARIABLES or n < 1:
            raise Rejected(f"{n} variables (at most {MAX_VARIABLES})")
        zero, nonneg = _int(dims["zero"], "zero cone"), _int(dims["nonneg"], "nonneg cone")
        soc = [_int(k, "cone size", 1) for k in dims["soc"]]
        if zero + nonneg + sum(soc) != m:
            raise Rejected(f"cone sizes add up to {zero + nonneg + sum(soc)}, not the {m} rows")
        c, b = arrays["c"], arrays["b"]
        if c.shape != (n,) or b.shape != (m,) or not (np.isfinite(c).all() and np.isfinite(b).all()):
            raise Rejected("c or b has the wrong length or non-finite entries")
        offset = float(header["offset"])
        if not np.isfinite(offset):
            raise Rejected("objective offset is not finite")
        columns = cls._columns(header["columns"], n, horizon)
        data = cls(str(header["name"])[:100], _int(header["time"], "time", 0, 95), _csc(arrays, "P", (n, n)),
                   c.astype(float), _csc(arrays, "A", (m, n)), b.astype(float), offset, zero, nonneg, soc, columns,
                   float(header.get("build_s") or 0.0))
        data.quad = _factor(data.P)
        return data

    @staticmethod
    def _columns(raw, n, horizon):
        if not isinstance(raw, dict) or len(raw) > MAX_ACTIONS + 3:
            raise Rejected("bad column map")
        out = {}
        for key, (start, size) in raw.items():
            if not isinstance(key, str) or len(key) > 80:
                raise Rejected("bad column map key")
            _int(start, f"columns of {key[:40]!r}", 0, n)
            _int(size, f"columns of {key[:40]!r}", 1, n - start)
            want = (1, horizon) if key.startswith("action:") else (horizon,)
            if size not in want:
                raise Rejected(f"{key} has {size} values, expected {horizon}")
            out[key] = slice(start, start + size)
        missing = [k for k in CONTRACT if k not in out]
        if missing:
            raise Rejected(f"column map lacks {missing}")
        return out

    # ---- the parent's model ----
    def pieces(self):
        """(actions, objective, constraints, p_ex, q_ex, p_p2p): parent-side cvxpy objects of this data."""
        import cvxpy as cp

        x = cp.Variable(self.A.shape[1])
        constraints, z, nn = [], self.zero, self.nonneg
        if z:
            constraints.append(self.A[:z] @ x == self.b[:z])
        if nn:
            constraints.append(self.A[z:z + nn] @ x <= self.b[z:z + nn])
        constraints += self._cones(x)
        columns, factor = self.quad
        objective = self.c @ x + self.offset
        if columns.size:
            objective = objective + 0.5 * cp.sum_squares(factor @ x[columns])
        actions = {k.split(":", 1)[1]: x[s] for k, s in self.columns.items() if k.startswith("action:")}
        return (actions, objective, constraints) + tuple(x[self.columns[k]] for k in CONTRACT)

    def _cones(self, x):
        """Second-order cones b - A x in SOC, grouped by size (one cvxpy constraint per size)."""
        import cvxpy as cp

        starts = self.zero + self.nonneg + np.concatenate([[0], np.cumsum(self.soc)[:-1]]).astype(int)
        out = []
        for k in sorted(set(self.soc)):
            heads = starts[np.asarray(self.soc) == k]
            t = self.b[heads] - self.A[heads] @ x
            if k == 1:
                out.append(t >= 0)
                continue
            tails = (heads[None, :] + np.arange(1, k)[:, None]).ravel(order="F")
            rest = cp.reshape(self.b[tails] - self.A[tails] @ x, (k - 1, heads.size), order="F")
            out.append(cp.SOC(t, rest, axis=0))
        return out

    def solve(self, solver="CLARABEL"):
        """Stand-alone solve (p_p2p fixed to 0) with the parent's solver: a plain result record."""
        import cvxpy as cp

        actions, objective, constraints, p_ex, q_ex, p_p2p = self.pieces()
        problem = cp.Problem(cp.Minimize(objective), constraints + [p_p2p == 0])
        rec = {"time": self.time, "status": None, "objective": None, "build_s": self.build_s}
        try:
            problem.solve(solver=solver)
        except cp.error.SolverError as exc:
            rec["status"], rec["error"] = "solver_error", str(exc)[:300]
            return rec
        rec["status"] = problem.status
        if problem.status in ("optimal", "optimal_inaccurate"):
            rec["objective"] = float(problem.value)
            rec["actions"] = {k: np.atleast_1d(np.asarray(v.value, dtype=float)).tolist() for k, v in actions.items()}
            rec.update({k: np.asarray(e.value, dtype=float).tolist() for k, e in
                        (("p_ex", p_ex), ("q_ex", q_ex), ("p_p2p", p_p2p))})
        return rec
