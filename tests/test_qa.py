"""`pert qa` and `pert.qa.answer`: argument errors and refusing a folder without a trained QA head.

The answers of a fine-tuned model are tested in test_mrc_finetune.py (one fine-tune, shared).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pert.cli import main


@pytest.mark.parametrize("args, message", [
    (["--context", "c"], "give --context and --question"),
    (["--input", "x.json"], "--input needs --output"),
    (["--input", "x.json", "--output", "y.json", "--question", "q"], "not both"),
])
def test_qa_argument_errors(args: list[str], message: str, capsys, tmp_path: Path) -> None:
    assert main(["qa", "--model", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err


def test_qa_refuses_a_model_without_qa_head(minilm_dir: Path, capsys) -> None:
    assert main(["qa", "--model", str(minilm_dir), "--context", "Paris is in France.",
                 "--question", "Where is Paris?"]) == 2
    assert "no trained question-answering head" in capsys.readouterr().err


def test_qa_missing_folder(tmp_path: Path, capsys) -> None:
    assert main(["qa", "--model", str(tmp_path / "nope"), "--context", "c", "--question", "q"]) == 2
    assert "nope" in capsys.readouterr().err


def test_length_batches_group_similar_lengths() -> None:
    """Windows run in batches of similar length: a short question never pads to a 384-token window."""
    from pert.runtime import length_batches

    lengths = [100, 30, 35, 300, 120, 31]
    assert length_batches(lengths, 2) == [[1, 5], [2], [0, 4], [3]]
    assert length_batches(lengths, 8) == [[1, 5, 2], [0, 4], [3]]
    assert length_batches([], 4) == []
    # a padded-token budget (items x longest): 2 x 35 = 70 fits 80, a third would make 105
    assert length_batches(lengths, 8, max_tokens=80) == [[1, 5], [2], [0], [4], [3]]
    assert sorted(i for b in length_batches(lengths * 5, 3) for i in b) == list(range(30))
