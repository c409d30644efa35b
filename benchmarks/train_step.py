"""Pre-training step throughput: pert's PerLM step against Hugging Face ``BertForMaskedLM``, side by side.

    python benchmarks/train_step.py                       # tiny:128, base:128, base:512; auto precision
    python benchmarks/train_step.py --shapes tiny:128:32 --precisions fp32 bf16 --steps 10

For each shape (preset:seq_len:batch) and precision, one process times, on the same English Wikipedia text
and bert-base-uncased vocabulary:

- **pert**: ``pert.training.loop.pretrain`` itself (data loader, PerLM corruption, model, loss, clipping,
  AdamW, schedule, logging), read from its own per-interval tokens/s after a warm-up interval;
- **hf-mlm**: ``BertForMaskedLM`` of the same shape fed by
  ``DataCollatorForLanguageModeling(whole_word_mask=True)`` over ``run_mlm.py``-style grouped blocks, with
  the same optimizer, clipping and autocast;
- **encoder**: a bare ``BertModel`` step (same shape, pre-built inputs, a trivial loss): the ceiling;

and prints tokens/s, the ratios pert/hf-mlm and pert/encoder, and model FLOP utilisation against a
matrix-product peak measured in the same run at the same precision.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from transformers import BertConfig, BertForMaskedLM, BertModel, BertTokenizerFast, DataCollatorForLanguageModeling

from pert.corpus.prepare import PrepareConfig, prepare
from pert.hardware import bf16_supported
from pert.modeling import PRESETS
from pert.training.config import PretrainConfig
from pert.training.loop import pretrain

ROOT = Path(__file__).resolve().parents[1]


def wiki_documents(root: Path, max_chars: int) -> list[str]:
    """Paragraphs of the English Wikipedia sample (WikiExtractor files), at least 200 characters each."""
    docs, total = [], 0
    for path in sorted((root / "en" / "enwiki-extract-sample").rglob("wiki_*")):
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if len(line) >= 200 and not line.startswith("<"):
                docs.append(line)
                total += len(line)
                if total >= max_chars:
                    return docs
    if not docs:
        raise FileNotFoundError(f"no text under {root / 'en' / 'enwiki-extract-sample'}")
    return docs


def matmul_peak(dtype: torch.dtype, n: int = 2048, seconds: float = 3.0) -> float:
    """Best FLOP/s of an n x n matrix product in ``dtype`` over a few seconds."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    best, t_end = 0.0, time.perf_counter() + seconds
    a @ b
    while time.perf_counter() < t_end:
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


def encoder_flops(cfg: BertConfig, seq: int) -> float:
    """Training FLOPs per token of the encoder: 3 x (matrix products + attention scores and values)."""
    h, layers = cfg.hidden_size, cfg.num_hidden_layers
    per_layer = 2 * (4 * h * h + 2 * h * cfg.intermediate_size) + 2 * 2 * seq * h
    return 3.0 * layers * per_layer


def mlm_head_flops(cfg: BertConfig) -> float:
    """BertForMaskedLM scores the whole vocabulary at every position: transform + decoder."""
    return 3.0 * 2 * (cfg.hidden_size ** 2 + cfg.hidden_size * cfg.vocab_size)


def perlm_head_flops(cfg: BertConfig, seq: int, selected: float = 0.15) -> float:
    """The PerLM head works on the selected tokens only: transform + scores against the sequence."""
    return 3.0 * 2 * selected * (cfg.hidden_size ** 2 + cfg.hidden_size * seq)


