"""Restore the word order of sentences with a fine-tuned WOR model: ``restore(model, texts)``.

    from pert.wor.restore import restore
    restore("runs/wor/seed-1/best", ["我们今天北京去开会。"])   # -> ["我们今天去北京开会。"]

The model scores, for every position, where in the input the token that belongs there stands; an
assignment solver turns the scores into a permutation of the input tokens, and the text is rebuilt from
the input's own characters (``pert.wor.decode.render``), so the output holds exactly the input's
characters, reordered.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pert.runtime import batch_tokens, length_batches
from pert.wor.decode import decode_batch, moved_input_spans, moved_spans, render

log = logging.getLogger(__name__)


@dataclass
class Restoration:
    """A restored sentence, its tokens in output order, the character spans (in ``text``) that moved, and the
    spans of the input sentence whose tokens were moved."""

    text: str
    tokens: list[str]
    moved: list[tuple[int, int]] = field(default_factory=list)
    input_moved: list[tuple[int, int]] = field(default_factory=list)


class Restorer:
    """A WOR model folder loaded once for many calls."""

    def __init__(self, model_dir: str | Path, device: str | None = "auto", batch_size: int = 32,
                 max_seq_len: int | None = None, precision: str | None = "auto", runtime: str | None = None,
                 revision: str | None = None):
        """A folder (or Hub id) fine-tuned with ``pert finetune --task wor``; others are refused.

        Unset ``max_seq_len`` and ``precision`` come from the folder's record of its fine-tuning.
        ``precision``: auto (the record's, where the device runs it well, else fp32),
        fp32 (exact), or bf16/fp16 autocast (faster where the hardware has it; a near tie
        between two orders may then fall the other way). ``runtime``: ``torch``, ``onnx`` for a folder
        from ``pert export onnx`` (CPU, the export's precision), or ``auto``/None: by folder, and on a CPU at
        precision auto a checked int8 export beside the folder (``pert.runtime.checked_export``)."""
        from pert.models import open_model

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        opened = open_model(model_dir, revision=revision, device=device, precision=precision, runtime=runtime,
                            task="wor", require_task=True, export="wor")
        self.model_dir, self.runtime, self.device = opened.path, opened.runtime, opened.device
        self.tokenizer, info, precision = opened.tokenizer, opened.training, opened.precision
        self.model = opened.pretraining_model("perlm") if self.runtime == "torch" else None
        self.onnx = opened.onnx("wor") if self.runtime == "onnx" else None
        limit = int(opened.config.max_position_embeddings)
        self.max_seq_len = min(max_seq_len or info.get("max_seq_len") or limit, limit)
        self.batch_size = batch_size
        self.precision = precision

    @torch.inference_mode()
    def restore(self, texts: Sequence[str]) -> list[Restoration]:
        """Restorations of ``texts``, in order. Tokens past ``max_seq_len - 2`` are kept where they are.

        Texts run in batches of similar length (``pert.runtime.length_batches``), then go back to input order.
        """
        from pert.hardware import autocast

        tok = self.tokenizer
        for t in texts:
            if not isinstance(t, str):
                raise ValueError(f"restore: expected strings, got {type(t).__name__}")
        texts = list(texts)
        if not texts:
            return []
        enc = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
        keep = self.max_seq_len - 2
        if any(len(x) > keep for x in enc["input_ids"]):
            log.warning("texts over %d tokens: only their first %d tokens are restored", keep, keep)
        ids = [x[:keep] for x in enc["input_ids"]]
        out: list[Restoration | None] = [None] * len(texts)
        budget = batch_tokens(self.runtime, self.device)
        for batch in length_batches([len(x) + 2 for x in ids], self.batch_size, max_tokens=budget):
            width = max(len(ids[i]) for i in batch) + 2
            input_ids = torch.full((len(batch), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for b, i in enumerate(batch):
                input_ids[b, :len(ids[i]) + 2] = torch.tensor([tok.cls_token_id, *ids[i], tok.sep_token_id])
                mask[b, :len(ids[i]) + 2] = 1
            if self.onnx is not None:
                logits = torch.from_numpy(self.onnx.run({"input_ids": input_ids, "attention_mask": mask})[0])
            else:
                with autocast(self.device, self.precision):
                    logits = self.model.position_logits(input_ids.to(self.device), mask.to(self.device))
            perms = decode_batch(logits, [len(ids[i]) for i in batch])
            for b, i in enumerate(batch):
                tokens = tok.convert_ids_to_tokens(enc["input_ids"][i])
                offsets = [tuple(o) for o in enc["offset_mapping"][i]]
                perm = [int(k) for k in perms[b]] + list(range(len(ids[i]), len(tokens)))
                restored, spans = render(texts[i], tokens, offsets, perm)
                out[i] = Restoration(restored, [tokens[k] for k in perm], moved_spans(perm, spans),
                                     moved_input_spans(perm, offsets))
        return out


def restore(model_dir: str | Path, texts: Sequence[str], return_moves: bool = False,
            **kwargs) -> list[str] | list[Restoration]:
    """Restored sentences (or ``Restoration`` objects with the moved spans when ``return_moves``)."""
    results = Restorer(model_dir, **kwargs).restore(texts)
    return results if return_moves else [r.text for r in results]


def read_sentences(path: Path) -> tuple[list[str], list[str | None], bool]:
    """(texts, originals or None, is_jsonl) of a .txt (one sentence a line) or .jsonl file."""
    import json

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such input file")
    jsonl = path.name.endswith(".jsonl")
    texts: list[str] = []
    originals: list[str | None] = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not jsonl:
                texts.append(line)
                originals.append(None)
                continue
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: not valid JSON ({e})") from e
            text = r.get("corrupted", r.get("text")) if isinstance(r, dict) else None
            if not isinstance(text, str):
                raise ValueError(f"{path}:{i}: expected an object with a string field 'corrupted' or 'text'")
            original = r.get("original")
            if original is not None and not isinstance(original, str):
                raise ValueError(f"{path}:{i}: field 'original' must be a string")
            texts.append(text)
            originals.append(original)
    return texts, originals, jsonl


def restore_file(model_dir: str | Path, input_path: str | Path, output_path: str | Path,
                 **kwargs) -> dict[str, float] | None:
    """Restore every sentence of a .txt (one a line) or .jsonl file (field ``corrupted`` or ``text``).

    A .txt input gives one restored sentence a line; a .jsonl input gives records with ``input``,
    ``output``, ``moved`` (character spans) and ``original`` when the input had it. When every record has
    an ``original``, returns the WOR metrics in percent (``pert.metrics.wor``), else None.
    """
    import json

    from pert.metrics.wor import wor_scores

    texts, originals, jsonl = read_sentences(Path(input_path))
    restorer = Restorer(model_dir, **kwargs)
    results = restorer.restore(texts)
    out = Path(output_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for text, original, r in zip(texts, originals, results, strict=True):
            if jsonl:
                rec = {"input": text, "output": r.text, "moved": r.moved}
                if original is not None:
                    rec["original"] = original
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            else:
                f.write(r.text + "\n")
    if not texts or any(o is None for o in originals):
        return None
    tok = restorer.tokenizer
    scores = wor_scores([tok.tokenize(t) for t in texts], [tok.tokenize(o) for o in originals],
                        [r.tokens for r in results])
    return {k: (100.0 * v if isinstance(v, float) else v) for k, v in scores.items()}
