"""A year of normalized load and PV profiles from SimBench, and their scaling onto prosumers.

Source: the complete SimBench data set that ships inside the ``simbench`` package,
``simbench/networks/1-complete_data-mixed-all-0-sw/{LoadProfile,RESProfile}.csv`` (scenario 0,
today's grid; the standard load and PV profiles are identical in scenarios 1 and 2).
2016, 35136 rows of 15-minute values.  SimBench labels the rows in local time with the two
DST jumps (27.03. 01:45 -> 03:00, 30.10. 02:45 -> 02:00) but the rows themselves are equally
spaced (the PV midday centroid sits at the same row of the day all year), so a day here is
simply 96 consecutive rows: day d = rows [96 d, 96 d + 96).

Normalization: every active-power profile is divided by its yearly peak (peak = 1.0); a load's
reactive-power profile is divided by the same active-power peak, so ``p`` and ``q`` keep their
ratio.  Loading the CSVs takes about a second, so the normalized arrays are cached in
``$P2P_COSIM_CACHE`` (default ``~/.cache/p2p-cosim``), keyed by the simbench version.
"""

import datetime as dt
import functools
import importlib.metadata
import importlib.util
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from simulators.paths import cache_root
from simulators.units import STEP_H, STEPS_PER_DAY
from simulators.validation import ConfigError, check_choice, check_finite

SIMBENCH_DATASET = "1-complete_data-mixed-all-0-sw"
LOAD_TYPE_PATTERN = re.compile(r"^[HGL]\d-[A-Z]$")
"""SimBench standard load profiles: H0-* households, G0..G6 commercial, L0..L2 agricultural"""
PV_TYPE_PATTERN = re.compile(r"^PV\d+$")
MIN_PROFILE_PF = 0.8
"""a Q profile is used only if its yearly energy power factor sum(P)/|sum(P + jQ)| reaches this;
SimBench's H0-H and several aggregated G/L profiles imply 0.5-0.77, implausible for one meter,
and those prosumers take Q from ``ProsumerSpec.load_pf`` instead"""
CACHE_FORMAT = 1
"""bump when the normalization or the cached arrays change, so old cache files are ignored"""

TEST_EVERY = 8
"""test days: day-of-year divisible by 8 (45 of 366 days).  8 is coprime to 7, so the test
days walk through every weekday, and they are spread evenly over all seasons"""
VALIDATION_OFFSET = 4
"""validation days: day-of-year = 4 mod TEST_EVERY (46 days, as evenly spread as the test days and
disjoint from them); learners choose recipes, keep-best actors and early stops on these, never
on test days, and do not train on them"""
DEFAULT_TEST_DAY = "2016-06-08"
"""a test day (Wednesday, day 160): a smooth clear-sky PV bell (daily PV energy in the top 8 %
of the year) and a household evening peak at 21-22 h, 1.6 x the daily mean, after the PV fades"""
DEFAULT_TRAIN_DAY = "2016-06-09"
"""a training day (day 161, the day after DEFAULT_TEST_DAY, same season) for checks whose outcome
steers choices, such as the LLM workflow's verification states (prompts are tuned on what they
accept), so that no choice looks at a test day"""
JITTER_RANGE = (0.9, 1.1)
"""per-prosumer load scale factor range, so prosumers sharing a profile type still differ"""


