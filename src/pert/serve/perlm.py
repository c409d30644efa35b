"""Ask a pre-trained PERT where each token of a shuffled sentence belongs (what PerLM trains it to say).

A sentence is tokenised, then shuffled either by a given permutation or by pert's own PerLM corruption
(``pert.objectives.perlm_corrupt``: whole-word N-gram units selected and shuffled as in pre-training).
The model reads the shuffled tokens; for each position of the original sentence its pointer head scores
every position of the shuffled input ("the token that belongs here stands there"). Probabilities are a
softmax over the sentence's tokens ([CLS], [SEP] excluded), as ``pert restore`` decodes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pert.objectives.config import ObjectiveConfig
from pert.objectives.perlm import KEPT, SHUFFLED, perlm_corrupt
from pert.text.tokenizer import word_starts
from pert.wor.decode import content_log_probs, render

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@dataclass
class Probe:
    """One sentence to score: its tokens and how they were shuffled."""

    text: str
    tokens: list[str]
    offsets: list[tuple[int, int]]
    ids: list[int]
    order: list[int]  # shuffled position k holds original token order[k]
    kinds: list[int]  # per original token: 0 not selected, 1 shuffled, 2 selected but kept in place


class PointerScorer:
    """A pre-trained PERT folder (with its PerLM head) loaded once for many calls."""

    def __init__(self, model_dir: str | Path, device: str = "auto", precision: str = "auto",
                 segmenter: str = "rjieba") -> None:
        from pert.models import open_model
        from pert.text.segment import get_segmenter

        # a pre-trained folder: auto precision is the hardware's, as in pre-training
        opened = open_model(model_dir, device=device, precision=precision, auto_precision="hardware")
        self.model_dir, self.tokenizer, self.device = opened.path, opened.tokenizer, opened.device
        self.model = opened.pretraining_model("perlm")
        self.max_tokens = int(opened.config.max_position_embeddings) - 2
        self.precision = opened.precision
        self.segmenter = get_segmenter(segmenter)

    def probe(self, text: str, permutation: list[int] | None = None, objective: ObjectiveConfig | None = None,
              seed: int = 0) -> Probe:
        """Tokenise ``text`` and shuffle it: by ``permutation`` (shuffled position k holds token
        permutation[k]) or, when it is None, by PerLM's corruption with ``objective`` and ``seed``."""
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        n = len(ids)
        if n < 2:
            raise ValueError("sentence: needs at least 2 tokens to shuffle")
        if n > self.max_tokens:
            raise ValueError(f"sentence: {n} tokens, the model reads at most {self.max_tokens}")
        tokens = self.tokenizer.convert_ids_to_tokens(ids)
        offsets = [tuple(o) for o in enc["offset_mapping"]]
        if permutation is not None:
            if sorted(permutation) != list(range(n)):
                raise ValueError(f"permutation: expected an ordering of 0..{n - 1} (the sentence has {n} tokens: "
                                 f"{' '.join(tokens)}), got {permutation}")
            order = [int(k) for k in permutation]
            kinds = [0] * n
            for j, k in enumerate(order):
                if j != k:
                    kinds[k] = SHUFFLED
            return Probe(text, tokens, offsets, ids, order, kinds)
        cfg = objective or ObjectiveConfig()
        tok = self.tokenizer
        row = np.array([[tok.cls_token_id, *ids, tok.sep_token_id]], dtype=np.int64)
        special = np.zeros_like(row, dtype=bool)
        special[0, [0, -1]] = True
        ws = np.zeros_like(special)
        ws[0, 1:-1] = word_starts(tokens, offsets, text, self.segmenter if _CJK.search(text) else None)
        out = perlm_corrupt(row, ws, special, np.random.default_rng(seed), cfg)
        shuffled = out["input_ids"][0, 1:-1]
        dest = np.arange(n)  # original token i now stands at dest[i]
        kinds = [0] * n
        for p, label, kind in zip(out["positions"][0], out["labels"][0], out["kinds"][0], strict=True):
            if p > 0:
                dest[p - 1] = label - 1
                kinds[p - 1] = int(kind)
        order = np.empty(n, dtype=np.int64)
        order[dest] = np.arange(n)
        assert (np.array(ids)[order] == shuffled).all()
        return Probe(text, tokens, offsets, ids, [int(k) for k in order], kinds)

    @torch.inference_mode()
    def score(self, probes: list[Probe], top_k: int = 3) -> list[dict[str, Any]]:
        """For each probe: the shuffled text and, per original position, the true shuffled position of its
        token and the model's ``top_k`` guesses with probabilities."""
        from pert.hardware import autocast

        if not probes:
            return []
        tok = self.tokenizer
        width = max(len(p.ids) for p in probes) + 2
        input_ids = torch.full((len(probes), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(probes), width), dtype=torch.long)
        for b, p in enumerate(probes):
            shuffled = [p.ids[k] for k in p.order]
            input_ids[b, :len(shuffled) + 2] = torch.tensor([tok.cls_token_id, *shuffled, tok.sep_token_id])
            mask[b, :len(shuffled) + 2] = 1
        with autocast(self.device, self.precision):
            logits = self.model.position_logits(input_ids.to(self.device), mask.to(self.device))
        results = []
        for b, p in enumerate(probes):
            n = len(p.ids)
            probs = np.exp(content_log_probs(logits[b], n))
            where = np.empty(n, dtype=np.int64)  # original token i stands at shuffled position where[i]
            where[p.order] = np.arange(n)
            text, spans = render(p.text, p.tokens, p.offsets, p.order)
            k = min(top_k, n)
            positions = []
            for i in range(n):
                top = np.argsort(-probs[i], kind="stable")[:k]
                positions.append({
                    "token": p.tokens[i], "truth": int(where[i]),
                    "kind": ("shuffled" if p.kinds[i] == SHUFFLED else "kept" if p.kinds[i] == KEPT else "unselected"),
                    "moved": bool(where[i] != i),
                    "guesses": [{"position": int(j), "token": p.tokens[p.order[j]], "probability": float(probs[i, j])}
                                for j in top],
                    "correct": bool(top[0] == where[i]),
                })
            moved = [q for q in positions if q["moved"]]
            results.append({
                "tokens": p.tokens, "permutation": p.order, "shuffled_text": text,
                "shuffled_spans": [list(s) for s in spans], "positions": positions,
                "moved": len(moved),
                "moved_accuracy": (sum(q["correct"] for q in moved) / len(moved)) if moved else None,
                "accuracy": sum(q["correct"] for q in positions) / n,
            })
        return results
