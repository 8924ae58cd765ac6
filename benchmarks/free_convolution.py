"""Free convolutions (Ott, Linstead, LaHaye & Baldi 2020): their cost, and CNN against FCN on
translated MNIST / Fashion-MNIST.

Two parts, each writing JSON under ``benchmarks/results/``:

``speed``  Forward + backward of one layer, batch 256, for the three layers of the paper's
           MNIST network (and the first CIFAR-10 layer): ``nn.Conv2d``, bionn's
           ``FreeConv2d`` and a straightforward per-position implementation (a Python loop
           over output positions, each a matrix product of its receptive field, as users
           write it by hand). Measured alternately (conv, free, loop, repeat); the result is
           the median over rounds of the per-round ratios. Beside it, in a second
           alternation, the three batched matrix products of the step alone against the
           loop: the part of free/loop that no implementation with these products can go
           below. Memory: the peak of live tensor memory during one step (torch's profiler
           memory timeline), the bytes autograd saves for the backward pass of each
           (counted with saved-tensor hooks) and the parameter bytes.
``plot``   The accuracy-against-A and sharing-over-training figures of a ``table`` JSON
           (``--results FILE``), written beside it as PNG.
``table``  ``cnn-ott`` and ``fcn-ott`` trained by backprop with ``--augment shift:A`` for each
           A, then the test accuracy on clean and on shifted (0.25) test images, the rest of
           the robustness report, and the sharing measures of the FCN's first layer after
           every epoch. A reduced budget (a slice of the training set, few epochs), stated in
           the JSON: the paper trains 250 epochs with early stopping on 5 folds.

    python benchmarks/free_convolution.py speed [--threads 1]
    python benchmarks/free_convolution.py plot --results RESULTS.json
    python benchmarks/free_convolution.py table --data-dir DATA [--dataset mnist]
        [--train-size 6000] [--epochs 3] [--shifts 0,0.2,0.5] [--threads 1]
        [--runs MODEL@A,...] [--resume] [--schedule constant|cosine|onecycle] [--warmup 0.15]
        [--init torch|keras]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from bionn.core.models import build_model
from bionn.core.resources import cpu_model as _cpu_model
from bionn.core.rule import Backprop
from bionn.core.trainer import Trainer
from bionn.data import load_dataset
from bionn.data.augment import make_augmentation
from bionn.data.datasets import DATASETS
from bionn.errors import BionnError
from bionn.metrics import robustness_report
from bionn.nn import FreeConv2d


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
    shown[0] = "benchmarks/free_convolution.py"
    return "python " + " ".join(shown)


def _machine() -> dict:
    return {"cpu": _cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "command": _shown_command()}


class LoopFreeConv2d(nn.Module):
    """The straightforward locally connected layer: a loop over output positions."""

    def __init__(self, free: FreeConv2d) -> None:
        super().__init__()
        self.weight = nn.Parameter(free.weight.detach().clone())  # (oh, ow, O, C, kh, kw)
        self.bias = nn.Parameter(free.bias.detach().clone())  # (O, oh, ow)
        self.stride, self.padding = free.stride, free.padding
        self.kernel_size, self.output_size = free.kernel_size, free.output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph, pw = self.padding
        x = F.pad(x, (pw, pw, ph, ph))
        (kh, kw), (sh, sw), (oh, ow) = self.kernel_size, self.stride, self.output_size
        rows = []
        for i in range(oh):
            cols = []
            for j in range(ow):
                patch = x[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw].flatten(1)
                cols.append(F.linear(patch, self.weight[i, j].flatten(1), self.bias[:, i, j]))
            rows.append(torch.stack(cols, -1))
        return torch.stack(rows, -2)


def _saved_bytes(module: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves for the backward pass of one forward."""
    total = 0
    seen: set[int] = set()

    def pack(t: torch.Tensor):
        nonlocal total
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x)
    return total


def _products(free: FreeConv2d, batch: int):
    """The three float32 matrix products of one forward + backward step, alone: every
    position's (batch, fan_in) @ (fan_in, out) forward product, its weight-gradient and its
    input-gradient product, batched over positions on operands laid out beforehand. Any
    implementation computing them with torch's matrix products spends at least this time, so
    its time over the loop's bounds free/loop from below."""
    positions, out, fan_in = free.positions, free.out_channels, free.fan_in
    cols = torch.randn(positions, batch, fan_in)
    kernel = torch.randn(positions, out, fan_in)
    delta = torch.randn(positions, batch, out)

    def run() -> None:
        torch.bmm(cols, kernel.transpose(1, 2))  # forward
        torch.bmm(delta.transpose(1, 2), cols)  # weight gradient
        torch.bmm(delta, kernel)  # input gradient

    return run


