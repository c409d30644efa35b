"""PerLM on real prepared text (People's Daily with Google's Chinese vocab, English Wikipedia with BERT-uncased):
the spec's statistics as realised, not as configured."""

from __future__ import annotations

import numpy as np
import pytest

from pert.corpus.dataset import PreparedCorpus
from pert.corpus.prepare import PrepareConfig, prepare
from pert.objectives import ObjectiveConfig, perlm_corrupt, select_units
from pert.objectives.perlm import KEPT, SHUFFLED

SEQS = {128: 1200, 512: 300}  # sequences measured per length: ~20k selected tokens each


@pytest.fixture(scope="module", params=["zh", "en"])
def corpus(request, tmp_path_factory, shared_data, peoples_daily_tagged) -> PreparedCorpus:
    lang = request.param
    root = tmp_path_factory.mktemp(f"real-{lang}")
    text = root / "corpus.txt"
    if lang == "zh":
        lines = peoples_daily_tagged.read_text(encoding="utf-8").splitlines()[:8000]
        docs = ["".join(tok.rsplit("/", 1)[0] for tok in line.split()[1:]) for line in lines]
        vocab = shared_data / "vocab" / "bert-base-chinese" / "vocab.txt"
    else:
        lines = (shared_data / "en" / "enwiki-extract-sample" / "AA" / "wiki_00").read_text("utf-8").splitlines()
        docs = [line for line in lines if line.strip() and not line.startswith(("<doc", "</doc"))]
        vocab = shared_data / "vocab" / "bert-base-uncased" / "vocab.txt"
    text.write_text("\n".join(d for d in docs if d.strip()) + "\n", encoding="utf-8")
    prepare(PrepareConfig(out=str(root / "prepared"), vocab=str(vocab), lang=lang, inputs=[str(text)], workers=1))
    return PreparedCorpus(root / "prepared")


def corrupted(corpus: PreparedCorpus, seq_len: int, scope: str):
    """(packed batch, PerLM output) over the first sequences of the corpus, in batches of 100."""
    n = min(SEQS[seq_len], corpus.num_sequences(seq_len) - 1)
    assert n >= SEQS[seq_len] // 2, "the corpus slice is too small for a stable measurement"
    cfg = ObjectiveConfig(scope=scope)
    rng = np.random.default_rng(seq_len)
    for lo in range(0, n, 100):
        packed = corpus.batch(np.arange(lo, min(lo + 100, n)), seq_len)
        yield packed, perlm_corrupt(packed.ids, packed.word_start, packed.special, rng, cfg), cfg


def shares(corpus: PreparedCorpus, seq_len: int, scope: str) -> tuple[float, float, float]:
    """(selected / real tokens, kept / selected, moved / selected)."""
    sel = real = kept = moved = 0
    for packed, out, _ in corrupted(corpus, seq_len, scope):
        valid = out["positions"] >= 0
        sel += valid.sum()
        real += (~packed.special).sum()
        kept += (out["kinds"] == KEPT).sum()
        moved += (out["labels"][valid] != out["positions"][valid]).sum()
    return sel / real, kept / sel, moved / sel


@pytest.mark.parametrize("seq_len", [128, 512])
def test_global_scope_realises_ninety_ten(corpus, seq_len):
    selected, kept, moved = shares(corpus, seq_len, "global")
    assert kept == pytest.approx(0.10, abs=0.01)
    assert moved == pytest.approx(0.90, abs=0.01)
    assert kept + moved == pytest.approx(1.0)  # every token marked shuffled really moved
    # 15% of the real tokens, or the cap (75 per 512 = 14.6%) where it binds
    cap = ObjectiveConfig().predictions_cap(seq_len) / (seq_len - 2)
    assert selected == pytest.approx(min(0.15, cap), abs=0.01)


def test_span_scope_keeps_more_than_ten_percent(corpus):
    # one-token units cannot move within themselves and count as kept (docs/perlm.md reports the shares)
    _, kept, moved = shares(corpus, 128, "span")
    assert kept > 0.13 and kept + moved == pytest.approx(1.0)


