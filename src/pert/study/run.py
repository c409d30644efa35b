"""Run a study as a plan of cells; every finished cell leaves a record, so a re-run skips what is done.

    pert study run configs/study/perlm-vs-mlm.yaml --out docs/study --work runs/study
    pert study report docs/study

Cells, in order: ``data`` (word-order set, decontaminated corpus, ``pert prepare``), one ``pretrain/ARM`` per
pre-trained arm (resumed from its last checkpoint after an interruption) or ``init/ARM`` for the random
floor, then ``finetune/ARM/TASK/seed-N`` seed by seed, so that an unfinished study is balanced across arms.
Records (``OUT/records/*.json``: config, scores, timings, versions) are small and meant to be committed;
everything heavy lives in the work folder. The same command in another shell adds a worker (see ``run_study``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from pert.study.config import StudyConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cell:
    id: str
    kind: str  # data, pretrain, init, finetune
    arm: str | None = None
    task: str | None = None
    seed: int | None = None

    @property
    def file(self) -> str:
        return self.id.replace("/", "__") + ".json"


def arm_cell(cfg: StudyConfig, arm: str) -> Cell:
    """The cell that makes ``arm``'s model: ``pretrain/ARM``, or ``init/ARM`` for a random floor."""
    kind = "pretrain" if cfg.is_pretrained(arm) else "init"
    return Cell(f"{kind}/{arm}", kind, arm)


def plan(cfg: StudyConfig) -> list[Cell]:
    """Every cell of the study, in the order they run."""
    cells = [Cell("data", "data")]
    for arm in cfg.arms:
        cells.append(arm_cell(cfg, arm))
    for seed in cfg.seeds:
        for task in cfg.tasks:
            for arm in cfg.arms:
                cells.append(Cell(f"finetune/{arm}/{task}/seed-{seed}", "finetune", arm, task, seed))
    return cells


