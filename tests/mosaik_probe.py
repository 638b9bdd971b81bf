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
