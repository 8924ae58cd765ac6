"""Trainer overhead: one MNIST epoch of the bionn Trainer with Backprop against a hand loop.

Both train the same MLP (784-1000-10, ReLU, batch 100, Adam lr 1e-3) from the same initial
weights on the same in-memory tensors, and both evaluate on the test set after the epoch. The
hand loop shuffles the way most hand-written loops do, by indexing the whole training tensor
with a permutation once per epoch; bionn's iterator gathers each batch instead (the JSON also
reports the iterator's own cost per epoch). The
Trainer's epoch also does everything it always does: the progress bar, the divergence check,
the angle to backprop, the metrics line and the atomic checkpoint. Epochs are measured
alternately in one process (bionn, hand, bionn, hand, ...) so that machine noise hits both
alike, after one unmeasured warm-up epoch each; the result is the median of the per-pair
ratios.

A ratio near 1.0 is at the level of the machine's noise, so the ``profile`` section also runs
one Trainer epoch (the same network, data and settings, progress bar on) under ``cProfile``
and sorts every function's own time by where its code lives: bionn's own Python (``src/bionn``,
the target is under 3% of the epoch), tqdm (the progress bar), torch's Python layer (the
optimizer's and the modules' Python code), and the C/C++ calls (the kernels, the autograd
engine). The profiler's clock is the process's CPU time, not the wall clock, so that time the
process spends waiting for a core on a shared machine is counted nowhere (with one thread the
two agree on an idle machine). cProfile adds a fixed cost to every Python call, so the shares
of the Python parts are upper bounds; the epoch is also timed without the profiler.

The ``sample`` section measures the same shares without cProfile's per-call cost: it runs two
Trainer epochs (a warm-up and a measured one; same network, data and settings) in a child
process under the sampling profiler py-spy (``--py-spy PATH``, installed apart from bionn:
``pip install py-spy``), with native frames, and sorts every sample of the Trainer's epochs by
its innermost frame: a frame of bionn's Python (or the interpreter running it) counts for
bionn, torch's Python layer for torch, the bindings of torch's C++ to Python
(``libtorch_python``) for those, and the kernels, the autograd engine and BLAS for the
native code. System libraries (libc, libm, libstdc++) count for whoever called them.

The ``threads`` section times 50 Trainer steps (the first 5,000 images) with one thread and with
one per available core, alternately, and records the load average beside them: on a machine
that other processes keep busy, the extra threads wait for cores that are taken.

    python benchmarks/overhead.py --data-dir DATA [--sections ratio,profile,sample,threads]
        [--repeats 15] [--threads 1] [--py-spy PATH] [--rate 250] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

import bionn
from bionn.core.models import MLP
from bionn.core.resources import cpu_model as _cpu_model
from bionn.core.rule import Backprop
from bionn.core.trainer import Trainer
from bionn.data import load_dataset


def hand_epoch(model, opt, x, y, xt, yt, batch_size, generator):
    model.train()
    order = torch.randperm(len(x), generator=generator)
    x, y = x[order], y[order]
    for i in range(0, len(x), batch_size):
        opt.zero_grad()
        loss = F.cross_entropy(model(x[i : i + batch_size]), y[i : i + batch_size])
        loss.backward()
        opt.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(xt), 1000):
            correct += (model(xt[i : i + 1000]).argmax(1) == yt[i : i + 1000]).sum().item()
    return correct / len(xt)


def _command() -> str:
    shown = list(sys.argv[1:])
    for flag, placeholder in (("--data-dir", "DATA"), ("--out", "OUT")):
        if flag in shown[:-1]:
            shown[shown.index(flag) + 1] = placeholder
    return "python benchmarks/overhead.py " + " ".join(shown)


BIONN_DIR = str(Path(bionn.__file__).resolve().parent)
TORCH_DIR = str(Path(torch.__file__).resolve().parent)


def _where(filename: str) -> str:
    """Which part of the stack a profiled function's code belongs to."""
    if filename.startswith("~") or filename.startswith("<built-in"):
        return "c_calls"  # built-in functions and methods: torch's kernels, autograd, ...
    path = str(Path(filename).resolve()) if filename.startswith("/") else filename
    if path.startswith(BIONN_DIR):
        return "bionn"
    if path.startswith(TORCH_DIR):
        return "torch_python"
    if "/tqdm/" in path:
        return "tqdm"
    return "other_python"


