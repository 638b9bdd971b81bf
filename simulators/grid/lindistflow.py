"""Linearized DistFlow (Baran & Wu) for radial feeders: path-impedance matrices and flows.

In per unit on the net's base ``sn_mva``, with p, q the demand per bus (load convention),
the squared voltage magnitude is linear in the injections:

    V^2 ≈ V0^2 - 2 (R p + X q),    vm = sqrt(V^2)

where R[k, j] (X[k, j]) sums the resistance (reactance) of the branches that the paths from
the slack to bus k and to bus j share.  The model drops the loss terms of DistFlow, so it
under-estimates the voltage drop under heavy load and over-estimates the rise under heavy
PV.  Transformers are branches with impedance ``vk``/``vkr`` on the net base and an ideal
ratio (off-nominal voltages and taps scale V0^2 and the rows below them by 1/t^2); their
no-load losses are a constant demand at the HV bus.  Line charging is neglected.

Accuracy (tests/test_grid.py asserts it): VM_TOLERANCE_PU = 0.005 p.u., the largest
|vm - vm_AC| on case33bw for its base case (measured 0.0028: 0.9159 here vs 0.9131 AC at
bus 17) and for independent random prosumer demand of -3x..+2x each bus's nominal load
(measured at most 0.0028 over 200 draws, median 0.0007).  The error grows with the square
of the flows: about 0.01 p.u. when every bus at once draws 2x its nominal load (AC minimum
0.84 p.u.) or injects 3x (AC maximum 1.18 p.u.).  SimBench 1-LV-rural3: 0.0007 base case,
at most 0.0013 with random demand.  Angles, losses and loadings are estimates from the
linear (lossless) flows: losses within ~15 % of AC in these cases.
"""

import math
from collections import deque

import numpy as np

from simulators.validation import ConfigError

VM_TOLERANCE_PU = 0.005
"""stated maximum |vm(lindistflow) - vm(AC)| [p.u.] on case33bw, see the module docstring"""
SQRT3 = math.sqrt(3.0)


def _branches(net):
    """In-service branches as rows (bus_a, bus_b, r_pu, x_pu, ratio a->b, shift_deg a->b, kind, row).

    Open line/trafo switches take their branch out; closed bus-bus switches are branches with
    their (usually zero) impedance.  Impedances are per unit on ``net.sn_mva`` and the
    nominal voltage of ``bus_b``'s voltage level.
    """
    sn = float(net.sn_mva)
    vn = net.bus["vn_kv"]
    on_bus = net.bus["in_service"].astype(bool)
    sw = net.switch
    closed = sw["closed"].astype(bool)
    open_lines = set(sw.loc[(sw["et"] == "l") & ~closed, "element"])
    open_trafos = set(sw.loc[(sw["et"] == "t") & ~closed, "element"])
    rows = []
    for i, (idx, ln) in enumerate(net.line.iterrows()):
        if ln["in_service"] and idx not in open_lines and on_bus[ln["from_bus"]] and on_bus[ln["to_bus"]]:
            z_base = vn[ln["from_bus"]] ** 2 / sn
            length = ln["length_km"] / ln["parallel"]
            rows.append((ln["from_bus"], ln["to_bus"], ln["r_ohm_per_km"] * length / z_base,
                         ln["x_ohm_per_km"] * length / z_base, 1.0, 0.0, "line", i))
    for i, (idx, tr) in enumerate(net.trafo.iterrows()):
        if tr["in_service"] and idx not in open_trafos and on_bus[tr["hv_bus"]] and on_bus[tr["lv_bus"]]:
            k_lv = tr["vn_lv_kv"] / vn[tr["lv_bus"]]
            scale = sn / (tr["sn_mva"] * tr["parallel"]) * k_lv ** 2
            z, r = tr["vk_percent"] / 100 * scale, tr["vkr_percent"] / 100 * scale
            tap = 1.0 + np.nan_to_num(tr["tap_pos"] - tr["tap_neutral"]) * np.nan_to_num(tr["tap_step_percent"]) / 100
            ratio = tr["vn_hv_kv"] / vn[tr["hv_bus"]] / k_lv
            ratio = ratio * tap if tr["tap_side"] == "hv" else ratio / tap if tr["tap_side"] == "lv" else ratio
            rows.append((tr["hv_bus"], tr["lv_bus"], r, math.sqrt(max(z * z - r * r, 0.0)), ratio,
                         float(np.nan_to_num(tr["shift_degree"])), "trafo", i))
    for bus, element, z_ohm in sw.loc[(sw["et"] == "b") & closed, ["bus", "element", "z_ohm"]].to_numpy():
        if on_bus[bus] and on_bus[element]:
            rows.append((bus, element, np.nan_to_num(z_ohm) / (vn[element] ** 2 / sn), 0.0, 1.0, 0.0, "switch", -1))
    return rows


