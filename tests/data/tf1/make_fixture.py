"""Write tests/data/tf1/chinese_pert_tiny: a tiny TF1 PERT checkpoint laid out as HFL's release zips are, so that
`make test` checks `pert convert tf1` without TensorFlow. Run once, with TensorFlow, in a venv of its own:

    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu numpy
    /tmp/tfvenv/bin/python tests/data/tf1/make_fixture.py          # from the repository root

What it writes (about 400 KB):

    chinese_pert_tiny/pert_model.ckpt     TensorFlow's .data-00000-of-00001 file, renamed as HFL's zips have it
    chinese_pert_tiny/pert_model.index    the .index file, renamed
    chinese_pert_tiny/pert_model.meta     the graph, renamed
    chinese_pert_tiny/pert_config.json    Google BERT's config keys (pooler_* included), as HFL ships them
    chinese_pert_tiny/vocab.txt           the entries of bert-base-chinese's vocabulary that three real sentences
                                          use (plus [PAD]..<T>), in the original order
    sentences.txt                         those sentences (CLUECorpusSmall sample)
    expected.json                         every variable as TensorFlow reads it back: shape, float64 sum and the
                                          first values; the global step

Weights are seeded normal draws under Google BERT's variable names, with an MLM head (cls/predictions), the NSP
head that has no place in a PERT model (cls/seq_relationship), Adam slots of two variables and global_step 1234.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[2].parent / "shared" / "data"  # ../shared/data from the repository root
VOCAB = DATA / "vocab/bert-base-chinese/vocab.txt"
TEXT = DATA / "zh/pretrain_corpus/clue_corpus_small_sample/CLUECorpusSmall_sampled.txt"
OUT = HERE / "chinese_pert_tiny"
HIDDEN, LAYERS, HEADS, INTERMEDIATE, POSITIONS, STEP = 32, 2, 4, 64, 64, 1234


def sentences(n: int = 3) -> list[str]:
    out = []
    with open(TEXT, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if 20 <= len(line):
                out.append(line[:60])
            if len(out) == n:
                return out
    raise SystemExit(f"{TEXT}: fewer than {n} sentences")


def small_vocab(texts: list[str]) -> list[str]:
    """[PAD]..<T> (the first 107 entries) and every entry made only of the texts' characters (lower-cased, as the
    uncased Chinese tokenizer sees them), in bert-base-chinese's order."""
    chars = set("".join(texts).lower())
    lines = VOCAB.read_text(encoding="utf-8").split("\n")
    keep = lines[:107] + [t for t in lines[107:] if t and set(t.removeprefix("##")) <= chars]
    return keep


