"""Data-parallel training: throughput and accuracy against the number of processes.

For each number of processes N (default 1 and 2) this runs the command line itself,
``python -m bionn train`` for N = 1 and ``torchrun --standalone --nproc_per_node N -m bionn
train`` otherwise, with the same rule, data, model, seed and global batch, and reads the
run folder rank 0 wrote: the test accuracy, the training time of every epoch (throughput is
training examples per second of it, evaluation excluded) and the wall time of the whole
command (start-up, data loading and evaluation included). Every rank runs ``--threads``
threads (OMP_NUM_THREADS). The runs of one repeat follow each other; repeats alternate the
order so that a change in the machine's load hits every N alike. The load average before
and after each run is recorded, since on a shared machine it says how far to trust a time.

    python benchmarks/distributed.py --data-dir DATA [--rule fa] [--processes 1,2]
        [--epochs 1] [--repeats 1] [--threads 1] [--out benchmarks/results/distributed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bionn.core.resources import cpu_model


def command(n: int, args: argparse.Namespace, out: Path) -> list[str]:
    train = ["-m", "bionn", "train", "--rule", args.rule, "--dataset", args.dataset,
             "--model", args.model, "--epochs", str(args.epochs), "--batch-size",
             str(args.batch_size), "--seed", str(args.seed), "--out", str(out),
             "--no-progress"]
    if args.data_dir:
        train += ["--data-dir", args.data_dir]
    if n == 1:
        return [sys.executable, *train]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={n}"]
    return [*torchrun, *train]


def shown(cmd: list[str]) -> str:
    """The command as a person would type it (``python``, ``torchrun``, DATA for the data)."""
    words = ["python" if w == sys.executable else w for w in cmd]
    if words[1:3] == ["-m", "torch.distributed.run"]:
        words = ["torchrun", *words[3:]]
    text = shlex.join(words)
    return text


def run_once(n: int, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = command(n, args, out)
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"{shown(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
        summary = json.loads((out / "summary.json").read_text())
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_s = sum(r["epoch_time_s"] for r in records)
    examples = args.train_examples * args.epochs
    return {
        "processes": n,
        "test_accuracy": summary["test_accuracy"],
        "train_accuracy": summary["train_accuracy"],
        "train_time_s": train_s,
        "examples_per_s": examples / train_s,
        "command_wall_s": wall,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None, help="data root (default $BIONN_DATA)")
    parser.add_argument("--rule", default="fa")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--model", default="mlp:1000")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=100, help="the global batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts")
    parser.add_argument("--repeats", type=int, default=1, help="runs per process count")
    parser.add_argument("--threads", type=int, default=1, help="threads of every process")
    parser.add_argument("--out", default="benchmarks/results/distributed.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    counts = [int(n) for n in args.processes.split(",")]
    from bionn.data import load_dataset

    args.train_examples = len(load_dataset(args.dataset, args.data_dir, train=True).targets)

    runs = []
    for repeat in range(args.repeats):
        order = counts if repeat % 2 == 0 else counts[::-1]
        for n in order:
            result = run_once(n, args)
            result["repeat"] = repeat
            runs.append(result)
            print(f"{n} process(es): test accuracy {100 * result['test_accuracy']:.2f}%, "
                  f"{result['examples_per_s']:.0f} examples/s in training, "
                  f"{result['command_wall_s']:.1f} s in all "
                  f"(load {result['load_average_before']:.1f})",
                  flush=True)

    by_n = {}
    for n in counts:
        mine = [r for r in runs if r["processes"] == n]
        by_n[str(n)] = {
            "test_accuracy": [r["test_accuracy"] for r in mine],
            "median_examples_per_s": statistics.median(r["examples_per_s"] for r in mine),
            "median_command_wall_s": statistics.median(r["command_wall_s"] for r in mine),
        }
    base = by_n[str(counts[0])]
    for n in counts:
        entry = by_n[str(n)]
        entry["speedup_vs_first"] = entry["median_examples_per_s"] / base["median_examples_per_s"]
        entry["accuracy_points_vs_first"] = 100 * (
            statistics.mean(entry["test_accuracy"]) - statistics.mean(base["test_accuracy"])
        )
    result = {
        "benchmark": "distributed",
        "rule": args.rule,
        "dataset": args.dataset,
        "model": args.model,
        "epochs": args.epochs,
        "global_batch_size": args.batch_size,
        "seed": args.seed,
        "train_examples": args.train_examples,
        "threads_per_process": args.threads,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "backend": "gloo",
        "commands": {str(n): shown(command(n, args, Path("OUT"))).replace(
            str(args.data_dir), "DATA") for n in counts},
        "command": "python benchmarks/distributed.py " + shlex.join(
            [a if a != args.data_dir else "DATA" for a in sys.argv[1:]]),
        "by_processes": by_n,
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for n in counts:
        e = by_n[str(n)]
        print(f"N = {n}: {e['median_examples_per_s']:.0f} examples/s "
              f"({e['speedup_vs_first']:.2f}x), "
              f"accuracy {e['accuracy_points_vs_first']:+.2f} points")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
