"""Report of an expert-workflow run: per-stage success rates, repairs, time, acceptance, gaps.

``write_report(results, folder, meta)`` writes report.json (everything, with every stage's
prompt and raw output), report.md (the table below) and experts/<name>.py (the accepted code)
into ``folder``.
"""

import json
from pathlib import Path

STAGE_COLUMNS = ("edit", "retrieve", "code", "execute", "review", "verify")
"""the one-shot workflow's stages (agents/llm/workflow.py)"""
DECOMPOSED_COLUMNS = ("blocks", "repair", "verify")
"""the decomposed workflow's per-prosumer stages (agents/llm/decomposed.py)"""


def stage_columns(results):
    return DECOMPOSED_COLUMNS if any(s.stage == "blocks" for r in results for s in r.stages) else STAGE_COLUMNS


def block_rates(results):
    """Decomposed workflow: blocks right at the first try and after the repairs, over all blocks tried."""
    first = [s for r in results for s in r.stages if s.stage == "block" and s.attempt == 0]
    last = {}
    for r in results:
        for s in r.stages:
            if s.stage == "block":
                last[r.name, s.detail.split(":", 1)[0]] = s.verdict
    return {"blocks": len(first), "first_try": sum(s.verdict == "pass" for s in first),
            "after_repairs": sum(v == "pass" for v in last.values())}


def stage_rates(results, columns=STAGE_COLUMNS):
    """Share of prosumers whose stage passed (at its last attempt), over those where it ran."""
    rates = {}
    for stage in columns:
        ran = [r.verdict(stage) for r in results if r.verdict(stage)]
        rates[stage] = {"ran": len(ran), "passed": ran.count("pass"),
                        "rate": ran.count("pass") / len(ran) if ran else None}
    if columns != STAGE_COLUMNS:
        return rates
    first_code = [r for r in results if r.verdict("code")]
    rates["code_first_try_runs"] = {
        "ran": len(first_code),
        "passed": sum(1 for r in first_code if _first("execute", r) == "pass"),
    }
    return rates


def _first(stage, result):
    logs = [s for s in result.stages if s.stage == stage]
    return logs[0].verdict if logs else ""


def summarize(results, meta=None):
    """Plain-dict summary of a list of ExpertResult."""
    accepted = [r for r in results if r.accepted]
    gaps = [r.verification.get("max_abs_gap") for r in accepted if r.verification.get("max_abs_gap") is not None]
    llm_runs = [r for r in results if r.source != "cache"]
    columns = stage_columns(results)
    return {
        "columns": list(columns),
        "meta": meta or {},
        "prosumers": len(results),
        "accepted": len(accepted),
        "from_cache": sum(r.source == "cache" for r in results),
        "fallback_to_reference": [r.name for r in results if not r.accepted],
        "stage_success": stage_rates(llm_runs, columns),
        **({"block_success": block_rates(llm_runs)} if columns == DECOMPOSED_COLUMNS else {}),
        "repairs_total": sum(r.repairs for r in results),
        "repairs_mean": sum(r.repairs for r in llm_runs) / len(llm_runs) if llm_runs else 0.0,
        "seconds_per_prosumer_mean": sum(r.seconds for r in results) / len(results) if results else 0.0,
        "max_abs_rel_gap_accepted": max(gaps) if gaps else None,
        "per_prosumer": [_row(r, columns) for r in results],
    }


def _row(r, columns):
    return {"name": r.name, "accepted": r.accepted, "source": r.source, "repairs": r.repairs,
            "seconds": round(r.seconds, 2), "max_abs_rel_gap": r.verification.get("max_abs_gap"),
            **{f"stage_{s}": "cached" if r.source == "cache" else r.verdict(s) or "-" for s in columns},
            "reasons": r.verification.get("reasons", [])[:6]}


def markdown(summary):
    """The per-prosumer table plus the stage success rates, as markdown text."""
    columns = summary["columns"]
    head = ["prosumer", *columns, "repairs", "accepted", "model used", "max abs gap", "s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in summary["per_prosumer"]:
        gap = row["max_abs_rel_gap"]
        used = "generated" if row["accepted"] else "reference (fallback)"
        if row["source"] == "cache":
            used = "generated (cache)"
        cells = [row["name"], *(row[f"stage_{s}"] for s in columns), str(row["repairs"]),
                 "yes" if row["accepted"] else "no", used, "-" if gap is None else f"{100 * gap:.3f} %",
                 f"{row['seconds']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| stage | passed / ran |", "|---|---|"]
    for stage, r in summary["stage_success"].items():
        lines.append(f"| {stage} | {r['passed']} / {r['ran']} |")
    if "block_success" in summary:
        b = summary["block_success"]
        lines.append(f"| blocks right at the first try / after repairs | {b['first_try']} / {b['after_repairs']} "
                     f"of {b['blocks']} |")
    meta = summary["meta"]
    lines += ["", f"accepted {summary['accepted']} of {summary['prosumers']} "
                  f"({summary['from_cache']} from the cache); model {meta.get('model_id', '?')}; "
                  f"mean {summary['seconds_per_prosumer_mean']:.1f} s per prosumer; "
                  f"{summary['repairs_total']} repair prompts."]
    rejected = [r for r in summary["per_prosumer"] if not r["accepted"]]
    if rejected:
        lines += ["", "Rejected (the reference model is used instead):"]
        lines += [f"- {r['name']}: {r['reasons'][0] if r['reasons'] else 'stage failure'}" for r in rejected]
    return "\n".join(lines) + "\n"


def write_report(results, folder, meta=None):
    """Write report.json, report.md and experts/<name>.py into ``folder``; returns the summary."""
    folder = Path(folder)
    (folder / "experts").mkdir(parents=True, exist_ok=True)
    summary = summarize(results, meta)
    full = dict(summary, results=[r.to_dict() for r in results])
    (folder / "report.json").write_text(json.dumps(full, indent=1, default=str))
    (folder / "report.md").write_text(markdown(summary))
    for r in results:
        if r.accepted and r.code:
            (folder / "experts" / f"{r.name}.py").write_text(r.code)
    return summary
