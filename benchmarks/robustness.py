"""AUC of the shipped model (or any checkpoint) for each rendering and perturbation of held-out studies.

The same measurement as ``mdd evaluate --robustness`` (:mod:`mlkit.evaluation.robustness`): held-out
studies of the second synthetic generator (a seed never used in training), each drawn once and written
as the clean reference, its own random rendering, without VOI tags, with a shifted window, For
Processing, MONOCHROME1, 10 bits, twice the noise, at 0.07 mm and magnified 2x; per row the per-breast
AUC with its bootstrap 95 % interval, the drop from the clean row and the share of breasts outside the
training distribution. Targets: AUC ≥ 0.90 in every row and no row more than 0.05 below the clean one.
It prints the table as measured.

    .venv/bin/python benchmarks/robustness.py --studies 120 --seed 9001
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from mlkit.evaluation.robustness import evaluate_robustness
from services.infer.predictor import SHIPPED_WEIGHTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=SHIPPED_WEIGHTS)
    parser.add_argument("--studies", type=int, default=120)
    parser.add_argument("--seed", type=int, default=9001)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    report = evaluate_robustness(args.weights, args.studies, args.seed)
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} núcleos / cores, torch {args.threads} hilo(s)")
    print(report.markdown())
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
