"""Contrastive rules (chl, generec, ep, ep-sym): MNIST accuracy, EP estimate error, speed, CNN.

Sections (the first argument):

    mnist     784-500-10 in the setting of Scellier & Bengio 2017 (20 free / 4 nudged steps,
              eps 0.5, alphas 0.1 / 0.05 as --layer-lrs with SGD(lr=1), batch 20, persistent
              particles): one rule and beta per call, test error after every epoch, written
              to the JSON after every epoch (a run stopped early keeps what it reached).
              ``--layer-lrs`` sets the alphas, ``--schedule cosine`` anneals them per epoch
              (constant, the paper's, by default).
    estimate  the relative error of the EP estimate (one-sided and symmetric) against the
              implicit-function gradient, for a range of beta, on a tiny float64 network with
              the smooth rho; the fitted log-log slopes; a figure.
    speed     one relaxation step against its own matrix products timed alone, and seconds per
              epoch against the code of Laborieux et al. 2021 (run with ``--peer-python`` in
              its own environment, ``--peer-dir`` holding its model_utils.py), alternating.
    cnn       the convolutional network with ep-sym on Fashion-MNIST beside backprop on the
              same feed-forward architecture, at a reduced budget (``--train-size``,
              ``--epochs``, ``--free-steps``, ``--nudged-steps``).

    python benchmarks/contrastive.py mnist --rule ep --nudging 0.5 --epochs 25 --data-dir DATA
    python benchmarks/contrastive.py mnist --rule ep --nudging 1.0 --random-sign \
        --schedule cosine --epochs 8 --data-dir DATA
    python benchmarks/contrastive.py estimate
    python benchmarks/contrastive.py speed --data-dir DATA --peer-python PY --peer-dir DIR
    python benchmarks/contrastive.py cnn --data-dir DATA --dataset fashion-mnist

Every section runs ``--threads`` torch threads (1 by default) and writes
``benchmarks/results/contrastive_<section>[_<tag>].json`` with the CPU model, the torch version,
the thread count and the exact command.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from bionn.core.registry import make_rule
from bionn.core.resources import cpu_model
from bionn.core.rule import Backprop
from bionn.core.trainer import Trainer
from bionn.data import load_dataset
from bionn.functional.energy import input_drive, relax

RESULTS = Path(__file__).resolve().parent / "results"


def _command() -> str:
    """The command line, with the data folder written as DATA and the peer's as PEER."""
    names = {"--data-dir": "DATA", "--peer-python": "PEER/bin/python", "--peer-dir": "PEER/src"}
    argv = list(sys.argv)
    for i, a in enumerate(argv):
        if a in names and i + 1 < len(argv):
            argv[i + 1] = names[a]
        elif a.split("=", 1)[0] in names:
            argv[i] = a.split("=", 1)[0] + "=" + names[a.split("=", 1)[0]]
    return "python " + " ".join(argv)


def header(args: argparse.Namespace, section: str) -> dict:
    return {
        "benchmark": f"contrastive/{section}",
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": args.threads,
        "command": _command(),
    }


def write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)


def mnist_data(args, dataset: str = "mnist"):
    train = load_dataset(dataset, args.data_dir, train=True)
    test = load_dataset(dataset, args.data_dir, train=False)
    n = args.train_size or len(train.data)
    m = args.test_size or len(test.data)
    return (train.data[:n], train.targets[:n]), (test.data[:m], test.targets[:m])


# ---------------------------------------------------------------------------------------------
# mnist


