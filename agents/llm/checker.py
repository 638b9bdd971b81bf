"""The static check of generated code: the allowlist of allowlist.py, enforced on the syntax tree.

``static_check(code)`` -> list of reasons (empty: the code may run in the jail).  The checker
first refuses node kinds, imports and names outside the lists, then infers per function the
kinds every name may hold (flow-insensitive: the union over all its assignments, to a fixpoint)
and checks every use: names exist in their role (value, call, dtype), library functions are
only called, attributes are on proven kinds and in ATTRIBUTES for all of them.
"""

import ast

from agents.llm.allowlist import (
    ATTRIBUTES,
    BUILTINS,
    CVXPY,
    DTYPES,
    EXPRESSIONS,
    HELPERS,
    HINTS,
    MAX_CODE_CHARS,
    METHOD_RESULT,
    NUMPY,
    NUMPY_VALUES,
    STATE_LISTS,
    STATEMENTS,
    VALUE_ATTRS,
)


def static_check(code):
    """Return a list of reasons to refuse ``code`` (empty list: it may run in the jail)."""
    if not isinstance(code, str) or not code.strip():
        return ["no code"]
    if len(code) > MAX_CODE_CHARS:
        return [f"code is {len(code)} characters, more than the {MAX_CODE_CHARS} allowed"]
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return [f"syntax error at line {exc.lineno}: {exc.msg}"]
    except (RecursionError, MemoryError, ValueError) as exc:
        return [f"the code cannot be parsed ({type(exc).__name__})"]
    try:
        reasons = _Checker(tree).run()
    except RecursionError:
        reasons = ["the code is nested too deeply"]
    if not any(isinstance(n, ast.FunctionDef) and n.name == "prosumer" for n in tree.body):
        reasons.append("no top-level function prosumer(state)")
    return list(dict.fromkeys(reasons))