def versions() -> dict[str, str]:
    import torch
    import transformers

    from pert.tasks.loop import _version

    return {"pert": _version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def read_records(out: Path) -> dict[str, dict[str, Any]]:
    """The finished cells' records, by cell id."""
    folder = out / "records"
    records = {}
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            rec = json.loads(f.read_text("utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{f}: not valid JSON ({e}); delete it to run that cell again") from e
        records[rec["cell"]] = rec
    return records


def check_records(cfg: StudyConfig, records: dict[str, dict[str, Any]], out: Path) -> None:
    """Refuse, in one line naming the file and field, a record that does not belong to ``cfg``: a cell outside its
    plan, a recipe other than the config's, or a key that a text rewrite has damaged."""
    cells = {c.id: c for c in plan(cfg)}

    def refuse(rec: dict[str, Any], what: str) -> None:
        name = rec["cell"].replace("/", "__") + ".json" if isinstance(rec.get("cell"), str) else "?"
        raise ValueError(f"{out / 'records' / name}: {what}; it does not belong to study {cfg.name!r} as configured")

    def keys(x: Any) -> list[str]:
        if isinstance(x, dict):
            return [k for k, v in x.items() for k in (k, *keys(v))]
        return [k for v in x for k in keys(v)] if isinstance(x, list) else []

    def same(a: Any, b: Any) -> bool:
        return a == b or (isinstance(a, int | float) and isinstance(b, int | float) and float(a) == float(b))

    for cell_id, rec in records.items():
        if cell_id not in cells:
            refuse(rec, f"cell {cell_id!r} is not in the plan")
        bad = [k for k in keys(rec) if "<work>" in k]
        if bad:
            refuse(rec, f"key {bad[0]!r} holds a rewritten path")
        cell = cells[cell_id]
        if cell.kind == "pretrain":
            want = {**cfg.pretrain, **cfg.arms[cell.arm]}
        elif cell.kind == "finetune":
            want = {k: v for k, v in cfg.finetune_options(cell.task).items() if k not in ("data", "task")}
            want["task"] = cfg.tasks[cell.task].get("task", cell.task)
        else:
            continue
        for k, v in want.items():
            if not same(rec.get("config", {}).get(k), v):
                refuse(rec, f"config field {k!r} is {rec.get('config', {}).get(k)!r}, the study config says {v!r}")


def _portable(obj: Any, work: Path) -> Any:
    """``obj`` with every string that is a path inside the work folder (a path of this machine) rewritten to start
    with ``<work>``: records are committed. Only whole path prefixes are replaced, never a word inside other text."""
    prefixes = sorted({str(work.resolve()), str(work)}, key=len, reverse=True)

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [walk(v) for v in x]
        if isinstance(x, str):
            for prefix in prefixes:
                if x == prefix or x.startswith(prefix.rstrip("/") + "/"):
                    return "<work>" + x[len(prefix.rstrip("/")):]
        return x

    return walk(obj)


def _write_record(out: Path, work: Path, cell: Cell, record: dict[str, Any]) -> None:
    folder = out / "records"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (cell.file + ".tmp")
    tmp.write_text(json.dumps(_portable(record, work), indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(folder / cell.file)


def model_dir(work: Path, arm: str, cfg: StudyConfig) -> Path:
    return work / arm_cell(cfg, arm).kind / arm / "final"


def _run_data(cfg: StudyConfig, work: Path) -> dict[str, Any]:
    from pert.config import build_config
    from pert.corpus.prepare import PrepareConfig, prepare
    from pert.study.corpus import build_corpus, build_wor_set

    needs_wor = "wor:train" in cfg.corpus or any(t["data"] == "wor" for t in cfg.tasks.values())
    wor = build_wor_set(cfg, work) if needs_wor else {"splits": {}}
    corpus = build_corpus(cfg, work)
    manifest = prepare(build_config(PrepareConfig, None, {"out": str(work / "prepared"), "vocab": cfg.vocab,
                                                          "lang": cfg.lang, "inputs": [str(work / "corpus.txt")]}))
    return {"wor": {s: {k: wor["splits"][s][k] for k in ("sentences", "corrupted")} for s in wor["splits"]},
            "corpus": corpus, "prepared": {k: manifest[k] for k in ("documents", "tokens", "characters")}}


def _run_pretrain(cfg: StudyConfig, work: Path, arm: str) -> dict[str, Any]:
    from pert.config import build_config
    from pert.training.checkpoint import latest_checkpoint
    from pert.training.config import PretrainConfig
    from pert.training.loop import pretrain

    out = work / "pretrain" / arm
    values = {**cfg.pretrain, **cfg.arms[arm], "data": str(work / "prepared"), "out": str(out)}
    steps = build_config(PretrainConfig, None, values).max_steps
    summary_file = out / "summary.json"
    summary = json.loads(summary_file.read_text("utf-8")) if summary_file.is_file() else {}
    if summary.get("steps") != steps:  # not finished (a run that finished before its record was written is)
        summary = pretrain(build_config(PretrainConfig, None, {**values, "resume": latest_checkpoint(out) is not None}))
    if summary["steps"] != steps:  # stopped early (SIGTERM, time budget): its checkpoint resumes it next time
        print(f"[study {cfg.name}] pretrain/{arm} stopped at step {summary['steps']} of {steps}; run the same "
              "command again to resume it", file=sys.stderr)
        raise KeyboardInterrupt
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text("utf-8").splitlines()]
    train_cfg = json.loads((out / "train_config.json").read_text("utf-8"))
    return {"config": train_cfg, "summary": summary, "curves": rows}


def _run_init(cfg: StudyConfig, work: Path, arm: str) -> dict[str, Any]:
    import torch

    from pert.convert.hf import save_model_folder
    from pert.corpus.dataset import PreparedCorpus
    from pert.modeling import PertForPreTraining, preset_config

    corpus = PreparedCorpus(work / "prepared")
    preset, seq = cfg.pretrain.get("preset", "base"), cfg.pretrain.get("max_seq_len", 512)
    torch.manual_seed(cfg.pretrain.get("seed", 42))
    model = PertForPreTraining(preset_config(preset, corpus.vocab_size, max(512, seq)))
    save_model_folder(model, corpus.tokenizer(), model_dir(work, arm, cfg),
                      {"objective": None, "steps": 0, "note": "random initialisation (no pre-training)"})
    return {"config": {"preset": preset, "seed": cfg.pretrain.get("seed", 42)},
            "parameters": sum(p.numel() for p in model.parameters())}


def _run_finetune(cfg: StudyConfig, work: Path, cell: Cell) -> dict[str, Any]:
    from pert.config import build_config
    from pert.tasks import FinetuneConfig, finetune
    from pert.training.checkpoint import checkpoint_dirs

    out = work / "finetune" / cell.arm / cell.task / f"seed-{cell.seed}"
    # a cell stopped with a checkpoint (SIGTERM, Ctrl-C, the cell's own saves) continues from it, which ends exactly
    # as an uninterrupted run (tests/test_faults_train.py); one without a checkpoint starts again
    resume = bool(checkpoint_dirs(out / f"seed-{cell.seed}"))
    if out.exists() and not resume:
        shutil.rmtree(out)
    spec = cfg.tasks[cell.task]
    data = str(work / "wor") if spec["data"] == "wor" else spec["data"]
    values = cfg.finetune_options(cell.task, data=data, model=str(model_dir(work, cell.arm, cfg)), out=str(out),
                                  seeds=[cell.seed], model_name=cell.arm, save_model=False, resume=resume)
    result = finetune(build_config(FinetuneConfig, None, values))
    seed = result["seeds"][0]
    record = {"config": {**result["config"], "resume": False},  # a session option: the same cell either way
              "main_metric": result["main_metric"], "report_split": spec["report"],
              "scores": {s: seed[s] for s in ("dev", "test") if s in seed},
              "best_step": seed.get("best_step"), "steps": seed.get("steps"),
              "train_seconds": seed.get("train_seconds"), "resumed": resume}
    rebuilt = model_dir(work, cell.arm, cfg).parent / "rebuilt.json"
    if rebuilt.is_file():  # the encoder is a rebuild of the recorded one, not the model the arm's other cells used
        record["rebuilt_model"] = {k: v for k, v in json.loads(rebuilt.read_text("utf-8")).items() if k != "eval"}
    return record


def cell_seconds(record: dict[str, Any]) -> float:
    """Time a finished cell took over every sitting it ran in (the record's ``seconds`` holds only the sitting that
    finished it): a pre-training's own count; for a fine-tuning, its training time when that is the larger."""
    if record["kind"] == "pretrain":
        return record["summary"]["seconds"]
    return max(record["seconds"], record.get("train_seconds") or 0.0)


def _eta(cells: list[Cell], records: dict[str, dict[str, Any]], todo: list[Cell]) -> str:
    """Remaining time from the mean duration of finished cells of the same kind (and task)."""
    def key(c: Cell) -> tuple:
        return (c.kind, c.task)

    spent: dict[tuple, list[float]] = {}
    for c in cells:
        if c.id in records:
            spent.setdefault(key(c), []).append(cell_seconds(records[c.id]))
    known = [sum(spent[key(c)]) / len(spent[key(c)]) for c in todo if key(c) in spent]
    unknown = sum(key(c) not in spent for c in todo)
    text = f"~{sum(known) / 3600:.1f} h of cell time (shared by the workers)" if known else "unknown"
    return text + (f" + {unknown} cells not yet timed" if unknown else "")


def _ready(cell: Cell, cfg: StudyConfig, records: dict[str, dict[str, Any]]) -> bool:
    """Whether the cells ``cell`` needs are recorded: every cell needs the data, a fine-tuning its arm's model."""
    if cell.kind == "data":
        return True
    if "data" not in records:
        return False
    return cell.kind != "finetune" or arm_cell(cfg, cell.arm).id in records


def _cell_lock(work: Path, cell: Cell) -> Path:
    return work / "cells" / cell.file.removesuffix(".json")


def run_study(cfg: StudyConfig, out: str | Path, work: str | Path, source: str | None = None,
              poll_s: float = 30.0, only: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Run every cell that has no record yet; returns all records. ``source``: the config file, for the report.
    ``only``: shell-style patterns over cell ids (``finetune/perlm/*``); a worker given some runs only the
    matching cells (a model a matching cell needs is rebuilt all the same) and stops when they are done.

    Several workers may run the same study (the same command in another shell, each with its share of the
    cores or its own GPU): a worker holds a lock on the cell it runs, takes the first cell in plan order that
    is free and whose inputs are recorded, and waits (polling every ``poll_s``) while the rest run elsewhere.
    A lock dies with its process, so a killed worker's cell is taken up again."""
    from pert.lock import OutputInUseError, output_lock

    out, work = Path(out), Path(work)
    work.mkdir(parents=True, exist_ok=True)
    check_records(cfg, read_records(out), out)  # records of another config would pass for finished cells
    write_study_config(cfg, out, source)
    cells = plan(cfg)
    chosen = [c for c in cells if not only or any(fnmatchcase(c.id, p) for p in only)]
    if not chosen:
        raise ValueError(f"--cells {' '.join(only)}: no cell of study {cfg.name} matches "
                         f"(cell ids look like {cells[-1].id})")
    waiting = False
    while True:
        records = read_records(out)
        todo = [c for c in chosen if c.id not in records]
        if not todo:
            break
        ran = False
        for cell in (c for c in todo if _ready(c, cfg, records)):
            try:
                with output_lock(_cell_lock(work, cell)):
                    records = read_records(out)
                    if cell.id not in records:  # another worker may have finished it since the scan
                        _run_cell(cfg, out, work, cell, cells, records)
                    ran = True
            except OutputInUseError:
                continue  # another worker runs it
            break  # back to the start of the plan: finished cells may have made earlier ones ready
        if not ran:
            if not waiting:
                print(f"[study {cfg.name}] {len(todo)} cells left, all running in other workers or waiting for "
                      "their results; waiting", file=sys.stderr, flush=True)
            time.sleep(poll_s)
        waiting = not ran
    left = sum(c.id not in records for c in cells)
    done = f"all {len(chosen)} matching cells done ({left} others left)" if left else f"all {len(cells)} cells done"
    print(f"[study {cfg.name}] {done}; records in {out / 'records'}; report: pert study report {out}",
          file=sys.stderr)
    return records


def _run_cell(cfg: StudyConfig, out: Path, work: Path, cell: Cell, cells: list[Cell],
              records: dict[str, dict[str, Any]]) -> None:
    _check_work(cfg, work, cell, records, out)
    todo = [c for c in cells if c.id not in records]
    print(f"[study {cfg.name}] {cell.id}: {len(cells) - len(todo)} of {len(cells)} cells done, "
          f"{len(todo)} to go, estimated {_eta(cells, records, todo)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    if cell.kind == "data":
        result = _run_data(cfg, work)
    elif cell.kind == "pretrain":
        result = _run_pretrain(cfg, work, cell.arm)
    elif cell.kind == "init":
        result = _run_init(cfg, work, cell.arm)
    else:
        result = _run_finetune(cfg, work, cell)
    record = {"cell": cell.id, "kind": cell.kind, "arm": cell.arm, "task": cell.task, "seed": cell.seed,
              "seconds": round(time.perf_counter() - t0, 1),
              "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "versions": versions(), **result}
    _write_record(out, work, cell, record)


def _check_work(cfg: StudyConfig, work: Path, cell: Cell, records: dict[str, dict[str, Any]], out: Path) -> None:
    """A cell about to run needs what finished cells left in the work folder. Records travel (they are committed),
    work folders may not: the data cell is cheap and deterministic, so it is rebuilt and checked against its
    record; a missing pre-trained model is an error naming the way out."""
    if cell.kind != "data" and "data" in records and not (work / "prepared" / "manifest.json").is_file():
        from pert.lock import output_lock

        # one worker rebuilds; another finds the lock taken, leaves its cell and comes back to it
        with output_lock(_cell_lock(work, Cell("data", "data"))):
            if not (work / "prepared" / "manifest.json").is_file():
                _rebuild_data(cfg, work, records, out)
    if cell.kind == "finetune" and not _model_ready(cfg, work, cell.arm, records):
        from pert.lock import output_lock

        maker = arm_cell(cfg, cell.arm)
        with output_lock(_cell_lock(work, maker)):  # one worker rebuilds, as for the data cell
            if not _model_ready(cfg, work, cell.arm, records):
                _rebuild_model(cfg, work, maker, records[maker.id], out)


def _model_ready(cfg: StudyConfig, work: Path, arm: str, records: dict[str, dict[str, Any]]) -> bool:
    """Whether the work folder holds the recorded arm's model: a random floor once saved; a pre-training only when
    it is the recorded run itself or a rebuild that passed its check. A pre-training stopped early still writes
    final/, so its presence alone says nothing."""
    folder = model_dir(work, arm, cfg)
    if not (folder / "config.json").is_file():
        return False
    maker = arm_cell(cfg, arm)
    if maker.kind == "init":
        return True
    summary_file = folder.parent / "summary.json"
    summary = json.loads(summary_file.read_text("utf-8")) if summary_file.is_file() else {}
    return summary == records[maker.id]["summary"] or (folder.parent / "rebuilt.json").is_file()


# a rebuilt pre-training must end at the recorded held-out loss within this share (thread counts and CPUs change
# the order of floating-point sums, so a rerun of the same recipe is close, not bit-identical)
REBUILD_LOSS_TOLERANCE = 0.02


def _rebuild_model(cfg: StudyConfig, work: Path, maker: Cell, record: dict[str, Any], out: Path) -> None:
    """Make a recorded arm's model again in a work folder that lacks it (records travel, work folders may not):
    a random floor is re-drawn from its seed; a pre-training is run again with its recorded recipe and must end
    at the recorded held-out loss. The record itself is not rewritten."""
    print(f"[study {cfg.name}] {work} lacks the {maker.arm} arm's model ({maker.id} is recorded); making it again",
          file=sys.stderr, flush=True)
    if maker.kind == "init":
        again = _run_init(cfg, work, maker.arm)
        if again["parameters"] != record["parameters"]:
            raise ValueError(f"{out / 'records' / maker.file}: the rebuilt random model has {again['parameters']:,} "
                             f"parameters, the record {record['parameters']:,}")
        return
    again = _run_pretrain(cfg, work, maker.arm)
    want, got = record["summary"]["eval"]["loss"], again["summary"]["eval"]["loss"]
    if abs(got - want) > REBUILD_LOSS_TOLERANCE * want:
        shutil.rmtree(work / maker.kind / maker.arm)  # never used in place of the recorded model
        raise ValueError(f"{out / 'records' / maker.file}: the rebuilt {maker.arm} model ends at held-out loss "
                         f"{got:.4f}, the record at {want:.4f}; delete the record to pre-train that arm afresh")
    (work / maker.kind / maker.arm / "rebuilt.json").write_text(json.dumps(
        {"recorded_loss": want, "rebuilt_loss": got, "recorded_precision": record["summary"]["precision"],
         "rebuilt_precision": again["summary"]["precision"], "eval": again["summary"]["eval"]}, indent=1),
        encoding="utf-8")


def _rebuild_data(cfg: StudyConfig, work: Path, records: dict[str, dict[str, Any]], out: Path) -> None:
    print(f"[study {cfg.name}] {work} lacks the data cell's outputs (its record is in {out / 'records'}); "
          "rebuilding them", file=sys.stderr, flush=True)
    rebuilt, recorded = _run_data(cfg, work), {k: records["data"][k] for k in ("wor", "corpus", "prepared")}
    if _portable(rebuilt, work) != recorded:
        raise ValueError(f"{out / 'records' / 'data.json'}: the data rebuilt in {work} differ from the record "
                         "(other source files or versions?); move the records away to run the study afresh")


def write_study_config(cfg: StudyConfig, out: str | Path, source: str | None = None) -> None:
    """Keep the config beside the records (the report reads it from there)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"name": cfg.name, "source": source, "config": dataclasses.asdict(cfg)}
    (out / "study.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False), encoding="utf-8")