def section_mnist(args) -> None:
    torch.manual_seed(args.seed)
    options = {
        "free_steps": args.free_steps,
        "step_size": args.step_size,
        "persistent": not args.no_persistent,
        "layer_lrs": tuple(float(a) for a in args.layer_lrs.split(",")),
    }
    if args.nudged_steps is not None:  # else the rule's own default (ep 4, chl/generec 20)
        options["nudged_steps"] = args.nudged_steps
    if args.rule in ("ep", "ep-sym"):
        options["nudging"] = args.nudging
        options["random_sign"] = args.random_sign
    rule = make_rule(args.rule, options)
    (xtr, ytr), (xte, yte) = mnist_data(args)
    model = rule.build_model("mlp:500", (1, 28, 28), 10, "relu")
    opt = torch.optim.SGD(model.parameters(), lr=1.0)  # the alphas are in --layer-lrs
    scheduler = epoch_schedule(opt, args.schedule, args.epochs)
    trainer = Trainer(model, rule, opt, (xtr, ytr), (xte, yte), batch_size=20, seed=args.seed,
                      progress=not args.no_progress, scheduler=scheduler)
    trainer.set_train_inputs(rule.phase_inputs(model, "train", xtr))
    tag = args.tag or f"{args.rule}_beta{args.nudging:g}" + ("_rs" if args.random_sign else "")
    path = RESULTS / f"contrastive_mnist_{tag}.json"
    record = header(args, "mnist")
    record.update({
        "network": "784-500-10 hard sigmoid, squared-error output",
        "rule": args.rule,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
        "optimizer": f"SGD(lr=1), per-layer alphas {args.layer_lrs} in the pseudo-gradient",
        "schedule": args.schedule,
        "batch_size": 20,
        "train_examples": len(xtr),
        "epochs_planned": args.epochs,
        "epochs": [],
    })
    eval_steps = [int(v) for v in args.eval_steps.split(",") if v]
    particles = model.zero_states(xte.flatten(1)) if args.test_particles else None
    if eval_steps or particles is not None:
        record["extra_evaluation"] = (
            "test_error_steps_<T>_pct: the free phase from zero states for T steps; "
            "test_error_particles_pct: persistent test particles, each epoch "
            f"{model.free_steps} more free steps from the last epoch's test states (the "
            "reference code's validation)")
    for epoch in range(1, args.epochs + 1):
        trainer.fit(epoch)
        r = trainer.history[-1]
        row = {
            "epoch": epoch,
            "test_error_pct": round(100 * (1 - r["test_accuracy"]), 3),
            "train_error_running_pct": round(100 * (1 - r["train_accuracy"]), 3),
            "angle_to_backprop_deg": r.get("angle_to_backprop_deg"),
            "epoch_time_s": round(r["epoch_time_s"], 2),
        }
        with torch.no_grad():
            xf = xte.flatten(1)
            for steps in eval_steps:
                out = model.relax_free(xf, steps=steps)[-1]
                row[f"test_error_steps_{steps}_pct"] = round(
                    100 * (out.argmax(1) != yte).double().mean().item(), 3)
            if particles is not None:
                particles = model.relax_free(xf, particles)
                row["test_error_particles_pct"] = round(
                    100 * (particles[-1].argmax(1) != yte).double().mean().item(), 3)
        record["epochs"].append(row)
        record["epochs_done"] = epoch
        record["test_error_pct"] = record["epochs"][-1]["test_error_pct"]
        record["best_test_error_pct"] = min(e["test_error_pct"] for e in record["epochs"])
        write(path, record)
        print(json.dumps(record["epochs"][-1]), flush=True)


def epoch_schedule(opt, schedule: str, epochs: int):
    """The alphas' factor per epoch e (from 0): 1/2 (1 + cos(pi e / E)) for ``cosine`` (the
    annealing of Laborieux et al. 2021, as ``bionn train --schedule cosine``), 1 - e / E for
    ``linear``, None (the paper's constant alphas) for ``constant``."""
    if schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda e: 0.5 * (1.0 + math.cos(math.pi * e / epochs)))
    if schedule == "linear":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0 - e / epochs)
    return None


# ---------------------------------------------------------------------------------------------
# estimate: EP vs the implicit-function gradient


