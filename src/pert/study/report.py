"""The study's report, generated from its records alone: tables in the paper's form, figures, data, cost.

    pert study report docs/study            # writes docs/study.md and docs/study/*.png
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from pert.study.run import cell_seconds, check_records, plan, read_records

# The paper's figures that the spec quotes (shared/docs/PERLM.md): max (average) over runs.
PAPER = [
    ("CMRC 2018 dev EM / F1", "PERT-base 68.5 (68.1) / 87.2 (87.1); PERT-large 72.2 (71.0) / 89.4 (88.8)"),
    ("Word-order restoration, Wikipedia, F", "PERT-base 82.9; best MLM baseline (MacBERT-base) 80.5"),
]
H100_BF16_DENSE = 989e12


def _flops_per_token(preset: str, seq: int) -> float:
    """A BERT training step: 6 x non-embedding weights (forward + backward; an embedding lookup is not a matrix
    product) plus attention's 6 x seq x hidden per layer."""
    from pert.presets import PRESETS

    layers, hidden, _, intermediate = PRESETS[preset]
    return 6 * layers * (4 * hidden * hidden + 2 * hidden * intermediate) + 6 * layers * seq * hidden


def _load(out: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    from pert.study.config import StudyConfig

    meta = out / "study.json"
    if not meta.is_file():
        raise FileNotFoundError(f"{out}: not a study folder (no study.json); run `pert study run` first")
    meta_data, records = json.loads(meta.read_text("utf-8")), read_records(out)
    check_records(StudyConfig(**meta_data["config"]), records, out)
    for rec in records.values():
        if rec["kind"] == "pretrain":
            rec["curves"] = one_row_per_step(rec["curves"])
    return meta_data, records


def one_row_per_step(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last row of each (split, step), in step order: older records hold the rows a killed session logged after
    its last checkpoint next to those the resumed run logged again."""
    last = {(r["split"], r["step"]): r for r in rows}
    return sorted(last.values(), key=lambda r: r["step"])


def _scores(cfg: dict[str, Any], records: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[int, float]]]:
    """task -> arm -> seed -> main metric on the task's report split."""
    out: dict[str, dict[str, dict[int, float]]] = {t: {a: {} for a in cfg["arms"]} for t in cfg["tasks"]}
    for rec in records.values():
        if rec["kind"] == "finetune":
            split = rec["report_split"]
            if split in rec["scores"]:
                out[rec["task"]][rec["arm"]][rec["seed"]] = rec["scores"][split][rec["main_metric"]]
    return out


def _steady_rate(rec: dict[str, Any]) -> float:
    """Tokens/s of a pre-training as the median of its logged intervals: wall time also counts pauses between
    sittings and other jobs on the machine, the median of the intervals mostly does not."""
    rates = [r["tokens_per_s"] for r in rec["curves"] if r["split"] == "train" and r.get("tokens_per_s")]
    return statistics.median(rates) if rates else rec["summary"]["tokens_per_s"]


def _main_metric(task: str, records: dict[str, dict[str, Any]]) -> str:
    return next((r["main_metric"] for r in records.values() if r.get("task") == task), "main metric")


def _fmt(values: list[float]) -> tuple[str, str]:
    if not values:
        return "–", "–"
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{max(values):.1f} ({mean:.1f})", f"{mean:.1f} ± {sd:.1f} (n={len(values)})"


def figures(cfg: dict[str, Any], records: dict[str, dict[str, Any]], folder: Path) -> list[str]:
    """Pre-training curves and downstream scores (every seed a point); returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    pre = {r["arm"]: r for r in records.values() if r["kind"] == "pretrain"}
    if pre:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        for arm, rec in pre.items():
            ev = [r for r in rec["curves"] if r["split"] == "eval"]
            tr = [r for r in rec["curves"] if r["split"] == "train"]
            obj = rec["config"]["objective"]
            line = ax1.plot([r["step"] for r in ev], [r["loss"] for r in ev], marker="o", ms=3,
                            label=f"{arm} ({obj}), held-out")[0]
            ax1.plot([r["step"] for r in tr], [r["loss"] for r in tr], color=line.get_color(), alpha=0.25, lw=0.8)
            what = "position" if obj == "perlm" else "token"
            ax2.plot([r["step"] for r in ev], [100 * r["acc_shuffled"] for r in ev], marker="o", ms=3,
                     color=line.get_color(), label=f"{arm}: {what} accuracy, changed tokens")
        ax1.set(xlabel="step", ylabel="loss", title="pre-training loss (faint: training)")
        ax2.set(xlabel="step", ylabel="accuracy (%)", title="held-out accuracy on moved / masked tokens")
        for ax in (ax1, ax2):
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(folder / "pretraining.png", dpi=110)
        plt.close(fig)
        written.append("pretraining.png")
    scores = _scores(cfg, records)
    if any(s for arms in scores.values() for s in arms.values()):
        tasks = list(cfg["tasks"])
        fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.6), squeeze=False)
        for ax, task in zip(axes[0], tasks, strict=True):
            arms = list(cfg["arms"])
            for x, arm in enumerate(arms):
                vals = list(scores[task][arm].values())
                xs = [x + 0.08 * (i - (len(vals) - 1) / 2) for i in range(len(vals))]
                ax.scatter(xs, vals, s=22, zorder=3)
                if vals:
                    ax.hlines(statistics.fmean(vals), x - 0.25, x + 0.25, color="k", lw=1)
            ax.set_xticks(range(len(arms)), arms)
            ax.set(title=f"{task} ({cfg['tasks'][task]['report']})", ylabel=_main_metric(task, records))
            ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(folder / "downstream.png", dpi=110)
        plt.close(fig)
        written.append("downstream.png")
    return written


def _base_cost(records: dict[str, dict[str, Any]], base_cfg: Path) -> list[str]:
    """Expected cost of the base-scale config, from this study's measured throughput."""
    import yaml

    if not base_cfg.is_file():
        return []
    b = yaml.safe_load(base_cfg.read_text("utf-8"))
    p = b["pretrain"]
    tokens = p["max_steps"] * p["batch_size"] * p.get("grad_accum", 1) * p["max_seq_len"]
    flops = tokens * _flops_per_token(p["preset"], p["max_seq_len"])
    pretrained = sum(spec.get("init") != "random" for spec in b["arms"].values())
    lines = [f"`{base_cfg.as_posix()}`: PERT-{p['preset']} shape, {p['max_steps']:,} steps of "
             f"{p['batch_size'] * p.get('grad_accum', 1)} x {p['max_seq_len']} tokens = {tokens / 1e9:.2f}B tokens "
             f"per arm, {pretrained} pre-trained arms; about {flops:.2e} FLOPs per arm."]
    pre = [r for r in records.values() if r["kind"] == "pretrain"]
    if pre:
        r = pre[0]
        c = r["config"]
        rate = _steady_rate(r)
        achieved = _flops_per_token(c["preset"], c["max_seq_len"]) * rate
        lines.append(f"This study's {c['preset']} pre-training of {r['arm']} ran at {rate:,.0f} tokens/s (median of "
                     f"its logged intervals), about {achieved / 1e9:.0f} GFLOP/s on the machine that ran it: at that "
                     f"rate the base config would take {flops / achieved / 86400 / 365:.1f} years per arm.")
    hours = [f"about {flops / (H100_BF16_DENSE * mfu) / 3600:.0f} GPU-hours per arm at {mfu:.0%} utilisation"
             for mfu in (0.5, 0.3)]
    lines.append(f"On one H100 (989 TFLOP/s dense bf16): {hours[0]}, {hours[1]} (pert measured 54% of the matrix "
                 "peak at base on CPU, benchmarks/README.md).")
    return lines


def _pretraining_reading(cfg: dict[str, Any], records: dict[str, dict[str, Any]]) -> list[str]:
    """What each pre-trained arm learned on held-out text, next to the trivial baselines on the same tokens."""
    out = []
    for rec in (records[f"pretrain/{arm}"] for arm in cfg["arms"] if f"pretrain/{arm}" in records):
        ev, c = rec["summary"]["eval"], rec["config"]
        if c["objective"] != "perlm":
            out.append(f"- **pre-training, {rec['arm']}** ({c['objective'].upper()}): on held-out text it "
                       f"predicted {ev['acc_shuffled']:.1%} of the masked or replaced tokens over the whole "
                       f"vocabulary, and kept {ev['acc_kept']:.0%} of the unchanged ones.")
            continue
        line = (f"- **pre-training, {rec['arm']}** (PerLM, {c['scope']} scope): on held-out text it put "
                f"{ev['acc_shuffled']:.1%} of the moved tokens' answers at the right position, against ")
        if "own_shuffled" in ev:
            chance = ev["uniform_shuffled"]
            line += (f"{chance:.1%} for a uniform guess over each sequence's tokens and {ev['neighbour_shuffled']:.1%} "
                     f"for the better neighbour guess (the token beside me) on the same tokens; it answered "
                     f"'own position' for {ev['own_shuffled']:.1%} of the moved tokens")
        else:
            chance = 1 / c["max_seq_len"]
            line += (f"{chance:.1%} for a uniform guess over the {c['max_seq_len']} positions (its record predates "
                     "the own-position share and the neighbour baseline)")
        line += f", and {ev['acc_kept']:.0%} of the kept tokens at their own"
        if ev["acc_shuffled"] < 2 * chance:
            line += (": it learned that a token stays where it is and, at this scale, not where a moved token came "
                     "from; what its encoder carries into fine-tuning is what the table measures")
        elif "neighbour_shuffled" in ev:
            line += (": it learned where a moved token came from, beyond adjacency" if ev["acc_shuffled"] >
                     ev["neighbour_shuffled"] else ": above a uniform guess but not above the neighbour guess: it "
                     "learned adjacency, not yet order")
        out.append(line + ".")
    return out


def _paired(scores: dict[str, dict[str, dict[int, float]]], t: str, a: str, b: str) -> tuple[list[float], float | None]:
    """``a − b`` seed by seed on task ``t``, and the larger seed-to-seed sd of the two (None under two seeds)."""
    diffs = [scores[t][a][s] - scores[t][b][s] for s in sorted(set(scores[t][a]) & set(scores[t][b]))]
    spread = max((statistics.stdev(v) for v in (list(scores[t][a].values()), list(scores[t][b].values()))
                  if len(v) > 1), default=None)
    return diffs, spread


def _side(diffs: list[float]) -> str:
    """Whether every seed's difference has the same sign."""
    if diffs and all(d == 0 for d in diffs):
        return "equal in every seed"
    return "yes" if all(d > 0 for d in diffs) or all(d < 0 for d in diffs) else "no"


def _verdict(cfg: dict[str, Any], scores: dict[str, dict[str, dict[int, float]]], a: str, b: str) -> str:
    """One sentence: on which tasks ``a`` is above or below ``b`` in every seed by more than the seed spread."""
    side: dict[str, list[str]] = {"above": [], "below": [], "neither": [], "missing": []}
    for t in cfg["tasks"]:
        diffs, spread = _paired(scores, t, a, b)
        clear = len(diffs) > 1 and spread is not None and abs(statistics.fmean(diffs)) > spread
        side["missing" if not diffs else "neither" if not clear or _side(diffs) != "yes"
             else "above" if diffs[0] > 0 else "below"].append(t)
    n = len(cfg["tasks"])
    if len(side["missing"]) == n:
        return f"**In short**: no task has finished cells of both {a} and {b} yet; nothing to compare."
    parts = [f"{a} is {k} {b} on {len(side[k])} of {n} tasks ({', '.join(side[k])})"
             for k in ("above", "below") if side[k]]
    if side["neither"]:
        k = len(side["neither"])
        parts.append(f"{k} of {n} ({', '.join(side['neither'])}) {'does' if k == 1 else 'do'} not separate them")
    if side["missing"]:
        k = len(side["missing"])
        parts.append(f"{k} of {n} ({', '.join(side['missing'])}) {'has' if k == 1 else 'have'} not run for both yet")
    return ("**In short** (a side counts when it holds in every seed, at least two, by more than the seed-to-seed "
            "spread): " + "; ".join(parts) + ".")


def _reading(cfg: dict[str, Any], scores: dict[str, dict[str, dict[int, float]]], a: str, b: str) -> list[str]:
    """Plain statements computed from the scores, then the limits that hold whatever the scores are."""
    out = []
    floor = [arm for arm in cfg["arms"] if cfg["arms"][arm].get("init") == "random"]
    for t in cfg["tasks"]:
        diffs, spread = _paired(scores, t, a, b)
        if not diffs:
            out.append(f"- **{t}**: not enough finished cells to compare {a} with {b}.")
            continue
        if _side(diffs) == "equal in every seed":
            best = max((v, arm, s) for arm in cfg["arms"] for s, v in scores[t][arm].items())
            tie = next(iter(scores[t][a].values()))
            out.append(f"- **{t}**: every finished cell of every arm scores {tie:.1f}: within this budget no arm "
                       "learned the task, so it cannot tell the arms apart." if best[0] == tie else
                       f"- **{t}**: {a} and {b} score the same in every seed ({tie:.1f}), so the task does not "
                       f"separate them within this budget; the best cell of any arm scores {best[0]:.1f} "
                       f"({best[1]}, seed {best[2]}).")
            continue
        mean = statistics.fmean(diffs)
        line = (f"- **{t}**: {a} − {b} = {mean:+.1f} on average, positive in {sum(d > 0 for d in diffs)} of "
                f"{len(diffs)} seeds")
        if spread is not None:
            line += (f"; the seed-to-seed spread is {spread:.1f}, so the difference is "
                     + ("larger than the noise of fine-tuning" if abs(mean) > spread
                        else "within the noise of fine-tuning"))
        for f in floor:
            if scores[t][f]:
                lift = {arm: statistics.fmean(scores[t][arm].values()) - statistics.fmean(scores[t][f].values())
                        for arm in (a, b) if scores[t][arm]}
                line += "; over no pre-training: " + ", ".join(f"{arm} {v:+.1f}" for arm, v in lift.items())
        out.append(line + ".")
    return out


def _share(ev: dict[str, float], key: str) -> str:
    return f"{100 * ev[key]:.1f}%" if key in ev else "not recorded"


def _precisions(records: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    """arm -> the precisions its cells ran in (realised: the config's auto depends on the machine)."""
    seen: dict[str, set[str]] = {}
    for rec in records.values():
        p = rec["summary"].get("precision") if rec["kind"] == "pretrain" else (
            rec["config"].get("precision") if rec["kind"] == "finetune" else None)
        if p:
            seen.setdefault(rec["arm"], set()).add({"no": "fp32"}.get(p, p))
    return seen


def _limits(records: dict[str, dict[str, Any]]) -> list[str]:
    """The limits that hold whatever the scores are."""
    out = ["Limits, whatever the scores: each arm was pre-trained once (one pre-training seed), so the "
           "variance of pre-training itself is not measured, only that of fine-tuning; the models are tiny and "
           "saw tens of millions of tokens where the paper's saw billions, so differences at this scale may "
           "shrink, vanish or reverse at base scale; fine-tuning budgets are short (the same for every arm), which "
           "favours whichever encoder is easiest to adapt quickly; the word-order task starts from the pre-trained "
           "PerLM pointer head for the PerLM arms and from a fresh one for the others, which is the paper's point "
           "but also an advantage this table does not separate."]
    precisions = _precisions(records)
    if len(set().union(*precisions.values())) > 1:
        out.append("Not every cell ran in the same precision (the config says auto: bf16 autocast on CPUs with "
                   "bf16 instructions, else fp32; the cells ran on more than one machine): "
                   + "; ".join(f"{arm} {', '.join(sorted(p))}" for arm, p in sorted(precisions.items())) + ".")
    rebuilt = _rebuilt(records)
    if rebuilt:
        out.append("Some cells fine-tuned a rebuilt encoder: the arm's pre-training run again with its recorded recipe "
                   "in another work folder (records travel, models do not), accepted because it ended within 2% of "
                   "the recorded held-out loss; it is close to the model the arm's other cells used, not the same "
                   "one: " + "; ".join(rebuilt) + ".")
    return out


def _rebuilt(records: dict[str, dict[str, Any]]) -> list[str]:
    """One phrase per arm whose cells ran on a rebuilt model: which cells, its precision and loss against the record."""
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for rec in sorted(records.values(), key=lambda r: r["cell"]):
        if rec["kind"] == "finetune" and rec.get("rebuilt_model"):
            by_arm.setdefault(rec["arm"], []).append(rec)
    phrases = []
    for arm, recs in sorted(by_arm.items()):
        m = recs[0]["rebuilt_model"]
        phrases.append(f"{arm} ({', '.join(r['cell'].split('/', 2)[2] for r in recs)}): rebuilt in "
                       f"{_fp(m.get('rebuilt_precision'))}, held-out loss {m['rebuilt_loss']:.4f}, recorded "
                       f"{m['recorded_loss']:.4f} in {_fp(m.get('recorded_precision'))}")
    return phrases


def _fp(precision: str | None) -> str:
    return {"no": "fp32", None: "an unrecorded precision"}.get(precision, precision)


def write_report(out: str | Path, md: str | Path | None = None) -> Path:
    """Write the report (default ``OUT.md`` beside the folder) and its figures (inside OUT)."""
    out = Path(out)
    md = Path(md) if md else out.with_suffix(".md")
    meta, records = _load(out)
    cfg = meta["config"]
    from pert.study.config import StudyConfig

    cells = plan(StudyConfig(**cfg))
    done = [c for c in cells if c.id in records]
    figs = figures(cfg, records, out)
    rel = Path(out.name) if md.parent.resolve() == out.parent.resolve() else out
    given = out.as_posix() if not out.is_absolute() else "OUT"  # the commands, as typed from where they ran
    scores = _scores(cfg, records)
    L = [f"# Study: {meta['name']}", "",
         "Generated by `pert study report` from the per-cell records in "
         f"`{rel.as_posix()}/records/`; do not edit by hand.", ""]
    if len(done) < len(cells):
        missing = [c.id for c in cells if c.id not in records]
        L += [f"**Unfinished: {len(done)} of {len(cells)} cells have run.** Every number below comes from the "
              f"finished cells only; `pert study run` continues with `{missing[0]}`"
              + (f" and {len(missing) - 1} more." if len(missing) > 1 else "."), ""]
    arms = list(cfg["arms"])
    L += ["## Results", "",
          "Main metric of each task on its reported split, over fine-tuning seeds: max (average), as the paper "
          "reports; then mean ± standard deviation.", ""]
    header = [f"{t} {cfg['tasks'][t]['report']} ({_main_metric(t, records)})" for t in cfg["tasks"]]
    L += ["| arm: max (avg) | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    for arm in arms:
        L.append(f"| {arm} | " + " | ".join(_fmt(list(scores[t][arm].values()))[0] for t in cfg["tasks"]) + " |")
    L += ["", "| arm: mean ± sd | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    for arm in arms:
        L.append(f"| {arm} | " + " | ".join(_fmt(list(scores[t][arm].values()))[1] for t in cfg["tasks"]) + " |")
    first, others = cfg["compare"][0], cfg["compare"][1:]
    for b in others:
        a = first
        L += ["", f"**{a} − {b}, seed by seed** (same seed: same fine-tuning data order and head initialisation):", "",
              "| task | differences | mean | same sign in every seed |", "|---|---|---|---|"]
        for t in cfg["tasks"]:
            diffs, _ = _paired(scores, t, a, b)
            if not diffs:
                L.append(f"| {t} | – | – | – |")
                continue
            L.append(f"| {t} | {', '.join(f'{d:+.1f}' for d in diffs)} | {statistics.fmean(diffs):+.1f} | "
                     f"{_side(diffs)} ({len(diffs)} seed{'s' if len(diffs) > 1 else ''}) |")
        L += ["", _verdict(cfg, scores, a, b)]
    for f in figs:
        L += ["", f"![{f}]({(rel / f).as_posix()})"]
    L += ["", "## What the numbers show, and what they do not", "", *_pretraining_reading(cfg, records)]
    for b in others:
        L += ["", f"{first} against {b}:", "", *_reading(cfg, scores, first, b)]
    L += [line for limit in _limits(records) for line in ("", limit)]  # a paragraph each
    L += ["", "## Next to the paper", "",
          "The paper's figures for base models pre-trained on 5.4B words (PERT's README and paper); this study's "
          "models are tiny and saw a few tens of millions of tokens, so only the direction of a difference between "
          "arms can be compared, never the level:", ""]
    L += [f"- {k}: {v}" for k, v in PAPER]
    L += ["", "## Data", ""]
    data = records.get("data")
    if data:
        L += ["| corpus source | documents | characters | dropped as panel dev/test text |", "|---|---|---|---|"]
        for src, c in data["corpus"]["sources"].items():
            L.append(f"| `{src}` | {c['documents']:,} | {c['characters']:,} | {c['dropped_documents']:,} documents "
                     f"({c['dropped_characters']:,} characters) |")
        p = data["prepared"]
        L += ["", f"Prepared: {p['documents']:,} documents, {p['tokens']:,} tokens ({cfg['vocab']}). Decontamination: "
              f"a document sharing a run of {data['corpus']['decontaminate_chars']} characters with any of the "
              "panel's dev/test texts (" + ", ".join(f"{t}: {n:,}" for t, n in
                                                    data["corpus"]["evaluation_texts"].items())
              + ") is dropped."]
        if data["wor"]:
            L[-1] += (" Word-order set (People's Daily 1998-01, split by document): "
                      + ", ".join(f"{s} {v['sentences']:,} sentences ({v['corrupted']:,} corrupted)"
                                  for s, v in data["wor"].items()) + ".")
    L += ["", "## Pre-training", "", "| arm | objective | steps | tokens | wall time | tokens/s (median interval) | "
          "precision | held-out loss | held-out accuracy on changed tokens | better neighbour guess (same tokens) | "
          "moved tokens answered 'own position' | selected tokens kept in place (spec 10%; span: one-token units "
          "too) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for arm in arms:
        rec = records.get(f"pretrain/{arm}")
        if rec:
            s, ev = rec["summary"], rec["summary"]["eval"]
            obj = rec["config"]["objective"] + (f" ({rec['config']['scope']})" if rec["config"]["objective"] == "perlm"
                                                else "")
            perlm, precision = rec["config"]["objective"] == "perlm", {"no": "fp32"}.get(s["precision"], s["precision"])
            neighbour, own = (_share(ev, k) if perlm else "–" for k in ("neighbour_shuffled", "own_shuffled"))
            L.append(f"| {arm} | {obj} | {s['steps']:,} | "
                     f"{s['tokens'] / 1e6:.1f}M | {s['seconds'] / 60:.0f} min | {_steady_rate(rec):,.0f} | "
                     f"{precision} | "
                     f"{ev['loss']:.3f} | {100 * ev['acc_shuffled']:.1f}% | {neighbour} | {own} | "
                     f"{100 * ev.get('share_kept', 0):.1f}% |")
        elif not cfg["arms"][arm].get("init") == "random":
            L.append(f"| {arm} | not run yet | | | | | | | | | | |")
    shared = {k: v for k, v in cfg["pretrain"].items()}
    L += ["", "Every pre-trained arm: " + ", ".join(f"{k} {v}" for k, v in shared.items())
          + "; arms differ only in: " + "; ".join(f"{a} {json.dumps(v)}" for a, v in cfg["arms"].items()) + "."]
    if cfg.get("notes"):
        L += ["", "Choices made before any arm ran (from the config):", "", *[f"- {n}" for n in cfg["notes"]]]
    L += ["", "## Fine-tuning", "", "Identical for every arm, fixed in the config before any arm's result was seen:",
          ""]
    for t, spec in cfg["tasks"].items():
        L.append(f"- **{t}** (reported: {spec['report']}): " + ", ".join(f"{k} {v}" for k, v in spec.items()
                                                                         if k != "report"))
    total = sum(cell_seconds(r) for r in records.values())
    vers: dict[str, Counter] = {}
    for r in records.values():
        for k, v in r["versions"].items():
            vers.setdefault(k, Counter())[v] += 1
    n_cells = len(records)
    versions = "; ".join(f"{k} " + ", ".join(v if len(n) == 1 else f"{v} ({c} of {n_cells} cells)"
                                             for v, c in n.most_common()) for k, n in vers.items())
    L += ["", "## Reproduce", "", "```bash",
          f"pert study run {meta.get('source') or 'CONFIG'} --out {given} --work runs/study",
          f"pert study report {given}", "```", "",
          f"Wall time of the finished cells, summed: {total / 3600:.1f} h. Versions: {versions}."]
    base = Path(cfg["base_scale"]) if cfg.get("base_scale") else None
    cost = _base_cost(records, base) if base else []
    if cost:
        L += ["", "## The same study at base scale", "", *[f"- {line}" for line in cost]]
    md.write_text("\n".join(L) + "\n", encoding="utf-8")
    return md