def variables(vocab_size: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(12)

    def normal(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    def norm(prefix: str, out: dict) -> None:
        out[f"{prefix}/LayerNorm/gamma"] = (1 + normal(HIDDEN)).astype(np.float32)
        out[f"{prefix}/LayerNorm/beta"] = normal(HIDDEN)

    v = {"bert/embeddings/word_embeddings": normal(vocab_size, HIDDEN),
         "bert/embeddings/position_embeddings": normal(POSITIONS, HIDDEN),
         "bert/embeddings/token_type_embeddings": normal(2, HIDDEN)}
    norm("bert/embeddings", v)
    for i in range(LAYERS):
        p = f"bert/encoder/layer_{i}"
        for name in ("query", "key", "value"):
            v[f"{p}/attention/self/{name}/kernel"] = normal(HIDDEN, HIDDEN)
            v[f"{p}/attention/self/{name}/bias"] = normal(HIDDEN)
        v[f"{p}/attention/output/dense/kernel"] = normal(HIDDEN, HIDDEN)
        v[f"{p}/attention/output/dense/bias"] = normal(HIDDEN)
        norm(f"{p}/attention/output", v)
        v[f"{p}/intermediate/dense/kernel"] = normal(HIDDEN, INTERMEDIATE)
        v[f"{p}/intermediate/dense/bias"] = normal(INTERMEDIATE)
        v[f"{p}/output/dense/kernel"] = normal(INTERMEDIATE, HIDDEN)
        v[f"{p}/output/dense/bias"] = normal(HIDDEN)
        norm(f"{p}/output", v)
    v["bert/pooler/dense/kernel"] = normal(HIDDEN, HIDDEN)
    v["bert/pooler/dense/bias"] = normal(HIDDEN)
    v["cls/predictions/transform/dense/kernel"] = normal(HIDDEN, HIDDEN)
    v["cls/predictions/transform/dense/bias"] = normal(HIDDEN)
    norm("cls/predictions/transform", v)
    v["cls/predictions/output_bias"] = normal(vocab_size)
    v["cls/seq_relationship/output_weights"] = normal(2, HIDDEN)
    v["cls/seq_relationship/output_bias"] = normal(2)
    for name in ("bert/embeddings/token_type_embeddings", "bert/pooler/dense/bias"):
        v[f"{name}/adam_m"] = np.abs(normal(*v[name].shape))
        v[f"{name}/adam_v"] = np.abs(normal(*v[name].shape))
    return v


def write(tf, arrays: dict[str, np.ndarray], prefix: Path) -> None:
    with tf.Graph().as_default():
        assigns, feeds = [], {}
        for name, value in arrays.items():
            var = tf.compat.v1.get_variable(name, shape=value.shape, dtype=tf.float32,
                                            initializer=tf.compat.v1.zeros_initializer())
            ph = tf.compat.v1.placeholder(tf.float32, value.shape)
            assigns.append(var.assign(ph))
            feeds[ph] = value
        step = tf.compat.v1.train.get_or_create_global_step()
        assigns.append(step.assign(STEP))
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run(assigns, feeds)
            tf.compat.v1.train.Saver().save(sess, str(prefix), global_step=step)


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    texts = sentences()
    vocab = small_vocab(texts)
    OUT.mkdir(parents=True, exist_ok=True)
    for f in OUT.iterdir():
        f.unlink()
    arrays = variables(len(vocab))
    write(tf, arrays, OUT / "pert_model.ckpt")
    written = OUT / f"pert_model.ckpt-{STEP}"
    reader = tf.train.load_checkpoint(str(written))
    expected = {"global_step": int(reader.get_tensor("global_step")), "variables": {}}
    for name in sorted(reader.get_variable_to_shape_map()):
        if name == "global_step":
            continue
        t = reader.get_tensor(name)
        expected["variables"][name] = {"shape": list(t.shape), "sum": float(t.astype(np.float64).sum()),
                                       "first": [float(x) for x in t.reshape(-1)[:4]]}
    # HFL's zips rename TensorFlow's files and drop the `checkpoint` file.
    os.rename(f"{written}.data-00000-of-00001", OUT / "pert_model.ckpt")
    os.rename(f"{written}.index", OUT / "pert_model.index")
    os.rename(f"{written}.meta", OUT / "pert_model.meta")
    (OUT / "checkpoint").unlink()
    config = {"attention_probs_dropout_prob": 0.1, "directionality": "bidi", "hidden_act": "gelu",
              "hidden_dropout_prob": 0.1, "hidden_size": HIDDEN, "initializer_range": 0.02,
              "intermediate_size": INTERMEDIATE, "max_position_embeddings": POSITIONS, "num_attention_heads": HEADS,
              "num_hidden_layers": LAYERS, "pooler_fc_size": 768, "pooler_num_attention_heads": 12,
              "pooler_num_fc_layers": 3, "pooler_size_per_head": 128, "pooler_type": "first_token_transform",
              "type_vocab_size": 2, "vocab_size": len(vocab)}
    (OUT / "pert_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (OUT / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (HERE / "sentences.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n", encoding="utf-8")
    size = sum(f.stat().st_size for f in OUT.iterdir())
    print(f"wrote {OUT} ({len(vocab)} tokens, {len(expected['variables'])} variables, {size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
