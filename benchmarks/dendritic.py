"""Dendritic error models: speed against backprop, the teacher-student task, MNIST.

Sections (``--sections``, comma-separated; all by default):

    speed    one training step (fill_grads + optimizer step) of the microcircuit's simplified
             dynamics against one backprop step of the same 784-500-500-10 network and batch,
             interleaved, median of ``--repeats``.
    teacher  the paper's teacher-student regression (student 30-50-10, teacher 30-20-10, softplus
             hidden rates, linear output): the self-predicting state learned from random
             interneuron weights (a phase without targets), then the microcircuit against the
             shallow learner (only the output layer plastic) on held-out squared error, and the
             angle between the fixed top-down weights and the forward weights. Run through the
             rule's public API (``fill_grads`` and an optimizer): the targets are real vectors,
             which the classification Trainer does not evaluate.
    mnist    784-500-500-10 on MNIST with the simplified dynamics through the Trainer, and
             backprop on the same network (squared error on the same linear output, same
             hidden rate, optimizer, schedule, epochs and seed) beside it (``--mnist-rules``
             picks either; ``--hold-self-predicting`` holds the interneurons in closed form).
             The run folders go to ``--run-root``, by default a temporary folder made at run
             time.
    tracking whether learned interneurons (Eq. 7, W^PI held at -W^down) follow the forward
             weights: 120 steps (batch 100) on the first 6000 MNIST training images from the
             self-predicting state, under Adam (1e-3, the interneurons' learning rate scaled by
             a factor per population) and under SGD (eta_IP 1, the tracking rates of
             ``--ip-tracking``, held in closed form); reports the apical potential ||v_A,k||
             without a target (the interneurons' residual) and with it, the angles to backprop
             and the test error.

    python benchmarks/dendritic.py [--sections speed,teacher,mnist] [--epochs 10]
        [--data-dir DATA] [--threads 1] [--out benchmarks/results/dendritic.json]

Each section is merged into the JSON file as it finishes.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from bionn.core.config import TrainConfig
from bionn.core.models import MLP
from bionn.core.resources import cpu_model as _cpu
from bionn.core.rule import Backprop
from bionn.core.run import run_training
from bionn.data import TeacherStudent
from bionn.errors import TrainingDiverged
from bionn.nn.microcircuit import Microcircuit
from bionn.rules.dendritic import DendriticConfig, DendriticMicrocircuit, alignment_metrics

SIZES = (784, 500, 500, 10)


def _shown_command() -> str:
    """The command line, with this machine's data root as DATA and other paths as PATH."""
    shown, after_data = [], False
    for arg in sys.argv:
        if after_data:
            shown.append("DATA")
        elif arg.startswith("/"):
            shown.append("PATH")
        else:
            shown.append(arg)
        after_data = arg == "--data-dir"
    shown[0] = "benchmarks/dendritic.py"
    return "python " + " ".join(shown)