def implicit_gradient(model, x, target):
    """dC/dtheta at the free fixed point by the implicit function theorem (float64)."""
    from bionn.functional.energy import cost, energy

    params = list(model.parameters())
    free = model.relax_free(x, steps=model.free_steps)
    sizes = [s.shape[1] for s in free]
    flat = torch.cat([s.reshape(-1) for s in free]).detach().requires_grad_(True)

    def unflat(v):
        out, i = [], 0
        for n in sizes:
            out.append(v[i : i + n * x.shape[0]].view(x.shape[0], n))
            i += n * x.shape[0]
        return out

    def e_of(v):
        return energy(x, unflat(v), model.weights, model.biases, model.rho_name).sum()

    hess = torch.autograd.functional.hessian(e_of, flat)
    c = cost(unflat(flat)[-1], target).mean()
    g = torch.autograd.grad(c, flat)[0]
    lam = torch.linalg.solve(hess, g)
    grad_e = torch.autograd.grad(e_of(flat), flat, create_graph=True)[0]
    return [-t for t in torch.autograd.grad(grad_e @ lam, params)]


def section_estimate(args) -> None:
    from bionn.nn.hopfield import EnergyMLP

    torch.manual_seed(args.seed)
    dtype = torch.float64
    model = EnergyMLP(6, [5, 4], 3, rho_name="sigmoid", free_steps=500, step_size=0.5).to(dtype)
    x = torch.rand(4, 6, dtype=dtype)
    y = torch.tensor([0, 1, 2, 1])
    target = F.one_hot(y, 3).to(dtype)
    oracle = implicit_gradient(model, x, target)
    betas = [0.4, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.0025, 0.00125]
    errors: dict[str, list[float]] = {"one-sided": [], "symmetric": []}
    for key, name in (("one-sided", "ep"), ("symmetric", "ep-sym")):
        for beta in betas:
            rule = make_rule(name, {"nudging": beta, "free_steps": 500, "nudged_steps": 500,
                                    "rho": "sigmoid", "step_size": 0.5})
            rule.fill_grads(model, x, y)
            est = torch.cat([p.grad.flatten() for p in model.parameters()])
            ref = torch.cat([g.flatten() for g in oracle])
            errors[key].append(float((est - ref).norm() / ref.norm()))
    small = [i for i, b in enumerate(betas) if b <= 0.02]  # the asymptotic regime
    slopes = {k: float(np.polyfit(np.log([betas[i] for i in small]),
                                  np.log([v[i] for i in small]), 1)[0])
              for k, v in errors.items()}
    record = header(args, "estimate")
    record.update({"network": "6-5-4-3, smooth rho, float64, batch 4", "betas": betas,
                   "relative_error": errors, "loglog_slope": slopes,
                   "slope_fit": "least squares over beta <= 0.02"})
    write(RESULTS / "contrastive_estimate.json", record)
    from bionn.plots.contrastive import plot_ep_estimate_error

    plot_ep_estimate_error(betas, errors, RESULTS / "contrastive_estimate.png", slopes)
    print(json.dumps({"relative_error": errors, "slopes": slopes}, indent=1))


# ---------------------------------------------------------------------------------------------
# speed


def _median_time(fn, repeat: int, number: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t) / number)
    return statistics.median(times)


