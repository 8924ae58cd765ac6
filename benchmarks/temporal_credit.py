"""Temporal credit assignment: credit horizon, UCR/UEA accuracy, memory against T, speed.

Sections (each merged into one JSON file, ``--out``), at reduced budgets stated in the JSON:

- ``horizon``: delayed recall (``copy:delay=D``, 4 symbols, distractors) for several delays;
  test accuracy of bptt, tbptt (K), rtrl, uoro, rflo on the leaky RNN and of the attention
  memory trained with tbptt (K); a figure.
- ``ucr``: JapaneseVowels, GunPoint, ItalyPowerDemand, BasicMotions with bptt, rflo and uoro;
  a published reference accuracy quoted next to each.
- ``memory``: peak tensor memory of one training update (torch.profiler's allocation
  events) and time per step, against T = 25..400; a figure.
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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bionn.core.resources import cpu_model

RESULTS = Path("benchmarks/results")


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


def _parse_run(text: str) -> dict[str, Any]:
    """``rule@dataset@key=value,...`` (keys: model, epochs, lr, batch, leak, truncation)."""
    rule, dataset, opts = (text.split("@") + ["", ""])[:3]
    run: dict[str, Any] = {"rule": rule, "dataset": dataset, "model": "rnn:32", "epochs": 8,
                           "lr": 5e-3, "batch": 32, "options": {}}
    for item in filter(None, opts.split(",")):
        key, _, value = item.partition("=")
        if key in ("epochs", "batch"):
            run[key] = int(value)
        elif key == "lr":
            run[key] = float(value)
        elif key == "model":
            run[key] = value
        elif key == "leak":
            run["options"][key] = float(value)
        elif key == "truncation":
            run["options"][key] = int(value)
        else:
            raise SystemExit(f"--runs: unknown key {key!r} in {text!r}")
    return run


def section_runs(args) -> dict[str, Any]:
    """Single training runs at the budgets given by ``--runs`` (a longer or tuned budget than
    the sweeps above): test accuracy, the learning curve and the wall time of each."""
    results = []
    for text in args.runs:
        run = _parse_run(text)
        spec = run["dataset"].replace(";", ",")
        res = train(run["rule"], spec, run["model"], run["epochs"], run["lr"], run["options"],
                    data_dir=args.data_dir, batch_size=run["batch"])
        results.append({"run": text, **run, "dataset": spec, **res})
        print(f"run {text:<60} {res['test_accuracy']:.3f} ({res['wall_s']:.0f} s)",
              file=sys.stderr, flush=True)
    return {"runs": results, "seed": 0, "optimizer": "adam", "activation": "tanh"}


def _series(ds, znorm: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The cases (N, T, F) in float64, zero past each one's length, optionally z-normalised
    per case and channel over its real steps; and the lengths (N,)."""
    x = ds.data.double().transpose(0, 1).clone()
    mask = ds.mask.t()[:, :, None].double()
    lengths = ds.mask.sum(0)
    if znorm:
        count = mask.sum(1, keepdim=True)
        mean = (x * mask).sum(1, keepdim=True) / count
        var = (((x - mean) * mask) ** 2).sum(1, keepdim=True) / count
        x = (x - mean) / var.sqrt().clamp(min=1e-8) * mask
    return x * mask, lengths


def _dtw_d(a: torch.Tensor, la: torch.Tensor, b: torch.Tensor, lb: torch.Tensor) -> torch.Tensor:
    """Multivariate dependent DTW (Shokoohi-Yekta et al.: the squared Euclidean distance of
    whole steps as the cost), no warping window, between every case of ``a`` and of ``b``
    (``(Na, Nb)``); variable lengths end at each case's own last step."""
    cost = (a.pow(2).sum(-1)[:, None, :, None] + b.pow(2).sum(-1)[None, :, None, :]
            - 2 * torch.einsum("atf,bsf->abts", a, b)).clamp(min=0)
    na, nb, t, u = cost.shape
    cost = cost.permute(2, 3, 0, 1).contiguous()  # (t, u, na, nb): each cell's pairs together
    acc = torch.full((t + 1, u + 1, na, nb), float("inf"), dtype=cost.dtype)
    acc[0, 0] = 0.0
    for i in range(1, t + 1):
        for j in range(1, u + 1):
            best = torch.minimum(torch.minimum(acc[i - 1, j], acc[i, j - 1]), acc[i - 1, j - 1])
            torch.add(cost[i - 1, j - 1], best, out=acc[i, j])
    return acc[la[:, None], lb[None, :], torch.arange(na)[:, None], torch.arange(nb)[None, :]]


