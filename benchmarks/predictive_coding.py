"""Predictive coding on MNIST: accuracy against backprop, and speed against backprop and PCX.

Network: Whittington & Bogacz's 784-500-500-10 sigmoid MLP (linear output), batch B, T
inference steps of rate gamma, the same seed (same initial weights), optimizer, schedule and
epochs for every rule.

Sections (``--sections``, comma-separated; all by default):

    accuracy  bp (cross-entropy, bionn's baseline), bp-mse (backprop on the squared output
              error that predictive coding approximates), pc and pc-fixed: test accuracy after
              every epoch.
    speed     one inference step of pc (and of pc-fixed) against one backprop forward+backward
              of the same network and batch, measured side by side (interleaved, median).
    pcx       seconds per training epoch of pc against PCX (the JAX predictive-coding library)
              for the same network, T, gamma and batch; PCX runs in a subprocess with the
              Python given by ``--peer-python``, alternating with bionn, in one run.
    profile   where one pc update (inference, updates, Adam) spends its time: torch's
              profiler over 15 training batches, grouped (not in the default sections).

    python benchmarks/predictive_coding.py --data-dir DATA [--epochs 10] [--sections ...]
        [--peer-python PATH] [--threads 1] [--out benchmarks/results/predictive_coding.json]

Timing sections run one torch thread and one XLA thread by default (``--threads``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from bionn.core.config import TrainConfig
from bionn.core.matmul import describe as matmul_note
from bionn.core.models import MLP
from bionn.core.resources import cpu_model
from bionn.core.rule import Backprop
from bionn.core.run import make_optimizer, make_scheduler
from bionn.core.trainer import Trainer
from bionn.data import load_dataset
from bionn.rules.predictive_coding import (
    FixedPredictionPC,
    PCConfig,
    PCFixedConfig,
    PredictiveCoding,
    infer,
)

SIZES = (784, [500, 500], 10)


class BackpropSquaredError(Backprop):
    """Backprop on ||onehot - output||^2 / 2: the objective predictive coding approximates."""

    name = "bp-mse"

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        target = F.one_hot(y, output.shape[1]).to(output.dtype)
        return 0.5 * (target - output).square().sum(1).mean()


def _model(seed: int) -> MLP:
    torch.manual_seed(seed)
    return MLP(SIZES[0], SIZES[1], SIZES[2], activation="sigmoid")


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --- accuracy ----------------------------------------------------------------------------------


def run_accuracy(args, train, test) -> dict:
    config = TrainConfig(
        rule="bp",
        dataset="mnist",
        model="mlp:500,500",
        activation="sigmoid",
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        schedule=args.schedule,
        seed=args.seed,
    )
    rules = {
        "bp": Backprop(),
        "bp-mse": BackpropSquaredError(),
        "pc": PredictiveCoding(
            PCConfig(inference_steps=args.inference_steps, inference_rate=args.inference_rate)
        ),
        # gamma = 1: the errors are exact after L - 1 = 2 steps, further steps change nothing
        "pc-fixed": FixedPredictionPC(PCFixedConfig(inference_steps=2, inference_rate=1.0)),
    }
    out = {}
    for name, rule in rules.items():
        model = _model(args.seed)
        optimizer = make_optimizer(config, model)
        trainer = Trainer(
            model,
            rule,
            optimizer,
            train,
            test,
            batch_size=args.batch_size,
            seed=args.seed,
            progress=False,
            scheduler=make_scheduler(config, optimizer),
        )
        summary = trainer.fit(args.epochs)
        out[name] = {
            "test_accuracy": summary["test_accuracy"],
            "train_accuracy": summary["train_accuracy"],
            "test_accuracy_per_epoch": [r["test_accuracy"] for r in trainer.history],
            "angle_to_backprop_deg_per_epoch": [
                r.get("angle_to_backprop_deg") for r in trainer.history
            ],
            "wall_time_s": summary["wall_time_s"],
            "config": getattr(rule, "config", None).__dict__ if hasattr(rule, "config") else {},
        }
        print(json.dumps({name: out[name]["test_accuracy"]}), flush=True)
    out["gap_pp"] = {
        f"{name} vs {base}": 100 * (out[base]["test_accuracy"] - out[name]["test_accuracy"])
        for name in ("pc", "pc-fixed")
        for base in ("bp", "bp-mse")
    }
    out["budget"] = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "lr": config.learning_rate,
        "schedule": args.schedule,
        "seed": args.seed,
    }
    return out


# --- speed: one inference step vs one backprop forward+backward ---------------------------------


def run_speed(args, train) -> dict:
    model = _model(args.seed)
    x, y = train[0][: args.batch_size], train[1][: args.batch_size]
    target = F.one_hot(y, 10).to(x.dtype)
    T = args.inference_steps
    pc0 = PCConfig(inference_steps=0, inference_rate=args.inference_rate)
    pcT = PCConfig(inference_steps=T, inference_rate=args.inference_rate)
    # gamma = 0.5: the general relaxation (at gamma = 1 it stops after L - 1 steps)
    fx0 = PCFixedConfig(inference_steps=0, inference_rate=0.5)
    fxT = PCFixedConfig(inference_steps=T, inference_rate=0.5)
    pc_rule = PredictiveCoding(pcT)
    bp_rule = Backprop()

    def bp_step():
        for p in model.parameters():
            p.grad = None
        F.cross_entropy(model(x), y).backward()

    fns = {
        "bp_forward_backward": bp_step,
        "pc_infer_T0": lambda: infer(model, x, target, pc0),
        "pc_infer_T": lambda: infer(model, x, target, pcT),
        "pc_fixed_infer_T0": lambda: infer(model, x, target, fx0, True),
        "pc_fixed_infer_T": lambda: infer(model, x, target, fxT, True),
        "pc_fill_grads": lambda: pc_rule.fill_grads(model, x, y),
        "bp_fill_grads": lambda: bp_rule.fill_grads(model, x, y),
    }
    for fn in fns.values():  # warm-up
        fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(args.speed_rounds):  # interleaved: every round times each in turn
        for name, fn in fns.items():
            samples[name].append(_median_time(fn, 5))
    med = {k: statistics.median(v) for k, v in samples.items()}
    pc_step = (med["pc_infer_T"] - med["pc_infer_T0"]) / T
    fixed_step = (med["pc_fixed_infer_T"] - med["pc_fixed_infer_T0"]) / T
    return {
        "batch_size": args.batch_size,
        "inference_steps": T,
        "median_seconds": med,
        "pc_inference_step_s": pc_step,
        "pc_fixed_inference_step_s": fixed_step,
        "ratio_pc_step_to_bp_forward_backward": pc_step / med["bp_forward_backward"],
        "ratio_pc_fixed_step_to_bp_forward_backward": fixed_step / med["bp_forward_backward"],
        "ratio_pc_update_to_bp_update": med["pc_fill_grads"] / med["bp_fill_grads"],
        "method": (
            "one step = (time of infer with T steps - with 0 steps) / T; each quantity is the "
            f"median over {args.speed_rounds} interleaved rounds of the median of 5 calls"
        ),
    }


# --- PCX per-epoch time ------------------------------------------------------------------------

PEER_PROGRAM = r"""
import json, sys, time, os
import numpy as np
import jax, jax.numpy as jnp, optax
import pcx as px
import pcx.predictive_coding as pxc
import pcx.nn as pxnn
import pcx.functional as pxf
import pcx.utils as pxu