def _alternate(steps: dict, rounds: int, reps: int) -> dict[str, list[float]]:
    """Milliseconds per call of every step, measured in turn (reps calls each) for rounds
    rounds after one warm-up call each."""
    times: dict[str, list[float]] = {key: [] for key in steps}
    for fn in steps.values():
        fn()
    for _ in range(rounds):
        for key, fn in steps.items():
            start = time.perf_counter()
            for _ in range(reps):
                fn()
            times[key].append((time.perf_counter() - start) / reps * 1e3)
    return times


def _peak_bytes(step) -> int:
    """The peak of the memory held by live tensors during one call of ``step`` (the parameters,
    the input and the output gradient included), from torch's profiler memory timeline."""
    import tempfile
    import warnings

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                 with_stack=True) as prof:
        step()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated for CUDA snapshots only
        path = Path(tmp) / "timeline.json"
        prof.export_memory_timeline(str(path), device="cpu")
        _, sizes = json.loads(path.read_text())
    return int(max(sum(per_category) for per_category in sizes))


def part_speed(args) -> dict:
    shapes = [
        ("mnist layer 1", 1, 32, 3, 28, 2),
        ("mnist layer 2", 32, 64, 3, 13, 2),
        ("mnist layer 3", 64, 128, 3, 6, 1),
        ("cifar10 layer 1", 3, 64, 5, 32, 2),
    ]
    batch = args.batch
    results = []
    for name, cin, cout, k, size, stride in shapes:
        torch.manual_seed(0)
        conv = nn.Conv2d(cin, cout, k, stride)
        free = FreeConv2d(cin, cout, k, size, stride)
        loop = LoopFreeConv2d(free)
        x = torch.randn(batch, cin, size, size, requires_grad=True)
        g = torch.randn(batch, cout, *free.output_size)
        out_free, out_loop = free(x), loop(x)
        assert torch.allclose(out_free, out_loop, atol=1e-4), name
        impls = {"conv2d": conv, "free": free, "loop": loop}

        def step(m: nn.Module, x: torch.Tensor = x, g: torch.Tensor = g) -> None:
            m.zero_grad(set_to_none=True)
            x.grad = None
            m(x).backward(g)

        steps = {key: (lambda m=m: step(m)) for key, m in impls.items()}
        times = _alternate(steps, args.rounds, args.reps)
        # The bound in a second alternation of its own, so that the first one is not changed
        # by what the products allocate.
        bound_times = _alternate({"products": _products(free, batch), "loop": steps["loop"]},
                                 args.rounds, args.reps)
        ratio_conv = [f / c for f, c in zip(times["free"], times["conv2d"], strict=True)]
        ratio_loop = [f / lp for f, lp in zip(times["free"], times["loop"], strict=True)]
        bound = [p / lp for p, lp in zip(bound_times["products"], bound_times["loop"],
                                         strict=True)]
        row = {
            "layer": name,
            "shape": {"in": cin, "out": cout, "kernel": k, "input": size, "stride": stride,
                      "positions": free.positions, "batch": batch},
            "median_ms": {key: statistics.median(v) for key, v in times.items()},
            "products_ms": statistics.median(bound_times["products"]),
            "loop_ms_beside_products": statistics.median(bound_times["loop"]),
            "free_over_conv2d": statistics.median(ratio_conv),
            "free_over_loop": statistics.median(ratio_loop),
            "products_over_loop": statistics.median(bound),
            "saved_for_backward_bytes": {key: _saved_bytes(m, x) for key, m in impls.items()},
            "peak_bytes": {key: _peak_bytes(fn) for key, fn in steps.items()},
            "parameter_bytes": {key: sum(p.numel() * p.element_size() for p in m.parameters())
                                for key, m in impls.items()},
            "ms_per_round": times,
            "bound_ms_per_round": bound_times,
        }
        results.append(row)
        print(f"{name}: conv {row['median_ms']['conv2d']:.1f} ms, free "
              f"{row['median_ms']['free']:.1f} ms, loop {row['median_ms']['loop']:.1f} ms "
              f"(its products alone {row['products_ms']:.1f} ms); free/conv "
              f"{row['free_over_conv2d']:.2f}, free/loop {row['free_over_loop']:.3f}, "
              f"products/loop {row['products_over_loop']:.3f}; peak MB conv/free/loop "
              + " / ".join(f"{row['peak_bytes'][k] / 1e6:.1f}" for k in impls),
              flush=True)
    return {"benchmark": "free_convolution speed", "rounds": args.rounds, "reps": args.reps,
            "layers": results, **_machine()}


