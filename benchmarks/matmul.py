"""The dense products of the closed-form rules: torch's own (MKL), oneDNN and NumPy's OpenBLAS.

Each shape is a product a rule runs every step (the batch of its benchmark, one thread):

- predictive coding, 784-500-500-10 at batch 100: the prediction and the top-down error of a
  hidden layer, 100 x 500 @ 500 x 500 (``x W^T`` and ``e W``);
- DECOLLE, 784-256-10 at batch 128: the membrane input P W^T (128 x 784 @ 784 x 256) and the
  weight gradient dL/dU^T P (256 x 128 @ 128 x 784);
- Krotov-Hopfield, 2000 hidden units at minibatch 100: the currents v W'^T (100 x 784 @ 784 x
  2000).

The libraries alternate within each round; the figure is the median CPU time of a product
over the rounds. ``bionn.core.matmul`` picks oneDNN for these products on AMD CPUs.

    python benchmarks/matmul.py --threads 1 [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from bionn.core.matmul import describe, onednn_available, onednn_linear
from bionn.core.resources import cpu_model

# (name, a's shape, b's shape, whether a is a transposed view, whether b is)
SHAPES = [
    ("pc x W^T", (100, 500), (500, 500), False, True),
    ("pc e W", (100, 500), (500, 500), False, False),
    ("decolle P W^T", (128, 784), (784, 256), False, True),
    ("decolle dU^T P", (256, 128), (128, 784), True, False),
    ("krotov v W'^T", (100, 784), (784, 2000), False, True),
]


def _operands(a_shape, b_shape, a_t, b_t):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(*reversed(a_shape), generator=g).t() if a_t else torch.randn(
        *a_shape, generator=g)
    b = torch.randn(*reversed(b_shape), generator=g).t() if b_t else torch.randn(
        *b_shape, generator=g)
    return a, b


def _cpu_ms(fn, reps: int) -> float:
    fn()
    start = time.process_time()
    for _ in range(reps):
        fn()
    return (time.process_time() - start) / reps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--reps", type=int, default=50, help="products per library per round")
    parser.add_argument("--out", default="benchmarks/results/matmul.json")
    args = parser.parse_args()
    if args.threads < 1 or args.rounds < 1 or args.reps < 1:
        raise SystemExit("--threads, --rounds and --reps must be positive")
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
    rows = []
    for name, a_shape, b_shape, a_t, b_t in SHAPES:
        a, b = _operands(a_shape, b_shape, a_t, b_t)
        an, bn = a.numpy(), b.numpy()
        sides = {"torch (MKL)": lambda a=a, b=b: a @ b,
                 "numpy (OpenBLAS)": lambda an=an, bn=bn: np.matmul(an, bn)}
        if onednn_available():
            sides["oneDNN"] = lambda a=a, b=b: onednn_linear(a, b.t())
        times: dict[str, list[float]] = {k: [] for k in sides}
        for _ in range(args.rounds):
            for key, fn in sides.items():
                times[key].append(_cpu_ms(fn, args.reps))
        med = {k: statistics.median(v) for k, v in times.items()}
        m, k = a_shape
        n = b_shape[1]
        rows.append({"product": name, "shape": f"{m} x {k} @ {k} x {n}",
                     "median_cpu_ms": med,
                     "gflops": {key: 2e-6 * m * k * n / v for key, v in med.items()},
                     "onednn_over_torch": med["oneDNN"] / med["torch (MKL)"]
                     if "oneDNN" in med else None})
        print(json.dumps(rows[-1]), flush=True)
    result = {"benchmark": "matmul", "products": rows, "rounds": args.rounds,
              "reps": args.reps, "matmul": describe(), "torch": torch.__version__,
              "numpy": np.__version__, "threads": args.threads, "cpu": cpu_model(),
              "machine": platform.machine(), "load_average_1_5_15_min": list(os.getloadavg()),
              "command": f"python benchmarks/matmul.py --threads {args.threads} --rounds "
                         f"{args.rounds} --reps {args.reps}"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
