"""Folders the Hub shows correctly: cards from huggingface_hub's card data, named after the model; fine-tuned
folders that remember how they were trained, which evaluate, qa and restore take as their defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import BertConfig

from pert.cli import main
from pert.convert.hf import save_model_folder
from pert.modeling import PertForPreTraining
from pert.tasks import FinetuneConfig, evaluate, finetune
from pert.text.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def fine_tuned(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(best folder, data) of one step of text classification on own CSV columns, from a tiny PERT folder
    whose card says Apache-2.0."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("ft")
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    base = save_model_folder(PertForPreTraining(config), load_tokenizer(minilm_dir), root / "tiny-pert",
                             {"objective": "perlm", "steps": 10})
    card = ModelCard.load(base / "README.md")
    card.data.license = "apache-2.0"
    card.save(base / "README.md")
    data = root / "data"
    data.mkdir()
    rows = "\n".join(f'"{w} film",{lab}' for w, lab in [("great", "pos"), ("awful", "neg"), ("fine", "pos")] * 4)
    for split in ("train", "dev"):
        (data / f"{split}.csv").write_text("review,stars\n" + rows + "\n", encoding="utf-8")
    finetune(FinetuneConfig(task="text-classification", model=str(base), data=str(data), out=str(root / "run"),
                            task_args=["text_a=review", "label=stars"], max_steps=1, max_seq_len=24,
                            save_predictions=False, precision="fp32"))
    return root / "run" / "seed-1" / "best", data


def test_fine_tuned_folder_records_its_training(fine_tuned):
    best, _ = fine_tuned
    record = json.loads((best / "pert_training.json").read_text())
    assert record["task"] == "text-classification" and record["max_seq_len"] == 24
    assert record["task_options"]["text_a"] == "review" and record["task_options"]["label"] == "stars"
    assert record["labels"] == ["neg", "pos"] and record["task_options"]["label_set"] == ["neg", "pos"]
    assert record["precision"] == "fp32" and record["hyperparameters"]["max_steps"] == 1
    assert record["base_model"].endswith("tiny-pert") and record["data"] == "data"


def test_evaluate_takes_task_and_columns_from_the_folder(fine_tuned, capsys):
    best, data = fine_tuned
    given = evaluate("text-classification", best, data, ["dev"], task_args=["text_a=review", "label=stars"])
    assert evaluate(None, best, data, ["dev"]) == given
    capsys.readouterr()
    assert main(["evaluate", "--model", str(best), "--data", str(data)]) == 0
    assert json.loads(capsys.readouterr().out) == given


def test_restore_and_qa_refuse_models_not_fine_tuned_for_them(fine_tuned, capsys):
    best, _ = fine_tuned
    base = best.parents[2] / "tiny-pert"
    for model, said in ((best, "fine-tuned for text-classification"), (base, "pre-trained")):
        capsys.readouterr()
        assert main(["restore", "--model", str(model), "a b c"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "not a word-order restoration model" in err and said in err, err
        assert "pert finetune --task wor" in err
    assert main(["qa", "--model", str(best), "--context", "a", "--question", "b"]) == 2
    assert "no trained question-answering head" in capsys.readouterr().err


def test_card_metadata_is_huggingface_hubs(fine_tuned):
    best, _ = fine_tuned
    card = ModelCard.load(best / "README.md")
    data = card.data
    assert data.model_name == "tiny-pert-text-classification"  # not "best"
    assert card.text.lstrip().startswith("# tiny-pert-text-classification")
    assert data.pipeline_tag == "text-classification" and data.library_name == "transformers"
    assert data.license == "apache-2.0"  # the base model's
    assert data.base_model is None  # a local folder means nothing on the Hub
    assert data.language == "en" and "text-classification" in data.tags
    dev = json.loads((best / "pert_training.json").read_text())["dev"]
    results = {(r.dataset_split, r.metric_type): r.metric_value for r in data.eval_results}
    assert results == {("validation", k): round(v, 4) for k, v in dev.items() if isinstance(v, float)}
    assert data.metrics == sorted(k for _, k in results)
    assert "| lr |" in card.text and "| text_a | review |" in card.text and "{" not in card.text


def test_pretraining_card_is_named_after_the_run(minilm_dir, tmp_path):
    info = {"objective": "perlm", "steps": 3, "tokens": 12_000, "data": ["corpus/pd.txt"],
            "eval": {"acc_shuffled": 0.25, "acc_kept": 0.5, "sequences": 8},
            "config": {"data": "prepared/zh", "init_from": "hfl/chinese-pert-base", "lr": 1e-4, "objective": "perlm"}}
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64)
    folder = save_model_folder(PertForPreTraining(config), load_tokenizer(minilm_dir),
                               tmp_path / "pert-tiny" / "final", info)
    card = ModelCard.load(folder / "README.md")
    assert card.data.model_name == "pert-tiny" and card.text.lstrip().startswith("# pert-tiny\n")
    assert card.data.base_model == "hfl/chinese-pert-base" and card.data.pipeline_tag == "feature-extraction"
    assert [(r.metric_type, r.metric_value) for r in card.data.eval_results] == [("acc_shuffled", 0.25),
                                                                               ("acc_kept", 0.5)]
    assert "sequences" not in card.content and "| lr | 0.0001 |" in card.text


TF1_RELEASE = Path(__file__).parent / "data" / "tf1" / "chinese_pert_tiny"


@pytest.mark.skipif(not TF1_RELEASE.is_dir(), reason="the committed TF1 fixture (tests/data/tf1) is absent")
def test_converted_release_leaves_its_random_mlm_head_out(tmp_path, capsys):
    """HFL's FAQ: the released cls/predictions head is random. Not kept by default, so the card offers no
    fill-mask; --keep-mlm-head keeps it, with the warning on screen and in the card."""
    from safetensors import safe_open

    for flag, kept in (([], False), (["--keep-mlm-head"], True)):
        out = tmp_path / ("kept" if kept else "default")
        capsys.readouterr()
        assert main(["convert", "tf1", str(TF1_RELEASE), "--out", str(out), *flag]) == 0
        printed = capsys.readouterr().out
        assert f"MLM head: {'yes' if kept else 'no'}" in printed
        assert ("randomly initialised MLM head" in printed) == kept
        assert ("--keep-mlm-head` keeps it" in printed) == (not kept)
        with safe_open(str(out / "model.safetensors"), framework="pt") as f:
            assert any(k.startswith("cls.predictions.") for k in f.keys()) == kept
        architectures = json.loads((out / "config.json").read_text())["architectures"]
        assert architectures == (["BertForMaskedLM"] if kept else ["BertModel"])
        card = ModelCard.load(out / "README.md")
        assert card.data.pipeline_tag == ("fill-mask" if kept else "feature-extraction")
        assert ("BertForMaskedLM" in card.text) == kept and ("randomly initialised MLM head" in card.text) == kept
        assert card.data.model_name == out.name