def _schedule(optimizer: torch.optim.Optimizer, args, steps: int):
    """The learning-rate schedule, stepped after every optimizer step (a Trainer callback).

    ``constant``: ``--lr`` throughout. ``onecycle``: ``torch.optim.lr_scheduler.OneCycleLR``
    without momentum cycling: linear warm-up from ``lr / 10`` to ``lr`` over the first
    ``--warmup`` of the steps, then cosine annealing to ``lr / 1e4``. ``cosine``: cosine
    annealing from ``lr`` to 0 over all steps.
    """
    if args.schedule == "constant":
        return None
    if args.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=steps, pct_start=args.warmup,
        anneal_strategy="cos", cycle_momentum=False, div_factor=10.0, final_div_factor=1e3)


def _run(spec: str, shift: float, args, train, test, input_shape, on_epoch=None) -> dict:
    """Train one network; ``on_epoch(partial)`` receives the run so far after every epoch."""
    torch.manual_seed(args.seed)
    model = build_model(spec if args.init == "torch" else f"{spec}:init={args.init}",
                        input_shape, 10)
    # fused: the same Adam update in one kernel per tensor (6x faster than the default loop
    # of elementwise ops on one CPU thread, with millions of free-layer parameters)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, fused=True)
    steps = args.epochs * -(-len(train[1]) // args.batch_size)
    scheduler = _schedule(optimizer, args, steps)
    callbacks = [] if scheduler is None else [lambda info: scheduler.step()]
    augment = make_augmentation(f"shift:{shift}", seed=args.seed) if shift > 0 else None
    trainer = Trainer(model, Backprop(), optimizer, train, test, batch_size=args.batch_size,
                      seed=args.seed, progress=False, angle_batch_size=64, augment=augment,
                      callbacks=callbacks)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        trainer.run_epoch(epoch, args.epochs, "train", True)
        record = trainer.history[-1]
        sharing = record.get("layer_metrics", {}).get("features.0") or {}
        distance = sharing.get("sharing_euclidean_d1")
        print(f"  {spec} A={shift} epoch {epoch}/{args.epochs}: test "
              f"{100 * record['test_accuracy']:.2f}%"
              + ("" if distance is None else f", Euclid d=1 {distance:.4f}")
              + f", {record['epoch_time_s']:.1f} s", flush=True)
        if on_epoch is not None:
            on_epoch({"model": spec, "shift": shift, "partial": True,
                      **_per_epoch(trainer.history)})
    wall = time.perf_counter() - start
    # the noise is 0.15 of the intensity range, in the units of the model's inputs
    std = torch.tensor(DATASETS[args.dataset].std) if args.inputs == "normalized" else 1.0
    start = time.perf_counter()
    report = robustness_report(Backprop(), model, *test, noise_std=0.15 / std, seed=args.seed)
    robustness_time = time.perf_counter() - start
    return {"model": spec, "shift": shift, "robustness": report, **_per_epoch(trainer.history),
            "wall_time_s": wall, "robustness_time_s": robustness_time}


def _per_epoch(history: list[dict]) -> dict:
    return {"sharing_per_epoch": [r.get("layer_metrics", {}).get("features.0") for r in history],
            "test_accuracy_per_epoch": [r["test_accuracy"] for r in history],
            "train_loss_per_epoch": [r.get("train_loss") for r in history],
            "epoch_time_s": [r.get("epoch_time_s") for r in history]}


def _parse_runs(args) -> list[tuple[str, float]]:
    """``--runs MODEL@A,...`` if given, else every model of ``--models`` for every A of
    ``--shifts`` (A outermost)."""
    if args.runs:
        runs = []
        for item in args.runs.split(","):
            spec, sep, shift = item.strip().partition("@")
            if not sep or spec not in ("cnn-ott", "fcn-ott"):
                raise SystemExit(f"error: --runs takes MODEL@A items with MODEL cnn-ott or "
                                 f"fcn-ott, got {item!r}")
            runs.append((spec, float(shift)))
        return runs
    return [(spec, float(s)) for s in args.shifts.split(",") for spec in args.models.split(",")]


def part_table(args) -> dict:
    wanted = _parse_runs(args)
    train_ds = load_dataset(args.dataset, args.data_dir, train=True)
    test_ds = load_dataset(args.dataset, args.data_dir, train=False)
    generator = torch.Generator().manual_seed(args.seed)
    idx = torch.randperm(len(train_ds.targets), generator=generator)[: args.train_size]
    if args.inputs == "raw":  # the authors' inputs: pixels in [0, 1]
        train = (train_ds.data[idx], train_ds.targets[idx])
        test = (test_ds.data, test_ds.targets)
    else:
        train = (train_ds.normalized()[idx], train_ds.targets[idx])
        test = (test_ds.normalized(), test_ds.targets)
    budget = {"train_size": len(idx), "test_size": len(test[1]), "epochs": args.epochs,
              "batch_size": args.batch_size, "optimizer": "adam (fused)", "lr": args.lr,
              "schedule": args.schedule, "seed": args.seed,
              "note": "reduced budget for one shared CPU core; the paper trains up to 250 "
                      "epochs with early stopping, 5-fold cross-validation"}
    if args.init != "torch":
        budget["init"] = args.init
    if args.inputs != "normalized":
        budget["inputs"] = args.inputs
    if args.schedule == "onecycle":
        budget["schedule_detail"] = (f"OneCycleLR per step: linear warm-up from lr/10 to lr over "
                                     f"the first {args.warmup:g} of the steps, then cosine "
                                     f"annealing to lr/1e4; no momentum cycling")
    elif args.schedule == "cosine":
        budget["schedule_detail"] = "cosine annealing per step from lr to 0"
    out = Path(args.out or f"benchmarks/results/free_convolution_{args.dataset}.json")
    runs: list[dict] = []
    if args.resume and out.exists():
        previous = json.loads(out.read_text())
        if previous.get("budget") != budget:
            raise SystemExit(f"error: --resume: {out} was written with another budget "
                             f"({previous.get('budget')}); use another --out")
        runs = [r for r in previous["runs"] if (r["model"], r["shift"]) in wanted
                and not r.get("partial")]
        print(f"resuming {out}: {len(runs)} finished runs kept", flush=True)
    result = {"benchmark": f"free_convolution table ({args.dataset})", "dataset": args.dataset,
              "budget": budget, "runs": runs, **_machine()}
    out.parent.mkdir(parents=True, exist_ok=True)
    for spec, shift in wanted:
        if any((r["model"], r["shift"]) == (spec, shift) for r in runs):
            continue
        def write_partial(partial: dict) -> None:
            out.write_text(json.dumps({"partial": True, **result, "runs": [*runs, partial]},
                                      indent=2) + "\n")

        run = _run(spec, shift, args, train, test, tuple(train_ds.input_shape),
                   on_epoch=write_partial)
        runs.append(run)
        r = run["robustness"]
        print(f"{spec} A={shift}: clean {100 * r['clean']:.2f}%, shifted "
              f"{100 * r['shift_0.25']:.2f}%, {run['wall_time_s']:.0f} s", flush=True)
        out.write_text(json.dumps({"partial": True, **result}, indent=2) + "\n")
    return result


def part_plot(args) -> None:
    from bionn.plots import plot_accuracy_vs_shift, plot_sharing_over_training

    path = Path(args.results)
    result = json.loads(path.read_text())
    name = result["dataset"]
    budget = result["budget"]
    epochs = budget["epochs"]
    note = (f"{name}, {budget['train_size']} training images, {epochs} "
            f"epoch{'' if epochs == 1 else 's'}")
    for out in (
        plot_accuracy_vs_shift(result["runs"], path.with_name(path.stem + "_accuracy.png"),
                               title=f"CNN and FCN against the training shift A\n({note})"),
        plot_sharing_over_training(result["runs"], path.with_name(path.stem + "_sharing.png"),
                                   title=f"emergent sharing, FCN first layer ({note})"),
    ):
        print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=("speed", "table", "plot"))
    parser.add_argument("--results", default=None, help="plot: a table JSON")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    parser.add_argument("--batch", type=int, default=256, help="speed: batch size")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "fashion-mnist"))
    parser.add_argument("--train-size", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--shifts", default="0,0.2,0.5")
    parser.add_argument("--models", default="cnn-ott,fcn-ott")
    parser.add_argument("--runs", default=None,
                        help="table: MODEL@A items in order, e.g. cnn-ott@0,fcn-ott@0.5 "
                             "(instead of --models x --shifts)")
    parser.add_argument("--resume", action="store_true",
                        help="table: keep the finished runs of --out (same budget) and add the "
                             "missing ones, writing the JSON after each run")
    parser.add_argument("--schedule", default="constant",
                        choices=("constant", "cosine", "onecycle"))
    parser.add_argument("--warmup", type=float, default=0.15,
                        help="onecycle: fraction of the steps spent warming up")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--inputs", default="normalized", choices=("normalized", "raw"),
                        help="table: normalized (per-channel mean and std of the train split) "
                             "or raw (pixels in [0, 1], the authors' inputs)")
    parser.add_argument("--init", default="torch", choices=("torch", "keras"),
                        help="table: the networks' initialisation (keras: the authors' Keras "
                             "defaults, Glorot-uniform with the positions in a free layer's "
                             "fans, zero biases)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.part == "plot":
        part_plot(args)
        return
    result = part_speed(args) if args.part == "speed" else part_table(args)
    default = ("benchmarks/results/free_convolution_speed.json" if args.part == "speed"
               else f"benchmarks/results/free_convolution_{args.dataset}.json")
    path = Path(args.out or default)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    try:
        main()
    except BionnError as error:  # bad input: one line, exit 2
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
