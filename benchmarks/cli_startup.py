"""How long the `pert` command takes to answer what needs no work: `--help`, each verb's `--help`, a typo and a
wrong flag, against the floor the old CLI paid before it could answer (importing torch and transformers, which it
did to build its parser).

    .venv/bin/python benchmarks/cli_startup.py            # about half a minute
    .venv/bin/python benchmarks/cli_startup.py --repeat 5

Each command runs as its own process (as a user's shell runs it); the median wall time of --repeat runs is
printed, then the ratio baseline / pert.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from pert.cli import VERBS

BASELINE = [sys.executable, "-c", "import torch, transformers"]


def wall(cmd: list[str], repeat: int) -> float:
    """Median wall seconds of ``cmd`` run ``repeat`` times (its exit status is not checked: typos exit 2)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per command (default: 3)")
    args = ap.parse_args()
    pert = [sys.executable, "-m", "pert.cli"]
    cases = {"pert --help": ["--help"], "pert --version": ["--version"], "typo (pert finetun)": ["finetun"],
             "wrong flag (pert prepare x --lang fr)": ["prepare", "x", "--lang", "fr"]}
    cases.update({f"pert {v} --help": [v, "--help"] for v in VERBS})
    print(f"load average {os.getloadavg()[0]:.2f}; python {sys.version.split()[0]}; median of {args.repeat}")
    base = wall(BASELINE, args.repeat)
    print(f"{'baseline: import torch, transformers':45s} {base:6.2f} s")
    rows = {name: wall(pert + argv, args.repeat) for name, argv in cases.items()}
    for name, t in rows.items():
        print(f"{name:45s} {t:6.2f} s   baseline / pert {base / t:5.1f}x")
    print(f"{'slowest pert command':45s} {max(rows.values()):6.2f} s")


if __name__ == "__main__":
    main()
