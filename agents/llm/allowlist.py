"""Static check of generated prosumer code: an allowlist of syntax, names and typed attributes.

agents/llm/checker.py's ``static_check(code)`` enforces it and returns one reason per finding
(empty list: the code may run in the jail): everything that is not on these lists is refused.
RULES below is the same subset in the words the LLM is shown (agents/llm/prompts.py imports it).

The allowed subset
------------------
* Module level: ``import numpy as np``, ``import cvxpy as cp`` (or without ``as``), ``from
  numpy import f`` / ``from cvxpy import f`` of the functions in NUMPY / CVXPY, top-level
  ``def`` and assignments, a docstring.  Nothing else runs at import.
* Statements in functions: assignments (to names, tuples of names, subscripts), augmented
  assignments, ``for``, ``while`` (not ``while True`` without ``break``), ``if``, ``return``,
  ``pass``/``break``/``continue``, ``assert``, ``del`` of names and subscripts, expression
  statements.  No nested ``def``, ``lambda``, ``class``, decorators, ``async``, generators
  (``yield``), ``with``, ``try``, ``raise``, ``global``/``nonlocal``, ``:=``, ``match``,
  ``import`` inside a function.
* Names: the function's own parameters and assignments, module-level assignments and ``def``
  names, the builtins in BUILTINS, and np/cp only as the head of ``np.<name>`` / ``cp.<name>``
  with <name> in NUMPY / CVXPY (``np.linalg.norm`` counts as one name).  Nothing may start
  with an underscore; no string constant may contain ``__``; no bytes constants.
* Functions are only called: a library, builtin or own function never becomes a value (no
  ``f = np.sum``, ``g(np)``, ``m = np.random``), so no variable can hold a module, class or
  function, and every value in the program is data built by these calls.  Module, builtin and
  function names are never rebound (no ``np = state``, ``for cp in ...``, ``def print``).
* Attributes: never assigned or deleted.  Read only on a value whose type the checker proves
  by a flow-insensitive inference over the function (every assignment of a name counts):
  numbers and numpy arrays (``num``), cvxpy expressions and constraints (``expr``), lists,
  dicts, tuples, the ``state`` argument; only the names in ATTRIBUTES for *every* type the
  value may have; methods only in call position.  A value the checker cannot type (an element
  of a list, a helper function's result) takes no attribute.
"""

import ast

NUMPY = frozenset((
    "array asarray zeros ones full zeros_like ones_like full_like arange linspace concatenate stack hstack vstack "
    "column_stack tile repeat cumsum cumprod diff sum prod mean max min maximum minimum clip where abs absolute sqrt "
    "square exp log log1p power sign floor ceil round rint isfinite isnan dot outer eye diag tril triu reshape ravel "
    "transpose flip roll append atleast_1d any all argmax argmin sort cos sin tan arccos arcsin arctan interp "
    "nan_to_num float64 int64 linalg.norm"
).split())
NUMPY_VALUES = frozenset(("pi", "e", "inf", "nan", "newaxis"))
CVXPY = frozenset((
    "Variable Constant sum multiply maximum minimum max min pos neg abs square sum_squares power sqrt inv_pos "
    "geo_mean quad_form quad_over_lin norm norm1 norm2 norm_inf pnorm huber cumsum diff hstack vstack concatenate "
    "reshape vec diag trace matmul transpose sum_largest sum_smallest SOC"
).split())
BUILTINS = {  # name -> kinds of the result
    "abs": {"num", "expr"}, "min": {"num", "expr"}, "max": {"num", "expr"}, "sum": {"num", "expr"},
    "round": {"num"}, "float": {"num"}, "int": {"num"}, "bool": {"num"}, "len": {"num"}, "pow": {"num", "expr"},
    "divmod": {"tuple"}, "all": {"num"}, "any": {"num"},
    "range": {"iter"}, "enumerate": {"iter"}, "zip": {"iter"}, "reversed": {"iter"},
    "list": {"list"}, "sorted": {"list"}, "dict": {"dict"}, "tuple": {"tuple"}, "set": {"set"},
    "str": {"str"}, "repr": {"str"}, "print": {"none"},
}
DTYPES = frozenset(("float", "int", "bool", "np.float64", "np.int64"))
"""allowed as ``dtype=`` arguments (the only place a type may appear as a value)"""
VALUE_ATTRS = frozenset(("T", "shape", "size", "ndim"))
ATTRIBUTES = {
    "num": VALUE_ATTRS | {"sum", "mean", "max", "min", "cumsum", "copy", "reshape", "astype", "clip", "flatten",
                          "ravel", "tolist", "item", "dot", "any", "all", "round", "prod", "argmax", "argmin"},
    "expr": VALUE_ATTRS,
    "list": {"append", "extend", "insert", "copy", "index", "count"},
    "dict": {"items", "keys", "values", "get", "copy"},
    "state": {"items", "keys", "values", "get"},
    "tuple": {"index", "count"}, "set": set(), "str": set(), "none": set(), "iter": set(), "data": set(),
}
"""attribute names per inferred type; a value of several possible types takes only the common ones"""
METHOD_RESULT = {"tolist": {"list"}, "items": {"iter"}, "keys": {"iter"}, "values": {"iter"}, "get": {"data"},
                 "append": {"none"}, "extend": {"none"}, "insert": {"none"}, "index": {"num"}, "count": {"num"}}