def section_references(args) -> dict[str, Any]:
    """1-NN test accuracy of the four UCR/UEA problems computed here, with the Euclidean
    distance (equal lengths only) and, where the quoted reference is a DTW one, with DTW_D (no
    window), on the raw and on per-case z-normalised series: an independent check of the
    reference accuracies quoted."""
    from bionn.data import DATASETS, load_dataset

    out: dict[str, Any] = {}
    for name in ("jvowels", "gunpoint", "italypower", "basicmotions"):
        tr = load_dataset(name, args.data_dir, train=True)
        te = load_dataset(name, args.data_dir, train=False)
        row: dict[str, Any] = {"quoted": DATASETS[name].reference[0],
                               "quoted_source": DATASETS[name].reference[1]}
        for znorm in (False, True):
            tag = "znorm" if znorm else "raw"
            a, la = _series(te, znorm)
            b, lb = _series(tr, znorm)
            equal = bool((la == la[0]).all() and (lb == la[0]).all())
            if equal:
                ed = torch.cdist(a.flatten(1), b.flatten(1))
                row[f"1nn_ed_{tag}"] = float((tr.labels[ed.argmin(1)] == te.labels)
                                             .double().mean())
            if "DTW" not in row["quoted_source"]:
                continue  # the quoted reference is the Euclidean 1-NN
            dist = torch.cat([_dtw_d(a[i:i + 25], la[i:i + 25], b, lb)
                              for i in range(0, len(a), 25)])
            row[f"1nn_dtw_d_{tag}"] = float((tr.labels[dist.argmin(1)] == te.labels)
                                            .double().mean())
        out[name] = row
        print(f"references {name}: {row}", file=sys.stderr, flush=True)
    return out


def _run_label(run: dict[str, Any]) -> str:
    """``uoro (lr 0.002, 24 epochs)``: a run's rule and what differs from the sweep's budget."""
    rule = run["rule"]
    opts = dict(run["options"])
    if rule == "tbptt":
        rule = f"tbptt K={opts.pop('truncation', 10)}"
    diff = [f"{k} {v:g}" for k, v in sorted(opts.items())]
    if run["lr"] != 5e-3:
        diff.append(f"lr {run['lr']:g}")
    if run["epochs"] != 8:
        diff.append(f"{run['epochs']} epochs")
    return f"{rule} ({', '.join(diff)})" if diff else rule


def section_horizon_figure(args) -> dict[str, Any]:
    """The credit-horizon figure from the ``horizon`` sweep in ``--out`` and the single
    delayed-recall runs in the ``--runs-json`` files (their delays added to a curve of the
    same rule and budget)."""
    from bionn.plots.temporal_credit import plot_credit_horizon

    base = json.loads(Path(args.out).read_text())["horizon"]
    curves = {name: {int(d): v for d, v in c.items()} for name, c in base["accuracy"].items()}
    sources = []
    for file in args.runs_json:
        for key, section in json.loads(Path(file).read_text()).items():
            if key == "machine":
                continue
            sources.append(f"{file}:{key}")
            for run in section["runs"]:
                if not run["dataset"].startswith("copy:delay="):
                    continue
                delay = int(run["dataset"].split("delay=")[1].split(",")[0])
                curves.setdefault(_run_label(run), {})[delay] = run["test_accuracy"]
    fig = plot_credit_horizon(curves, RESULTS / "temporal_credit_horizon.png", chance=0.25,
                              truncation=args.truncation)
    return {"accuracy": {n: {str(d): v for d, v in sorted(c.items())} for n, c in curves.items()},
            "sources": ["horizon"] + sources, "figure": str(fig)}


