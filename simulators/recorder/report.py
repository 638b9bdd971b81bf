"""Summary metrics and the first plots a researcher looks at, computed from a run folder's CSVs."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from simulators.units import STEP_H, V_MAX_PU, V_MIN_PU


def summarize(run_dir):
    """Read the tables of ``run_dir`` and return the summary metrics (JSON-able dict).

    - economic cost: market cost + device cost, total and per prosumer [EUR]
    - voltage violation rate: share of (bus, step) pairs outside [V_MIN_PU, V_MAX_PU] among
      converged steps; steps with any violation; min / max voltage
    - losses [kWh], P2P volume [kWh], grid import / export [kWh]
    - self-sufficiency: 1 - grid import / (household + controllable-load consumption)
    - non-converged power flows (their steps are left out of the voltage metrics)
    """
    run_dir = Path(run_dir)
    pros = pd.read_csv(run_dir / "prosumers.csv")
    market = pd.read_csv(run_dir / "market.csv")
    grid = pd.read_csv(run_dir / "grid.csv")
    feeder = pd.read_csv(run_dir / "feeder.csv")

    converged = feeder.loc[feeder["converged"] == 1, "step"]
    vm = grid.loc[grid["step"].isin(converged), ["step", "vm_pu"]]
    outside = (vm["vm_pu"] < V_MIN_PU) | (vm["vm_pu"] > V_MAX_PU)
    steps_violated = vm.loc[outside, "step"].nunique()
    consumption_kwh = float((pros["load_kw"] + pros["cl_kw"]).sum() * STEP_H)
    grid_buy = float(pros["grid_buy_kwh"].sum())
    per_prosumer = pros.groupby("prosumer", sort=False)["cost_eur"].sum()
    return {
        "steps": int(feeder["step"].nunique()),
        "prosumers": int(pros["prosumer"].nunique()),
        "cost_eur": float(pros["cost_eur"].sum()),
        "market_cost_eur": float(pros["market_cost_eur"].sum()),
        "device_cost_eur": float(pros["device_cost_eur"].sum()),
        "cost_per_prosumer_eur": {k: float(v) for k, v in per_prosumer.items()},
        "voltage_violation_rate": float(outside.mean()) if len(vm) else float("nan"),
        "steps_with_violation": int(steps_violated),
        "steps_with_violation_share": float(steps_violated / max(len(converged), 1)),
        "vm_min_pu": float(vm["vm_pu"].min()) if len(vm) else float("nan"),
        "vm_max_pu": float(vm["vm_pu"].max()) if len(vm) else float("nan"),
        "losses_kwh": float(feeder["losses_mw"].sum(skipna=True) * 1000.0 * STEP_H),
        "p2p_volume_kwh": float(market["traded_kwh"].sum()),
        "grid_import_kwh": grid_buy,
        "grid_export_kwh": float(pros["grid_sell_kwh"].sum()),
        "pv_curtailed_kwh": float(pros["curtailed_kw"].sum() * STEP_H),
        "cl_unserved_kwh": float(pros["cl_unserved_kwh"].sum()),
        "self_sufficiency": float(1.0 - grid_buy / consumption_kwh) if consumption_kwh > 0 else float("nan"),
        "nonconverged_steps": int((feeder["converged"] != 1).sum()),
    }


def write_summary(run_dir, extra=None):
    summary = summarize(run_dir)
    summary.update(extra or {})
    (Path(run_dir) / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def plot_run(run_dir):
    """Voltage envelope, prices and traded volume, battery SoC -> PNGs in ``run_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    grid = pd.read_csv(run_dir / "grid.csv")
    market = pd.read_csv(run_dir / "market.csv")
    pros = pd.read_csv(run_dir / "prosumers.csv")
    hours = lambda steps: np.asarray(steps) * STEP_H

    env = grid.groupby("step")["vm_pu"].agg(["min", "mean", "max"])
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.fill_between(hours(env.index), env["min"], env["max"], alpha=0.3, label="min-max over buses")
    ax.plot(hours(env.index), env["mean"], label="mean")
    for v in (V_MIN_PU, V_MAX_PU):
        ax.axhline(v, color="red", ls="--", lw=1)
    ax.set(xlabel="hour of run", ylabel="Vm [p.u.]", title="Voltage envelope")
    ax.legend(loc="best")
    save_figure(fig, run_dir / "voltage_envelope.png")

    fig, ax = plt.subplots(figsize=(8, 4))
    t = hours(market["step"])
    for col, label in (("tariff_buy_eur_per_kwh", "retail tariff"), ("tariff_sell_eur_per_kwh", "feed-in tariff"),
                       ("price_buy_eur_per_kwh", "P2P buy"), ("price_sell_eur_per_kwh", "P2P sell")):
        ax.step(t, market[col], where="post", label=label, ls="--" if "tariff" in col else "-")
    ax.set(xlabel="hour of run", ylabel="price [EUR/kWh]", title="Prices and P2P volume")
    ax2 = ax.twinx()
    ax2.bar(t, market["traded_kwh"], width=STEP_H, alpha=0.25, color="gray", align="edge", label="traded")
    ax2.set_ylabel("traded [kWh]")
    ax.legend(loc="upper left", fontsize=8)
    save_figure(fig, run_dir / "prices_volume.png")

    fig, ax = plt.subplots(figsize=(8, 4))
    soc = pros.pivot(index="step", columns="prosumer", values="soc_kwh")
    capacity = battery_capacity_kwh(json.loads((run_dir / "config.json").read_text()))
    soc = soc.loc[:, [capacity.get(name, 0.0) > 0 for name in soc.columns]]
    if soc.shape[1]:
        ax.plot(hours(soc.index), 100 * soc.values / np.array([capacity[c] for c in soc.columns]), lw=0.8, alpha=0.7)
    ax.set(xlabel="hour of run", ylabel="SoC [% of capacity]", ylim=(0, 100),
           title=f"Battery SoC ({soc.shape[1]} prosumers with batteries)")
    save_figure(fig, run_dir / "battery_soc.png")


def battery_capacity_kwh(config):
    """Prosumer name -> total battery capacity [kWh], from the specs saved in a run's config.json."""
    return {s["name"]: float(sum(b["capacity_kwh"] for b in s.get("batteries", [])))
            for s in config.get("prosumer_specs", [])}


def save_figure(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