class ProfileBank:
    """The year of normalized profiles: loads (P and Q) and PV, shaped (rows, types)."""

    def __init__(self, start, load_types, load_p, load_q, pv_types, pv):
        """``start``: date of row 0; ``load_p``/``load_q`` (T, n_load) raw kW or normalized,
        ``pv`` (T, n_pv); every profile is checked for NaN/inf and normalized to peak 1."""
        load_p, load_q, pv = (np.array(a, dtype=float) for a in (load_p, load_q, pv))
        _check_tables(load_types, load_p, load_q, pv_types, pv)
        self.load_types = list(load_types)
        """load profile names (SimBench standard load profiles), columns of load_p / load_q"""
        self.pv_types = list(pv_types)
        """PV profile names, columns of pv"""
        p_peak = _peak(load_p, self.load_types)
        self.load_p = _frozen(load_p / p_peak)
        """normalized active power (T, n_load), yearly peak 1.0"""
        self.load_q = _frozen(load_q / p_peak)
        """reactive power (T, n_load) in the scale of the active power"""
        self.pv = _frozen(pv / _peak(pv, self.pv_types))
        """normalized PV availability (T, n_pv), yearly peak 1.0"""
        p_sum, q_sum = self.load_p.sum(0), self.load_q.sum(0)
        has_q = np.abs(self.load_q).max(0) > 0
        self.q_from_profile = _frozen(has_q & (p_sum / np.hypot(p_sum, q_sum) >= MIN_PROFILE_PF))
        """(n_load,) bool: Q taken from the profile (else from the prosumer's power factor)"""
        self.days = pd.date_range(pd.Timestamp(start).normalize(), periods=len(pv) // STEPS_PER_DAY, freq="D")
        """every day of the data (DatetimeIndex); day d is rows [96 d, 96 d + 96)"""
        self._load_col = {n: j for j, n in enumerate(self.load_types)}
        self._pv_col = {n: j for j, n in enumerate(self.pv_types)}

    @classmethod
    def simbench(cls):
        """The SimBench profile year, from the cache file when it is valid (shared, read-only)."""
        return _simbench_bank()

    @property
    def household_types(self):
        """the H0-* (household) subset of load_types"""
        return [n for n in self.load_types if n.startswith("H0-")]

    def day_index(self, date):
        """Index of ``date`` ('YYYY-MM-DD', datetime.date or Timestamp) in ``days``."""
        first, last = self.days[0].date(), self.days[-1].date()
        ts = _parse_date(date, f"available range [{first}, {last}]")
        i = (ts - self.days[0]).days
        if not 0 <= i < len(self.days):
            raise ConfigError(f"date: {date!r} outside the available range [{first}, {last}] of the profile data")
        return i

    def rows(self, date):
        """Row slice of one day."""
        i = self.day_index(date)
        return slice(i * STEPS_PER_DAY, (i + 1) * STEPS_PER_DAY)

    def load_col(self, name):
        return self._load_col[check_choice("load_type", name, self.load_types)]

    def pv_col(self, name):
        return self._pv_col[check_choice("pv_type", name, self.pv_types)]

    def load_day(self, name, date):
        """Normalized (p (96,), q (96,)) of load profile ``name`` on ``date``."""
        j, rows = self.load_col(name), self.rows(date)
        return self.load_p[rows, j].copy(), self.load_q[rows, j].copy()

    def pv_day(self, name, date):
        """Normalized PV availability (96,) of profile ``name`` on ``date``."""
        return self.pv[self.rows(date), self.pv_col(name)].copy()


def _check_tables(load_types, load_p, load_q, pv_types, pv):
    """Shapes agree, whole days, one name per column, every value finite (else ConfigError)."""
    n_rows = len(load_p)
    if (load_p.ndim != 2 or pv.ndim != 2 or n_rows == 0 or n_rows % STEPS_PER_DAY
            or load_q.shape != load_p.shape or len(pv) != n_rows):
        raise ConfigError(f"profiles: shapes P {load_p.shape}, Q {load_q.shape}, PV {pv.shape}; expected 2-D "
                          f"tables with equal row counts, a whole number of {STEPS_PER_DAY}-step days")
    for names, arr in ((load_types, load_p), (pv_types, pv)):
        if len(names) != arr.shape[1]:
            raise ConfigError(f"profiles: {len(names)} names for {arr.shape[1]} columns")
    for suffix, names, arr in (("_pload", load_types, load_p), ("_qload", load_types, load_q), ("", pv_types, pv)):
        for j, name in enumerate(names):
            check_finite(f"profile {name}{suffix}", arr[:, j])


def _peak(arr, names):
    peak = arr.max(axis=0)
    bad = np.flatnonzero(peak <= 0)
    if bad.size:
        raise ConfigError(f"profile {names[bad[0]]}: yearly peak {peak[bad[0]]} must be > 0 to normalize")
    return peak


def _frozen(arr):
    arr.setflags(write=False)  # the bank is shared through lru_cache: nobody may edit it in place
    return arr


def _parse_date(date, allowed):
    if not isinstance(date, (str, dt.date, np.datetime64)):
        raise ConfigError(f"date: {date!r} is not a date (YYYY-MM-DD); {allowed}")
    try:
        ts = pd.Timestamp(date)
    except ValueError:
        ts = pd.NaT
    if pd.isna(ts) or ts != ts.normalize():
        raise ConfigError(f"date: {date!r} is not a whole day (YYYY-MM-DD); {allowed}")
    return ts


# ---- train / validation / test split ----------------------------------------------------------------------
def is_test_day(date):
    """True if ``date`` belongs to the test set (day of year divisible by TEST_EVERY)."""
    return _parse_date(date, "any calendar day").dayofyear % TEST_EVERY == 0


def test_days(bank):
    """The test days of ``bank`` (DatetimeIndex)."""
    return bank.days[bank.days.dayofyear % TEST_EVERY == 0]


test_days.__test__ = False  # a name starting with "test": keep pytest from collecting it where imported


def validation_days(bank):
    """The validation days of ``bank`` (DatetimeIndex): neither test nor training days."""
    return bank.days[bank.days.dayofyear % TEST_EVERY == VALIDATION_OFFSET]


def train_days(bank):
    """Every day of ``bank`` that is neither a test nor a validation day (DatetimeIndex)."""
    rest = bank.days.dayofyear % TEST_EVERY
    return bank.days[(rest != 0) & (rest != VALIDATION_OFFSET)]


# ---- prosumers ---------------------------------------------------------------------------------
@dataclass
class ProfileAssignment:
    """Which profile each prosumer follows; deterministic by seed."""

    load_type: list
    """load profile name per prosumer, e.g. 'H0-B'"""
    pv_type: list
    """PV profile name per prosumer (drawn for all; unused where a prosumer has no PV)"""
    load_scale_jitter: np.ndarray
    """(N,) factor on load_peak_kw, ~U(0.9, 1.1), or 1.0 when jitter is disabled"""


def assign_profiles(specs, seed, bank, household_only=True, jitter=True):
    """Draw a load type, a PV type and a load jitter per prosumer with numpy Generator(seed)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed: {seed!r} must be an integer >= 0")
    pool = bank.household_types if household_only else bank.load_types
    rng = np.random.default_rng(int(seed))
    n = len(specs)
    load_idx = rng.integers(len(pool), size=n)
    pv_idx = rng.integers(len(bank.pv_types), size=n)
    factor = rng.uniform(*JITTER_RANGE, size=n)  # drawn always: the jitter switch leaves the types alone
    return ProfileAssignment(load_type=[pool[i] for i in load_idx], pv_type=[bank.pv_types[i] for i in pv_idx],
                             load_scale_jitter=factor if jitter else np.ones(n))


@dataclass
class DayProfiles:
    """Profiles of N prosumers over consecutive days, shaped (96 * days, N), kW / kVar."""

    date: str
    """first day, 'YYYY-MM-DD'; row 0 is its 00:00-00:15 interval"""
    dates: tuple
    """every day covered, in order"""
    load_kw: np.ndarray
    """household (or commercial) load [kW], > 0 is consumption"""
    load_kvar: np.ndarray
    """reactive power of that load [kVar], > 0 absorbs"""
    pv_avail_kw: np.ndarray
    """PV power available before curtailment [kW], >= 0"""


def prosumer_days(bank, specs, assignment, dates):
    """Scale the assigned profiles onto ``specs`` for consecutive ``dates`` (a list or one date).

    load_kw = p_norm * load_peak_kw * jitter; load_kvar from the Q profile where
    ``bank.q_from_profile``, else load_kw * tan(acos(load_pf)); pv_avail_kw = pv_norm * total kWp.
    """
    dates = [dates] if isinstance(dates, (str, dt.date)) else list(dates)
    if not dates:
        raise ConfigError("dates: empty; give at least one date")
    first = bank.day_index(dates[0])
    for k, d in enumerate(dates):
        if bank.day_index(d) != first + k:
            raise ConfigError(f"dates: {d!r} at position {k} is not the day after {dates[k - 1]!r}; "
                              "dates must be consecutive")
    n = len(specs)
    for field in ("load_type", "pv_type", "load_scale_jitter"):
        if len(getattr(assignment, field)) != n:
            raise ConfigError(f"assignment.{field}: {len(getattr(assignment, field))} entries for {n} prosumers")
    rows = slice(first * STEPS_PER_DAY, (first + len(dates)) * STEPS_PER_DAY)
    li = np.array([bank.load_col(t) for t in assignment.load_type], dtype=int)
    pi = np.array([bank.pv_col(t) for t in assignment.pv_type], dtype=int)
    scale = np.array([s.load_peak_kw for s in specs], dtype=float) * np.asarray(assignment.load_scale_jitter, float)
    tan_phi = np.tan(np.arccos([s.load_pf for s in specs]))
    kwp = np.array([sum(pv.kwp for pv in s.pv) for s in specs], dtype=float)
    p = bank.load_p[rows][:, li]
    q = np.where(bank.q_from_profile[li], bank.load_q[rows][:, li], p * tan_phi)
    out = {"load_kw": p * scale, "load_kvar": q * scale, "pv_avail_kw": bank.pv[rows][:, pi] * kwp}
    for field, arr in out.items():
        check_finite(field, arr)
    days = tuple(str(d.date()) for d in bank.days[first:first + len(dates)])
    return DayProfiles(date=days[0], dates=days, **out)


FORECAST_STEPS = 16
"""steps of the short forecast window: the next 4 hours"""
FORECAST_FIELDS = ("load_fc4h_kw", "pv_fc4h_kw", "load_fc_day_kwh", "pv_fc_day_kwh")
"""the forecast summaries ``forecast_features`` returns, one (rows, N) array each"""


def persistence_days(bank, specs, assignment, dates):
    """What a prosumer can know of the profiles of ``dates`` beforehand: each day's forecast is the
    day before (persistence, the prosumer's own meter data); the bank's first day takes the day after."""
    dates = [dates] if isinstance(dates, (str, dt.date)) else list(dates)
    parts = []
    for d in dates:
        day = dt.date.fromisoformat(str(d))
        prev = day - dt.timedelta(days=1)
        try:
            bank.day_index(prev.isoformat())
        except ConfigError:
            prev = day + dt.timedelta(days=1)
        parts.append(prosumer_days(bank, specs, assignment, [prev.isoformat()]))
    stack = {f: np.concatenate([getattr(p, f) for p in parts]) for f in ("load_kw", "load_kvar", "pv_avail_kw")}
    return DayProfiles(date=parts[0].date, dates=tuple(p.date for p in parts), **stack)


def forecast_features(forecast):
    """Summaries of a day-by-day forecast (DayProfiles, e.g. ``persistence_days``) for each row.

    At step k of a day: ``*_fc4h_kw`` the mean forecast power over the steps after k, at most
    FORECAST_STEPS of them and none past midnight (0 at the day's last step); ``*_fc_day_kwh`` the
    forecast energy of the steps after k up to midnight.  Only the day of the row is used, so the
    values do not depend on how many days a run covers.  Returns {FORECAST_FIELDS: (rows, N)}.
    """
    out = {}
    for prefix, field in (("load", "load_kw"), ("pv", "pv_avail_kw")):
        power = np.asarray(getattr(forecast, field), dtype=float)
        rows, n = power.shape
        if rows % STEPS_PER_DAY:
            raise ConfigError(f"forecast.{field}: {rows} rows, not whole days of {STEPS_PER_DAY}")
        days = power.reshape(rows // STEPS_PER_DAY, STEPS_PER_DAY, n)
        # after[:, k] = sum of the steps k+1 .. 95 of that day
        after = np.concatenate([np.cumsum(days[:, ::-1], axis=1)[:, ::-1][:, 1:], np.zeros((len(days), 1, n))], axis=1)
        k = np.arange(STEPS_PER_DAY)
        end = np.minimum(k + FORECAST_STEPS, STEPS_PER_DAY - 1)  # the window is the steps k+1 .. end
        count = (end - k)[None, :, None]
        window = np.divide(after - after[:, end], count, out=np.zeros_like(after), where=count > 0)
        out[f"{prefix}_fc4h_kw"] = window.reshape(rows, n)
        out[f"{prefix}_fc_day_kwh"] = (after * STEP_H).reshape(rows, n)
    return out


# ---- loading and caching -----------------------------------------------------------------------
def simbench_version():
    return importlib.metadata.version("simbench")


def simbench_folder():
    """Folder of the complete SimBench data set inside the installed package (no import needed)."""
    spec = importlib.util.find_spec("simbench")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("profiles: the simbench package is not installed (pip install simbench)")
    return Path(list(spec.submodule_search_locations)[0]) / "networks" / SIMBENCH_DATASET


def cache_path():
    return cache_root() / f"simbench_profiles_{simbench_version()}_f{CACHE_FORMAT}.npz"


def read_simbench(folder=None):
    """Read the standard load and PV profiles from the SimBench CSVs (about a second)."""
    folder = Path(folder or simbench_folder())
    load_csv, res_csv = folder / "LoadProfile.csv", folder / "RESProfile.csv"
    header = pd.read_csv(load_csv, sep=";", nrows=0).columns
    load_types = sorted({c[:-6] for c in header if c.endswith("_pload") and LOAD_TYPE_PATTERN.match(c[:-6])})
    loads = pd.read_csv(load_csv, sep=";", usecols=["time"] + [f"{n}_{pq}load" for n in load_types for pq in "pq"])
    pv_types = [c for c in pd.read_csv(res_csv, sep=";", nrows=0).columns if PV_TYPE_PATTERN.match(c)]
    res = pd.read_csv(res_csv, sep=";", usecols=["time"] + pv_types)
    if len(res) != len(loads) or not (res["time"].values == loads["time"].values).all():
        raise ConfigError(f"profiles: time columns of {load_csv.name} and {res_csv.name} differ")
    start = pd.to_datetime(loads["time"].iloc[0], format="%d.%m.%Y %H:%M")
    return ProfileBank(start, load_types, loads[[f"{n}_pload" for n in load_types]].to_numpy(),
                       loads[[f"{n}_qload" for n in load_types]].to_numpy(), pv_types, res[pv_types].to_numpy())


def _read_cache(path):
    with np.load(path, allow_pickle=False) as z:
        if str(z["simbench_version"]) != simbench_version() or int(z["format"]) != CACHE_FORMAT:
            return None
        return ProfileBank(str(z["start"]), [str(n) for n in z["load_types"]], z["load_p"], z["load_q"],
                           [str(n) for n in z["pv_types"]], z["pv"])


def _write_cache(path, bank):
    """Write atomically (temp file + rename) so a concurrent reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a shared cache folder should stay readable
        with os.fdopen(fd, "wb") as f:
            np.savez(f, simbench_version=simbench_version(), format=CACHE_FORMAT, start=str(bank.days[0].date()),
                     load_types=bank.load_types, load_p=bank.load_p, load_q=bank.load_q,
                     pv_types=bank.pv_types, pv=bank.pv)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_simbench(use_cache=True):
    """ProfileBank of the SimBench year: from the cache if valid, else from the CSVs (then cached)."""
    path = cache_path()
    if use_cache and path.is_file():
        try:
            bank = _read_cache(path)
            if bank is not None:
                return bank
        except (OSError, ValueError, KeyError, EOFError) as exc:  # corrupt or foreign file: rebuild
            warnings.warn(f"profile cache {path} unreadable ({exc}); rebuilding", stacklevel=2)
    bank = read_simbench()
    if use_cache:
        try:
            _write_cache(path, bank)
        except OSError as exc:  # a read-only home must not stop a run; it only costs a second
            warnings.warn(f"profile cache {path} not written ({exc})", stacklevel=2)
    return bank


@functools.lru_cache(maxsize=1)
def _simbench_bank():
    return load_simbench()