class _Checker:
    """One pass over the module: node kinds, names, then per-function type inference and uses."""

    def __init__(self, tree):
        self.tree, self.reasons = tree, []
        self.aliases, self.imported, self.functions, self.globals = {}, {}, set(), {}
        self.functions_nodes = []

    def run(self):
        self._module()
        if self.reasons:
            return self.reasons
        env = self._infer(self.tree.body, dict(self.globals))
        self.globals.update(env)
        self._uses(self.tree.body, self.globals)
        for fn in self.functions_nodes:
            params = {a.arg: {"data"} for a in _params(fn.args)}
            if fn.name == "prosumer" and fn.args.args:  # the contract's state dict
                params[fn.args.args[0].arg] = {"state"}
            env = self._infer(fn.body, {**self.globals, **params})
            self._uses(fn.body, env)
            for default in fn.args.defaults + [d for d in fn.args.kw_defaults if d is not None]:
                self._expr(default, self.globals)
        return self.reasons

    def _fail(self, node, text):
        self.reasons.append(f"line {getattr(node, 'lineno', '?')}: {text}")

    # ---- module level and node kinds ----
    def _module(self):
        for node in self.tree.body:
            if isinstance(node, ast.Import):
                self._import(node)
            elif isinstance(node, ast.ImportFrom):
                self._import_from(node)
            elif isinstance(node, ast.FunctionDef):
                self._function(node)
            elif not (isinstance(node, ast.Assign) or _is_docstring(node)):
                self._fail(node, f"top-level {type(node).__name__} is not allowed; only imports, def, "
                                 "constants (put the code inside prosumer(state))")
        for node in ast.walk(self.tree):
            self._node(node)

    def _import(self, node):
        for alias in node.names:
            want = {"numpy": "np", "cvxpy": "cp"}.get(alias.name)
            if want is None:
                self._fail(node, f"import of {alias.name!r} is not allowed (only numpy as np, cvxpy as cp)")
            elif alias.asname not in (None, want):
                self._fail(node, f"import {alias.name} as {alias.asname}: use the alias {want!r}")
            else:
                self.aliases[alias.asname or alias.name] = want

    def _import_from(self, node):
        allowed = {"numpy": NUMPY, "cvxpy": CVXPY}.get(node.module)
        if node.level or allowed is None:
            self._fail(node, f"import from {node.module!r} is not allowed (only numpy, cvxpy)")
            return
        for alias in node.names:
            if alias.name not in allowed or alias.asname:
                self._fail(node, f"'from {node.module} import {alias.name}' is not allowed (plain functions of "
                                 f"the allowed list only, without 'as')")
            else:
                self.imported[alias.name] = "np" if node.module == "numpy" else "cp"

    def _function(self, node):
        if node.decorator_list or node.returns is not None or any(a.annotation for a in _params(node.args)):
            self._fail(node, "decorators and annotations are not allowed")
        self.functions.add(node.name)
        self.functions_nodes.append(node)
        for inner in ast.walk(node):
            if inner is not node and isinstance(inner, (ast.FunctionDef, ast.Import, ast.ImportFrom)):
                self._fail(inner, "nested def and imports inside functions are not allowed")

    def _node(self, node):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.Import, ast.ImportFrom)) or isinstance(node, HELPERS):
            pass
        elif not isinstance(node, STATEMENTS + EXPRESSIONS):
            self._fail(node, f"{type(node).__name__} is not allowed (see the code rules)")
        bound = (node.id if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load)
                 else node.arg if isinstance(node, ast.arg) else None)
        if bound in self.aliases or bound in self.imported or bound in self.functions or bound in BUILTINS \
                or isinstance(node, ast.FunctionDef) and (node.name in BUILTINS or node.name in self.aliases):
            self._fail(node, f"{bound or node.name!r} may not be rebound (a module, builtin or function name)")
        name = getattr(node, "id", None) or getattr(node, "attr", None) or getattr(node, "arg", None) \
            or getattr(node, "name", None)
        if isinstance(name, str) and name.startswith("_") and name != "_":
            self._fail(node, f"name {name!r} starts with an underscore (private/dunder names are not allowed)")
        if isinstance(node, ast.Constant) and isinstance(node.value, bytes):
            self._fail(node, "bytes constants are not allowed")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "__" in node.value:
            self._fail(node, "string constants may not contain '__' (dunder names)")
        if isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Load):
            self._fail(node, f"assigning or deleting attribute {node.attr!r} is not allowed")
        if isinstance(node, ast.While) and isinstance(node.test, ast.Constant) and node.test.value \
                and not any(isinstance(n, ast.Break) for n in ast.walk(node)):
            self._fail(node, "unbounded loop 'while True' without break")

    # ---- type inference ----
    def _infer(self, body, env):
        """Kinds of every name bound in ``body`` (a fixpoint over all its bindings)."""
        bindings = list(_bindings(body))
        for _ in range(50):
            changed = False
            for target, kinds_of in bindings:
                for name, kinds in _targets(target, kinds_of(self, env)):
                    if not kinds <= env.get(name, set()):
                        env[name] = env.get(name, set()) | kinds
                        changed = True
            if not changed:
                break
        return env

    def kind(self, node, env):
        """Possible kinds of the value of ``node`` (set of ATTRIBUTES keys); 'data' when unknown."""
        if isinstance(node, ast.Constant):
            v = node.value
            return {"str"} if isinstance(v, str) else {"none"} if v is None else {"num"}
        if isinstance(node, ast.Name):
            return set(env.get(node.id, {"data"}))
        if isinstance(node, ast.Attribute):
            lib = _library(node, self.aliases)
            if lib:
                return {"num"}
            base = self.kind(node.value, env)
            return base if node.attr == "T" else {"tuple"} if node.attr == "shape" else {"num"}
        if isinstance(node, ast.Call):
            return self._call_kind(node, env)
        if isinstance(node, (ast.List, ast.ListComp)):
            return {"list"}
        if isinstance(node, (ast.Tuple,)):
            return {"tuple"}
        if isinstance(node, (ast.Dict, ast.DictComp)):
            return {"dict"}
        if isinstance(node, (ast.Set, ast.SetComp)):
            return {"set"}
        if isinstance(node, ast.GeneratorExp):
            return {"iter"}
        if isinstance(node, ast.JoinedStr):
            return {"str"}
        if isinstance(node, ast.Subscript):
            base = self.kind(node.value, env)
            if base == {"state"} and isinstance(node.slice, ast.Constant):  # the contract's state entries
                return {"list"} if node.slice.value in STATE_LISTS else {"num"}
            return _element(base)
        if isinstance(node, ast.UnaryOp):
            return {"num"} if isinstance(node.op, ast.Not) else self.kind(node.operand, env)
        if isinstance(node, ast.Compare):  # a constraint when a cvxpy expression takes part
            kinds = set().union(*(self.kind(x, env) for x in [node.left] + node.comparators))
            return {"num", "expr"} if kinds & {"expr", "data"} else {"num"}
        if isinstance(node, ast.BinOp):
            both = self.kind(node.left, env) | self.kind(node.right, env)
            if "data" in both:
                return {"data"}
            return both & {"num", "expr", "list", "tuple", "str"} or {"data"}
        if isinstance(node, (ast.BoolOp, ast.IfExp)):
            parts = node.values if isinstance(node, ast.BoolOp) else [node.body, node.orelse]
            return set().union(*(self.kind(p, env) for p in parts))
        return {"data"}

    def _call_kind(self, node, env):
        f = node.func
        if isinstance(f, ast.Name):
            if f.id in BUILTINS:
                return set(BUILTINS[f.id])
            if f.id in self.imported:
                return self._numpy_result(node, env) if self.imported[f.id] == "np" else {"expr"}
            return {"data"}
        lib = _library(f, self.aliases) if isinstance(f, ast.Attribute) else None
        if lib:
            return self._numpy_result(node, env) if lib[0] == "np" else {"expr"}
        if isinstance(f, ast.Attribute):
            base = self.kind(f.value, env)
            return set(METHOD_RESULT.get(f.attr, base if f.attr == "copy" else {"num", "expr"}))
        return {"data"}

    def _numpy_result(self, node, env):
        """A numpy call on numbers gives numbers; with a cvxpy expression (or unknown) among its
        arguments it may give an expression or an object array of them."""
        args = list(node.args) + [kw.value for kw in node.keywords]
        while any(isinstance(a, (ast.List, ast.Tuple, ast.Starred)) for a in args):
            a = next(a for a in args if isinstance(a, (ast.List, ast.Tuple, ast.Starred)))
            args.remove(a)
            args += [a.value] if isinstance(a, ast.Starred) else a.elts
        kinds = set().union(set(), *(self.kind(a, env) for a in args))
        return {"num", "expr"} if kinds & {"expr", "data", "list", "tuple", "iter"} else {"num"}

    # ---- uses ----
    def _uses(self, body, env):
        for stmt in body:
            if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef)):
                continue
            self._statement(stmt, env)

    def _statement(self, node, env):
        for field, value in ast.iter_fields(node):
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, ast.stmt):
                    self._statement(item, env)
                elif isinstance(item, ast.expr):
                    self._target(item, env) if field in ("target", "targets") else self._expr(item, env)

    def _target(self, node, env):
        """A binding target: names bind, subscripts and starred parts are checked as values."""
        if isinstance(node, (ast.Tuple, ast.List)):
            for elt in node.elts:
                self._target(elt, env)
        elif isinstance(node, ast.Starred):
            self._target(node.value, env)
        elif isinstance(node, ast.Subscript):
            self._expr(node.value, env)
            self._expr(node.slice, env)
        elif not isinstance(node, (ast.Name, ast.Attribute)):  # attribute stores are reported by _node
            self._expr(node, env)

    def _expr(self, node, env, role="value"):
        """Check an expression: names exist in their role, attributes are typed, calls are named."""
        if isinstance(node, ast.Name):
            self._name(node, env, role)
        elif isinstance(node, ast.Attribute):
            self._attribute(node, env, role)
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, (ast.Name, ast.Attribute)):
                self._fail(node, "only named functions may be called (np.f(...), cp.f(...), f(...), x.method(...))")
            self._expr(node.func, env, "call")
            astype = isinstance(node.func, ast.Attribute) and node.func.attr == "astype"
            for k, arg in enumerate(node.args):
                self._expr(arg, env, "dtype" if astype and k == 0 and self._dotted_dtype(arg) else "value")
            for kw in node.keywords:
                dtype = kw.arg == "dtype" and self._dotted_dtype(kw.value)
                self._expr(kw.value, env, "dtype" if dtype else "value")
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.comprehension):
                    self._target(child.target, env)
                    for part in [child.iter] + child.ifs:
                        self._expr(part, env)
                elif isinstance(child, ast.expr):
                    self._expr(child, env)

    def _dotted_dtype(self, node):
        dotted = _dotted(node)
        lib = _library(node, self.aliases) if isinstance(node, ast.Attribute) else None
        return dotted in DTYPES or (lib is not None and f"np.{lib[1]}" in DTYPES and lib[0] == "np")

    def _name(self, node, env, role):
        if not isinstance(node.ctx, ast.Load):
            return
        name = node.id
        callable_name = name in BUILTINS or name in self.functions or name in self.imported
        if name in self.aliases:
            self._fail(node, f"the module {name!r} may only be used as {name}.<name>(...)")
        elif role == "call":
            if not callable_name:
                self._fail(node, f"call of {name!r}: not an allowed builtin or a function defined in the code")
        elif role == "dtype" and name in DTYPES:
            return
        elif callable_name:
            self._fail(node, f"{name!r} is a function: call it, do not use it as a value")
        elif name not in env:
            self._fail(node, f"name {name!r} is not defined or not allowed")

    def _attribute(self, node, env, role):
        lib = _library(node, self.aliases)
        if lib:
            module, name = lib
            allowed = NUMPY if module == "np" else CVXPY
            if role == "call" and name in allowed or role == "dtype" \
                    or role == "value" and module == "np" and name in NUMPY_VALUES:
                return
            hint = HINTS.get(name.split(".")[-1])
            if name in allowed:
                self._fail(node, f"{module}.{name} is a function: call it, do not use it as a value")
            else:
                self._fail(node, f"{module}.{name} is not allowed" + (f" ({hint})" if hint else ""))
            return
        self._expr(node.value, env)
        base = self.kind(node.value, env)
        if isinstance(node.value, ast.Name) and (node.value.id in self.functions or node.value.id in BUILTINS
                                                 or node.value.id in self.imported):
            return  # reported by _name: a function used as a value
        if "data" in base or not base:
            self._fail(node, f"attribute .{node.attr} on a value whose type the checker cannot prove "
                             "(assign it from np./cp. calls or literals first)")
            return
        common = set.intersection(*(set(ATTRIBUTES[k]) for k in base))
        if node.attr not in common:
            hint = HINTS.get(node.attr)
            self._fail(node, f"attribute .{node.attr} is not allowed on {'/'.join(sorted(base))} values"
                             + (f" ({hint})" if hint else ""))
        elif role != "call" and node.attr not in VALUE_ATTRS:
            self._fail(node, f".{node.attr} is a method: call it, do not use it as a value")


