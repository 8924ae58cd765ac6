"""Temporal credit assignment: credit horizon, UCR/UEA accuracy, memory against T, speed.

Sections (each merged into one JSON file, ``--out``), at reduced budgets stated in the JSON:

- ``horizon``: delayed recall (``copy:delay=D``, 4 symbols, distractors) for several delays;
  test accuracy of bptt, tbptt (K), rtrl, uoro, rflo on the leaky RNN and of the attention
  memory trained with tbptt (K); a figure.
- ``ucr``: JapaneseVowels, GunPoint, ItalyPowerDemand, BasicMotions with bptt, rflo and uoro;
  a published reference accuracy quoted next to each.
- ``memory``: peak resident memory growth during one training update (a fresh process per
  point, ``ru_maxrss``) and time per step, against T = 25..400; a figure.
- ``speed``: one RFLO and one UORO step against the vanilla-rtrl code (numpy, one example per
  step) on the same network size, in its own Python environment (``--peer-python``,
  ``--peer-src``).

    python benchmarks/temporal_credit.py --section horizon --threads 1
    python benchmarks/temporal_credit.py --section ucr --data-dir DATA
    python benchmarks/temporal_credit.py --section memory
    python benchmarks/temporal_credit.py --section speed --peer-python PY --peer-src DIR
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path("benchmarks/results")


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor()


def train(rule_name, spec, model_spec, epochs, lr, options=None, data_dir=None, seed=0,
          batch_size=32):
    from bionn.core.registry import make_rule
    from bionn.core.trainer import Trainer
    from bionn.data import load_dataset

    tr = load_dataset(spec, data_dir, train=True)
    te = load_dataset(spec, data_dir, train=False)
    torch.manual_seed(seed)
    rule = make_rule(rule_name, options or {})
    model = rule.build_model(model_spec, tr.input_shape, tr.num_classes, "tanh")
    trainer = Trainer(model, rule, torch.optim.Adam(model.parameters(), lr=lr),
                      (tr.normalized(), tr.targets), (te.normalized(), te.targets),
                      batch_size=batch_size, progress=False, batch_dims=tr.batch_dims,
                      angle_batch_size=64, seed=seed)
    start = time.perf_counter()
    summary = trainer.fit(epochs)
    return {"test_accuracy": summary["test_accuracy"],
            "curve": [r["test_accuracy"] for r in trainer.history],
            "wall_s": time.perf_counter() - start}


def section_horizon(args) -> dict[str, Any]:
    from bionn.plots.temporal_credit import plot_credit_horizon

    k = args.truncation
    algos = {
        "bptt": ("bptt", "rnn", {}),
        f"tbptt K={k}": ("tbptt", "rnn", {"truncation": k}),
        "rtrl": ("rtrl", "rnn", {}),
        "uoro": ("uoro", "rnn", {}),
        "rflo": ("rflo", "rnn", {}),
        f"attention + tbptt K={k}": ("tbptt", "attention", {"truncation": k}),
    }
    curves: dict[str, dict[int, float]] = {name: {} for name in algos}
    runs = []
    for delay in args.delays:
        spec = f"copy:delay={delay},n_train={args.n_train},n_test=400"
        for name, (rule, kind, opts) in algos.items():
            if rule == "rtrl" and delay > args.rtrl_max_delay:
                continue
            res = train(rule, spec, f"{kind}:{args.hidden}", args.epochs, args.lr, opts)
            curves[name][delay] = res["test_accuracy"]
            runs.append({"algorithm": name, "delay": delay, **res})
            print(f"horizon delay {delay:>3} {name:<24} {res['test_accuracy']:.3f} "
                  f"({res['wall_s']:.0f} s)", file=sys.stderr, flush=True)
    fig = plot_credit_horizon(curves, RESULTS / "temporal_credit_horizon.png", chance=0.25,
                              truncation=k)
    return {"budget": {"n_train": args.n_train, "n_test": 400, "epochs": args.epochs,
                       "hidden": args.hidden, "lr": args.lr, "optimizer": "adam",
                       "batch_size": 32, "symbols": 4, "distractors": 1, "leak": 0.5,
                       "activation": "tanh", "seed": 0, "rtrl_max_delay": args.rtrl_max_delay},
            "accuracy": {name: {str(d): v for d, v in c.items()} for name, c in curves.items()},
            "runs": runs, "figure": str(fig)}


def section_ucr(args) -> dict[str, Any]:
    from bionn.data import DATASETS
    from bionn.plots.temporal_credit import plot_learning_curves_side_by_side

    out: dict[str, Any] = {"budget": {"epochs": args.ucr_epochs, "hidden": args.hidden,
                                      "lr": args.lr, "optimizer": "adam", "batch_size": 32,
                                      "leak": 0.5, "activation": "tanh", "seed": 0}}
    for name in ("jvowels", "gunpoint", "italypower", "basicmotions"):
        cls = DATASETS[name]
        row: dict[str, Any] = {"reference_accuracy": cls.reference[0],
                               "reference": cls.reference[1]}
        curves = {}
        for rule in ("bptt", "rflo", "uoro"):
            res = train(rule, name, f"rnn:{args.hidden}", args.ucr_epochs, args.lr,
                        data_dir=args.data_dir)
            row[rule] = res["test_accuracy"]
            row[f"{rule}_wall_s"] = res["wall_s"]
            curves[rule] = [100 * a for a in res["curve"]]
            print(f"ucr {name:<13} {rule:<5} {res['test_accuracy']:.3f} ({res['wall_s']:.0f} s)",
                  file=sys.stderr, flush=True)
        row["figure"] = str(plot_learning_curves_side_by_side(
            curves, RESULTS / f"temporal_credit_{name}.png"))
        out[name] = row
    return out


def memory_point(args) -> dict[str, Any]:
    """One training update in this (fresh) process: peak RSS growth and time per step."""
    from bionn.core.registry import make_rule
    from bionn.data import load_dataset

    ds = load_dataset(f"add:length={args.length},n_train={args.batch},n_test=1")
    torch.manual_seed(0)
    opts = {"truncation": 10} if args.rule == "tbptt" else {}
    rule = make_rule(args.rule, opts)
    model = rule.build_model(f"rnn:{args.hidden}", ds.input_shape, ds.num_classes, "tanh")
    x, y = ds.data, ds.targets
    # warm up on a short sequence so one-off allocations are not counted
    rule.fill_grads(model, x[:5], y[:5].nan_to_num(0.0))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    rule.fill_grads(model, x, y)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"rss_growth_mib": (after - before) / 1024, "ms_per_step": 1e3 * elapsed / args.length}


def section_memory(args) -> dict[str, Any]:
    from bionn.plots.temporal_credit import plot_cost_per_step

    lengths = [25, 50, 100, 200, 400]
    memory: dict[str, dict[int, float]] = {}
    step_ms: dict[str, dict[int, float]] = {}
    for rule in ("bptt", "tbptt", "rtrl", "uoro", "rflo"):
        memory[rule], step_ms[rule] = {}, {}
        for length in lengths:
            cmd = [sys.executable, __file__, "--section", "memory-point", "--rule", rule,
                   "--length", str(length), "--hidden", str(args.mem_hidden),
                   "--batch", str(args.mem_batch), "--threads", str(args.threads)]
            res = json.loads(subprocess.run(cmd, capture_output=True, text=True,
                                            check=True).stdout.splitlines()[-1])
            memory[rule][length] = res["rss_growth_mib"]
            step_ms[rule][length] = res["ms_per_step"]
            print(f"memory {rule:<6} T={length:<4} {res['rss_growth_mib']:.1f} MiB "
                  f"{res['ms_per_step']:.2f} ms/step", file=sys.stderr, flush=True)
    fig = plot_cost_per_step(memory, step_ms, RESULTS / "temporal_credit_memory.png")
    return {"setting": {"task": "add (2 inputs, 1 output)", "hidden": args.mem_hidden,
                        "batch": args.mem_batch, "tbptt_truncation": 10,
                        "measure": "growth of peak resident memory (ru_maxrss) during one "
                                   "update, fresh process per point"},
            "rss_growth_mib": {r: {str(t): v for t, v in m.items()} for r, m in memory.items()},
            "ms_per_step": {r: {str(t): v for t, v in m.items()} for r, m in step_ms.items()},
            "figure": str(fig)}


PEER = r'''
import sys, time, json
import numpy as np
sys.path.insert(0, sys.argv[1])
from core.RNN import RNN
from functions import tanh, identity, softmax_cross_entropy
from learning_algorithms.RFLO import RFLO
from learning_algorithms.UORO import UORO
n_in, n_h, n_out, steps = (int(v) for v in sys.argv[2:6])
rng = np.random.RandomState(0)
rnn = RNN(rng.normal(0, 1 / np.sqrt(n_in), (n_h, n_in)),
          rng.normal(0, 1 / np.sqrt(n_h), (n_h, n_h)),
          rng.normal(0, 1 / np.sqrt(n_h), (n_out, n_h)),
          np.zeros(n_h), np.zeros(n_out), activation=tanh, alpha=0.5,
          output=identity, loss=softmax_cross_entropy)
xs = rng.normal(0, 1, (steps, n_in))
ys = np.eye(n_out)[rng.randint(n_out, size=steps)]
out = {}
for name, make in (("rflo", lambda: RFLO(rnn, alpha=0.5, W_FB=rng.normal(0, 1, (n_out, n_h)))),
                   ("uoro", lambda: UORO(rnn))):
    alg = make()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for t in range(steps):
            rnn.x, rnn.y = xs[t], ys[t]
            rnn.next_state(rnn.x)
            rnn.z_out()
            rnn.error = rnn.loss.f_prime(rnn.z, rnn.y)
            alg.update_learning_vars()
            alg()
        best = min(best, (time.perf_counter() - start) / steps)
    out[name] = best
print(json.dumps(out))
'''


def section_speed(args) -> dict[str, Any]:
    from bionn.nn.recurrent import LeakyRNN
    from bionn.rules.temporal_credit import online_gradients

    n_in, n_h, n_out, steps = 9, args.hidden, 4, 200
    result: dict[str, Any] = {"network": {"inputs": n_in, "hidden": n_h, "outputs": n_out,
                                          "steps": steps, "loss": "softmax cross-entropy "
                                          "at every step"}}
    ours: dict[str, Any] = {}
    for batch in (1, 32):
        torch.manual_seed(0)
        model = LeakyRNN(n_in, n_h, n_out, alpha=0.5, feedback_scale=1.0)
        x = torch.randn(steps, batch, n_in)
        y = torch.randint(n_out, (steps, batch))
        for method in ("rflo", "uoro"):
            online_gradients(model, x[:5], y[:5], method)
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                online_gradients(model, x, y, method)
                best = min(best, (time.perf_counter() - start) / steps)
            ours[f"{method}_batch{batch}_s_per_step"] = best
            ours[f"{method}_batch{batch}_s_per_example_step"] = best / batch
    result["bionn"] = ours
    if args.peer_python and args.peer_src:
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
            f.write(PEER)
        proc = subprocess.run([args.peer_python, f.name, args.peer_src, str(n_in), str(n_h),
                               str(n_out), str(steps)], capture_output=True, text=True,
                              env={"OMP_NUM_THREADS": str(args.threads),
                                   "OPENBLAS_NUM_THREADS": str(args.threads),
                                   "PATH": "/usr/bin:/bin"})
        if proc.returncode != 0:
            raise SystemExit(f"vanilla-rtrl worker failed: {proc.stderr.strip()[-500:]}")
        peer = json.loads(proc.stdout.splitlines()[-1])
        result["vanilla_rtrl"] = {f"{k}_s_per_example_step": v for k, v in peer.items()}
        commit = Path(args.peer_src).parent / "COMMIT"
        if commit.is_file():
            result["vanilla_rtrl"]["commit"] = commit.read_text().strip()
        for m in ("rflo", "uoro"):
            result[f"{m}_speedup_batch1"] = peer[m] / ours[f"{m}_batch1_s_per_step"]
            result[f"{m}_speedup_batch32_per_example"] = (
                peer[m] / ours[f"{m}_batch32_s_per_example_step"])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--section", required=True,
                    choices=["horizon", "ucr", "memory", "speed", "memory-point"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=str(RESULTS / "temporal_credit.json"))
    ap.add_argument("--delays", type=lambda s: [int(v) for v in s.split(",")],
                    default=[5, 10, 20, 40])
    ap.add_argument("--truncation", type=int, default=5)
    ap.add_argument("--rtrl-max-delay", type=int, default=20)
    ap.add_argument("--n-train", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--ucr-epochs", type=int, default=40)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--mem-hidden", type=int, default=64)
    ap.add_argument("--mem-batch", type=int, default=64)
    ap.add_argument("--rule", default="bptt")
    ap.add_argument("--length", type=int, default=25)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--peer-python", default=None)
    ap.add_argument("--peer-src", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.section == "memory-point":
        print(json.dumps(memory_point(args)))
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    section = {"horizon": section_horizon, "ucr": section_ucr, "memory": section_memory,
               "speed": section_speed}[args.section](args)
    path = Path(args.out)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[args.section] = section
    data[args.section]["command"] = "python " + " ".join(sys.argv)
    data["machine"] = {"cpu": cpu_model(), "torch": torch.__version__,
                       "threads": args.threads}
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps({args.section: section}, indent=2)[:3000])


if __name__ == "__main__":
    main()
