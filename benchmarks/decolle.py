"""DECOLLE vs BPTT on spike-encoded MNIST: accuracy, memory against T, and speed against peers.

Three sections, each merged into one JSON file (``--out``), so they can be run one at a time:

- ``accuracy``: ``decolle`` and ``snn-bptt`` trained through the library (the code path of
  ``bionn train``) on MNIST encoded on the fly as Poisson spike trains, same network, data,
  epochs, optimizer and seed; test accuracy of each.
- ``memory``: peak training memory of one update batch for T = 25, 50, 100, 200: the bytes
  autograd keeps for the backward pass (exact, counted with saved-tensor hooks) and the growth
  of the process's peak resident memory over its value before training (a fresh process per
  point); plus a figure.
- ``speed``: the time of one training step (one batch, optimizer included) on the same problem
  (784-256-10, batch 128, T = 25, Poisson input, Adam) for bionn's BPTT against snnTorch's and
  Norse's, and for bionn's DECOLLE against the ``decolle`` package's. Every framework runs in
  its own subprocess (peers from their own Python environments, given by flag), the
  frameworks alternate round by round, and the median per-step time of each is reported.

    python benchmarks/decolle.py --data-dir DATA --section accuracy [--epochs 5]
    python benchmarks/decolle.py --data-dir DATA --section memory
    python benchmarks/decolle.py --data-dir DATA --section speed \\
        --snntorch-python PY --norse-python PY --decolle-python PY [--rounds 5]
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
from pathlib import Path
from typing import Any

import torch

from bionn.core.resources import cpu_model

RESULTS = Path("benchmarks/results")

WORKER = r'''
import argparse, json, resource, sys, time
import torch
from torch import nn
from torch.nn import functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--framework", required=True)
ap.add_argument("--batch-file", required=True)
ap.add_argument("--steps", type=int, default=10)
ap.add_argument("--warmup", type=int, default=2)
ap.add_argument("--timesteps", type=int, default=25)
ap.add_argument("--burn-in", type=int, default=5)
ap.add_argument("--hidden", type=int, default=256)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--mode", default="speed")
a = ap.parse_args()
torch.set_num_threads(a.threads)
x, y = torch.load(a.batch_file)
T, H, B = a.timesteps, a.hidden, x.shape[0]
torch.manual_seed(0)


def adam(params):
    return torch.optim.Adam([p for p in params if p.requires_grad], lr=1e-3)


def bionn(name, burn_in):
    from bionn.core.registry import make_rule
    rule = make_rule(name, {"timesteps": T, "burn_in": burn_in})
    model = rule.build_model(f"mlp:{H}", (1, 28, 28), 10, "relu")
    # the optimizer `bionn train` builds (Adam with the fused update where available)
    from bionn.core.config import TrainConfig
    from bionn.core.run import make_optimizer
    opt = make_optimizer(TrainConfig(lr=1e-3), model)
    xi = x.view(B, 1, 28, 28)

    def step():
        for _ in rule.updates(model, xi, y):
            opt.step()
            opt.zero_grad(set_to_none=True)
    return step


def snntorch_bptt():
    import snntorch as snn
    from snntorch import spikegen, surrogate
    fc1, fc2 = nn.Linear(784, H), nn.Linear(H, 10)
    lif = snn.Leaky(beta=0.9, spike_grad=surrogate.fast_sigmoid(slope=10))
    opt = adam([*fc1.parameters(), *fc2.parameters()])

    def step():
        cur = fc1(spikegen.rate(x, num_steps=T))  # (T, B, H), all steps in one product
        mem = lif.init_leaky()
        spikes = []
        for t in range(T):
            spk, mem = lif(cur[t], mem)
            spikes.append(spk)
        loss = F.cross_entropy(fc2(torch.stack(spikes).mean(0)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def norse_bptt():
    import norse.torch as norse
    fc1, fc2 = nn.Linear(784, H), nn.Linear(H, 10)
    lif = norse.LIF()  # SuperSpike surrogate by default
    opt = adam([*fc1.parameters(), *fc2.parameters()])

    def step():
        spikes_in = (torch.rand(T, *x.shape) < x).float()
        z, _ = lif(fc1(spikes_in))  # the sequence module: (T, B, H)
        loss = F.cross_entropy(fc2(z.mean(0)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def decolle_package():
    from decolle.base_model import DECOLLELoss, LIFLayer
    from decolle.lenet_decolle_model import LenetDECOLLE
    from decolle.utils import cross_entropy_one_hot
    net = LenetDECOLLE(out_channels=10, Nhid=[], Mhid=[H], kernel_size=[7], stride=[1],
                       pool_size=[1], input_shape=(1, 28, 28), alpha=[0.9], beta=[0.85],
                       alpharp=[0.65], dropout=[0.0], num_conv_layers=0, num_mlp_layers=1,
                       lc_ampl=0.5, lif_layer_type=LIFLayer, method="rtrl",
                       with_output_layer=True)
    data0 = (torch.rand(B, T, 784) < x[:, None]).float()
    net.init_parameters(data0)
    losses = [nn.SmoothL1Loss() for _ in range(len(net))]
    losses[-1] = cross_entropy_one_hot
    decolle_loss = DECOLLELoss(losses, net)
    opt = adam(net.get_trainable_parameters())
    target = F.one_hot(y, 10).float()

    def step():
        data = (torch.rand(B, T, 784) < x[:, None]).float()
        net.init(data, a.burn_in)
        for k in range(a.burn_in, T):
            s, r, u = net.step(data[:, k])
            loss = sum(decolle_loss(s, r, u, target=target, sum_=False))
            loss.backward()
            opt.step()
            opt.zero_grad()
    return step


makers = {
    "bionn-bptt": lambda: bionn("snn-bptt", 0),
    "bionn-decolle": lambda: bionn("decolle", a.burn_in),
    "snntorch-bptt": snntorch_bptt,
    "norse-bptt": norse_bptt,
    "decolle-package": decolle_package,
}
step = makers[a.framework]()
if a.mode == "memory":
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    live = [0, 0]  # bytes autograd holds for the backward pass now, and their peak

    class Held:
        """A tensor autograd saved; its bytes count until the graph that holds it is freed."""

        def __init__(self, t):
            self.t, self.n = t, t.numel() * t.element_size()
            live[0] += self.n
            live[1] = max(live[1], live[0])

        def __del__(self):
            live[0] -= self.n

    with torch.autograd.graph.saved_tensors_hooks(Held, lambda held: held.t):
        for _ in range(2):
            step()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"saved_peak_bytes": live[1], "rss_growth_kib": rss - base}))
    sys.exit(0)
for _ in range(a.warmup):
    step()
times, cpu = [], []
for _ in range(a.steps):
    start, start_cpu = time.perf_counter(), time.thread_time()
    step()
    cpu.append(time.thread_time() - start_cpu)
    times.append(time.perf_counter() - start)
times.sort()
cpu.sort()
print(json.dumps({"median_s": times[len(times) // 2], "min_s": times[0], "times_s": times,
                  "cpu_median_s": cpu[len(cpu) // 2], "cpu_min_s": cpu[0]}))
'''


def _merge(path: Path, section: str, payload: dict[str, Any]) -> None:
    data: dict[str, Any] = {}
    if path.is_file():
        data = json.loads(path.read_text())
    data.setdefault("benchmark", "decolle")
    if section == "accuracy" and "accuracy" in data:
        # rules may be run by separate invocations: keep the other rules' runs
        runs = dict(data["accuracy"].get("runs", {}), **payload["runs"])
        payload = dict(payload, runs=runs)
    if section == "accuracy":
        payload = _accuracy_summary(payload)
    data[section] = payload
    data["torch"] = torch.__version__
    data["machine"] = f"{platform.machine()}, {os.cpu_count()} logical CPUs"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _batch_file(tmp: Path, data_dir: str | None, batch: int) -> Path:
    from bionn.data import load_dataset

    test = load_dataset("mnist", data_dir, train=False)
    path = tmp / "batch.pt"
    torch.save((test.data[:batch].reshape(batch, -1).clone(), test.targets[:batch].clone()), path)
    return path


def _worker(python: str, worker: Path, framework: str, batch_file: Path, **kw: Any) -> dict:
    cmd = [python, str(worker), "--framework", framework, "--batch-file", str(batch_file)]
    for key, value in kw.items():
        cmd += ["--" + key.replace("_", "-"), str(value)]
    env = dict(os.environ, OMP_NUM_THREADS=str(kw.get("threads", 1)), PYTHONWARNINGS="ignore")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{framework} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_accuracy(args: argparse.Namespace) -> dict[str, Any]:
    from bionn.core.config import TrainConfig
    from bionn.core.run import run_training

    options = {"timesteps": args.timesteps, "burn_in": args.burn_in}
    extra = json.loads(args.decolle_options)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rule in args.rules.split(","):
            opts = dict(options, **(extra if rule == "decolle" else {}))
            config = TrainConfig(rule=rule, dataset="mnist-spikes", model=args.model,
                                 epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                 seed=args.seed, data_dir=args.data_dir, device=args.device,
                                 out=str(Path(tmp) / rule), options=opts)
            summary = run_training(config, progress=False, plot=False)
            history = [json.loads(line) for line in
                       (Path(tmp) / rule / "metrics.jsonl").read_text().splitlines()]
            rows[rule] = {
                "options": opts,
                "test_accuracy": summary["test_accuracy"],
                "train_accuracy": summary["train_accuracy"],
                "wall_time_s": summary["wall_time_s"],
                "test_accuracy_per_epoch": [r["test_accuracy"] for r in history],
                "local_losses_per_epoch": {
                    k: [r[k] for r in history] for k in history[-1] if k.startswith("train_loss")
                },
            }
            print(rule, json.dumps(rows[rule]), flush=True)
    result: dict[str, Any] = {
        "dataset": "mnist-spikes (Poisson rate code, on the fly)",
        "model": args.model, "epochs": args.epochs, "batch_size": args.batch_size,
        "optimizer": "adam", "schedule": "cosine", "seed": args.seed,
        "runs": {rule: dict(row, lr=args.lr) for rule, row in rows.items()},
    }
    return result


def _accuracy_summary(section: dict[str, Any]) -> dict[str, Any]:
    """Add the comparison once both rules have run (possibly in separate invocations)."""
    runs = section.get("runs", {})
    if "decolle" in runs and "snn-bptt" in runs:
        gap = runs["snn-bptt"]["test_accuracy"] - runs["decolle"]["test_accuracy"]
        section["bptt_minus_decolle_points"] = 100 * gap
        section["target"] = "decolle >= 0.97 and within 1.5 points of snn-bptt"
        section["target_met"] = runs["decolle"]["test_accuracy"] >= 0.97 and 100 * gap <= 1.5
    return section


def run_memory(args: argparse.Namespace, tmp: Path, worker: Path, batch_file: Path) -> dict:
    lengths = [int(v) for v in args.memory_timesteps.split(",")]
    curves: dict[str, dict[str, list]] = {}
    for framework in ("bionn-decolle", "bionn-bptt"):
        points = []
        for steps in lengths:
            got = _worker(sys.executable, worker, framework, batch_file, mode="memory",
                          timesteps=steps, burn_in=args.burn_in, hidden=args.hidden,
                          threads=args.threads)
            points.append(got)
            print(framework, steps, got, flush=True)
        curves[framework] = {
            "timesteps": lengths,
            "autograd_saved_peak_mib": [p["saved_peak_bytes"] / 2**20 for p in points],
            "rss_growth_mib": [p["rss_growth_kib"] / 1024 for p in points],
        }
    figure = args.out.with_name("decolle_memory.png")
    _plot_memory(curves, figure)
    return {"network": f"784-{args.hidden}-10", "batch_size": args.batch_size,
            "curves": curves, "figure": str(figure)}


def _plot_memory(curves: dict[str, dict[str, list]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for name, c in curves.items():
        label = "DECOLLE" if "decolle" in name else "BPTT"
        axes[0].plot(c["timesteps"], c["autograd_saved_peak_mib"], marker="o", label=label)
        axes[1].plot(c["timesteps"], c["rss_growth_mib"], marker="o", label=label)
    axes[0].set_title("memory kept for the backward pass")
    axes[1].set_title("growth of peak resident memory")
    for ax in axes:
        ax.set_xlabel("time steps T")
        ax.set_ylabel("MiB")
        ax.set_xscale("log", base=2)
        ax.legend()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_speed(args: argparse.Namespace, tmp: Path, worker: Path, batch_file: Path) -> dict:
    pythons = {"bionn-bptt": sys.executable, "bionn-decolle": sys.executable}
    for name, flag in (("snntorch-bptt", args.snntorch_python),
                       ("norse-bptt", args.norse_python),
                       ("decolle-package", args.decolle_python)):
        if flag:
            pythons[name] = flag
    if args.frameworks:
        wanted = args.frameworks.split(",")
        pythons = {k: v for k, v in pythons.items() if k in wanted}
    times: dict[str, list[float]] = {name: [] for name in pythons}
    cpu: dict[str, list[float]] = {name: [] for name in pythons}
    load_before = list(os.getloadavg())
    for r in range(args.rounds):
        for name, python in pythons.items():
            got = _worker(python, worker, name, batch_file, steps=args.steps,
                          timesteps=args.timesteps, burn_in=args.burn_in, hidden=args.hidden,
                          threads=args.threads)
            times[name].append(got["median_s"])
            cpu[name].append(got["cpu_median_s"])
            print(f"round {r + 1}: {name} {1000 * got['median_s']:.1f} ms/step "
                  f"({1000 * got['cpu_median_s']:.1f} ms of CPU time)", flush=True)
    summary = speed_summary(args, times, cpu)
    summary.update(cpu=cpu_model(), torch=torch.__version__,
                   load_average_1_5_15_min_before=load_before,
                   load_average_1_5_15_min_after=list(os.getloadavg()),
                   command="python benchmarks/decolle.py " + " ".join(
                       "PATH" if a.startswith("/") else a for a in sys.argv[1:]))
    return summary


def speed_summary(
    args: argparse.Namespace,
    times: dict[str, list[float]],
    cpu: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    """Medians, and the ratios bionn / peer: of the medians, and the median of per-round ratios.

    The per-round ratio compares runs made seconds apart, so it is the robust one on a shared
    machine whose load changes over minutes; the same ratios of the step's CPU time (of the
    process's one thread) leave out the time the thread waited for a core that other jobs held.
    """
    median = {name: statistics.median(v) for name, v in times.items()}
    ratios, round_ratios, cpu_round_ratios = {}, {}, {}
    for peer, ours in (("snntorch-bptt", "bionn-bptt"), ("norse-bptt", "bionn-bptt"),
                       ("decolle-package", "bionn-decolle")):
        if peer in median and ours in median:
            key = f"{ours} / {peer}"
            ratios[key] = median[ours] / median[peer]
            round_ratios[key] = statistics.median(
                a / b for a, b in zip(times[ours], times[peer], strict=True)
            )
            if cpu:
                cpu_round_ratios[key] = statistics.median(
                    a / b for a, b in zip(cpu[ours], cpu[peer], strict=True)
                )
    extra: dict[str, Any] = {}
    if cpu:
        extra = {"cpu_median_s_per_step": {k: statistics.median(v) for k, v in cpu.items()},
                 "per_round_cpu_median_s": cpu,
                 "median_of_per_round_cpu_ratios": cpu_round_ratios,
                 "target_met_cpu_time": {k: v <= 0.5 for k, v in cpu_round_ratios.items()}}
    return {
        "problem": f"784-{args.hidden}-10, batch {args.batch_size}, T={args.timesteps}, "
                   "Poisson input, Adam lr 1e-3 (bionn: the fused Adam `bionn train` builds; "
                   "peers: torch.optim.Adam as their examples use it); DECOLLE burn-in "
                   f"{args.burn_in} (one update per later step); BPTT over all steps",
        "threads": args.threads, "rounds": args.rounds, "steps_per_round": args.steps,
        "median_s_per_step": median, "per_round_median_s": times,
        "ratios_of_medians": ratios, "median_of_per_round_ratios": round_ratios,
        "target": "every ratio <= 0.5",
        "target_met": {k: v <= 0.5 for k, v in round_ratios.items()},
        **extra,
    }


PRODUCT_OPS = ("aten::mm", "aten::addmm", "mkldnn::_linear_pointwise")
GROUPS = {
    "matrix products (aten::mm, aten::addmm, oneDNN linear)": PRODUCT_OPS,
    "Adam step (kernel, step counter, Python)": ("aten::_fused_adam_", "aten::_foreach_add_",
                                                 "Optimizer.step#LeanAdam.step",
                                                 "Optimizer.step#Adam.step"),
    # the C loop of the Poisson code is a ctypes call, which the profiler counts in the rest;
    # these are the torch code's operations where it runs instead
    "Poisson draws (torch code: random_, bitwise_and_, le)": ("aten::random_",
                                                              "aten::bitwise_and_", "aten::le"),
    "trace updates (lerp)": ("aten::lerp",),
}


def run_profile(args: argparse.Namespace, batch_file: Path) -> dict[str, Any]:
    """Where one bionn DECOLLE step (one batch, T steps, Adam after each) spends its time.

    Two measures, both on this process's one thread: torch's profiler (self CPU time per
    operation, grouped), and, without a profiler, the CPU time of the step's large matrix
    products alone (the same products on the same shapes: T of ``P W^T`` and T - burn_in of
    ``dL/dU^T P``) over the CPU time of the whole step, alternating.
    """
    import time

    from torch.profiler import ProfilerActivity, profile

    from bionn.core.config import TrainConfig
    from bionn.core.registry import make_rule
    from bionn.core.run import make_optimizer

    x, y = torch.load(batch_file)
    batch = x.shape[0]
    xi = x.view(batch, 1, 28, 28)
    torch.manual_seed(0)
    rule = make_rule("decolle", {"timesteps": args.timesteps, "burn_in": args.burn_in})
    model = rule.build_model(f"mlp:{args.hidden}", (1, 28, 28), 10, "relu")
    opt = make_optimizer(TrainConfig(lr=1e-3), model)

    def step() -> None:
        for _ in rule.updates(model, xi, y):
            opt.step()
            opt.zero_grad(set_to_none=True)

    w = model.layers[0].synapse.weight.detach().clone()
    b = model.layers[0].synapse.bias.detach().clone()
    p = torch.rand(batch, w.shape[1])
    d = torch.randn(batch, w.shape[0])

    from bionn.core.matmul import linear, matmul

    def products() -> None:  # through the library the step's own products take
        for t in range(args.timesteps):
            linear(p, w, b)
            if t >= args.burn_in:
                matmul(d.t(), p)

    for _ in range(2):
        step()
        products()
    cpu: dict[str, list[float]] = {"step": [], "products": []}
    for _ in range(args.profile_steps):
        for name, fn in (("step", step), ("products", products)):
            start = time.thread_time()
            fn()
            cpu[name].append(time.thread_time() - start)
    step_s = statistics.median(cpu["step"])
    products_s = statistics.median(cpu["products"])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.profile_steps):
            step()
    events = {e.key: e for e in prof.key_averages()}
    total = sum(e.self_cpu_time_total for e in events.values())
    groups = {}
    for name, ops in GROUPS.items():
        groups[name] = sum(events[o].self_cpu_time_total for o in ops if o in events) / total
    groups["everything else (small tensor operations, Python)"] = 1.0 - sum(groups.values())
    top = sorted(events.values(), key=lambda e: -e.self_cpu_time_total)[:12]
    return {
        "problem": f"784-{args.hidden}-10, batch {batch}, T={args.timesteps}, burn-in "
                   f"{args.burn_in}, Poisson input, the Adam `bionn train` builds",
        "threads": args.threads, "steps": args.profile_steps,
        "cpu_s_per_step_median": step_s,
        "cpu_s_of_its_products_alone_median": products_s,
        "products_share_without_profiler": products_s / step_s,
        "profiler_self_cpu_share": groups,
        "profiler_top_ops_ms_per_step": {
            e.key: e.self_cpu_time_total / 1000 / args.profile_steps for e in top},
        "profiler_calls_per_step": {
            e.key: e.count / args.profile_steps for e in top},
        "cpu": cpu_model(), "torch": torch.__version__,
        "load_average_1_5_15_min": list(os.getloadavg()),
        "command": "python benchmarks/decolle.py " + " ".join(
            "PATH" if a.startswith("/") else a for a in sys.argv[1:]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None, help="data root (default $BIONN_DATA)")
    parser.add_argument("--section", default="all",
                        help="accuracy, memory, speed, profile, or all (the first three)")
    parser.add_argument("--out", type=Path, default=RESULTS / "decolle.json")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--rules", default="decolle,snn-bptt")
    parser.add_argument("--decolle-options", default="{}", help="JSON of extra decolle options")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--timesteps", type=int, default=25)
    parser.add_argument("--burn-in", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--memory-timesteps", default="25,50,100,200")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per round")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--snntorch-python", default=None, help="python of an snnTorch env")
    parser.add_argument("--norse-python", default=None, help="python of a Norse env")
    parser.add_argument("--decolle-python", default=None, help="python of a decolle env")
    parser.add_argument("--frameworks", default=None,
                        help="speed: comma-separated subset of the frameworks to time")
    parser.add_argument("--tag", default="", help="suffix of the section's key in the JSON")
    parser.add_argument("--profile-steps", type=int, default=7,
                        help="profile: training steps measured (each one batch)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sections = ["accuracy", "memory", "speed"] if args.section == "all" else [args.section]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        worker = tmp / "worker.py"
        worker.write_text(WORKER)
        batch_file = _batch_file(tmp, args.data_dir, args.batch_size)
        for section in sections:
            if section == "accuracy":
                payload = run_accuracy(args)
            elif section == "memory":
                payload = run_memory(args, tmp, worker, batch_file)
            elif section == "speed":
                payload = run_speed(args, tmp, worker, batch_file)
            elif section == "profile":
                payload = run_profile(args, batch_file)
            else:
                raise SystemExit(f"unknown section {section!r}")
            _merge(args.out, section + args.tag, payload)
            print(json.dumps({section: payload}, indent=2), flush=True)


if __name__ == "__main__":
    main()
