"""Feedback alignment, DFA and sign symmetry on MNIST against backprop, and their step cost.

Three parts, each writing its own JSON under ``benchmarks/results/``:

``accuracy``  Lillicrap's network, 784-1000-10 tanh, trained with ``bionn train``'s code path
              (``run_training``: Adam lr 1e-3, cosine schedule, batch 100) for the same budget
              by bp, fa, usf, brsf, frsf and dfa. Records test accuracy, the hidden layer's
              update angle to backprop after every epoch and the weight angle (W vs B^T).
``cnn``       The bionn CNN on MNIST, bp against fa, same budget.
``speed``     One training step (``fill_grads`` + Adam step, as the Trainer does it) on a
              784-256-256-10 ReLU MLP, batch 128: bionn bp, bionn fa, and a BioTorch FA step
              run by the peer's Python in a subprocess. Measured alternately in one run
              (bionn bp, bionn fa, BioTorch fa, repeat) with one torch thread on each side;
              the result is the median over rounds of the per-round ratios. Run it under the
              shared benchmark lock.

    python benchmarks/feedback_alignment.py accuracy --data-dir DATA [--epochs 20] [--seed 0]
    python benchmarks/feedback_alignment.py cnn --data-dir DATA [--epochs 5]
    flock LOCK python benchmarks/feedback_alignment.py speed [--peer-python PEER/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch

from bionn.core.config import TrainConfig
from bionn.core.resources import cpu_model
from bionn.core.run import run_training

ACCURACY_RULES = ("bp", "fa", "usf", "brsf", "frsf", "dfa")
TARGETS = {"fa": 0.005, "usf": 0.003, "brsf": 0.003, "frsf": 0.003, "dfa": 0.007}


def _machine() -> dict:
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": cpu_model(),
            "machine": platform.machine(), "python": platform.python_version(),
            "load_average_1_5_15_min": list(os.getloadavg())}


def _out_path(args) -> Path:
    return Path(args.out or f"benchmarks/results/feedback_alignment_{args.part}.json")


def _write_partial(args, result: dict) -> None:
    """Keep what is measured so far (marked partial) in case a long run is stopped."""
    path = _out_path(args)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"partial": True, **result}, indent=2) + "\n")


def _hidden_layer(names) -> str:
    """The hidden layer of a one-hidden-layer MLP: the first layer with parameters."""
    return next(iter(names))


def _train(rule: str, model: str, activation: str, epochs: int, seed: int, data_dir, tmp: str,
           device: str) -> dict:
    config = TrainConfig(rule=rule, dataset="mnist", model=model, activation=activation,
                         epochs=epochs, seed=seed, data_dir=data_dir, device=device,
                         out=str(Path(tmp) / f"{rule}-{model}-{seed}"))
    summary = run_training(config, progress=False, plot=False)
    history = [json.loads(line) for line in
               (Path(config.out) / "metrics.jsonl").read_text().splitlines()]
    return {"summary": summary, "history": history}


def _merged_runs(args) -> dict:
    """The runs of several earlier result files (rules trained in separate processes)."""
    runs = {}
    for name in args.merge.split(","):
        runs.update(json.loads(Path(name).read_text())["runs"])
    return runs


def part_accuracy(args) -> dict:
    rules = args.rules.split(",") if args.rules else list(ACCURACY_RULES)
    runs = _merged_runs(args) if args.merge else {}
    with tempfile.TemporaryDirectory() as tmp:
        for rule in rules if not args.merge else []:
            out = _train(rule, "mlp:1000", "tanh", args.epochs, args.seed, args.data_dir, tmp,
                         args.device)
            s, h = out["summary"], out["history"]
            hidden = _hidden_layer(h[0]["angle_per_layer_deg"])
            row = {
                "rule": rule,
                "test_accuracy": s["test_accuracy"],
                "train_accuracy": s["train_accuracy"],
                "wall_time_s": s["wall_time_s"],
                "test_accuracy_per_epoch": [r["test_accuracy"] for r in h],
                "hidden_update_angle_deg_per_epoch": [r["angle_per_layer_deg"][hidden]
                                                      for r in h],
                "weight_angle_deg_per_epoch": [r.get("weight_angle_deg") for r in h],
            }
            runs[rule] = row
            print(json.dumps({k: row[k] for k in ("rule", "test_accuracy", "wall_time_s")}),
                  flush=True)
            _write_partial(args, {"runs": runs})
    checks = {}
    if "bp" in runs:
        bp = runs["bp"]["test_accuracy"]
        for rule, gap in TARGETS.items():
            if rule not in runs:
                continue
            angles = runs[rule]["hidden_update_angle_deg_per_epoch"]
            checks[rule] = {
                "gap_to_bp_points": round(100 * (bp - runs[rule]["test_accuracy"]), 3),
                "allowed_gap_points": 100 * gap,
                "accuracy_met": bp - runs[rule]["test_accuracy"] <= gap + 1e-12,
                "angle_below_90_every_epoch": all(a is not None and a < 90 for a in angles),
                "angle_first_last_deg": [angles[0], angles[-1]],
                "angle_falls": angles[-1] < angles[0],
            }
    figure = plot_accuracy_runs(runs, _out_path(args).with_suffix(".png"))
    return {
        "benchmark": "feedback_alignment_accuracy",
        "figure": figure.name,
        "network": "784-1000-10 tanh (mlp:1000)",
        "config": {"epochs": args.epochs, "seed": args.seed, "batch_size": 100,
                   "optimizer": "adam", "lr": 1e-3, "schedule": "cosine"},
        "runs": runs,
        "checks": checks,
        "targets": "test accuracy within 0.5 (fa), 0.3 (usf, brsf, frsf), 0.7 (dfa) points of bp; "
                   "hidden-layer update angle < 90 deg from epoch 1 on and falling",
        **_machine(),
    }


def plot_accuracy_runs(runs: dict, path: Path) -> Path:
    """Lillicrap's Fig. 2 for every rule: hidden-layer update angle and weight angle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_u, ax_w) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for rule, row in runs.items():
        if rule == "bp":
            continue
        angles = row["hidden_update_angle_deg_per_epoch"]
        epochs = range(1, len(angles) + 1)
        ax_u.plot(epochs, angles, marker="o", markersize=3, label=rule)
        weights = [next(iter(w.values())) if w else float("nan")
                   for w in row["weight_angle_deg_per_epoch"]]
        ax_w.plot(epochs, weights, marker="o", markersize=3, label=rule)
    for ax, label in ((ax_u, "hidden-layer update vs backprop (deg)"),
                      (ax_w, "output weights vs feedback (deg)")):
        ax.axhline(90, color="grey", linestyle="--", linewidth=1)
        ax.set_ylim(0, 100)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("MNIST 784-1000-10 tanh: alignment with backprop")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def part_cnn(args) -> dict:
    rules = args.rules.split(",") if args.rules else ["bp", "fa"]
    runs = _merged_runs(args) if args.merge else {}
    with tempfile.TemporaryDirectory() as tmp:
        for rule in rules if not args.merge else []:
            out = _train(rule, "cnn", "relu", args.epochs, args.seed, args.data_dir, tmp,
                         args.device)
            s, h = out["summary"], out["history"]
            runs[rule] = {
                "test_accuracy": s["test_accuracy"],
                "train_accuracy": s["train_accuracy"],
                "wall_time_s": s["wall_time_s"],
                "test_accuracy_per_epoch": [r["test_accuracy"] for r in h],
                "update_angle_deg_per_layer_last_epoch": h[-1]["angle_per_layer_deg"],
                "weight_angle_deg_last_epoch": h[-1].get("weight_angle_deg"),
            }
            print(json.dumps({"rule": rule, "test_accuracy": s["test_accuracy"]}), flush=True)
            _write_partial(args, {"runs": runs})
    checks = {}
    if "bp" in runs and "fa" in runs:
        gap = runs["bp"]["test_accuracy"] - runs["fa"]["test_accuracy"]
        checks = {"gap_to_bp_points": round(100 * gap, 3), "allowed_gap_points": 1.0,
                  "met": gap <= 0.01 + 1e-12}
    return {
        "benchmark": "feedback_alignment_cnn",
        "network": "conv3x3(32)-relu-pool-conv3x3(64)-relu-pool-fc128-relu-fc10 (cnn)",
        "config": {"epochs": args.epochs, "seed": args.seed, "batch_size": 100,
                   "optimizer": "adam", "lr": 1e-3, "schedule": "cosine"},
        "runs": runs,
        "checks": checks,
        **_machine(),
    }