def _machine(args: argparse.Namespace) -> dict[str, Any]:
    return {"cpu": _cpu(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "command": _shown_command()}


def _merge(path: Path, section: str, payload: dict[str, Any], args: argparse.Namespace) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[section] = {**payload, "machine": _machine(args)}
    path.write_text(json.dumps(data, indent=2) + "\n")


class BackpropSquaredError(Backprop):
    """Backprop on 1/2 ||onehot - output||^2: the objective the microcircuit approximates."""

    name = "bp-mse"

    def __init__(self, weight_decay: float = 0.0) -> None:
        super().__init__()
        self.weight_decay = weight_decay  # the microcircuit's --weight-decay: weights, no biases

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        target = F.one_hot(y, output.shape[1]).to(output.dtype)
        return 0.5 * (target - output).square().sum(1).mean()

    def fill_grads(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
        metrics = super().fill_grads(model, x, y)
        if self.weight_decay:
            for p in model.parameters():
                if p.grad is not None and p.dim() > 1:
                    p.grad.add_(p.detach(), alpha=self.weight_decay)
        return metrics


# --- speed --------------------------------------------------------------------------------------


def run_speed(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    batch = args.batch_size
    x = torch.rand(batch, SIZES[0])
    y = torch.randint(0, 10, (batch,))
    rule = DendriticMicrocircuit(DendriticConfig(hidden_rate=args.hidden_rate))
    circuit = rule.build_model("mlp:500,500", (1, 28, 28), 10, args.hidden_rate)
    mlp = MLP(784, [500, 500], 10, activation=args.hidden_rate)
    bp = BackpropSquaredError()
    opt_c = torch.optim.Adam(circuit.parameters(), lr=1e-4)
    opt_m = torch.optim.Adam(mlp.parameters(), lr=1e-4)

    def step(r, model, opt):
        r.fill_grads(model, x, y)
        opt.step()
        opt.zero_grad(set_to_none=True)

    times: dict[str, list[float]] = {"dendritic": [], "bp": []}
    for _ in range(5):  # warm-up
        step(rule, circuit, opt_c)
        step(bp, mlp, opt_m)
    for _ in range(args.repeats):
        for name, r, model, opt in (("dendritic", rule, circuit, opt_c), ("bp", bp, mlp, opt_m)):
            start = time.perf_counter()
            step(r, model, opt)
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "network": "784-500-500-10", "batch_size": batch, "hidden_rate": args.hidden_rate,
        "optimizer": "adam", "repeats": args.repeats,
        "median_step_s": med, "ratio_dendritic_over_bp": med["dendritic"] / med["bp"],
        "target_ratio_at_most": 3.0,
    }
    print(f"speed: dendritic {1e3 * med['dendritic']:.2f} ms, bp {1e3 * med['bp']:.2f} ms, "
          f"ratio {result['ratio_dendritic_over_bp']:.2f}", file=sys.stderr)
    return result


# --- teacher-student ----------------------------------------------------------------------------


def _mse(model: Microcircuit, x: torch.Tensor, t: torch.Tensor) -> float:
    with torch.no_grad():
        return float(0.5 * (t - model(x)).square().sum(1).mean())


def run_teacher(args: argparse.Namespace) -> dict[str, Any]:
    train = TeacherStudent(train=True, n_train=args.teacher_train, n_test=1000, seed=0)
    test = TeacherStudent(train=False, n_train=args.teacher_train, n_test=1000, seed=0)
    out: dict[str, Any] = {
        "student": "30-50-10", "teacher": "30-20-10", "hidden_rate": "softplus",
        "output_rate": "linear", "n_train": len(train), "n_test": len(test),
        "batch_size": 32, "optimizer": f"adam lr {args.teacher_lr}", "epochs": args.teacher_epochs,
        "pretrain_epochs": args.pretrain_epochs, "dynamics": "simplified (1 sweep)",
        "top_down": "fixed random", "init_scale": args.teacher_init_scale,
    }
    gen = torch.Generator().manual_seed(1)

    def batches():
        order = torch.randperm(len(train), generator=gen)
        for i in range(0, len(order), 32):
            idx = order[i:i + 32]
            yield train.data[idx], train.targets[idx]

    runs: dict[str, Any] = {}
    for kind in ("microcircuit", "shallow"):
        torch.manual_seed(0)
        cfg = DendriticConfig(hidden_rate="softplus", output_rate="linear",
                              self_predicting_init=False, pretrain_epochs=args.pretrain_epochs,
                              init_scale=args.teacher_init_scale)
        rule = DendriticMicrocircuit(cfg)
        model = Microcircuit((30, 50, 10), hidden="softplus", output="linear",
                             conductances=cfg.conductances, self_predicting=False,
                             init_scale=args.teacher_init_scale)
        history: list[dict[str, Any]] = []
        # phase 1: the self-predicting state from random interneuron weights (no target)
        rule.set_phase("self-predicting")
        opt = torch.optim.Adam(model.parameters(), lr=args.teacher_lr)
        for epoch in range(1, args.pretrain_epochs + 1):
            sums: dict[str, float] = {}
            count = 0
            for xb, tb in batches():
                m = rule.fill_grads(model, xb, tb)
                opt.step()
                opt.zero_grad(set_to_none=True)
                for k, v in m.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
            history.append({"phase": "self-predicting", "epoch": epoch,
                            **{f"train_{k}": v / count for k, v in sums.items()},
                            **alignment_metrics(model), "test_mse": _mse(model, test.data,
                                                                         test.targets)})
        # phase 2: learn the task; the shallow learner keeps its hidden layer frozen
        if kind == "shallow":
            for p in model.pyramidal[0].parameters():
                p.requires_grad_(False)
        rule.set_phase("train")
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                               lr=args.teacher_lr)
        for epoch in range(args.pretrain_epochs + 1, args.pretrain_epochs + args.teacher_epochs
                           + 1):
            sums, count = {}, 0
            for xb, tb in batches():
                m = rule.fill_grads(model, xb, tb)
                opt.step()
                opt.zero_grad(set_to_none=True)
                for k, v in m.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
            history.append({"phase": "train", "epoch": epoch,
                            **{f"train_{k}": v / count for k, v in sums.items()},
                            **alignment_metrics(model), "test_mse": _mse(model, test.data,
                                                                         test.targets)})
            print(f"teacher {kind} epoch {epoch}: test mse {history[-1]['test_mse']:.4f}, "
                  f"top-down angle {history[-1]['top_down_angle_deg_1']:.1f}", file=sys.stderr)
        runs[kind] = {"history": history, "final_test_mse": history[-1]["test_mse"]}
    pre = [h for h in runs["microcircuit"]["history"] if h["phase"] == "self-predicting"]
    out["runs"] = runs
    out["self_predicting"] = {
        "apical_norm_first_epoch": pre[0]["train_apical_norm_1"] if pre else None,
        "apical_norm_last_epoch": pre[-1]["train_apical_norm_1"] if pre else None,
        "pi_angle_deg_last": pre[-1]["pi_angle_deg_1"] if pre else None,
    }
    out["microcircuit_beats_shallow"] = (runs["microcircuit"]["final_test_mse"]
                                         < runs["shallow"]["final_test_mse"])
    out["final_top_down_angle_deg"] = runs["microcircuit"]["history"][-1]["top_down_angle_deg_1"]
    out["initial_test_mse"] = _mse(Microcircuit((30, 50, 10), output="linear"), test.data,
                                   test.targets)
    if args.figures:
        from bionn.plots.dendritic import (
            plot_alignment,
            plot_apical_error,
            plot_interneuron_error,
        )

        folder = Path(args.figures)
        folder.mkdir(parents=True, exist_ok=True)
        h = runs["microcircuit"]["history"]
        out["figures"] = [str(plot_apical_error(h, folder / "dendritic_teacher_apical.png")),
                          str(plot_alignment(h, folder / "dendritic_teacher_alignment.png")),
                          str(plot_interneuron_error(pre, folder /
                                                     "dendritic_teacher_self_predicting.png"))]
    return out


# --- MNIST --------------------------------------------------------------------------------------


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _train(rule_name: str, config: TrainConfig, weight_decay: float = 0.0) -> dict[str, Any]:
    """One MNIST run; backprop on the squared error (:class:`BackpropSquaredError`, with the
    microcircuit's weight decay)."""
    if rule_name != "bp":
        return run_training(config, progress=False)
    import bionn.core.run as run_module

    original = run_module.make_rule
    run_module.make_rule = lambda name, opts: BackpropSquaredError(weight_decay)
    try:
        return run_training(config, progress=False)
    finally:
        run_module.make_rule = original


def run_mnist(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "network": "784-500-500-10", "hidden_rate": args.hidden_rate, "output": "linear",
        "epochs": args.epochs, "batch_size": args.batch_size, "optimizer": args.optimizer,
        "lr": args.lr, "momentum": args.momentum, "nesterov": args.nesterov,
        "clip_grad": args.clip_grad, "weight_decay": args.weight_decay,
        "schedule": "cosine", "seed": args.seed, "dataset": "mnist (60000 / 10000)",
        "target_test_error_at_most": 0.022, "paper_test_error": {"dendritic": 0.0196,
                                                                 "bp": 0.0153},
    }
    # the run folders: --run-root, or a temporary folder made now (removed by the system)
    out_root = Path(args.run_root or tempfile.mkdtemp(prefix="bionn-dendritic-"))
    results["dendritic_options"] = {"hidden_rate": args.hidden_rate, "eta_pi": args.eta_pi}
    if args.ip_tracking:
        results["dendritic_options"]["ip_tracking"] = True
    if args.hold_self_predicting:
        results["dendritic_options"] = {"hidden_rate": args.hidden_rate,
                                        "hold_self_predicting": True}
    if args.eta_forward:
        results["dendritic_options"]["eta_forward"] = _floats(args.eta_forward)
    if args.sweeps != 1:
        results["dendritic_options"]["sweeps"] = args.sweeps
    if args.weight_decay:
        results["dendritic_options"]["weight_decay"] = args.weight_decay
    rules = [r.strip() for r in args.mnist_rules.split(",") if r.strip()]
    for rule_name, options in (("dendritic", results["dendritic_options"]), ("bp", {})):
        if rule_name not in rules:
            continue
        config = TrainConfig(rule=rule_name, dataset="mnist", model="mlp:500,500",
                             activation=args.hidden_rate, epochs=args.epochs,
                             batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                             momentum=args.momentum, nesterov=args.nesterov,
                             clip_grad=args.clip_grad,
                             schedule="cosine", seed=args.seed, data_dir=args.data_dir,
                             out=str(out_root / f"{rule_name}-{int(time.time())}"),
                             options=options)
        diverged = None
        try:
            summary = _train(rule_name, config, args.weight_decay)
        except TrainingDiverged as exc:  # recorded with the epochs it finished, not raised
            diverged = str(exc).split(";")[0]
        metrics = Path(config.out) / "metrics.jsonl"
        lines = metrics.read_text().splitlines() if metrics.is_file() else []
        history = [json.loads(line) for line in lines]
        if diverged is not None:
            results[rule_name] = {
                "diverged": diverged,
                "test_error_per_epoch": [1 - h["test_accuracy"] for h in history],
                "train_loss_per_epoch": [h.get("train_loss") for h in history],
            }
            print(f"mnist {rule_name}: {diverged}", file=sys.stderr)
            _merge(Path(args.out), "mnist", {"partial": True, **results}, args)
            continue
        results[rule_name] = {
            "test_error": 1 - summary["test_accuracy"],
            "train_accuracy": summary["train_accuracy"],
            "wall_time_s": summary["wall_time_s"],
            "test_error_per_epoch": [1 - h["test_accuracy"] for h in history],
            "angle_per_layer_deg_last": history[-1].get("angle_per_layer_deg"),
            "top_down_angle_deg_last": {k: v for k, v in history[-1].items()
                                        if k.startswith("top_down_angle")},
            "apical_norm_per_epoch": {k: [h.get(k) for h in history] for k in history[-1]
                                      if k.startswith("train_apical_norm")},
        }
        print(f"mnist {rule_name}: test error {results[rule_name]['test_error']:.4f} after "
              f"{args.epochs} epochs, {summary['wall_time_s']:.0f} s", file=sys.stderr)
        _merge(Path(args.out), "mnist", {"partial": True, **results}, args)
    return results


# --- do the learned interneurons follow the forward weights? ------------------------------------


def _tracking_run(X, Y, Xt, Yt, optimizer: str, lr: float, ip_factors: tuple[float, ...],
                  steps: int, **options: Any) -> dict[str, Any]:
    from bionn.functional.dendritic import settle
    from bionn.metrics import angle_to_backprop

    torch.manual_seed(0)
    rule = DendriticMicrocircuit(DendriticConfig(hidden_rate="tanh", eta_pi=0.0, **options))
    model = rule.build_model("mlp:500,500", (1, 28, 28), 10, "tanh")
    inter = {id(p) for i in model.interneurons for p in (i.weight_ip, i.bias_ip)}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in inter]
    groups = [{"params": rest}] + [{"params": [i.weight_ip, i.bias_ip], "lr": lr * f}
                                   for i, f in zip(model.interneurons, ip_factors, strict=True)]
    opt = (torch.optim.Adam(groups, lr=lr) if optimizer == "adam"
           else torch.optim.SGD(groups, lr=lr))
    n = X.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    probe = X[:500].flatten(1)
    residual_curve = []
    for s in range(steps):
        start = (s * 100) % n
        idx = order[start:start + 100]
        rule.fill_grads(model, X[idx], Y[idx])
        opt.step()
        opt.zero_grad(set_to_none=True)
        if (s + 1) % 20 == 0:
            with torch.no_grad():
                free = settle(probe, rule._weights(model), model.conductances, None, 1,
                              model.hidden_rate, model.output_rate)
            residual_curve.append(float(free.v_a[0].norm(dim=1).mean()))
    with torch.no_grad():
        weights = rule._weights(model)
        target = F.one_hot(Y[:500], 10).to(X.dtype)
        free = settle(probe, weights, model.conductances, None, 1, model.hidden_rate,
                      model.output_rate)
        taught = settle(probe, weights, model.conductances, target, 1, model.hidden_rate,
                        model.output_rate)
        error = float((model(Xt).argmax(1) != Yt).to(X.dtype).mean())
    angles = angle_to_backprop(rule, model, X[:500], Y[:500]).per_layer
    return {
        "optimizer": optimizer, "lr": lr, "interneuron_lr_factors": list(ip_factors),
        "options": options,
        "apical_norm_no_target": [float(a.norm(dim=1).mean()) for a in free.v_a],
        "apical_norm_with_target": [float(a.norm(dim=1).mean()) for a in taught.v_a],
        "apical_norm_no_target_1_every_20_steps": residual_curve,
        "angle_deg": [angles.get(f"pyramidal.{k}") for k in range(3)],
        "test_error": error,
    }