def profile_section(x, y, xt, yt) -> dict:
    """One Trainer epoch of backprop timed, then profiled, with each function's own time
    sorted by where its code lives."""
    def fresh_trainer(run_dir):
        run_dir.mkdir(parents=True)
        torch.manual_seed(0)
        model = MLP(784, [1000], 10)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        return Trainer(model, Backprop(), opt, (x, y), (xt, yt), batch_size=100,
                       run_dir=run_dir, progress=True)

    with tempfile.TemporaryDirectory() as tmp:
        trainer = fresh_trainer(Path(tmp) / "plain")
        trainer.run_epoch(1, 3)  # warm-up
        start, cpu = time.perf_counter(), time.process_time()
        trainer.run_epoch(2, 3)
        plain, plain_cpu = time.perf_counter() - start, time.process_time() - cpu
        trainer = fresh_trainer(Path(tmp) / "profiled")
        trainer.run_epoch(1, 3)  # warm-up
        profiler = cProfile.Profile(time.process_time)
        start, cpu = time.perf_counter(), time.process_time()
        profiler.enable()
        trainer.run_epoch(2, 3)
        profiler.disable()
        profiled, profiled_cpu = time.perf_counter() - start, time.process_time() - cpu
    stats = pstats.Stats(profiler)
    total = sum(row[2] for row in stats.stats.values())  # own time of every function
    parts: dict[str, float] = {}
    bionn_rows = []
    cumulative = {}
    for (filename, line, name), (_, calls, own, cum, _) in stats.stats.items():
        part = _where(filename)
        parts[part] = parts.get(part, 0.0) + own
        if part == "bionn":
            where = f"{Path(filename).resolve().relative_to(BIONN_DIR)}:{line} {name}"
            bionn_rows.append({"function": where, "calls": calls, "own_s": own,
                               "share_of_epoch": own / total})
            cumulative[where] = cum
    bionn_rows.sort(key=lambda r: -r["own_s"])
    def cum_of(suffix: str) -> float | None:
        return next((v for k, v in cumulative.items() if k.endswith(suffix)), None)
    steps = len(trainer.loader)
    return {
        "timer": "process CPU time (time.process_time)",
        "epoch_s_without_profiler": plain,
        "epoch_cpu_s_without_profiler": plain_cpu,
        "epoch_s_with_profiler": profiled,
        "epoch_cpu_s_with_profiler": profiled_cpu,
        "profiled_own_time_s": total,
        "own_time_s_by_part": parts,
        "share_by_part": {k: v / total for k, v in parts.items()},
        "bionn_share_of_epoch": parts.get("bionn", 0.0) / total,
        "bionn_own_us_per_step": 1e6 * parts.get("bionn", 0.0) / steps,
        "bionn_own_share_of_an_epoch_without_profiler": parts.get("bionn", 0.0) / plain_cpu,
        "target_bionn_share_at_most": 0.03,
        "passed": parts.get("bionn", 0.0) / total < 0.03,
        "steps": steps,
        "top_bionn_functions": bionn_rows[:12],
        "cumulative_s": {
            "train_epoch": cum_of(" train_epoch"),
            "evaluate (test accuracy, angle to backprop)": cum_of(" evaluate"),
            "save_checkpoint": cum_of(" save_checkpoint"),
            "check_divergence": cum_of(" check_divergence"),
        },
    }


SYSTEM_LIBRARIES = ("libc.so", "libm.so", "ld-linux", "libpthread", "libstdc++", "libgcc_s")


def _frame_location(frame: str) -> str:
    """``file.py:line`` or the library of a py-spy frame ``name (location)``."""
    match = re.search(r"\(([^()]*)\)\s*$", frame)
    return match.group(1) if match else ""


def _python_part(location: str) -> str:
    if "bionn/" in location:
        return "bionn"
    if "torch/" in location:
        return "torch_python"
    if "tqdm/" in location:
        return "tqdm"
    return "other_python"


def classify_sample(frames: list[str]) -> str:
    """Where one sampled stack (outermost frame first) spent its time: its innermost frame
    outside the system libraries, with the interpreter's own frames counted for the Python
    code it was running."""
    for i in range(len(frames) - 1, -1, -1):
        location = _frame_location(frames[i])
        if not location or location.startswith("0x") or frames[i].startswith("0x") or any(
            lib in location for lib in SYSTEM_LIBRARIES
        ):
            continue
        if ".py:" in location:
            return _python_part(location)
        if "libpython" in location or location.startswith("python"):
            outer = [_frame_location(f) for f in frames[:i]]
            return next((_python_part(loc) for loc in reversed(outer) if ".py:" in loc),
                        "other_python")
        if "libtorch_python" in location:
            return "torch_bindings"
        return "native"
    return "unknown"