# ---- helpers ---------------------------------------------------------------------------------------
def _is_docstring(node):
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _params(args):
    out = args.posonlyargs + args.args + args.kwonlyargs
    return out + [a for a in (args.vararg, args.kwarg) if a is not None]


def _dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id] + parts[::-1]) if isinstance(node, ast.Name) else None


def _library(node, aliases):
    """('np' | 'cp', 'name' or 'linalg.norm') when ``node`` is an attribute chain on a module alias."""
    dotted = _dotted(node)
    if not dotted or "." not in dotted:
        return None
    head, rest = dotted.split(".", 1)
    return (aliases[head], rest) if head in aliases else None


def _element(kinds):
    """Kinds of an element of a value of ``kinds`` (by subscript or iteration)."""
    out = set()
    for k in kinds:
        out |= {"num": {"num", "expr"}, "expr": {"expr"}, "str": {"str"}, "state": {"num", "list"}}.get(k, {"data"})
    return out or {"data"}


def _bindings(body):
    """(target node, kinds function) for every name binding in ``body`` (not in nested defs)."""
    for stmt in body:
        for node in () if isinstance(stmt, ast.FunctionDef) else ast.walk(stmt):
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    yield t, lambda c, env, v=node.value: c.kind(v, env)
            elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
                yield node.target, lambda c, env, v=node.value, t=node.target, op=node.op: (
                    c.kind(t, env) | c.kind(ast.BinOp(t, op, v), env))
            elif isinstance(node, (ast.For, ast.comprehension)):
                yield node.target, lambda c, env, it=node.iter: ("iter", c, it, env)