class RadialFeeder:
    """Tree of a radial net and its linear DistFlow matrices, per bus position of ``bus_ids``.

    Attributes (n = len(bus_ids)): ``parent`` (n,) position of the upstream bus (-1 at the
    slack and at unsupplied buses), ``order`` BFS order of supplied buses, ``supplied`` (n,)
    bool, ``r_branch``/``x_branch`` (n,) p.u. impedance of the branch into each bus,
    ``subtree`` (n, n) with subtree[k, j] = 1 when bus j is fed through bus k's branch,
    ``r_pu``/``x_pu`` (n, n) path-impedance matrices, ``vm0_pu`` (n,) no-load voltage,
    ``va0_deg`` (n,) no-load angle (slack angle minus transformer shifts),
    ``line_child``/``trafo_child`` position of the bus each line/trafo row feeds (-1: not in tree).
    """

    def __init__(self, net, bus_ids):
        if len(net.ext_grid[net.ext_grid["in_service"].astype(bool)]) != 1 or len(net.gen):
            raise ConfigError("network: lindistflow needs exactly one in-service external grid and no "
                              f"voltage-controlled gens (found {len(net.ext_grid)} ext_grid, {len(net.gen)} gen)")
        self.bus_ids = np.asarray(bus_ids)
        n = len(bus_ids)
        pos = {int(b): i for i, b in enumerate(bus_ids)}
        ext = net.ext_grid[net.ext_grid["in_service"].astype(bool)].iloc[0]
        self.root = pos[int(ext["bus"])]
        rows = _branches(net)
        adjacency = [[] for _ in range(n)]
        for k, (a, b, *_rest) in enumerate(rows):
            adjacency[pos[int(a)]].append((pos[int(b)], k, True))
            adjacency[pos[int(b)]].append((pos[int(a)], k, False))
        self._tree(adjacency, rows, n, bus_ids)
        self._matrices(n, float(ext["vm_pu"]), float(ext["va_degree"]))
        self._ratings(net)

    def _tree(self, adjacency, rows, n, bus_ids):
        """Breadth-first search from the slack; a second path to a bus means a loop."""
        self.parent = np.full(n, -1)
        self.r_branch, self.x_branch = np.zeros(n), np.zeros(n)
        self.ratio, self.shift_deg = np.ones(n), np.zeros(n)
        self.branch_kind, self.branch_row = [""] * n, np.full(n, -1)
        via = np.full(n, -1)
        self.supplied = np.zeros(n, dtype=bool)
        self.supplied[self.root] = True
        order, queue = [self.root], deque([self.root])
        while queue:
            u = queue.popleft()
            for v, k, forward in adjacency[u]:
                if k == via[u]:
                    continue
                if self.supplied[v]:
                    raise ConfigError(f"network: not radial, the in-service branches form a loop through bus "
                                      f"{int(bus_ids[v])}; lindistflow needs a radial feeder")
                _a, _b, r, x, ratio, shift, kind, row = rows[k]
                self.supplied[v], self.parent[v], via[v] = True, u, k
                self.r_branch[v], self.x_branch[v] = r, x
                self.ratio[v] = ratio if forward else 1.0 / ratio
                self.shift_deg[v] = shift if forward else -shift
                self.branch_kind[v], self.branch_row[v] = kind, row
                order.append(v)
                queue.append(v)
        self.order = np.array(order)

    def _matrices(self, n, vm_slack, va_slack):
        """Subtree indicator and path matrices by one pass down and one pass up the tree."""
        self.subtree = np.eye(n)
        for k in self.order[:0:-1]:  # leaves first: a bus's subtree joins its parent's
            self.subtree[self.parent[k]] += self.subtree[k]
        self.subtree[~self.supplied] = 0.0
        self.r_pu, self.x_pu = np.zeros((n, n)), np.zeros((n, n))
        vm0_sq, va0 = np.full(n, np.nan), np.full(n, np.nan)
        vm0_sq[self.root], va0[self.root] = vm_slack ** 2, va_slack
        for k in self.order[1:]:  # root first: a bus's rows extend its parent's
            p, t2 = self.parent[k], self.ratio[k] ** 2
            self.r_pu[k] = self.r_pu[p] / t2 + self.r_branch[k] * self.subtree[k]
            self.x_pu[k] = self.x_pu[p] / t2 + self.x_branch[k] * self.subtree[k]
            vm0_sq[k], va0[k] = vm0_sq[p] / t2, va0[p] - self.shift_deg[k]
        self.vm0_sq = vm0_sq
        self.vm0_pu = np.sqrt(vm0_sq)
        self.va0_deg = va0

    def _ratings(self, net):
        """Which bus each line/trafo feeds, and the factors from p.u. branch current to loading [%]."""
        self.line_child = np.full(len(net.line), -1)
        self.trafo_child = np.full(len(net.trafo), -1)
        for child in self.order[1:]:
            kind, row = self.branch_kind[child], self.branch_row[child]
            if kind == "line":
                self.line_child[row] = child
            elif kind == "trafo":
                self.trafo_child[row] = child
        sn = float(net.sn_mva)
        vn = net.bus.loc[self.bus_ids, "vn_kv"].to_numpy(dtype=float)
        line, trafo = net.line, net.trafo
        ka_per_pu = sn / (SQRT3 * vn[np.maximum(self.parent, 0)])  # current base at the sending end
        imax_ka = (line["max_i_ka"] * line["df"] * line["parallel"]).to_numpy(dtype=float)
        self._line_pct = np.zeros(len(line))
        on = self.line_child >= 0
        self._line_pct[on] = ka_per_pu[self.line_child[on]] / imax_ka[on] * 100.0
        self._trafo_pct = np.zeros(len(trafo))
        on = self.trafo_child >= 0
        self._trafo_pct[on] = sn / (trafo["sn_mva"] * trafo["df"] * trafo["parallel"]).to_numpy(dtype=float)[on] * 100

    def loading_percent(self, current_pu):
        """(line (n_line,), trafo (n_trafo,)) loading [%] from each bus's feeding-branch current [p.u.]."""
        line = self._line_pct * current_pu[np.maximum(self.line_child, 0)]
        trafo = self._trafo_pct * current_pu[np.maximum(self.trafo_child, 0)]
        return line, trafo

    def voltages(self, p_pu, q_pu):
        """(vm_pu, va_deg, ok) for demand p_pu, q_pu (n,) [p.u.]; ok False when V^2 <= 0 somewhere."""
        v_sq = self.vm0_sq - 2.0 * (self.r_pu @ p_pu + self.x_pu @ q_pu)
        ok = bool(np.all(v_sq[self.supplied] > 0.0))
        vm = np.sqrt(np.where(v_sq > 0.0, v_sq, np.nan))
        va = self.va0_deg - np.rad2deg(self.x_pu @ p_pu - self.r_pu @ q_pu)
        return vm, va, ok

    def branch_flows(self, p_pu, q_pu):
        """(P, Q) (n,) [p.u.] lossless flow through the branch into each bus (0 at the slack)."""
        p, q = self.subtree @ p_pu, self.subtree @ q_pu
        p[self.root] = q[self.root] = 0.0
        return p, q

    def linear_vm(self, p_pu, q_pu, sn_mva):
        """First-order model vm ≈ vm_const + dv_dp @ p_mw + dv_dq @ q_mvar around demand (p_pu, q_pu).

        Returns (vm_const (n,), dv_dp (n, n) [p.u./MW], dv_dq (n, n) [p.u./MVar]).
        """
        vm, _, _ = self.voltages(p_pu, q_pu)
        dv_dp = -self.r_pu / (sn_mva * vm[:, None])
        dv_dq = -self.x_pu / (sn_mva * vm[:, None])
        dv_dp[~self.supplied] = dv_dq[~self.supplied] = 0.0
        return vm, dv_dp, dv_dq


def no_load_demand(net, bus_ids):
    """(p_mw, q_mvar) (n,) transformer no-load losses as a constant demand at each HV bus."""
    tr = net.trafo[net.trafo["in_service"].astype(bool)]
    hv = np.searchsorted(bus_ids, tr["hv_bus"].to_numpy())
    parallel = tr["parallel"].to_numpy(dtype=float)
    p_fe = tr["pfe_kw"].to_numpy(dtype=float) / 1000.0 * parallel
    s_0 = tr["i0_percent"].to_numpy(dtype=float) / 100.0 * tr["sn_mva"].to_numpy(dtype=float) * parallel
    q_0 = np.sqrt(np.maximum(s_0 ** 2 - p_fe ** 2, 0.0))
    return np.bincount(hv, p_fe, minlength=len(bus_ids)), np.bincount(hv, q_0, minlength=len(bus_ids))
