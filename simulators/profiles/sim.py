"""mosaik adapter for prosumer profiles: a thin layer over ``simulators.profiles.data``.

One ``create`` call makes one entity per prosumer spec and precomputes their profiles with
``prosumer_days`` (so mosaik runs and the training environment see identical numbers)::

    profiles = world.start("Profiles", step_size=900)
    ents = profiles.ProsumerProfile.create(n, specs=[s.to_dict() for s in specs],
                                           dates=["2016-06-08"], seed=0)

Every parameter is JSON, so the simulator also runs out of process
(``python -m simulators.profiles.sim HOST:PORT``).  Time 0 is 00:00 of the first date; each
step serves the values of the 15-minute interval that contains the current time (zero-order
hold, so any step size works).  Outputs are the current values and the prosumer's persistence
forecast of the rest of the day (yesterday's same hours, ``forecast_features``), never the truth ahead.
"""

import math

import mosaik_api_v3

from simulators.attrs import check_unknown, meta
from simulators.profiles.data import ProfileBank, assign_profiles, forecast_features, persistence_days, prosumer_days
from simulators.prosumer.devices import load_device_modules
from simulators.prosumer.spec import spec_from_dict
from simulators.tables import PROFILE, PROFILES_SIM
from simulators.units import STEP_S
from simulators.validation import ConfigError

META = meta(PROFILES_SIM)


class ProfileSim(mosaik_api_v3.Simulator):
    def __init__(self):
        super().__init__(META)
        self.entities = {}  # eid -> ({field: (rows, N) array}, column)
        self.n_rows = None
        self.row = 0

    def init(self, sid, time_resolution=1.0, step_size=STEP_S, device_modules=(), **unknown):
        """See simulators/tables.py PROFILES_SIM.init (step_size in mosaik time units)."""
        check_unknown("Profiles init", unknown, PROFILES_SIM.init)
        load_device_modules(device_modules)
        if not isinstance(step_size, int) or step_size <= 0:
            raise ConfigError(f"step_size: {step_size!r} must be a positive integer")
        self.time_resolution = float(time_resolution)
        self.step_size = step_size
        self.bank = ProfileBank.simbench()
        return self.meta

    def create(self, num, model, specs=None, dates=None, seed=0, household_only=True, jitter=True, **unknown):
        """See simulators/tables.py PROFILE.params: ``specs`` one ProsumerSpec dict per entity,
        ``dates`` consecutive 'YYYY-MM-DD'."""
        check_unknown("ProsumerProfile create", unknown, PROFILE.params)
        for name, value in (("specs", specs), ("dates", dates)):
            if not isinstance(value, (list, tuple)) or not value:
                raise ConfigError(f"{name}: {value!r} must be a non-empty list (see simulators/tables.py PROFILE)")
        if len(specs) != num:
            raise ConfigError(f"specs: {len(specs)} prosumer specs for {num} entities")
        specs = [spec_from_dict(raw, i) for i, raw in enumerate(specs)]
        assignment = assign_profiles(specs, seed, self.bank, household_only=household_only, jitter=jitter)
        days = prosumer_days(self.bank, specs, assignment, dates)
        fc = forecast_features(persistence_days(self.bank, specs, assignment, dates))
        days = {f: getattr(days, f) for f in ("load_kw", "load_kvar", "pv_avail_kw")} | fc  # field -> (rows, N)
        rows = len(days["load_kw"])
        if self.n_rows not in (None, rows):
            raise ConfigError(f"dates: {list(dates)} give {rows} steps, earlier entities have {self.n_rows}")
        self.n_rows = rows
        entities = []
        for col, spec in enumerate(specs):
            if spec.name in self.entities:
                raise ConfigError(f"specs[{col}].name: {spec.name!r} already has a profile entity")
            self.entities[spec.name] = (days, col)
            entities.append({"eid": spec.name, "type": model})
        return entities

    def step(self, time, inputs, max_advance):
        # the 15-minute interval holding this time; the epsilon guards float time resolutions
        row = math.floor(time * self.time_resolution / STEP_S + 1e-9)
        if self.n_rows is not None and row >= self.n_rows:
            raise ConfigError(f"dates: time {time} is profile step {row}, past the last of {self.n_rows} "
                              "steps; give more dates or run to an earlier 'until'")
        self.row = row
        return time + self.step_size

    def get_data(self, outputs):
        data, rows = {}, {}  # rows: id(days) -> attr -> this step's values as a list (built once)
        for eid, attrs in outputs.items():
            days, col = self.entities[eid]
            if id(days) not in rows:
                rows[id(days)] = {a.name: (days[a.field][self.row] * a.factor).tolist()
                                  for a in PROFILE.outputs}
            values = rows[id(days)]
            data[eid] = {attr: values[attr][col] for attr in attrs}
        return data


def main():
    return mosaik_api_v3.start_simulation(ProfileSim())


if __name__ == "__main__":
    main()