def _targets(target, kinds):
    """(name, kinds) pairs a target binds; ``kinds`` may be an iteration marker from _bindings."""
    if isinstance(kinds, tuple):  # iteration: element kinds per position where the iterable is known
        _, checker, it, env = kinds
        yield from _loop_targets(target, checker, it, env)
        return
    if isinstance(target, ast.Name):
        yield target.id, set(kinds)
    elif isinstance(target, (ast.Tuple, ast.List)):
        for elt in target.elts:
            yield from _targets(elt.value if isinstance(elt, ast.Starred) else elt, {"data"})


def _loop_targets(target, checker, it, env):
    func = it.func.id if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) else None
    if func == "range":
        parts = [{"num"}]
    elif func == "enumerate" and it.args:
        parts = [{"num"}, _element(checker.kind(it.args[0], env))]
    elif func == "zip":
        parts = [_element(checker.kind(a, env)) for a in it.args]
    else:
        parts = [_element(checker.kind(it, env))]
    if isinstance(target, ast.Name):
        yield target.id, parts[0] if len(parts) == 1 else {"tuple"}
    elif isinstance(target, (ast.Tuple, ast.List)) and len(parts) == len(target.elts) and len(parts) > 1:
        for elt, kinds in zip(target.elts, parts):
            yield from _targets(elt, kinds)
    else:
        yield from _targets(target, {"data"})