# -- speed ---------------------------------------------------------------------------------
SIZES = (784, 256, 256, 10)
SPEED_MODES = ("fa", "usf", "brsf", "frsf", "dfa")

# The peer side: builds the same MLP, converts it with BioTorch's own converter to the given
# mode, and times N training steps (forward, cross-entropy, backward, Adam step, zero_grad) on
# request. BioTorch's DFA takes the targets and the loss in its forward call.
PEER_SCRIPT = textwrap.dedent(
    """
    import sys, time, contextlib, io
    import torch
    from torch import nn
    from torch.nn import functional as F
    from biotorch.module.biomodule import BioModule
    torch.set_num_threads(int(sys.argv[4]))
    torch.manual_seed(0)
    sizes = [int(v) for v in sys.argv[1].split(",")]
    batch, mode = int(sys.argv[2]), sys.argv[3]
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    with contextlib.redirect_stdout(io.StringIO()):  # its converter prints a summary
        model = BioModule(nn.Sequential(*layers), mode=mode,
                          output_dim=sizes[-1] if mode == "dfa" else None)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, sizes[0], generator=g)
    y = torch.randint(0, sizes[-1], (batch,), generator=g)
    def step():
        if mode == "dfa":
            out = model(x, targets=y, loss_function=F.cross_entropy)
        else:
            out = model(x)
        loss = F.cross_entropy(out, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    print("ready", flush=True)
    for line in sys.stdin:
        n = int(line)
        start = time.process_time()
        for _ in range(n):
            step()
        print(time.process_time() - start, flush=True)
    """
)