a = json.loads(sys.argv[1])
data = np.load(a["data"])
xs, ys = data["x"], data["y"]
px.RKG.seed(a["seed"])


class Net(pxc.EnergyModule):
    def __init__(self, sizes):
        super().__init__()
        self.layers = [pxnn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:])]
        self.vodes = [pxc.Vode() for _ in self.layers]  # Gaussian (squared-error) energies
        self.vodes[-1].h.frozen = True  # the output is clamped to the target

    def __call__(self, x, y=None):
        last = len(self.layers) - 1
        for i, (layer, vode) in enumerate(zip(self.layers, self.vodes)):
            u = layer(x)
            x = vode(u if i == last else jax.nn.sigmoid(u))
        if y is not None:
            self.vodes[-1].set("h", y)
        return self.vodes[-1].get("u")


mask = pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0))


@pxf.vmap(mask, in_axes=(0, 0), out_axes=0)
def forward(x, y, *, model):
    return model(x, y)


@pxf.vmap(mask, in_axes=(0,), out_axes=(None, 0), axis_name="batch")
def energy(x, *, model):
    y_ = model(x, None)
    return jax.lax.psum(model.energy(), "batch"), y_


@pxf.jit(static_argnums=0)
def train_on_batch(T, x, y, *, model, optim_w, optim_h):
    model.train()
    with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
        forward(x, y, model=model)
    optim_h.init(pxu.M_hasnot(pxc.VodeParam, frozen=True)(model))
    for _ in range(T):
        with pxu.step(model, clear_params=pxc.VodeParam.Cache):
            (e, y_), g = pxf.value_and_grad(
                pxu.M_hasnot(pxc.VodeParam, frozen=True).to([False, True]), has_aux=True
            )(energy)(x, model=model)
        optim_h.step(model, g["model"])
    optim_h.clear()
    with pxu.step(model, clear_params=pxc.VodeParam.Cache):
        (e, y_), g = pxf.value_and_grad(
            pxu.M(pxnn.LayerParam).to([False, True]), has_aux=True
        )(energy)(x, model=model)
    optim_w.step(model, g["model"], scale_by=1.0 / x.shape[0])
    return e