def section_speed(args) -> None:
    torch.manual_seed(args.seed)
    rule = make_rule("ep", {"nudging": 0.5})
    model = rule.build_model("mlp:500", (1, 28, 28), 10, "relu")
    (xtr, ytr), _ = mnist_data(args)
    x = xtr[:20].flatten(1)
    w, b = model.weights, model.biases
    drive = input_drive(x, w, b)
    states = model.relax_free(x)
    h, o = (s.contiguous() for s in states)  # the products timed alone on plain tensors
    w1 = w[1]

    def one_step():
        relax(x, states, w, b, 1, 0.5, input_drive=drive)

    def products():
        torch.mm(o, w1)  # top-down drive of the hidden layer
        torch.mm(h, w1.t())  # bottom-up drive of the output layer

    def products_with_input():
        torch.mm(x, w[0].t())
        torch.mm(o, w1)
        torch.mm(h, w1.t())

    def step_with_input():
        relax(x, states, w, b, 1, 0.5)

    with torch.no_grad():
        # interleave, median of medians
        pairs = {"step": [], "products": [], "step_with_input": [], "products_with_input": []}
        for _ in range(args.repeat):
            pairs["step"].append(_median_time(one_step, 5, 200))
            pairs["products"].append(_median_time(products, 5, 200))
            pairs["step_with_input"].append(_median_time(step_with_input, 3, 50))
            pairs["products_with_input"].append(_median_time(products_with_input, 3, 50))
        # one step inside a relaxation: the T-step loop over T, and the marginal cost of a
        # step, (time of 40 steps - time of 20 steps) / 20, which leaves out the per-phase
        # setup (packing the states, the constant drive) that a 20-step phase pays once
        loops = {20: [], 40: []}
        for _ in range(args.repeat * 3):
            for n in (20, 40):
                loops[n].append(_median_time(
                    lambda n=n: relax(x, states, w, b, n, 0.5, input_drive=drive), 5, 20))
            pairs["products"].append(_median_time(products, 5, 200))
    med = {k: statistics.median(v) for k, v in pairs.items()}
    loop20, loop40 = statistics.median(loops[20]), statistics.median(loops[40])
    med["step_in_loop"] = loop20 / 20
    med["step_marginal"] = (loop40 - loop20) / 20
    # the same from the fastest rounds (interference from other processes only adds time)
    fastest = {"products": min(pairs["products"]), "marginal": (min(loops[40]) - min(loops[20]))
               / 20, "loop": min(loops[20]) / 20}
    record = header(args, "speed")
    record.update({
        "network": "784-500-10, batch 20",
        "step_us": med["step"] * 1e6,
        "step_in_20_step_loop_us": med["step_in_loop"] * 1e6,
        "products_us": med["products"] * 1e6,
        "ratio_step_to_products": med["step"] / med["products"],
        "ratio_loop_step_to_products": med["step_in_loop"] / med["products"],
        "step_marginal_us": med["step_marginal"] * 1e6,
        "ratio_marginal_step_to_products": med["step_marginal"] / med["products"],
        "fastest_rounds": {
            "products_us": fastest["products"] * 1e6,
            "step_marginal_us": fastest["marginal"] * 1e6,
            "step_in_20_step_loop_us": fastest["loop"] * 1e6,
            "ratio_marginal_step_to_products": fastest["marginal"] / fastest["products"],
            "ratio_loop_step_to_products": fastest["loop"] / fastest["products"],
        },
        "step_with_input_product_us": med["step_with_input"] * 1e6,
        "products_with_input_us": med["products_with_input"] * 1e6,
        "ratio_with_input": med["step_with_input"] / med["products_with_input"],
        "note": (
            "step = one Euler step of relax() with the input drive W_0 x + b_0 computed once per "
            "batch (as training does); products = the two products that step needs (W_1^T r_2 "
            "top-down into the hidden layer, W_1 r_1 bottom-up into the output). The "
            "'with_input' pair recomputes W_0 x inside the step, as a step that does not cache "
            "the constant input drive would."
        ),
    })
    if args.peer_python:
        record["epoch_vs_peer"] = epoch_vs_peer(args, xtr, ytr)
    write(RESULTS / "contrastive_speed.json", record)
    print(json.dumps(record, indent=1))


PEER_SCRIPT = r"""
import sys, time, json, types, torch
sys.path.insert(0, sys.argv[1])
# model_utils imports torchvision but the MLP code timed here never uses it
sys.modules.setdefault("torchvision", types.ModuleType("torchvision"))
torch.set_num_threads(int(sys.argv[2]))
import model_utils as mu
n, T1, T2, mbs = int(sys.argv[3]), 20, 4, 20
x = torch.load(sys.argv[4]); y = torch.load(sys.argv[5])
model = mu.P_MLP([784, 500, 10], activation=mu.hard_sigmoid)
crit = torch.nn.MSELoss(reduction='none')
opt = torch.optim.SGD([{'params': model.synapses[0].parameters(), 'lr': 0.1},
                       {'params': model.synapses[1].parameters(), 'lr': 0.05}], lr=0.1)
t = time.perf_counter()
for i in range(0, n, mbs):
    xb, yb = x[i:i+mbs], y[i:i+mbs]
    neurons = model.init_neurons(xb.size(0), 'cpu')
    neurons = model(xb, yb, neurons, T1, beta=0.0, criterion=crit)
    n1 = mu.copy(neurons)
    neurons = model(xb, yb, neurons, T2, beta=0.5, criterion=crit)
    n2 = mu.copy(neurons)
    model.compute_syn_grads(xb, yb, n1, n2, (0.0, 0.5), crit)
    opt.step()
print(json.dumps({"seconds": time.perf_counter() - t, "examples": n}))
"""


