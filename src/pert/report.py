"""Result tables in the paper's format: each score is the maximum over seeds with the average in brackets.

    pert report runs/sst2-pert runs/sst2-bert runs/cola-pert --out table.md

One run folder (written by ``pert finetune``) holds ``results.json``; ``merge_runs`` puts many runs
into one table, models as rows and task/split columns, as the paper's tables do.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = "results.json"


def max_avg(values: Sequence[float]) -> tuple[float, float]:
    """(maximum, mean) of one metric over seeds."""
    if not values:
        raise ValueError("no values to summarise")
    return max(values), statistics.fmean(values)


def cell(values: Sequence[float], digits: int = 1) -> str:
    """``"max (avg)"``, e.g. ``"95.3 (94.8)"``; a single run is just its value."""
    best, avg = max_avg(values)
    if len(values) == 1:
        return f"{best:.{digits}f}"
    return f"{best:.{digits}f} ({avg:.{digits}f})"


def summarize(seed_results: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{split: {metric: {"max", "avg", "values"}}}`` over the seeds that scored that split."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for split in ("dev", "test"):
        runs = [r[split] for r in seed_results if split in r]
        if not runs:
            continue
        out[split] = {}
        for metric in runs[0]:
            values = [float(r[metric]) for r in runs]
            best, avg = max_avg(values)
            out[split][metric] = {"max": best, "avg": avg, "values": values}
    return out


def run_markdown(record: dict[str, Any], seed_results: Sequence[dict[str, Any]],
                 summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The Markdown report of one run: max (avg) table, per-seed values, and the exact config."""
    seeds = [r["seed"] for r in seed_results]
    lines = [f"# {record['task']} on {record['model_name']}", "",
             f"Scores are max (avg) over seeds {', '.join(map(str, seeds))}; "
             f"the main metric is {record['main_metric']} (best checkpoint chosen on dev).", "",
             "| split | metric | max (avg) | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "|---|---|---|" + "---|" * len(seeds)]
    for split, metrics in summary.items():
        for metric, s in metrics.items():
            per_seed = [f"{r[split][metric]:.2f}" if split in r else "-" for r in seed_results]
            lines.append(f"| {split} | {metric} | {cell(s['values'])} | " + " | ".join(per_seed) + " |")
    lines += ["", "| seed | best step | steps | train seconds |", "|---|---|---|---|"]
    lines += [f"| {r['seed']} | {r['best_step']} | {r['steps']} | {r['train_seconds']} |" for r in seed_results]
    lines += ["", "## Config", "", "```json", json.dumps({"task_options": record["task_options"],
                                                            **record["config"]}, indent=2, ensure_ascii=False),
              "```", "", f"Versions: {json.dumps(record['versions'])}", ""]
    return "\n".join(lines)


def write_run_report(out_dir: str | Path, record: dict[str, Any],
                     seed_results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Write ``results.json`` and ``results.md`` into a run folder; returns what results.json holds."""
    out_dir = Path(out_dir)
    summary = summarize(seed_results)
    result = {**record, "seeds": list(seed_results), "summary": summary}
    (out_dir / RESULTS).write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    (out_dir / "results.md").write_text(run_markdown(record, seed_results, summary), encoding="utf-8")
    return result


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run folders (holding results.json) among ``paths`` and their direct sub-folders; a folder named twice
    (``runs/a runs/a/``, ``runs runs/a``) counts once."""
    runs: list[Path] = []
    for p in map(Path, paths):
        if (p / RESULTS).is_file():
            runs.append(p)
        elif p.is_dir():
            found = sorted(q.parent for q in p.glob(f"*/{RESULTS}"))
            if not found:
                raise FileNotFoundError(f"{p}: no {RESULTS} in it or its sub-folders (not a finetune run)")
            runs.extend(found)
        else:
            raise FileNotFoundError(f"{p}: no such run folder")
    seen: set[Path] = set()
    return [r for r in runs if not (r.resolve() in seen or seen.add(r.resolve()))]


def merge_runs(paths: Sequence[str | Path], metric: str | None = None, digits: int = 1) -> tuple[str, dict[str, Any]]:
    """One table over many runs: rows are models, columns ``task (split)``; cells max (avg) of the main
    metric (or ``metric`` where a task has it). Returns (Markdown, JSON-ready dict)."""
    rows: dict[str, dict[str, str]] = {}
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    columns: list[str] = []
    for run in find_runs(paths):
        try:
            res = json.loads((run / RESULTS).read_text("utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{run / RESULTS}: not valid JSON ({e})") from e
        for key in ("task", "model_name", "main_metric", "summary"):
            if key not in res:
                raise ValueError(f"{run / RESULTS}: missing field {key!r}")
        for split, metrics in res["summary"].items():
            name = metric if metric in metrics else res["main_metric"]
            if name not in metrics:
                continue
            col = f"{res['task']} {split} ({name})"
            if col not in columns:
                columns.append(col)
            model = res["model_name"]
            if col in rows.get(model, {}):
                raise ValueError(f"{run}: a second run of {res['task']} for model {model}; report them separately")
            rows.setdefault(model, {})[col] = cell(metrics[name]["values"], digits)
            cells.setdefault(model, {})[col] = {**metrics[name], "run": str(run)}
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for model, r in rows.items():
        lines.append(f"| {model} | " + " | ".join(r.get(c, "-") for c in columns) + " |")
    note = "\nScores: max (avg) over seeds.\n"
    return "\n".join(lines) + "\n" + note, {"columns": columns, "models": cells}
