"""Backprop on MNIST with the defaults of ``bionn train``: the baseline every rule is held to.

Runs ``bionn train --rule bp --dataset mnist --epochs E --model M --seed S`` (through the
library, same code path) for each model and seed, and writes the test accuracies as JSON.

    python benchmarks/backprop_mnist.py --data-dir DATA [--epochs 5] [--seeds 0,1,2]
        [--models mlp:1000,cnn] [--threads 1] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path

import torch

from bionn.core.config import TrainConfig
from bionn.core.run import run_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None, help="data root (default $BIONN_DATA)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--models", default="mlp:1000,cnn")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--out", default="benchmarks/results/backprop_mnist.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    seeds = [int(s) for s in args.seeds.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            for seed in seeds:
                config = TrainConfig(rule="bp", dataset="mnist", model=model, epochs=args.epochs,
                                     seed=seed, data_dir=args.data_dir, device=args.device,
                                     threads=args.threads,
                                     out=str(Path(tmp) / f"{model}-{seed}"))
                summary = run_training(config, progress=False, plot=False)
                row = {k: summary[k] for k in ("model", "seed", "epochs", "test_accuracy",
                                               "train_accuracy", "wall_time_s")}
                results.append(row)
                print(json.dumps(row), flush=True)
    by_model = {}
    for model in args.models.split(","):
        accs = [r["test_accuracy"] for r in results if r["model"] == model]
        by_model[model] = {"mean": statistics.mean(accs), "min": min(accs), "max": max(accs)}
    out = {
        "benchmark": "backprop_mnist",
        "config": {k: v for k, v in TrainConfig().to_dict().items()
                   if k in ("batch_size", "optimizer", "lr", "schedule", "activation")},
        "learning_rate": TrainConfig().learning_rate,
        "runs": results,
        "test_accuracy": by_model,
        "target": "mlp:1000, 5 epochs: test accuracy >= 0.978",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