@pytest.mark.parametrize("seq_len", [128, 512])
def test_default_scope_moves_tokens_only_inside_their_own_unit(corpus, seq_len, monkeypatch):
    import pert.objectives.perlm as perlm

    drawn = []
    select = perlm.select_units
    monkeypatch.setattr(perlm, "select_units", lambda *a, **k: drawn.append(select(*a, **k)) or drawn[-1])
    moved = 0
    for packed, out, cfg in corrupted(corpus, seq_len, ObjectiveConfig().scope):
        assert cfg.scope == "span"
        valid = out["positions"] >= 0
        b = np.nonzero(valid)[0]
        i, j, kind = out["positions"][valid], out["labels"][valid], out["kinds"][valid]
        assert np.array_equal(drawn[-1][b, i], drawn[-1][b, j]), "a token crossed a word or N-gram boundary"
        assert np.array_equal(out["input_ids"][b, j], packed.ids[b, i])
        assert np.all(j[kind == SHUFFLED] != i[kind == SHUFFLED]) and np.all(j[kind == KEPT] == i[kind == KEPT])
        moved += (kind == SHUFFLED).sum()
    assert moved > 1000


@pytest.mark.parametrize("seq_len", [128, 512])
def test_labels_point_at_the_true_token_and_shuffled_tokens_move(corpus, seq_len):
    for packed, out, _ in corrupted(corpus, seq_len, "global"):
        valid = out["positions"] >= 0
        b = np.nonzero(valid)[0]
        i, j, kind = out["positions"][valid], out["labels"][valid], out["kinds"][valid]
        assert np.array_equal(out["input_ids"][b, j], packed.ids[b, i])
        assert np.all(j[kind == SHUFFLED] != i[kind == SHUFFLED])
        assert np.all(j[kind == KEPT] == i[kind == KEPT])
        # tokens move only among the selected positions of their own sequence; the rest stays
        moved_to = np.zeros_like(packed.special)
        moved_to[b, j] = True
        selected = np.zeros_like(packed.special)
        selected[b, i] = True
        assert np.array_equal(moved_to, selected)
        assert np.array_equal(out["input_ids"][~selected], packed.ids[~selected])


@pytest.mark.parametrize("seq_len", [128, 512])
def test_no_unit_has_more_than_four_words(corpus, seq_len):
    n_units = 0
    for packed, _, cfg in corrupted(corpus, seq_len, "global"):
        unit = select_units(packed.word_start, packed.special, np.random.default_rng(0), 0.99, cfg.ngram_probs,
                            seq_len)
        # words as the spec counts them: a piece after a special token (a word cut by the boundary) starts one
        starts = (packed.word_start | np.pad(packed.special, ((0, 0), (1, 0)))[:, :-1]) & ~packed.special
        words = np.bincount(unit[starts & (unit >= 0)], minlength=unit.max() + 1)
        tokens = np.bincount(unit[unit >= 0], minlength=unit.max() + 1)
        present = tokens > 0
        assert words[present].min() >= 1 and words[present].max() <= len(cfg.ngram_probs)
        n_units += present.sum()
    assert n_units > 1000


def test_a_word_fragment_at_the_start_is_a_word_of_its_own():
    # the case: [CLS], a fragment of a word cut by the boundary (no word start), five words, [SEP];
    # only 4-word units: the fragment must not join the next four words
    ws = np.array([[0, 0, 1, 1, 1, 1, 1, 0]], dtype=bool)
    special = np.array([[1, 0, 0, 0, 0, 0, 0, 1]], dtype=bool)
    for seed in range(50):
        unit = select_units(ws, special, np.random.default_rng(seed), 0.99, [0, 0, 0, 1], 8)[0]
        for u in set(unit[unit >= 0].tolist()):
            members = np.flatnonzero(unit == u)
            assert int(ws[0, members].sum()) + int(1 in members) <= 4, (seed, unit.tolist())
