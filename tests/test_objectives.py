"""PerLM and MLM corruption: the spec's invariants on many random batches, and exact small cases."""

from __future__ import annotations

import numpy as np
import pytest

from pert.objectives import ObjectiveConfig, mlm_corrupt, perlm_corrupt, select_units
from pert.objectives.perlm import KEPT, SHUFFLED, derange_groups

CLS, SEP, PAD, MASK = 101, 102, 0, 103
SPECIALS = [PAD, CLS, SEP]


def random_batch(rng: np.random.Generator, B: int = 64, L: int = 128):
    """Packed-like batches: [CLS] words [SEP] words [SEP] ... [PAD]; words of 1-4 pieces."""
    ids = rng.integers(1000, 1040, size=(B, L))  # a small alphabet so that equal tokens occur
    ws = rng.random((B, L)) < 0.55
    for b in range(B):
        ids[b, 0] = CLS
        for p in rng.integers(5, L - 5, size=rng.integers(0, 3)):
            ids[b, p] = SEP  # document boundaries inside the sequence
        end = L if b % 4 else int(rng.integers(L // 2, L))  # some padded remainders
        ids[b, end - 1] = SEP
        ids[b, end:] = PAD
    special = np.isin(ids, SPECIALS)
    return ids, ws & ~special, special


def word_spans(ws: np.ndarray, special: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each word of one row."""
    spans, start = [], None
    for t in range(len(ws)):
        if special[t] or ws[t]:
            if start is not None:
                spans.append((start, t))
            start = None if special[t] else t
    return spans


@pytest.mark.parametrize("scope", ["span", "global"])
def test_perlm_invariants_on_many_batches(scope):
    rng = np.random.default_rng(1234)
    cfg = ObjectiveConfig(scope=scope)
    selected_total = real_total = shuffled = kept = 0
    for _ in range(20):
        ids, ws, special = random_batch(rng)
        out = perlm_corrupt(ids, ws, special, rng, cfg)
        x, pos, lab, kind = out["input_ids"], out["positions"], out["labels"], out["kinds"]
        valid = pos >= 0
        b = np.nonzero(valid)[0]
        i, j = pos[valid], lab[valid]
        # the token that belongs at i stands at j in the permuted input
        assert np.array_equal(x[b, j], ids[b, i])
        assert not special[b, i].any(), "special tokens are never selected"
        assert np.array_equal(x[special], ids[special]), "special tokens never move"
        # unselected tokens stay where they are
        sel_mask = np.zeros_like(special)
        sel_mask[b, i] = True
        assert np.array_equal(x[~sel_mask], ids[~sel_mask])
        # shuffled tokens really moved; kept ones point to themselves
        assert np.all(j[kind[valid] == SHUFFLED] != i[kind[valid] == SHUFFLED])
        assert np.all(j[kind[valid] == KEPT] == i[kind[valid] == KEPT])
        # a word is selected entirely or not at all
        for row in range(ids.shape[0]):
            for s, e in word_spans(ws[row], special[row]):
                assert sel_mask[row, s:e].all() or not sel_mask[row, s:e].any()
        # at most the cap per sequence
        assert valid.sum(1).max() <= cfg.predictions_cap(ids.shape[1])
        selected_total += valid.sum()
        real_total += (~special).sum()
        shuffled += (kind == SHUFFLED).sum()
        kept += (kind == KEPT).sum()
    assert selected_total / real_total == pytest.approx(0.15, abs=0.01)
    if scope == "global":
        assert kept / (kept + shuffled) == pytest.approx(0.10, abs=0.015)
    else:  # one-token units cannot be shuffled within themselves and count as kept
        assert 0.10 < kept / (kept + shuffled) < 0.5


def unit_word_lengths(unit: np.ndarray, ws: np.ndarray) -> np.ndarray:
    ids = unit[unit >= 0]
    return np.bincount(ids[ws[unit >= 0]], minlength=ids.max() + 1 if len(ids) else 0)[np.unique(ids)]


def test_ngram_units_follow_the_distribution_when_the_budget_allows():
    rng = np.random.default_rng(7)
    lengths = []
    for _ in range(10):
        ids, ws, special = random_batch(rng)
        ids[:, 1:-1] = np.where(special[:, 1:-1], 1000, ids[:, 1:-1])  # one segment per row, no padding
        special = np.isin(ids, SPECIALS)
        unit = select_units(ws & ~special, special, rng, 0.99, [0.4, 0.3, 0.2, 0.1], cap=128)
        lengths.extend(unit_word_lengths(unit, ws & ~special))
    share = np.bincount(lengths, minlength=5)[1:] / len(lengths)
    assert share == pytest.approx([0.4, 0.3, 0.2, 0.1], abs=0.02)


def reference_selection(ws_row, special_row, rng, budget, probs):
    """The spec's procedure, literally: words in random order of start, n-gram of whole words, skip
    overlapping units and units that no longer fit, stop at the budget. Returns (tokens, unit lengths)."""
    spans = word_spans(ws_row, special_row)
    segment = np.cumsum(special_row)
    covered, count, lengths = set(), 0, []
    for k in rng.permutation(len(spans)):
        n = rng.choice(np.arange(1, len(probs) + 1), p=probs)
        unit = [k] + [m for m in range(k + 1, min(k + n, len(spans)))
                      if segment[spans[m][0]] == segment[spans[k][0]]]
        tokens = sum(spans[u][1] - spans[u][0] for u in unit)
        if covered.intersection(unit) or count + tokens > budget:
            continue
        covered.update(unit)
        count += tokens
        lengths.append(len(unit))
        if count >= budget:
            break
    return count, lengths


def test_selection_matches_the_sequential_procedure_of_the_spec():
    probs = [0.4, 0.3, 0.2, 0.1]
    rng = np.random.default_rng(17)
    ours, ref, ours_len, ref_len, real = 0, 0, [], [], 0
    for _ in range(15):
        ids, ws, special = random_batch(rng)
        unit = select_units(ws, special, rng, 0.15, probs, cap=19)
        ours += (unit >= 0).sum()
        ours_len.extend(unit_word_lengths(unit, ws))
        for r in range(ids.shape[0]):
            n_real = int((~special[r]).sum())
            count, lengths = reference_selection(ws[r], special[r], rng, min(19, max(1, round(0.15 * n_real))),
                                                 probs)
            ref += count
            ref_len.extend(lengths)
        real += (~special).sum()
    assert ours / real == pytest.approx(ref / real, abs=0.005)
    assert ours / real == pytest.approx(0.15, abs=0.005)
    share = lambda x: np.bincount(x, minlength=5)[1:] / len(x)  # noqa: E731
    # the tiling keeps long units slightly more often than the literal walk (closer to the nominal shares)
    assert share(ours_len) == pytest.approx(share(ref_len), abs=0.05)


def test_span_scope_keeps_ten_percent_of_units_by_choice():
    rng_seed = 99
    cfg = ObjectiveConfig(scope="span")
    ids, ws, special = random_batch(np.random.default_rng(0), B=256)
    unit = select_units(ws, special, np.random.default_rng(rng_seed), cfg.select_ratio, cfg.ngram_probs,
                        cfg.predictions_cap(ids.shape[1]))
    out = perlm_corrupt(ids, ws, special, np.random.default_rng(rng_seed), cfg)
    kind_at = np.zeros_like(ids)
    b = np.nonzero(out["positions"] >= 0)[0]
    kind_at[b, out["positions"][out["positions"] >= 0]] = out["kinds"][out["positions"] >= 0]
    multi = [u for u in np.unique(unit[unit >= 0]) if (unit == u).sum() >= 2]
    kept_units = sum(bool(np.all(kind_at[unit == u] == KEPT)) for u in multi)
    assert kept_units / len(multi) == pytest.approx(0.10, abs=0.03)


def test_readme_example_two_characters_swap():
    # [CLS] 研 究 [SEP] as one word: the only derangement of two tokens is the swap.
    ids = np.array([[CLS, 4777, 4955, SEP]])
    ws = np.array([[False, True, False, False]])
    special = np.isin(ids, SPECIALS)
    cfg = ObjectiveConfig(select_ratio=0.99, shuffle_ratio=1.0)
    out = perlm_corrupt(ids, ws, special, np.random.default_rng(0), cfg, cap=4)
    assert out["input_ids"].tolist() == [[CLS, 4955, 4777, SEP]]
    assert out["positions"].tolist() == [[1, 2, -1, -1]]
    assert out["labels"].tolist() == [[2, 1, -100, -100]]
    assert out["kinds"].tolist() == [[SHUFFLED, SHUFFLED, 0, 0]]


def test_the_authors_figure_swaps_inside_each_word(monkeypatch, shared_data):
    # The README's pre-training figure: 我喜欢吃苹果 -> 我欢喜吃果苹, outputs pos3, pos2, pos6, pos5 at positions
    # 2, 3, 5, 6 ([CLS] is position 0). Units 喜欢 and 苹果 are selected and both shuffled (default scope).
    import pert.objectives.perlm as perlm
    from pert.text.tokenizer import load_tokenizer

    tok = load_tokenizer(shared_data / "vocab" / "bert-base-chinese" / "vocab.txt")
    tokens = ["[CLS]", *"我喜欢吃苹果", "[SEP]", *"他也是", "[SEP]"]
    ids = np.array([tok.convert_tokens_to_ids(tokens)])
    special = np.isin(ids, [tok.cls_token_id, tok.sep_token_id, tok.pad_token_id])
    ws = np.array([[0, 1, 1, 0, 1, 1, 0, 0, 1, 1, 1, 0]], dtype=bool)  # 我 | 喜欢 | 吃 | 苹果 | 他 | 也 | 是
    units = np.full(ids.shape, -1)
    units[0, [2, 3]], units[0, [5, 6]] = 0, 1
    monkeypatch.setattr(perlm, "select_units", lambda *a, **k: units)
    cfg = ObjectiveConfig(shuffle_ratio=1.0)
    assert cfg.scope == "span"
    out = perlm_corrupt(ids, ws, special, np.random.default_rng(0), cfg, cap=4)
    assert tok.convert_ids_to_tokens(out["input_ids"][0].tolist()) == [
        "[CLS]", *"我欢喜吃果苹", "[SEP]", *"他也是", "[SEP]"]
    assert out["positions"].tolist() == [[2, 3, 5, 6]]
    assert out["labels"].tolist() == [[3, 2, 6, 5]]
    assert out["kinds"].tolist() == [[SHUFFLED] * 4]


def test_span_is_the_default_scope_and_tokens_stay_in_their_unit(monkeypatch):
    import pert.objectives.perlm as perlm

    assert ObjectiveConfig().scope == "span"
    drawn = []
    select = perlm.select_units
    monkeypatch.setattr(perlm, "select_units", lambda *a, **k: drawn.append(select(*a, **k)) or drawn[-1])
    rng = np.random.default_rng(8)
    for _ in range(10):
        ids, ws, special = random_batch(rng)
        out = perlm_corrupt(ids, ws, special, rng, ObjectiveConfig())
        valid = out["positions"] >= 0
        b = np.nonzero(valid)[0]
        i, j = out["positions"][valid], out["labels"][valid]
        assert np.array_equal(drawn[-1][b, i], drawn[-1][b, j]), "a token left its unit"


def test_single_token_unit_is_kept_and_points_to_itself():
    ids = np.array([[CLS, 500, SEP]])
    ws = np.array([[False, True, False]])
    out = perlm_corrupt(ids, ws, np.isin(ids, SPECIALS), np.random.default_rng(0),
                        ObjectiveConfig(select_ratio=0.99, shuffle_ratio=1.0), cap=2)
    assert out["labels"].tolist() == [[1, -100]]
    assert out["kinds"].tolist() == [[KEPT, 0]]


def test_derangements_are_uniform_and_fixed_point_free():
    rng = np.random.default_rng(3)
    group = np.repeat(np.arange(3000), 3)  # 3000 groups of three
    dest = derange_groups(group, rng)
    assert np.all(dest != np.arange(len(group)))
    assert np.array_equal(group[dest], group)
    # the two derangements of three elements are equally likely
    first = dest[0::3] - np.arange(0, len(group), 3)
    assert np.mean(first == 1) == pytest.approx(0.5, abs=0.03)


def test_same_seed_same_batch():
    ids, ws, special = random_batch(np.random.default_rng(5))
    a = perlm_corrupt(ids, ws, special, np.random.default_rng(11), ObjectiveConfig())
    b = perlm_corrupt(ids, ws, special, np.random.default_rng(11), ObjectiveConfig())
    c = perlm_corrupt(ids, ws, special, np.random.default_rng(12), ObjectiveConfig())
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["input_ids"], c["input_ids"])


def test_mlm_masks_the_same_kind_of_selection():
    rng = np.random.default_rng(21)
    cfg = ObjectiveConfig(objective="mlm")
    random_ids = np.arange(1000, 1040)
    masked = randomised = kept = total_sel = total_real = 0
    for _ in range(10):
        ids, ws, special = random_batch(rng)
        out = mlm_corrupt(ids, ws, special, rng, cfg, mask_id=MASK, random_ids=random_ids)
        valid = out["positions"] >= 0
        b, i = np.nonzero(valid)[0], out["positions"][valid]
        assert np.array_equal(out["labels"][valid], ids[b, i])  # labels are the original tokens
        x = out["input_ids"][b, i]
        masked += (x == MASK).sum()
        kept += ((x == ids[b, i]) & (out["kinds"][valid] == KEPT)).sum()
        randomised += ((x != MASK) & (out["kinds"][valid] == SHUFFLED)).sum()
        total_sel += valid.sum()
        total_real += (~special).sum()
    assert total_sel / total_real == pytest.approx(0.15, abs=0.01)
    assert masked / total_sel == pytest.approx(0.8, abs=0.02)
    assert randomised / total_sel == pytest.approx(0.1, abs=0.02)
    assert kept / total_sel == pytest.approx(0.1, abs=0.02)