def epoch_vs_peer(args, xtr, ytr) -> dict:
    """Seconds for the same examples of training: bionn's ep against Laborieux et al.'s P_MLP
    (784-500-10, hard sigmoid, T1 = 20, T2 = 4, batch 20, beta 0.5), alternating."""
    import tempfile

    n = args.speed_examples
    x, y = xtr[:n].flatten(1).contiguous(), ytr[:n].contiguous()
    tmp = Path(tempfile.mkdtemp())
    torch.save(x, tmp / "x.pt")
    torch.save(y, tmp / "y.pt")
    script = tmp / "peer.py"
    script.write_text(PEER_SCRIPT)

    def ours() -> float:
        torch.manual_seed(0)
        rule = make_rule("ep", {"nudging": 0.5, "layer_lrs": (0.1, 0.05)})
        model = rule.build_model("mlp:500", (1, 28, 28), 10, "relu")
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        t = time.perf_counter()
        for i in range(0, n, 20):
            opt.zero_grad(set_to_none=True)
            rule.fill_grads(model, x[i : i + 20], y[i : i + 20])
            opt.step()
        return time.perf_counter() - t

    def theirs() -> float:
        out = subprocess.run(
            [args.peer_python, str(script), args.peer_dir, str(args.threads), str(n),
             str(tmp / "x.pt"), str(tmp / "y.pt")],
            capture_output=True, text=True, check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]

    mine, peer = [], []
    for _ in range(args.repeat):
        mine.append(ours())
        peer.append(theirs())
    scale = 60000 / n
    return {
        "examples_timed": n,
        "bionn_s": mine,
        "peer_s": peer,
        "bionn_epoch_s_est": statistics.median(mine) * scale,
        "peer_epoch_s_est": statistics.median(peer) * scale,
        "ratio_bionn_to_peer": statistics.median(mine) / statistics.median(peer),
        "peer": "Laborieux-Axel/Equilibrium-Propagation model_utils.P_MLP, its own environment",
        "setting": "784-500-10, hard sigmoid, T1 20, T2 4, batch 20, beta 0.5, SGD",
    }


# ---------------------------------------------------------------------------------------------
# cnn


