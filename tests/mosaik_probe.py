"""A mosaik sink for tests: records every input it receives, per time step."""

import mosaik_api_v3

from simulators.units import STEP_S


class Collector(mosaik_api_v3.Simulator):
    """Model ``Collector``, one entity ``c``; ``Collector.seen[time]`` holds its raw inputs
    (attr -> {source full id -> value}).  Reset ``seen`` before each world."""

    seen = {}

    def __init__(self):
        super().__init__({"api_version": "3.0", "type": "time-based",
                          "models": {"Collector": {"public": True, "params": [], "attrs": [],
                                                   "any_inputs": True}}})

    def init(self, sid, time_resolution=1.0):
        return self.meta

    def create(self, num, model):
        return [{"eid": "c", "type": model}]

    def step(self, time, inputs, max_advance):
        Collector.seen[time] = inputs.get("c", {})
        return time + STEP_S


class Feed(mosaik_api_v3.Simulator):
    """Model ``Feed``: one entity ``f`` serving ``Feed.values[attr]`` (a value, or a list with
    one value per step) for every attribute of ``Feed.attrs``.  Set both before each world."""

    attrs = ()
    values = {}

    def __init__(self):
        super().__init__({"api_version": "3.0", "type": "time-based",
                          "models": {"Feed": {"public": True, "params": [], "attrs": list(Feed.attrs)}}})

    def init(self, sid, time_resolution=1.0):
        return self.meta

    def create(self, num, model):
        return [{"eid": "f", "type": model}]

    def step(self, time, inputs, max_advance):
        self.k = time // STEP_S
        return time + STEP_S

    def get_data(self, outputs):
        def value(v):
            return v[self.k] if isinstance(v, list) else v
        return {eid: {a: value(Feed.values[a]) for a in attrs} for eid, attrs in outputs.items()}