def autocast(precision: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


def timed(step, warmup: int, steps: int) -> float:
    """Seconds per step after ``warmup`` untimed steps."""
    for _ in range(warmup):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / steps


def hf_mlm(cfg: BertConfig, tokenizer, docs: list[str], seq: int, batch: int, precision: str,
           warmup: int, steps: int) -> float:
    """tokens/s of BertForMaskedLM + the whole-word collator (run_mlm.py's tokenise-then-group pipeline)."""
    enc = tokenizer(docs, return_offsets_mapping=True, return_special_tokens_mask=True)
    fields = ("input_ids", "offset_mapping", "special_tokens_mask", "attention_mask", "token_type_ids")
    flat = {k: [x for row in enc[k] for x in row] for k in fields}
    n_blocks = len(flat["input_ids"]) // seq
    blocks = [{k: flat[k][i * seq:(i + 1) * seq] for k in fields} for i in range(n_blocks)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, whole_word_mask=True)
    loader = torch.utils.data.DataLoader(blocks, batch_size=batch, shuffle=True, collate_fn=collator,
                                         drop_last=True)
    it = iter(loader)
    torch.manual_seed(0)
    model = BertForMaskedLM(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, eps=1e-6, weight_decay=0.01)

    def step() -> None:
        nonlocal it
        try:
            b = next(it)
        except StopIteration:
            it = iter(loader)
            b = next(it)
        with autocast(precision):
            loss = model(**b).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return batch * seq / timed(step, warmup, steps)


def bare_encoder(cfg: BertConfig, seq: int, batch: int, precision: str, warmup: int, steps: int) -> float:
    """tokens/s of a BertModel step with pre-built inputs and a trivial loss: no data, no head."""
    torch.manual_seed(0)
    model = BertModel(cfg, add_pooling_layer=False).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, eps=1e-6, weight_decay=0.01)
    ids = torch.randint(1000, cfg.vocab_size, (batch, seq))

    def step() -> None:
        with autocast(precision):
            loss = model(input_ids=ids).last_hidden_state.float().square().mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return batch * seq / timed(step, warmup, steps)