def section_cnn(args) -> None:
    (xtr, ytr), (xte, yte) = mnist_data(args, args.dataset)
    cnn_nudged = args.nudged_steps if args.nudged_steps is not None else 4
    record = header(args, "cnn")
    record.update({
        "dataset": args.dataset,
        "network": "conv5x5(32)-pool-conv5x5(64)-pool-linear(10) (Laborieux et al.)",
        "reduced_budget": {
            "train_examples": len(xtr), "test_examples": len(xte), "epochs": args.epochs,
            "free_steps": args.free_steps,
            "nudged_steps": cnn_nudged, "batch_size": args.batch_size,
        },
        "note": "a budget this shared CPU runs in minutes, not the paper's (reduced)",
        "runs": {},
    })
    path = RESULTS / (f"contrastive_cnn_{args.dataset}" + (f"_{args.tag}" if args.tag else "")
                      + ".json")
    for name in args.cnn_rules.split(","):
        torch.manual_seed(args.seed)
        rule = make_rule("ep-sym", {"nudging": args.nudging, "free_steps": args.free_steps,
                                    "nudged_steps": cnn_nudged, "output": args.output})
        model = rule.build_model("cnn", (1, 28, 28), 10, "relu")
        if name == "bp":
            train_rule = FeedForwardBP(model, args.output)
            lr = args.bp_lr
        else:
            train_rule = rule
            lr = args.lr
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        trainer = Trainer(model, train_rule, opt, (xtr, ytr), (xte, yte),
                          batch_size=args.batch_size, seed=args.seed,
                          progress=not args.no_progress, angle_batch_size=64,
                          scheduler=epoch_schedule(opt, args.schedule, args.epochs))
        t = time.perf_counter()
        for epoch in range(1, args.epochs + 1):  # written after every epoch
            summary = trainer.fit(epoch)
            record["runs"][name] = {
                "test_accuracy_pct": round(100 * summary["test_accuracy"], 2),
                "per_epoch_test_accuracy_pct": [round(100 * r["test_accuracy"], 2)
                                                for r in trainer.history],
                "epochs_done": epoch,
                "wall_time_s": round(time.perf_counter() - t, 1),
                "optimizer": f"Adam(lr={lr})",
                "schedule": args.schedule,
            }
            write(path, record)
        print(name, json.dumps(record["runs"][name]), flush=True)


class FeedForwardBP(Backprop):
    """Backprop on the feed-forward pass of the same convolutional architecture (rho after
    every layer but the output, the same weights), the baseline of the CNN section."""

    name = "bp-ff"

    def __init__(self, model, output: str) -> None:
        super().__init__()
        self.output = output

    @staticmethod
    def forward(model, x):
        h = x
        for conv in model.convs:
            h = F.max_pool2d(conv(h), 2).clamp(0, 1)
        out = model.fcs[-1](h.flatten(1))
        return out

    def loss(self, output, y):
        return F.cross_entropy(output, y)

    def fill_grads(self, model, x, y):
        for p in model.parameters():
            p.grad = None
        out = self.forward(model, x)
        loss = self.loss(out, y)
        loss.backward()
        acc = (out.detach().argmax(1) == y).float().mean()
        return {"loss": float(loss.detach()), "accuracy": float(acc)}

    def predict(self, model, x):
        return self.forward(model, x)


# ---------------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("section", choices=["mnist", "estimate", "speed", "cnn"])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rule", default="ep")
    p.add_argument("--nudging", type=float, default=0.5)
    p.add_argument("--random-sign", action="store_true")
    p.add_argument("--no-persistent", action="store_true")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--free-steps", type=int, default=20)
    p.add_argument("--nudged-steps", type=int, default=None,
                   help="K (default: the rule's own, 4 for ep and ep-sym, 20 for chl and generec)")
    p.add_argument("--step-size", type=float, default=0.5)
    p.add_argument("--layer-lrs", default="0.1,0.05", help="mnist: the alphas, one per layer")
    p.add_argument("--schedule", default="constant", choices=["constant", "cosine", "linear"],
                   help="mnist: the alphas' factor per epoch (constant as the paper); cnn: Adam's "
                        "learning rate's factor per epoch")
    p.add_argument("--train-size", type=int, default=0)
    p.add_argument("--test-size", type=int, default=0)
    p.add_argument("--tag", default="")
    p.add_argument("--eval-steps", default="",
                   help="mnist: also the test error after these free steps from zero states, "
                        "e.g. 20,100")
    p.add_argument("--test-particles", action="store_true",
                   help="mnist: also the test error with persistent test particles (the "
                        "reference code's validation)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--speed-examples", type=int, default=2000)
    p.add_argument("--peer-python", default="")
    p.add_argument("--peer-dir", default="")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--cnn-rules", default="ep-sym,bp")
    p.add_argument("--output", default="mse")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--bp-lr", type=float, default=1e-3)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    {"mnist": section_mnist, "estimate": section_estimate, "speed": section_speed,
     "cnn": section_cnn}[args.section](args)


if __name__ == "__main__":
    main()
    sys.exit(0)