def tensor_peak_bytes(fn) -> tuple[int, int]:
    """Peak bytes held by tensors allocated while ``fn()`` runs, above what was held before,
    and what is still held when it returns: torch's profiler (``profile_memory=True``)
    records every allocation and free of the tensor allocator; their running sum, in time
    order, is the live tensor memory."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak, live


def memory_point(rule_name: str, length: int, hidden: int, batch: int,
                 truncation: int) -> dict[str, Any]:
    """One training update (``fill_grads``) on the add task of length T: its peak tensor
    memory (the data and the network are held before it starts) and its CPU time per step
    (a second, unprofiled call)."""
    from bionn.core.registry import make_rule
    from bionn.data import load_dataset

    ds = load_dataset(f"add:length={length},n_train={batch},n_test=1")
    torch.manual_seed(0)
    opts = {"truncation": truncation} if rule_name == "tbptt" else {}
    rule = make_rule(rule_name, opts)
    model = rule.build_model(f"rnn:{hidden}", ds.input_shape, ds.num_classes, "tanh")
    x, y = ds.data, ds.targets
    rule.fill_grads(model, x, y)  # warm-up: one-off allocations are not counted
    for p in model.parameters():
        p.grad = None
    peak, _ = tensor_peak_bytes(lambda: rule.fill_grads(model, x, y))
    start = time.process_time()
    rule.fill_grads(model, x, y)
    elapsed = time.process_time() - start
    return {"peak_mib": peak / 2**20, "ms_per_step": 1e3 * elapsed / length}


def section_memory(args) -> dict[str, Any]:
    from bionn.plots.temporal_credit import plot_cost_per_step

    lengths = [25, 50, 100, 200, 400]
    k = 10
    memory: dict[str, dict[int, float]] = {}
    step_ms: dict[str, dict[int, float]] = {}
    for rule in ("bptt", "tbptt", "rtrl", "uoro", "rflo"):
        label = f"tbptt K={k}" if rule == "tbptt" else rule
        memory[label], step_ms[label] = {}, {}
        for length in lengths:
            res = memory_point(rule, length, args.mem_hidden, args.mem_batch, k)
            memory[label][length] = res["peak_mib"]
            step_ms[label][length] = res["ms_per_step"]
            print(f"memory {label:<10} T={length:<4} {res['peak_mib']:8.3f} MiB "
                  f"{res['ms_per_step']:.2f} ms/step", file=sys.stderr, flush=True)
    fig = plot_cost_per_step(memory, step_ms, RESULTS / "temporal_credit_memory.png",
                             memory_label="peak tensor memory per update (MiB)")
    growth = {name: (m[lengths[-1]] - m[lengths[0]]) / (lengths[-1] - lengths[0]) * 1024
              for name, m in memory.items()}
    return {"setting": {"task": "add (2 inputs, 1 output)", "hidden": args.mem_hidden,
                        "batch": args.mem_batch, "tbptt_truncation": k,
                        "lengths": lengths, "dtype": "float32",
                        "measure": "peak bytes held by tensors during one fill_grads call "
                                   "above those held before it (the data and the network), "
                                   "from torch.profiler's allocation events "
                                   "(profile_memory=True); CPU time (time.process_time) of "
                                   "a second, unprofiled call"},
            "peak_mib": {r: {str(t): v for t, v in m.items()} for r, m in memory.items()},
            "growth_kib_per_step": growth,
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
        start = time.process_time()
        for t in range(steps):
            rnn.x, rnn.y = xs[t], ys[t]
            rnn.next_state(rnn.x)
            rnn.z_out()
            rnn.error = rnn.loss.f_prime(rnn.z, rnn.y)
            alg.update_learning_vars()
            alg()
        best = min(best, (time.process_time() - start) / steps)
    out[name] = best
print(json.dumps(out))
'''


def _time_ours(model, x, y, method: str, reps: int = 3) -> float:
    """Best of ``reps`` calls of one update over the sequence: CPU seconds per step."""
    from bionn.rules.temporal_credit import online_gradients

    online_gradients(model, x[:5], y[:5], method)
    best = float("inf")
    for _ in range(reps):
        start = time.process_time()
        online_gradients(model, x, y, method)
        best = min(best, (time.process_time() - start) / x.shape[0])
    return best


def section_speed(args) -> dict[str, Any]:
    """bionn and vanilla-rtrl in alternation, ``--speed-rounds`` rounds: in each round the
    peer's RFLO and UORO (a fresh process), then bionn's at batch 1 and batch 32, so a load
    change on the machine falls on both; the ratios are per round, then their median."""
    from bionn.nn.recurrent import LeakyRNN

    n_in, n_h, n_out, steps = 9, args.hidden, 4, 200
    result: dict[str, Any] = {"network": {"inputs": n_in, "hidden": n_h, "outputs": n_out,
                                          "steps": steps, "loss": "softmax cross-entropy "
                                          "at every step"},
                              "rounds": args.speed_rounds,
                              "timing": "CPU time of the process (time.process_time, so "
                                        "time the scheduler of a shared machine gives to "
                                        "other processes is not counted), best of 3 passes "
                                        "over the sequence per round; bionn and the peer "
                                        "alternate round by round"}
    nets = {}
    for batch in (1, 32):
        torch.manual_seed(0)
        nets[batch] = (LeakyRNN(n_in, n_h, n_out, alpha=0.5, feedback_scale=1.0),
                       torch.randn(steps, batch, n_in), torch.randint(n_out, (steps, batch)))
    peer_script = None
    if args.peer_python and args.peer_src:
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
            f.write(PEER)
        peer_script = f.name
    rounds: list[dict[str, float]] = []
    for r in range(args.speed_rounds):
        row: dict[str, float] = {}
        if peer_script is not None:
            proc = subprocess.run([args.peer_python, peer_script, args.peer_src, str(n_in),
                                   str(n_h), str(n_out), str(steps)], capture_output=True,
                                  text=True, env={"OMP_NUM_THREADS": str(args.threads),
                                                  "OPENBLAS_NUM_THREADS": str(args.threads),
                                                  "PATH": "/usr/bin:/bin"})
            if proc.returncode != 0:
                raise SystemExit(f"vanilla-rtrl worker failed: {proc.stderr.strip()[-500:]}")
            for k, v in json.loads(proc.stdout.splitlines()[-1]).items():
                row[f"peer_{k}_s_per_example_step"] = v
        for batch, (model, x, y) in nets.items():
            for method in ("rflo", "uoro"):
                row[f"{method}_batch{batch}_s_per_step"] = _time_ours(model, x, y, method)
        rounds.append(row)
        print(f"speed round {r}: " + ", ".join(f"{k} {1e3 * v:.3f} ms" for k, v in row.items()),
              file=sys.stderr, flush=True)
    med = {k: statistics.median(row[k] for row in rounds) for k in rounds[0]}
    result["bionn"] = {}
    for batch in (1, 32):
        for m in ("rflo", "uoro"):
            per_step = med[f"{m}_batch{batch}_s_per_step"]
            result["bionn"][f"{m}_batch{batch}_s_per_step"] = per_step
            result["bionn"][f"{m}_batch{batch}_s_per_example_step"] = per_step / batch
    result["per_round"] = rounds
    if peer_script is not None:
        result["vanilla_rtrl"] = {f"{m}_s_per_example_step":
                                  med[f"peer_{m}_s_per_example_step"] for m in ("rflo", "uoro")}
        commit = Path(args.peer_src).parent / "COMMIT"
        if commit.is_file():
            result["vanilla_rtrl"]["commit"] = commit.read_text().strip()
        for m in ("rflo", "uoro"):
            b1 = [row[f"peer_{m}_s_per_example_step"] / row[f"{m}_batch1_s_per_step"]
                  for row in rounds]
            b32 = [row[f"peer_{m}_s_per_example_step"] * 32 / row[f"{m}_batch32_s_per_step"]
                   for row in rounds]
            result[f"{m}_speedup_batch1"] = statistics.median(b1)
            result[f"{m}_speedup_batch1_range"] = [min(b1), max(b1)]
            result[f"{m}_speedup_batch32_per_example"] = statistics.median(b32)
            result[f"{m}_speedup_batch32_per_example_range"] = [min(b32), max(b32)]
    return result


def _redacted(argv: list[str], args: argparse.Namespace) -> list[str]:
    """The command line with this machine's folders named DATA (the data) and PEER (the
    peer's environment and sources)."""
    folders = {}
    if args.peer_src:
        folders[str(Path(args.peer_src).resolve().parent)] = "PEER"
    if args.data_dir:
        folders[str(Path(args.data_dir).resolve())] = "DATA"
    out = []
    for word in argv:
        for folder, name in sorted(folders.items(), key=lambda kv: -len(kv[0])):
            word = word.replace(folder, name)
        out.append(word)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--section", required=True,
                    choices=["horizon", "ucr", "memory", "speed", "runs",
                             "horizon-figure", "references"])
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
    ap.add_argument("--mem-hidden", type=int, default=32)
    ap.add_argument("--mem-batch", type=int, default=32)
    ap.add_argument("--peer-python", default=None)
    ap.add_argument("--peer-src", default=None)
    ap.add_argument("--speed-rounds", type=int, default=5)
    ap.add_argument("--runs", nargs="+", default=[],
                    help="rule@dataset@key=value,... (dataset options joined by ';')")
    ap.add_argument("--runs-json", nargs="*", default=[],
                    help="JSON files of runs sections to add to the horizon figure")
    ap.add_argument("--name", default=None, help="JSON key of this section (default: its name)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    section = {"horizon": section_horizon, "ucr": section_ucr, "memory": section_memory,
               "speed": section_speed, "runs": section_runs,
               "horizon-figure": section_horizon_figure,
               "references": section_references}[args.section](args)
    path = Path(args.out)
    data = json.loads(path.read_text()) if path.is_file() else {}
    key = args.name or args.section
    data[key] = section
    data[key]["command"] = "python " + " ".join(_redacted(sys.argv, args))
    data["machine"] = {"cpu": cpu_model(), "torch": torch.__version__,
                       "threads": args.threads}
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps({args.section: section}, indent=2)[:3000])


if __name__ == "__main__":
    main()