def adamw_ms(cfg: BertConfig, repeats: int = 5) -> dict[str, float]:
    """Milliseconds per AdamW update over a BertModel's parameters: PyTorch's default loop, foreach, fused."""
    params = list(BertModel(cfg, add_pooling_layer=False).parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    out = {}
    for name, kw in (("default", {}), ("foreach", {"foreach": True}), ("fused", {"fused": True})):
        opt = torch.optim.AdamW(params, lr=1e-4, **kw)
        out[name] = 1000 * timed(opt.step, 1, repeats)
    return out


def pert_perlm(prepared: Path, preset: str, seq: int, batch: int, precision: str, warmup: int, steps: int,
               workers: int, compile: bool = False) -> tuple[float, float]:
    """(tokens/s, final loss) of ``pretrain`` itself, from its per-interval log after the first interval."""
    with tempfile.TemporaryDirectory() as out:
        summary = pretrain(PretrainConfig(
            data=str(prepared), out=out, preset=preset, max_seq_len=seq, batch_size=batch,
            max_steps=warmup + steps, log_every=warmup, eval_every=0, save_every=0, eval_sequences=batch,
            num_workers=workers, precision=precision, warmup_steps=1, compile=compile))
        rows = [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    rates = [r["tokens_per_s"] for r in rows if r["split"] == "train"][1:]
    return len(rates) / sum(1 / r for r in rates), summary["final_train"]["loss"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--shapes", nargs="+", default=["tiny:128:32", "base:128:8", "base:512:2"],
                   help="preset:seq_len:batch")
    p.add_argument("--precisions", nargs="+", default=None,
                   help="bf16 and/or fp32 (default: bf16 where the CPU has it, and fp32)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=9, help="timed steps (a multiple of --warmup)")
    p.add_argument("--workers", type=int, default=1, help="pert DataLoader workers")
    p.add_argument("--skip", nargs="*", default=[], choices=["hf-mlm", "encoder"])
    p.add_argument("--compile", action="store_true", help="also time pert with --compile (torch.compile)")
    args = p.parse_args(argv)
    precisions = args.precisions or (["bf16", "fp32"] if bf16_supported() else ["fp32"])

    vocab_dir = args.data_root / "vocab" / "bert-base-uncased"
    tokenizer = BertTokenizerFast.from_pretrained(vocab_dir)
    docs = wiki_documents(args.data_root, 3_000_000)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(docs)} Wikipedia paragraphs; "
          f"vocabulary {len(tokenizer)}")
    peaks = {pr: matmul_peak(torch.bfloat16 if pr == "bf16" else torch.float32) for pr in precisions}
    print("matrix-product peak: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items()))

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "wiki.txt"
        corpus.write_text("\n".join(docs) + "\n", encoding="utf-8")
        prepared = Path(tmp) / "prepared"
        prepare(PrepareConfig(out=str(prepared), vocab=str(vocab_dir), lang="en", inputs=[str(corpus)]))
        for shape in args.shapes:
            preset, seq, batch = re.fullmatch(r"(\w+):(\d+):(\d+)", shape).groups()
            seq, batch = int(seq), int(batch)
            layers, hidden, heads, intermediate = PRESETS[preset]
            cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                             num_attention_heads=heads, intermediate_size=intermediate)
            for pr in precisions:
                row = {"shape": f"{preset} {layers}/{hidden} seq {seq} x {batch}", "precision": pr,
                       "steps": args.warmup + args.steps}
                row["pert"], loss = pert_perlm(prepared, preset, seq, batch, pr, args.warmup, args.steps,
                                               args.workers)
                row["loss"] = loss
                if args.compile:
                    row["pert compiled"], _ = pert_perlm(prepared, preset, seq, batch, pr, args.warmup, args.steps,
                                                         args.workers, compile=True)
                if "hf-mlm" not in args.skip:
                    row["hf-mlm"] = hf_mlm(cfg, tokenizer, docs, seq, batch, pr, args.warmup, args.steps)
                if "encoder" not in args.skip:
                    row["encoder"] = bare_encoder(cfg, seq, batch, pr, args.warmup, args.steps)
                enc = encoder_flops(cfg, seq)
                row["mfu pert"] = row["pert"] * (enc + perlm_head_flops(cfg, seq)) / peaks[pr]
                if "hf-mlm" in row:
                    row["mfu hf"] = row["hf-mlm"] * (enc + mlm_head_flops(cfg)) / peaks[pr]
                results.append(row)
                print(_format(row), flush=True)
            ms = adamw_ms(cfg)
            print(f"AdamW update, {preset} parameters: " + ", ".join(f"{k} {v:.0f} ms" for k, v in ms.items())
                  + f" (fused {ms['default'] / ms['fused']:.1f}x faster than the default)", flush=True)
    print("\n| shape | precision | pert tok/s | HF MLM tok/s | encoder tok/s | pert/HF | pert/encoder "
          "| MFU pert | MFU HF | pert loss |\n|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['shape']} | {r['precision']} | {r['pert']:.0f} | {r.get('hf-mlm', 0):.0f} | "
              f"{r.get('encoder', 0):.0f} | {_ratio(r, 'hf-mlm')} | {_ratio(r, 'encoder')} | "
              f"{r['mfu pert']:.0%} | {r.get('mfu hf', 0):.0%} | {r['loss']:.3f} |")
    by = {(r["shape"], r["precision"]): r["pert"] for r in results}
    for shape in dict.fromkeys(r["shape"] for r in results):
        if (shape, "bf16") in by and (shape, "fp32") in by:
            print(f"pert bf16 / fp32 at {shape}: {by[shape, 'bf16'] / by[shape, 'fp32']:.2f}x")


def _ratio(row: dict, key: str) -> str:
    return f"{row['pert'] / row[key]:.2f}x" if key in row else "-"


def _format(row: dict) -> str:
    parts = [f"{k} {v:.0f} tok/s" for k, v in row.items() if k in ("pert", "pert compiled", "hf-mlm", "encoder")]
    return (f"{row['shape']}, {row['precision']}: " + ", ".join(parts)
            + f"; pert/HF {_ratio(row, 'hf-mlm')}, pert/encoder {_ratio(row, 'encoder')}; "
            + f"MFU pert {row['mfu pert']:.0%}; pert loss after {row['steps']} steps {row['loss']:.3f}")


if __name__ == "__main__":
    sys.exit(main())