model = Net(a["sizes"])
optim_h = pxu.Optim(lambda: optax.sgd(a["gamma"]))
optim_w = pxu.Optim(lambda: optax.adam(a["lr"]), pxu.M(pxnn.LayerParam)(model))
B, T = a["batch"], a["T"]
n = (len(xs) // B) * B
if a["batches"]:
    n = min(n, a["batches"] * B)
onehot = np.eye(10, dtype=np.float32)[ys]
xb, yb = jnp.asarray(xs[:B]), jnp.asarray(onehot[:B])
with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
    forward(xb, None, model=model)  # initialise the value nodes so jit compiles only once
start = time.perf_counter()
for _ in range(2):
    jax.block_until_ready(
        train_on_batch(T, xb, yb, model=model, optim_w=optim_w, optim_h=optim_h)
    )
compile_s = time.perf_counter() - start
perm = np.random.default_rng(a["seed"]).permutation(len(xs))
start, cpu_start = time.perf_counter(), time.process_time()
for i in range(0, n, B):
    idx = perm[i:i + B]
    e = train_on_batch(T, jnp.asarray(xs[idx]), jnp.asarray(onehot[idx]),
                       model=model, optim_w=optim_w, optim_h=optim_h)
jax.block_until_ready(e)
epoch_s = time.perf_counter() - start
epoch_cpu_s = time.process_time() - cpu_start
print(json.dumps({"epoch_s": epoch_s, "epoch_cpu_s": epoch_cpu_s, "compile_s": compile_s,
                  "examples": n, "jax": jax.__version__, "device": str(jax.devices()[0])}))
"""


def run_pcx(args, train) -> dict:
    if not args.peer_python:
        return {"skipped": "no --peer-python given"}
    x = train[0].flatten(1).numpy().astype(np.float32)
    y = train[1].numpy().astype(np.int64)
    batches = args.epoch_batches or len(x) // args.batch_size
    n = batches * args.batch_size
    env = dict(os.environ)
    if args.threads == 1:
        env["XLA_FLAGS"] = (
            "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1 "
            + env.get("XLA_FLAGS", "")
        ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    bionn_times, default_times, peer_times, peer_info = [], [], [], {}
    cpu_times: dict[bool, list[float]] = {True: [], False: []}
    peer_cpu: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        data_path = Path(tmp) / "train.npz"
        np.savez(data_path, x=x, y=y)
        program = Path(tmp) / "pcx_epoch.py"
        program.write_text(PEER_PROGRAM)
        peer_args = {
            "data": str(data_path),
            "sizes": [SIZES[0], *SIZES[1], SIZES[2]],
            "T": args.inference_steps,
            "gamma": args.inference_rate,
            "batch": args.batch_size,
            "batches": batches,
            "lr": 1e-3,
            "seed": args.seed,
        }
        for _ in range(args.pcx_rounds):
            # bionn: one epoch of pc through the Trainer (the path `bionn train` takes), with
            # the Adam `bionn train` builds (bionn.core.optim.LeanAdam, torch's fused kernel)
            # and with torch's default (for-each) Adam
            for lean, times in ((True, bionn_times), (False, default_times)):
                model = _model(args.seed)
                rule = PredictiveCoding(
                    PCConfig(
                        inference_steps=args.inference_steps, inference_rate=args.inference_rate
                    )
                )
                optimizer = (make_optimizer(TrainConfig(lr=1e-3), model) if lean
                             else torch.optim.Adam(model.parameters(), lr=1e-3))
                trainer = Trainer(
                    model,
                    rule,
                    optimizer,
                    (train[0][:n], train[1][:n]),
                    None,
                    batch_size=args.batch_size,
                    progress=False,
                )
                start, cpu_start = time.perf_counter(), time.process_time()
                trainer.train_epoch(1, 1)
                times.append(time.perf_counter() - start)
                cpu_times[lean].append(time.process_time() - cpu_start)
            # PCX: one epoch (after compiling calls on one batch, reported separately)
            proc = subprocess.run(
                [args.peer_python, str(program), json.dumps(peer_args)],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            if proc.returncode != 0:
                return {
                    "error": proc.stderr.strip().splitlines()[-5:],
                    "bionn_epoch_s": bionn_times,
                }
            peer_info = json.loads(proc.stdout.strip().splitlines()[-1])
            peer_times.append(peer_info["epoch_s"])
            peer_cpu.append(peer_info["epoch_cpu_s"])
            print(
                json.dumps(
                    {
                        "bionn_epoch_s": bionn_times[-1],
                        "bionn_torch_default_adam_epoch_s": default_times[-1],
                        "pcx_epoch_s": peer_times[-1],
                    }
                ),
                flush=True,
            )
    bionn_med, peer_med = statistics.median(bionn_times), statistics.median(peer_times)
    return {
        "examples_per_epoch": n,
        "batch_size": args.batch_size,
        "inference_steps": args.inference_steps,
        "inference_rate": args.inference_rate,
        "bionn_epoch_s": bionn_times,
        "pcx_epoch_s": peer_times,
        "pcx_compile_s": peer_info.get("compile_s"),
        "pcx_jax": peer_info.get("jax"),
        "bionn_torch_default_adam_epoch_s": default_times,
        "median_bionn_epoch_s": bionn_med,
        "median_bionn_torch_default_adam_epoch_s": statistics.median(default_times),
        "median_pcx_epoch_s": peer_med,
        "ratio_bionn_to_pcx": bionn_med / peer_med,
        "ratio_bionn_torch_default_adam_to_pcx": statistics.median(default_times) / peer_med,
        "bionn_epoch_cpu_s": cpu_times[True],
        "bionn_torch_default_adam_epoch_cpu_s": cpu_times[False],
        "pcx_epoch_cpu_s": peer_cpu,
        "ratio_bionn_to_pcx_cpu_time": statistics.median(cpu_times[True])
        / statistics.median(peer_cpu),
        "ratio_bionn_to_pcx_per_round": [a / b for a, b in zip(bionn_times, peer_times,
                                                                strict=True)],
        "matmul": matmul_note(),
        "method": (
            "alternating rounds; bionn: Trainer.train_epoch of pc (Adam, lr 1e-3, as `bionn "
            "train` builds it, LeanAdam; and torch's default Adam); PCX: its "
            "documented training step (jit-compiled: forward init, T SGD steps of rate gamma "
            "on the value nodes, one Adam step on the weights), compile time excluded"
        ),
    }


# --- where one pc update spends its time --------------------------------------------------------
PROFILE_GROUPS = {
    "matrix products (oneDNN linear, aten::mm, aten::addmm)": ("mkldnn::_linear_pointwise",
                                                               "aten::mm", "aten::addmm"),
    "rates and slopes (sigmoid, sigmoid_backward)": ("aten::sigmoid",
                                                      "aten::sigmoid_backward"),
    "errors and value updates (sub, sub_, add_, mul)": ("aten::sub", "aten::sub_",
                                                        "aten::add_", "aten::mul"),
    "free energy (the squared norms, dot)": ("aten::dot",),
    "compiled passes (error with its norm; value update with the new rate)": (
        "bionn::pc_error", "bionn::pc_update"),
    "Adam (fused kernel and its Python)": ("aten::_fused_adam_",
                                           "Optimizer.step#LeanAdam.step"),
}


def _annotated_passes():
    """The compiled inference passes wrapped in profiler ranges (their time is otherwise
    invisible to torch's profiler, which sees only torch operations): a kernel and the
    replacements of its ``error_pass`` and ``update_pass`` methods, whose prepared passes
    each run inside a range; None without the kernel."""
    from torch.profiler import record_function

    from bionn.native.predictive import inference_kernel

    kernel = inference_kernel()
    if kernel is None:
        return None
    plain = kernel.error_pass, kernel.update_pass  # bound methods

    def annotate(prepare, label):
        def prepared(*a, **k):
            run = prepare(*a, **k)

            def annotated(*args):
                with record_function(label):
                    return run(*args)

            return annotated

        return prepared

    return kernel, {"error_pass": annotate(plain[0], "bionn::pc_error"),
                    "update_pass": annotate(plain[1], "bionn::pc_update")}


def run_profile(args, train) -> dict:
    """torch's profiler over pc updates (fill_grads and the Adam `bionn train` builds) on
    training batches: self CPU time per operation, grouped (the compiled inference passes,
    where they are used, as profiler ranges of their own)."""
    from torch.profiler import ProfilerActivity, profile

    model = _model(args.seed)
    rule = PredictiveCoding(PCConfig(inference_steps=args.inference_steps,
                                     inference_rate=args.inference_rate))
    optimizer = make_optimizer(TrainConfig(lr=1e-3), model)
    x, y = train[0], train[1]
    batches = [(x[i:i + args.batch_size], y[i:i + args.batch_size])
               for i in range(0, 30 * args.batch_size, args.batch_size)]

    def update(xb, yb):
        rule.fill_grads(model, xb, yb)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for xb, yb in batches[:5]:
        update(xb, yb)
    start = time.process_time()
    for xb, yb in batches[5:15]:
        update(xb, yb)
    cpu_ms = (time.process_time() - start) / 10 * 1e3
    annotated = _annotated_passes()
    if annotated is not None:
        for name, method in annotated[1].items():
            setattr(annotated[0], name, method)
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for xb, yb in batches[15:]:
                update(xb, yb)
    finally:
        if annotated is not None:  # the instance's own methods again
            for name in annotated[1]:
                delattr(annotated[0], name)
    events = {e.key: e for e in prof.key_averages()}
    total = sum(e.self_cpu_time_total for e in events.values())
    shares = {name: sum(events[o].self_cpu_time_total for o in ops if o in events) / total
              for name, ops in PROFILE_GROUPS.items()}
    shares["everything else (small operations, Python)"] = 1.0 - sum(shares.values())
    top = sorted(events.values(), key=lambda e: -e.self_cpu_time_total)[:12]
    n = len(batches) - 15
    return {
        "update": f"one pc update, T = {args.inference_steps}, batch {args.batch_size}, "
                  "the Adam `bionn train` builds",
        "cpu_ms_per_update_without_profiler": cpu_ms,
        "compiled_inference_passes": annotated is not None,
        "profiler_self_cpu_share": shares,
        "profiler_top_ops_ms_per_update": {e.key: e.self_cpu_time_total / 1000 / n
                                           for e in top},
        "profiler_calls_per_update": {e.key: e.count / n for e in top},
        "matmul": matmul_note(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("BIONN_DATA"))
    parser.add_argument("--sections", default="speed,pcx,accuracy")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--schedule", default="cosine")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--inference-steps", type=int, default=20)
    parser.add_argument("--inference-rate", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--speed-rounds", type=int, default=7)
    parser.add_argument("--pcx-rounds", type=int, default=2)
    parser.add_argument("--epoch-batches", type=int, default=0, help="0 = a full epoch")
    parser.add_argument("--peer-python", default=None, help="python of a venv with pcx")
    parser.add_argument("--out", default="benchmarks/results/predictive_coding.json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    tr = load_dataset("mnist", args.data_dir, train=True)
    te = load_dataset("mnist", args.data_dir, train=False)
    train = (tr.normalized(), tr.targets)
    test = (te.normalized(), te.targets)

    out_path = Path(args.out)
    result = json.loads(out_path.read_text()) if out_path.exists() else {}
    result.update(
        {
            "benchmark": "predictive_coding",
            "network": "784-500-500-10 sigmoid, linear output",
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu": cpu_model(),
            "threads": args.threads,
            "load_average_1_5_15_min_before": list(os.getloadavg()),
            "command": "python benchmarks/predictive_coding.py " + " ".join(
                "PATH" if a.startswith("/") else a for a in sys.argv[1:]),
        }
    )
    if "speed" in sections:
        result["speed"] = run_speed(args, train)
        print(json.dumps(result["speed"]), flush=True)
    if "profile" in sections:
        result["profile"] = run_profile(args, train)
        print(json.dumps(result["profile"]), flush=True)
    if "pcx" in sections:
        result["pcx"] = run_pcx(args, train)
        print(json.dumps(result["pcx"]), flush=True)
    if "accuracy" in sections:
        result["accuracy"] = run_accuracy(args, train, test)
        print(json.dumps(result["accuracy"]["gap_pp"]), flush=True)
    result["targets"] = {
        "accuracy": (
            "pc within 0.3 pp of bp, pc-fixed within 0.1 pp (same network, budget, optimizer)"
        ),
        "speed": "one pc inference step <= 1.2 x one bp forward+backward; epoch <= PCX's",
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2, default=_jsonable) + "\n")
    print(f"wrote {out_path}", file=sys.stderr)


def _jsonable(value):
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


if __name__ == "__main__":
    main()
