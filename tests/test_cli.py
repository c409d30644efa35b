"""The `pert` command answers at once: building any verb's parser imports neither torch nor transformers."""

from __future__ import annotations

import json
import subprocess
import sys

import pert
from pert.cli import VERBS, build_parser

_PROBE = """
import contextlib, io, json, sys
from pert.cli import VERBS, main
heavy = {}
for verb in [None] + VERBS:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main(["--help"] if verb is None else [verb, "--help"])
    heavy[verb or "pert"] = sorted(m for m in ("torch", "transformers") if m in sys.modules)
print(json.dumps(heavy))
"""


def _pert(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pert.cli", *args], capture_output=True, text=True, timeout=120)


def test_help_of_every_verb_imports_neither_torch_nor_transformers():
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True)
    heavy = json.loads(out.stdout)
    assert set(heavy) == {"pert", *VERBS}
    assert heavy == {verb: [] for verb in heavy}


def test_version():
    out = _pert("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"pert {pert.__version__}"


def test_typo_and_wrong_flag_are_one_usage_error():
    typo = _pert("finetun")
    assert typo.returncode == 2 and "invalid choice: 'finetun'" in typo.stderr
    wrong = _pert("prepare", "corpus.txt", "--lang", "fr")
    assert wrong.returncode == 2 and "argument --lang: invalid choice: 'fr'" in wrong.stderr
    assert "Traceback" not in typo.stderr + wrong.stderr


def test_help_lists_choices_and_required_options_and_no_doubled_default():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    for verb in VERBS:
        text = sub[verb].format_help()
        for line in text.split("  --"):
            assert line.count("(default:") <= 1, (verb, line)
    finetune = sub["finetune"].format_help()
    assert "required (on the command line or in --config)" in finetune
    assert "{zh,en}" in sub["prepare"].format_help()


def test_device_and_precision_mean_the_same_in_every_verb_that_runs_a_model():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    for verb in ("pretrain", "finetune", "evaluate", "qa", "restore"):
        args = sub[verb].parse_args(["--model", "m"] if verb in ("qa", "restore") else [])
        options = {a.dest: a for a in sub[verb]._actions}
        assert options["precision"].choices == ("auto", "fp32", "bf16", "fp16"), verb
        assert "--device" in options["device"].option_strings, verb
        # the config verbs leave unset flags None (the dataclass default, auto, applies); the others say auto
        assert args.precision in (None, "auto") and args.device in (None, "auto"), verb