SAMPLE_CHILD = """
import sys, tempfile, torch
from pathlib import Path
torch.set_num_threads(int(sys.argv[2]))
from bionn.core.models import MLP
from bionn.core.rule import Backprop
from bionn.core.trainer import Trainer
from bionn.data import load_dataset
train = load_dataset("mnist", sys.argv[1] or None, train=True)
test = load_dataset("mnist", sys.argv[1] or None, train=False)
with tempfile.TemporaryDirectory() as tmp:
    torch.manual_seed(0)
    model = MLP(784, [1000], 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    trainer = Trainer(model, Backprop(), opt, (train.normalized(), train.targets),
                      (test.normalized(), test.targets), batch_size=100,
                      run_dir=Path(tmp) / "run", progress=True)
    for epoch in (1, 2):
        trainer.run_epoch(epoch, 2)
"""


def sample_section(args) -> dict:
    """Two Trainer epochs in a child process under py-spy; the share of each part."""
    py_spy = args.py_spy or shutil.which("py-spy")
    if py_spy is None:
        return {"skipped": "py-spy not found: give --py-spy PATH (pip install py-spy)"}
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "samples.txt"
        child = [sys.executable, "-c", SAMPLE_CHILD, args.data_dir or "", str(args.threads)]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        done = subprocess.run(
            [py_spy, "record", "--native", "--format", "raw", "--rate", str(args.rate),
             "--output", str(raw), "--", *child],
            env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not raw.exists():
            return {"skipped": f"py-spy failed: {done.stderr.strip()[-300:]}"}
        counts: dict[str, int] = {}
        lines: dict[str, int] = {}
        for line in raw.read_text().splitlines():
            stack, _, n = line.rstrip().rpartition(" ")
            frames = stack.split(";")
            if not any("Trainer.run_epoch" in f for f in frames):
                continue  # start-up, data loading
            part = classify_sample(frames)
            counts[part] = counts.get(part, 0) + int(n)
            if part == "bionn":
                own = [f for f in frames if "bionn/" in _frame_location(f)][-1]
                lines[own] = lines.get(own, 0) + int(n)
    total = sum(counts.values())
    share = {k: v / total for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}
    version = subprocess.run([py_spy, "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
    return {
        "profiler": f"{version}, --native, {args.rate} samples/s",
        "samples_in_epochs": total,
        "samples_by_part": counts,
        "share_by_part": share,
        "bionn_share_of_epoch": share.get("bionn", 0.0),
        "target_bionn_share_at_most": 0.03,
        "passed": share.get("bionn", 0.0) < 0.03,
        "top_bionn_lines": [{"frame": k, "samples": v, "share_of_epoch": v / total}
                            for k, v in sorted(lines.items(), key=lambda kv: -kv[1])[:12]],
    }


def threads_section(x, y, rounds: int = 3) -> dict:
    """50 Trainer steps of backprop with one thread and with one per core, alternately."""
    from bionn.core.resources import available_cores, default_threads

    counts = sorted({1, available_cores()})
    times: dict[int, list[float]] = {n: [] for n in counts}
    previous = torch.get_num_threads()
    loads = []
    for r in range(rounds):
        for n in counts if r % 2 == 0 else counts[::-1]:
            torch.set_num_threads(n)
            torch.manual_seed(0)
            model = MLP(784, [1000], 10)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            trainer = Trainer(model, Backprop(), opt, (x[:5000], y[:5000]), None,
                              batch_size=100, progress=False)
            trainer.train_epoch(1, 2)  # warm-up
            start = time.perf_counter()
            trainer.train_epoch(2, 2)
            times[n].append(time.perf_counter() - start)
            loads.append(os.getloadavg()[0])
    torch.set_num_threads(previous)
    return {
        "steps": 50,
        "seconds_by_threads": {str(n): t for n, t in times.items()},
        "median_s_by_threads": {str(n): statistics.median(t) for n, t in times.items()},
        "load_average_1min": loads,
        "default_threads_now": default_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None, help="data root (default $BIONN_DATA)")
    parser.add_argument("--sections", default="ratio,profile",
                        help="comma-separated: ratio (bionn against a hand loop), profile, "
                        "threads")
    parser.add_argument("--repeats", type=int, default=15, help="epochs measured per side")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--py-spy", default=None,
                        help="the py-spy executable of the sample section (default: on PATH)")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--out", default="benchmarks/results/overhead.json")
    args = parser.parse_args()
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - {"ratio", "profile", "sample", "threads"})
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose ratio, profile, sample, "
                     "threads")
    torch.set_num_threads(args.threads)

    train = load_dataset("mnist", args.data_dir, train=True)
    test = load_dataset("mnist", args.data_dir, train=False)
    x, y = train.normalized(), train.targets
    xt, yt = test.normalized(), test.targets
    result = {
        "benchmark": "overhead",
        "model": "784-1000-10 relu",
        "batch_size": 100,
        "optimizer": "adam lr 1e-3",
        "dataset": "mnist",
        "cpu": _cpu_model(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "command": _command(),
    }
    if "profile" in sections:
        result["profile"] = profile_section(x, y, xt, yt)
        p = result["profile"]
        print(f"profile: bionn's own code {100 * p['bionn_share_of_epoch']:.2f}% of the epoch "
              f"({p['bionn_own_us_per_step']:.0f} us per step; target < 3%)", flush=True)
    if "sample" in sections:
        result["sample"] = sample_section(args)
        p = result["sample"]
        if "skipped" in p:
            print(f"sample: skipped ({p['skipped']})", flush=True)
        else:
            print(f"sample: bionn's own code {100 * p['bionn_share_of_epoch']:.2f}% of the "
                  f"epoch's samples (target < 3%)", flush=True)
    if "threads" in sections:
        result["threads_section"] = threads_section(x, y)
        print("threads: " + ", ".join(
            f"{n} thread(s) {t:.2f} s" for n, t in
            result["threads_section"]["median_s_by_threads"].items()), flush=True)
    if "ratio" in sections:
        result.update(ratio_section(args, x, y, xt, yt))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


def ratio_section(args, x, y, xt, yt) -> dict:
    """bionn's Trainer epochs against a hand loop's, alternating in one process."""

    torch.manual_seed(0)
    bionn_model = MLP(784, [1000], 10)
    hand_model = nn.Sequential(nn.Flatten(1), nn.Linear(784, 1000), nn.ReLU(), nn.Linear(1000, 10))
    hand_model[1].load_state_dict(bionn_model.linears[0].state_dict())
    hand_model[3].load_state_dict(bionn_model.linears[1].state_dict())
    bionn_opt = torch.optim.Adam(bionn_model.parameters(), lr=1e-3)
    hand_opt = torch.optim.Adam(hand_model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)

    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(bionn_model, Backprop(), bionn_opt, (x, y), (xt, yt),
                          batch_size=100, run_dir=run_dir, progress=True)
        total = args.repeats + 1
        bionn_times, hand_times, accs = [], [], {"bionn": [], "hand": []}

        def run_bionn(epoch):
            start = time.perf_counter()
            record = trainer.run_epoch(epoch, total)
            accs["bionn"].append(record["test_accuracy"])
            return time.perf_counter() - start

        def run_hand():
            start = time.perf_counter()
            accs["hand"].append(hand_epoch(hand_model, hand_opt, x, y, xt, yt, 100, generator))
            return time.perf_counter() - start

        run_bionn(1)  # warm-up epoch on each side, not measured
        run_hand()
        for epoch in range(2, total + 1):
            # alternate which side goes first, so that slow drifts hit both alike
            if epoch % 2:
                b, h = run_bionn(epoch), run_hand()
            else:
                h, b = run_hand(), run_bionn(epoch)
            bionn_times.append(b)
            hand_times.append(h)
            print(f"epoch {epoch}: bionn {b:.3f} s, hand {h:.3f} s, ratio {b / h:.3f}")

    # data loading alone: one shuffled pass of the in-memory iterator over the training set
    from bionn.data.loader import TensorLoader

    loader = TensorLoader(x, y, batch_size=100, shuffle=True, seed=0)
    loader_times = []
    for _ in range(3):
        start = time.perf_counter()
        for _batch in loader:
            pass
        loader_times.append(time.perf_counter() - start)

    ratios = [b / h for b, h in zip(bionn_times, hand_times, strict=True)]
    result = {
        "repeats": args.repeats,
        "bionn_epoch_s": bionn_times,
        "hand_epoch_s": hand_times,
        "ratios": ratios,
        "median_ratio": statistics.median(ratios),
        "ratio_of_medians": statistics.median(bionn_times) / statistics.median(hand_times),
        "target_median_ratio_at_most": 1.05,
        "test_accuracy": accs,
        "loader_epoch_s": statistics.median(loader_times),
        "loader_share_of_epoch": statistics.median(loader_times) / statistics.median(bionn_times),
    }
    result["passed"] = result["median_ratio"] <= 1.05
    print(f"median ratio bionn / hand = {result['median_ratio']:.3f} (target <= 1.05)")
    print(f"data loading: {result['loader_epoch_s']:.3f} s per epoch "
          f"({100 * result['loader_share_of_epoch']:.1f}% of a bionn epoch)")
    return result


if __name__ == "__main__":
    main()