STATEMENTS = (ast.Assign, ast.AugAssign, ast.For, ast.While, ast.If, ast.Return, ast.Pass, ast.Break,
              ast.Continue, ast.Assert, ast.Delete, ast.Expr)
EXPRESSIONS = (ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.IfExp, ast.Dict, ast.Set, ast.ListComp, ast.SetComp,
               ast.DictComp, ast.GeneratorExp, ast.Compare, ast.Call, ast.FormattedValue, ast.JoinedStr,
               ast.Constant, ast.Attribute, ast.Subscript, ast.Starred, ast.Name, ast.List, ast.Tuple, ast.Slice)
HELPERS = (ast.expr_context, ast.boolop, ast.operator, ast.unaryop, ast.cmpop, ast.comprehension, ast.keyword,
           ast.arguments, ast.arg, ast.alias)
STATE_LISTS = ("soc_kwh", "gen_last_kw", "cl_remaining_kwh")
"""state entries that are lists (one value per unit); the others are numbers or numpy arrays"""
MAX_CODE_CHARS = 50_000
HINTS = {"solve": "the coordinator solves; return the objective and the constraints",
         "Problem": "the coordinator builds the problem; return the objective and the constraints",
         "Minimize": "return the objective expression itself, not cp.Minimize(...)",
         "Parameter": "write the numbers into the code or read them from state"}

RULES = f"""Code rules (a checker enforces them; code that breaks one is refused before it runs):
- Imports: only `import numpy as np` and `import cvxpy as cp` (or `from numpy import f` of a function listed below).
  At module level only imports, `def` and constants.
- Call only these: np.<f> with f in {', '.join(sorted(NUMPY))}; np.pi, np.inf, np.e, np.nan as numbers;
  cp.<f> with f in {', '.join(sorted(CVXPY))}; builtins {', '.join(sorted(BUILTINS))}; and your own functions.
- Functions are only called, never stored in a variable, passed or returned; np, cp, builtins and your functions'
  names are never assigned to. No lambda, no nested def, no class,
  no try/except/raise, no with, no yield, no global, no :=. Nothing named with a leading underscore, no '__' in
  strings.
- Attributes only where the type is clear: .T .shape .size .ndim of numpy arrays and cvxpy expressions; numpy arrays
  also .sum() .mean() .max() .min() .cumsum() .copy() .reshape() .astype() .clip() .flatten() .ravel() .tolist()
  .dot(); lists .append() .extend(); dicts .items() .keys() .values() .get(). Never assign to an attribute.
- No .solve(), cp.Problem, cp.Minimize or cp.Parameter: return the objective expression and the constraints list."""
"""the allowed subset in the words the LLM sees (imported by agents/llm/prompts.py)"""