def run_tracking(args: argparse.Namespace) -> dict[str, Any]:
    from bionn.data import load_dataset

    train = load_dataset("mnist", args.data_dir, train=True)
    test = load_dataset("mnist", args.data_dir, train=False)
    X, Y = train.normalized()[:6000], train.targets[:6000]
    Xt, Yt = test.normalized(), test.targets
    steps = 120
    c1 = (1 / 1.9) * 1.1  # the self-predicting factors rho_{k+1} (g_lk + g_D) / g_D
    cases = {
        "adam, interneuron lr x1": ("adam", 1e-3, (1.0, 1.0), {}),
        "adam, interneuron lr x self-predicting factor": ("adam", 1e-3, (c1, 1.0), {}),
        "adam, interneuron lr x3": ("adam", 1e-3, (3.0, 3.0), {}),
        "adam, interneuron lr x10": ("adam", 1e-3, (10.0, 10.0), {}),
        "adam, held self-predicting": ("adam", 1e-3, (1.0, 1.0),
                                       {"hold_self_predicting": True}),
        "sgd 0.1, eta_IP 1": ("sgd", 0.1, (1.0, 1.0), {}),
        "sgd 0.1, --ip-tracking": ("sgd", 0.1, (1.0, 1.0), {"ip_tracking": True}),
        "sgd 0.1, held self-predicting": ("sgd", 0.1, (1.0, 1.0),
                                          {"hold_self_predicting": True}),
    }
    out: dict[str, Any] = {"images": 6000, "batch_size": 100, "steps": steps,
                           "network": "784-500-500-10", "hidden_rate": "tanh",
                           "eta_pi": 0.0, "probe": "first 500 training images",
                           "cases": {}}
    for name, (opt, lr, factors, options) in cases.items():
        result = _tracking_run(X, Y, Xt, Yt, opt, lr, factors, steps, **options)
        out["cases"][name] = result
        print(f"tracking {name}: ||v_A,1|| {result['apical_norm_no_target'][0]:.4f} without "
              f"target, {result['apical_norm_with_target'][0]:.4f} with; angle layer 1 "
              f"{result['angle_deg'][0]:.1f}; test error {result['test_error']:.4f}",
              file=sys.stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", default="speed,teacher,mnist")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden-rate", default="tanh")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--eta-pi", type=float, default=0.0,
                        help="MNIST: factor of the W^PI rule during the task (0 keeps the "
                             "closed-form W^PI = -W^down)")
    parser.add_argument("--hold-self-predicting", action="store_true",
                        help="MNIST: interneurons held in the closed-form self-predicting state "
                             "of the current weights (the rule's --hold-self-predicting)")
    parser.add_argument("--optimizer", default="adam", choices=("adam", "sgd"),
                        help="MNIST: the optimizer of both rules")
    parser.add_argument("--momentum", type=float, default=0.0,
                        help="MNIST: heavy-ball momentum of --optimizer sgd (both rules)")
    parser.add_argument("--nesterov", action="store_true",
                        help="MNIST: Nesterov momentum (both rules)")
    parser.add_argument("--clip-grad", type=float, default=None, metavar="NORM",
                        help="MNIST: global gradient-norm clipping before every optimizer "
                             "step (both rules; the run option --clip-grad; default off)")
    parser.add_argument("--eta-forward", default="",
                        help="MNIST: the rule's per-layer forward rates eta_k, comma-separated "
                             "(output last; empty = all 1); backprop takes the plain --lr")
    parser.add_argument("--sweeps", type=int, default=1,
                        help="MNIST: the rule's --sweeps (bottom-up + top-down pairs per batch)")
    parser.add_argument("--ip-tracking", action="store_true",
                        help="MNIST: the rule's --ip-tracking (interneuron rates that follow the "
                             "forward weights under SGD)")
    parser.add_argument("--weight-decay", type=float, default=0.0,
                        help="MNIST: the rule's --weight-decay (L2 decay of the forward and "
                             "interneuron weights in its increments; backprop's weights get "
                             "the same; default 0, off)")
    parser.add_argument("--teacher-train", type=int, default=5000)
    parser.add_argument("--teacher-epochs", type=int, default=20)
    parser.add_argument("--teacher-lr", type=float, default=3e-3)
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--teacher-init-scale", type=float, default=1.0,
                        help="teacher-student: the student's weights start uniform in "
                             "+-scale/sqrt(fan_in) (the rule's --init-scale)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--run-root", default="",
                        help="MNIST: folder for the run folders (default: a new temporary one)")
    parser.add_argument("--mnist-rules", default="dendritic,bp",
                        help="MNIST: which of dendritic, bp to train (comma-separated)")
    parser.add_argument("--figures", default="benchmarks/results")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="mnist: the runs' seed")
    parser.add_argument("--out", default="benchmarks/results/dendritic.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    runners = {"speed": run_speed, "teacher": run_teacher, "mnist": run_mnist,
               "tracking": run_tracking}
    for name in sections:
        if name not in runners:
            print(f"unknown section {name!r}; choose from {', '.join(runners)}", file=sys.stderr)
            sys.exit(2)
    for name in sections:
        start = time.perf_counter()
        payload = runners[name](args)
        payload["section_wall_s"] = time.perf_counter() - start
        _merge(Path(args.out), name, payload, args)


if __name__ == "__main__":
    main()