def _bionn_stepper(rule_name: str, batch: int):
    from bionn.core.registry import make_rule

    torch.manual_seed(0)
    rule = make_rule(rule_name)
    model = rule.build_model(f"mlp:{SIZES[1]},{SIZES[2]}", (1, 28, 28), SIZES[-1], "relu")
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, SIZES[0], generator=g)
    y = torch.randint(0, SIZES[-1], (batch,), generator=g)

    def run(n: int) -> float:
        start = time.process_time()
        for _ in range(n):
            rule.fill_grads(model, x, y)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return time.process_time() - start

    return run


def _peer_stepper(python: str, mode: str, batch: int, procs: list, threads: int = 1):
    proc = subprocess.Popen(
        [python, "-c", PEER_SCRIPT, ",".join(map(str, SIZES)), str(batch), mode, str(threads)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    procs.append(proc)
    assert proc.stdout is not None and proc.stdin is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"the peer process for {mode} did not start")

    def run(n: int) -> float:
        proc.stdin.write(f"{n}\n")
        proc.stdin.flush()
        return float(proc.stdout.readline())

    return run


def part_speed(args) -> dict:
    torch.set_num_threads(args.threads)
    modes = args.modes.split(",") if args.modes else list(SPEED_MODES)
    procs: list = []
    sides = {"bionn_bp": _bionn_stepper("bp", args.batch)}
    for mode in modes:
        sides[f"bionn_{mode}"] = _bionn_stepper(mode, args.batch)
        if args.peer_python:
            sides[f"biotorch_{mode}"] = _peer_stepper(args.peer_python, mode, args.batch, procs,
                                                      args.threads)
    try:
        for run in sides.values():  # warm-up
            run(args.steps)
        times: dict[str, list[float]] = {k: [] for k in sides}
        for _ in range(args.rounds):
            for name, run in sides.items():
                times[name].append(run(args.steps) / args.steps)
    finally:
        for proc in procs:
            proc.stdin.close()
            proc.wait(timeout=30)

    def ratio(a: str, b: str) -> list[float]:
        return [x / y for x, y in zip(times[a], times[b], strict=True)]

    ratios = {}
    for mode in modes:
        ratios[f"{mode}_over_bp"] = ratio(f"bionn_{mode}", "bionn_bp")
        if args.peer_python:
            ratios[f"{mode}_over_biotorch_{mode}"] = ratio(f"bionn_{mode}", f"biotorch_{mode}")
    if args.peer_python:
        ratios["biotorch_fa_over_bionn_bp"] = ratio("biotorch_fa", "bionn_bp")
    median_ratios = {k: statistics.median(v) for k, v in ratios.items()}
    checks = {}
    if "fa_over_bp" in median_ratios:
        checks["fa_over_bp_max"] = 1.10
        checks["fa_over_bp_met"] = median_ratios["fa_over_bp"] <= 1.10
    if "brsf_over_bp" in median_ratios:
        checks["brsf_over_bp_max"] = 1.15
        checks["brsf_over_bp_met"] = median_ratios["brsf_over_bp"] <= 1.15
    if "brsf_over_biotorch_brsf" in median_ratios:
        checks["brsf_below_biotorch_brsf_met"] = median_ratios["brsf_over_biotorch_brsf"] < 1.0
    if "fa_over_biotorch_fa" in median_ratios:
        checks["fa_over_biotorch_fa_max"] = 0.8
        checks["fa_over_biotorch_fa_met"] = median_ratios["fa_over_biotorch_fa"] <= 0.8
    return {
        "benchmark": "feedback_alignment_speed",
        "network": f"784-256-256-10 relu, batch {args.batch}, Adam, synthetic inputs",
        "config": {"rounds": args.rounds, "steps_per_round": args.steps,
                   "threads_each": args.threads,
                   "clock": "CPU time of each side's own process (time.process_time)"},
        "median_step_ms": {k: 1e3 * statistics.median(v) for k, v in times.items()},
        "median_ratio": median_ratios,
        "ratio_range": {k: [min(v), max(v)] for k, v in ratios.items()},
        "step_ms_per_round": {k: [1e3 * t for t in v] for k, v in times.items()},
        "checks": checks,
        "peer": "BioTorch 0.0.16 (biotorch.module.biomodule.BioModule), torch 2.13.0"
        if args.peer_python else None,
        **_machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=["accuracy", "cnn", "speed"])
    parser.add_argument("--data-dir", default=None, help="data root (default $BIONN_DATA)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per run (accuracy: 20, cnn: 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rules", default=None, help="accuracy: comma-separated subset")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--merge", default=None,
                        help="accuracy, cnn: combine the runs of these result files (comma-"
                        "separated; rules trained in separate processes) instead of training")
    parser.add_argument("--peer-python", default=None,
                        help="speed: the Python of an environment with BioTorch installed")
    parser.add_argument("--modes", default=None, help="speed: comma-separated subset of "
                        + ",".join(SPEED_MODES))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (speed: on each side; lower it on a busy machine)")
    parser.add_argument("--out", default=None, help="JSON file (default under results/)")
    args = parser.parse_args()
    if args.epochs is None:
        args.epochs = {"accuracy": 20, "cnn": 5}.get(args.part, 0)
    torch.set_num_threads(args.threads)
    result = {"accuracy": part_accuracy, "cnn": part_cnn, "speed": part_speed}[args.part](args)
    if args.merge:
        result["merged_from"] = [
            f"{args.part} --rules {rule} (one process per rule, OMP_NUM_THREADS=1)"
            for rule in result["runs"]
        ]
    shown = list(sys.argv[1:])
    for flag, placeholder in (("--data-dir", "DATA"), ("--peer-python", "PEER_PYTHON"),
                              ("--out", "OUT"), ("--merge", "FILES")):
        if flag in shown[:-1]:
            shown[shown.index(flag) + 1] = placeholder
    result["command"] = "python benchmarks/feedback_alignment.py " + " ".join(shown)
    out = _out_path(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result.get("checks", {}), indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
