"""e-prop: evidence accumulation, pattern generation, memory against T, speed beside a peer.

Sections, each writing its own JSON file in ``benchmarks/results/`` (the budget in the JSON):

- ``evidence``: the paper's evidence-accumulation task and settings (50 LIF + 50 ALIF, Adam
  5e-3, batch 64, a fresh batch every iteration, 2250-step trials) for one rule
  (``--rule eprop|eprop-random|rsnn-bptt``); the error on the training batch every iteration,
  the error on 64 held-out trials and (e-prop rules) the angle between the update and BPTT's
  gradient every ``--validate-every`` iterations; the JSON is rewritten at every validation,
  so a run stopped early (``--max-minutes``) keeps its curve.
- ``pattern``: pattern generation (frozen Poisson input, sum of four sines; 100 LIF neurons,
  the authors' tutorial settings), normalised mean squared error for e-prop and BPTT.
- ``memory``: peak resident memory of one update (Linux ``VmHWM``, each point in a fresh
  process) for trial lengths 500..4000, e-prop against BPTT; a figure.
- ``iteration``: the wall and CPU time of one evidence iteration of each rule, and a profile.
- ``speed``: one training iteration of bionn's e-prop against the PyTorch port of e-prop
  (ChFrenkel/eprop-PyTorch, ``--peer-src``, run by ``--peer-python`` in its own environment)
  on the same LIF network, task and batch.
- ``figures``: the learning curves and the angle to BPTT from the ``evidence`` JSON files, and
  a spike raster of one evidence trial at initialisation.

    python benchmarks/eprop.py --section evidence --rule eprop --threads 1 --max-minutes 60
    python benchmarks/eprop.py --section pattern --threads 1
    python benchmarks/eprop.py --section memory --threads 1
    python benchmarks/eprop.py --section speed --peer-python PEER/bin/python --peer-src PEER/src
    python benchmarks/eprop.py --section figures
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bionn.core.resources import cpu_model

RESULTS = Path("benchmarks/results")
EVIDENCE_TARGET = 0.07


def _public(arg: str) -> str:
    """The peer environment's folder as ``PEER`` in the recorded command."""
    for suffix in ("/bin/python", "/src"):
        if arg.endswith(suffix) and "peer" in arg:
            return "PEER" + suffix
    return arg


def header(args) -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "command": "python " + " ".join(_public(a) for a in sys.argv),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


def recall_error(output: torch.Tensor, targets: torch.Tensor) -> float:
    """The paper's error: argmax of the logits averaged over the recall window."""
    mask = (targets != -100).to(output.dtype)
    mean = (output * mask[..., None]).sum(0)
    return float((mean.argmax(1) != targets[-1]).float().mean())


def flat_angle(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    va = torch.cat([t.reshape(-1) for t in a]).double()
    vb = torch.cat([t.reshape(-1) for t in b]).double()
    cos = float(va @ vb / (va.norm() * vb.norm()).clamp(min=1e-30))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def section_evidence(args) -> dict[str, Any]:
    from tqdm import tqdm

    from bionn.core.registry import make_rule
    from bionn.data.sequences import EvidenceAccumulation

    torch.manual_seed(args.seed)
    rule = make_rule(args.rule, {"feedback_scale": 1.0} if args.rule == "eprop-random" else {})
    bptt = make_rule("rsnn-bptt")
    model = rule.build_model("rsnn:50+50", (40,), 2, "relu")
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    out_path = Path(args.out or RESULTS / f"eprop_evidence_{args.rule}.json")
    record: dict[str, Any] = {
        **header(args), "section": "evidence", "rule": args.rule,
        "settings": {"network": "40 inputs, 50 LIF + 50 ALIF, 2 outputs", "optimizer": "Adam",
                     "lr": args.lr, "batch": 64, "trial_steps": 2250,
                     "regulariser": "c_reg 1, 10 Hz (the authors' 'simple' form)",
                     "iterations_planned": args.iterations, "max_minutes": args.max_minutes,
                     "validate_every": args.validate_every, "angle_every": args.angle_every},
        "measures": {
            "batch_step_error": "1 - the per-step accuracy over the 150 recall steps of the "
                                "training batch, from the forward pass that made the update",
            "validation": "the paper's error (argmax of the logits averaged over the recall "
                          "window) on a fresh batch of 64 trials never trained on",
            "final_test": "the paper's error on 4 fresh batches of 64 trials after training"},
        "iteration": [], "batch_step_error": [], "loss": [],
        "validation": {"iteration": [], "error": []}, "angle_to_bptt": {"iteration": [],
                                                                         "degrees": []},
    }
    start = time.perf_counter()
    cpu_start = time.process_time()
    reached = None

    def validate(it: int) -> None:
        nonlocal reached
        held = EvidenceAccumulation(train=False, n_test=64, seed=10_000_000 + args.seed * 1000
                                    + it)
        with torch.no_grad():
            err = recall_error(model(held.data), held.targets)
        record["validation"]["iteration"].append(it)
        record["validation"]["error"].append(err)
        if reached is None and err < EVIDENCE_TARGET:
            reached = it
        record["first_iteration_below_7pct"] = reached
        record["wall_s"] = time.perf_counter() - start
        record["cpu_s"] = time.process_time() - cpu_start
        record["iterations_done"] = it
        record["cpu_s_per_iteration"] = record["cpu_s"] / max(it, 1)
        write(out_path, record)
        print(f"{args.rule} iteration {it}: validation error {err:.3f}", file=sys.stderr,
              flush=True)

    validate(0)
    it = 0
    for it in tqdm(range(1, args.iterations + 1), desc=args.rule, file=sys.stderr,
                   mininterval=30):
        trials = EvidenceAccumulation(train=True, n_train=64, seed=args.seed * 1_000_000 + it)
        x, y = trials.data, trials.targets
        opt.zero_grad()
        metrics = rule.fill_grads(model, x, y)
        if args.rule != "rsnn-bptt" and (it == 1 or it % args.angle_every == 0):
            update = [p.grad.clone() for p in model.parameters()]
            bptt.fill_grads(model, x, y)
            true = [p.grad.clone() for p in model.parameters()]
            record["angle_to_bptt"]["iteration"].append(it)
            record["angle_to_bptt"]["degrees"].append(flat_angle(update, true))
            for p, g in zip(model.parameters(), update, strict=True):
                p.grad = g
        opt.step()
        record["iteration"].append(it)
        record["batch_step_error"].append(1.0 - float(metrics["accuracy"]))
        record["loss"].append(float(metrics["loss"]))
        if it % args.validate_every == 0:
            validate(it)
        if time.perf_counter() - start > args.max_minutes * 60:
            record["stopped_early"] = (
                f"stopped after {it} of {args.iterations} iterations by --max-minutes "
                f"{args.max_minutes}"
            )
            break
    if it % args.validate_every:
        validate(it)
    errors = []
    for k in range(4):
        test = EvidenceAccumulation(train=False, n_test=64, seed=20_000_000 + k)
        with torch.no_grad():
            errors.append(recall_error(model(test.data), test.targets))
    record["final_test_error"] = sum(errors) / len(errors)
    record["final_test_errors"] = errors
    record["wall_s"] = time.perf_counter() - start
    record["cpu_s"] = time.process_time() - cpu_start
    write(out_path, record)
    return record


def section_iteration(args) -> dict[str, Any]:
    """One evidence-accumulation iteration (fill_grads on a batch of 64 2250-step trials) of
    each rule: wall and process CPU time, and the operators that take the time."""
    import bionn
    from bionn.core.registry import make_rule
    from bionn.data.sequences import EvidenceAccumulation

    trials = EvidenceAccumulation(train=True, n_train=64, seed=1)
    x, y = trials.data, trials.targets
    results: dict[str, Any] = {**header(args), "section": "iteration", "label": args.label,
                               "settings": {"network": "40 inputs, 50 LIF + 50 ALIF, 2 outputs",
                                            "batch": 64, "trial_steps": x.shape[0],
                                            "repeats": args.repeats},
                               "bionn": str(Path(bionn.__file__).parent.parent.name),
                               "rules": {}}
    for name in args.rules:
        if name == "eprop-random":
            continue
        torch.manual_seed(0)
        rule = make_rule(name)
        model = rule.build_model("rsnn:50+50", (40,), 2, "relu")
        walls, cpus = [], []
        for _ in range(args.repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            rule.fill_grads(model, x, y)
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - start_cpu)
        entry: dict[str, Any] = {"wall_s": walls, "cpu_s": cpus, "cpu_s_min": min(cpus)}
        if args.profile:
            with torch.autograd.profiler.profile() as prof:
                rule.fill_grads(model, x, y)
            table = prof.key_averages()
            top = sorted(table, key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
            entry["profile_top_ops"] = [
                {"op": e.key, "calls": e.count, "self_cpu_ms": e.self_cpu_time_total / 1000}
                for e in top]
        results["rules"][name] = entry
        print(name, json.dumps(entry), flush=True)
        write(Path(args.out or RESULTS / f"eprop_iteration_{args.label}.json"), results)
    return results


def section_pattern(args) -> dict[str, Any]:
    from bionn.core.registry import make_rule
    from bionn.data.sequences import PoissonPattern

    data = PoissonPattern(train=True, length=args.length, n_train=1, seed=args.seed)
    x, y = data.data, data.targets
    # the authors weigh 0.5 sum_t (y - y*)^2 against (reg / 2) sum_j (f_j - f0)^2; bionn's loss is
    # the mean over the T steps, (2 / T) times theirs, so the same balance is c_reg = reg / T
    opts = {"tau_m": 30.0, "tau_out": 30.0, "v_th": 0.03, "reg_weight": args.reg / args.length,
            "reg_rate": 10.0, "n_ref": 0}
    results: dict[str, Any] = {**header(args), "section": "pattern", "settings": {
        "network": "100 inputs (frozen Poisson, 50 Hz), 100 LIF, 1 output", "options": opts,
        "optimizer": "Adam", "lr": args.pattern_lr, "iterations": args.pattern_iterations,
        "trial_steps": args.length}, "rules": {}}
    for name in args.rules:
        torch.manual_seed(args.seed)
        rule = make_rule(name, opts | ({"feedback_scale": 1.0} if name == "eprop-random" else {}))
        model = rule.build_model("rsnn:100+0", (x.shape[-1],), 1, "relu")
        opt = torch.optim.Adam(model.parameters(), lr=args.pattern_lr)
        curve = []
        start = time.perf_counter()
        for it in range(args.pattern_iterations):
            opt.zero_grad()
            rule.fill_grads(model, x, y)
            opt.step()
            if it % 10 == 0 or it == args.pattern_iterations - 1:
                with torch.no_grad():
                    out = model(x)
                nmse = float(((out - y) ** 2).mean() / y.var())
                curve.append((it + 1, nmse))
        results["rules"][name] = {"nmse": curve[-1][1], "curve": curve,
                                  "wall_s": time.perf_counter() - start}
        print(name, "NMSE", curve[-1][1], flush=True)
        write(Path(args.out or RESULTS / "eprop_pattern.json"), results)
    return results


def _status_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field_name} in /proc/self/status")


def section_memory_point(args) -> dict[str, Any]:
    """One memory point, run in a fresh process by ``memory``: the peak resident memory of
    one ``fill_grads`` call above the resident memory before it (Linux ``VmHWM`` after the
    high-water mark is reset through ``/proc/self/clear_refs``, with the free heap handed
    back first by glibc's ``malloc_trim``), so every transient allocation counts; after one
    short warm-up update, so the libraries' one-time buffers are not counted."""
    import gc

    from bionn.core.registry import make_rule
    from bionn.data.sequences import EvidenceAccumulation

    torch.manual_seed(0)
    rule = make_rule(args.rule)
    model = rule.build_model("rsnn:50+50", (40,), 2, "relu")
    steps, batch = args.steps, args.mem_batch
    cues = min(7, max(1, (steps - 300) // 150))
    cues -= 1 - cues % 2  # odd: 7 cues from 1350 steps on, fewer for shorter trials
    data = EvidenceAccumulation(train=True, n_train=batch, seed=1, cues=cues,
                                delay=steps - cues * 150 - 150)
    x, y = data.data, data.targets
    assert x.shape[0] == steps
    # one short update first, so the libraries' one-time buffers are not counted
    warm = EvidenceAccumulation(train=True, n_train=batch, seed=2, cues=1, delay=50)
    rule.fill_grads(model, warm.data, warm.targets)
    for p in model.parameters():
        p.grad = None
    del warm
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    base = _status_kib("VmRSS")
    start = time.perf_counter()
    rule.fill_grads(model, x, y)
    wall = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    point = {"peak_bytes": float((peak - base) * 1024), "wall_s": wall}
    print(json.dumps(point))
    return point


def memory_point(rule_name: str, steps: int, batch: int, threads: int) -> dict[str, float]:
    """Peak resident memory (bytes above the start) of one update, in a fresh process."""
    out = subprocess.run(
        [sys.executable, __file__, "--section", "memory-point", "--rule", rule_name,
         "--steps", str(steps), "--mem-batch", str(batch), "--threads", str(threads)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def section_memory(args) -> dict[str, Any]:
    from bionn.plots.eprop import plot_memory_vs_length

    lengths = args.lengths
    results: dict[str, Any] = {**header(args), "section": "memory", "settings": {
        "network": "40 inputs, 50 LIF + 50 ALIF, 2 outputs", "batch": args.mem_batch,
        "trace_chunk": 100,
        "measure": "peak resident memory of one fill_grads call above the resident memory "
                   "before it, each point in a fresh process (Linux VmHWM after resetting the "
                   "high-water mark through /proc/self/clear_refs, glibc malloc_trim first) "
                   "after one 350-step warm-up update: every transient allocation counts"},
        "lengths": lengths, "rules": {}}
    for name in ("eprop", "rsnn-bptt"):
        points = []
        for steps in lengths:
            point = memory_point(name, steps, args.mem_batch, args.threads)
            points.append(point)
            print(name, steps, point, flush=True)
        results["rules"][name] = {
            "peak_mib": [p["peak_bytes"] / 2**20 for p in points],
            "peak_mib_per_step": [p["peak_bytes"] / 2**20 / s for p, s in
                                  zip(points, lengths, strict=True)],
            "wall_s": [p["wall_s"] for p in points],
        }
    plot = plot_memory_vs_length(
        lengths, {k: v["peak_mib"] for k, v in results["rules"].items()},
        RESULTS / "eprop_memory.png")
    results["figure"] = str(plot)
    write(Path(args.out or RESULTS / "eprop_memory.json"), results)
    return results


PEER_DRIVER = r'''
import json, sys, time
import numpy as np
import torch
sys.path.insert(0, sys.argv[1])
from models import SRNN
steps, batch, n_in, n_rec, n_out, reps = map(int, sys.argv[2:8])
torch.set_num_threads(int(sys.argv[8]))
torch.manual_seed(0)
net = SRNN(n_in, n_rec, n_out, steps, 0.6, 20.0, 20.0, 0.0, 0.3, 1.0, "LIF", True,
           [0.5, 0.1, 0.5], [1.0, 1.0, 1.0], min(150, steps), False, False, "cpu")
x = (torch.rand(steps, batch, n_in) < 0.04).float()
yt = torch.zeros(steps, batch, n_out)
yt[-min(150, steps):, :, 0] = 1.0
times, cpu = [], []
for _ in range(reps):
    start, start_cpu = time.perf_counter(), time.process_time()
    with torch.no_grad():
        net(x, yt, do_training=True)
    times.append(time.perf_counter() - start)
    cpu.append(time.process_time() - start_cpu)
print(json.dumps({"times": times, "cpu": cpu}))
'''


def section_speed(args) -> dict[str, Any]:
    from bionn.core.registry import make_rule

    steps, batch = args.speed_steps, 64
    results: dict[str, Any] = {**header(args), "section": "speed", "settings": {
        "network": "40 inputs, 100 LIF, 2 outputs (the peer supports LIF only)",
        "batch": batch, "trial_steps": steps, "repeats": args.repeats,
        "peer": "ChFrenkel/eprop-PyTorch models.SRNN (its own e-prop gradients, "
                "grads_batch), run in a separate environment"}}
    torch.manual_seed(0)
    rule = make_rule("eprop", {"n_ref": 0})
    model = rule.build_model("rsnn:100+0", (40,), 2, "relu")
    # the peer's driver: Poisson inputs at 40 Hz, class 0 as the target of the last 150 steps
    x = (torch.rand(steps, batch, 40) < 0.04).float()
    y = torch.full((steps, batch), -100, dtype=torch.int64)
    y[-min(150, steps):] = 0
    times, cpu = [], []
    for _ in range(args.repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        rule.fill_grads(model, x, y)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    results["bionn_s"] = min(times)
    results["bionn_times"] = times
    results["bionn_cpu_s"] = min(cpu)
    out_path = Path(args.out or RESULTS / f"eprop_speed_T{steps}.json")
    write(out_path, results)
    if args.peer_python and args.peer_src:
        script = Path(args.peer_src) / "_bionn_speed_driver.py"
        script.write_text(PEER_DRIVER)
        out = subprocess.run(
            [args.peer_python, str(script), args.peer_src, str(steps), str(batch), "40",
             "100", "2", str(args.repeats), str(torch.get_num_threads())],
            capture_output=True, text=True, check=True,
        )
        peer = json.loads(out.stdout.strip().splitlines()[-1])
        results["peer_s"] = min(peer["times"])
        results["peer_times"] = peer["times"]
        results["peer_cpu_s"] = min(peer["cpu"])
        results["ratio_bionn_over_peer"] = results["bionn_s"] / results["peer_s"]
        results["cpu_ratio_bionn_over_peer"] = results["bionn_cpu_s"] / results["peer_cpu_s"]
    results["timing"] = ("wall and process CPU seconds of one training iteration (forward and "
                         "gradients), the minimum over the repeats; the CPU time is the fairer "
                         "measure on a shared machine")
    print(json.dumps({k: v for k, v in results.items() if k.endswith("_s") or "ratio" in k}))
    write(out_path, results)
    return results


def section_figures(args) -> dict[str, Any]:
    """Learning curves and angles from the ``evidence`` JSON files; a raster of one trial."""
    from bionn.core.registry import make_rule
    from bionn.data.sequences import EvidenceAccumulation
    from bionn.plots.eprop import plot_eprop_angle, plot_eprop_learning_curves, plot_rsnn_raster

    curves, angles, its = {}, {}, []
    for name in ("eprop", "eprop-random", "rsnn-bptt"):
        path = RESULTS / f"eprop_evidence_{name}.json"
        if not path.exists():
            continue
        rec = json.loads(path.read_text())
        curves[f"{name} (held-out batch)"] = (rec["validation"]["iteration"],
                                               [100 * e for e in rec["validation"]["error"]])
        if rec["angle_to_bptt"]["iteration"]:
            its = rec["angle_to_bptt"]["iteration"]
            angles[name] = rec["angle_to_bptt"]["degrees"]
    made = [plot_eprop_learning_curves(curves, RESULTS / "eprop_evidence_curves.png",
                                       target=100 * EVIDENCE_TARGET)]
    if angles:
        made.append(plot_eprop_angle(its, angles, RESULTS / "eprop_evidence_angle.png"))
    torch.manual_seed(args.seed)
    model = make_rule("eprop").build_model("rsnn:50+50", (40,), 2, "relu")
    trial = EvidenceAccumulation(train=True, n_train=1, seed=args.seed)
    with torch.no_grad():
        record = model.simulate(trial.data)
    made.append(plot_rsnn_raster(record, 50, RESULTS / "eprop_raster.png", x=trial.data))
    print("\n".join(str(m) for m in made))
    return {"figures": [str(m) for m in made]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--section", required=True,
                    choices=["evidence", "iteration", "pattern", "memory", "memory-point", "speed",
                             "figures"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rule", default="eprop", choices=["eprop", "eprop-random", "rsnn-bptt"])
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--validate-every", type=int, default=25)
    ap.add_argument("--angle-every", type=int, default=50)
    ap.add_argument("--max-minutes", type=float, default=1e9)
    ap.add_argument("--length", type=int, default=1000)
    ap.add_argument("--reg", type=float, default=300.0)
    ap.add_argument("--pattern-lr", type=float, default=3e-3)
    ap.add_argument("--pattern-iterations", type=int, default=300)
    ap.add_argument("--rules", type=lambda s: s.split(","),
                    default=["eprop", "eprop-random", "rsnn-bptt"])
    ap.add_argument("--lengths", type=lambda s: [int(v) for v in s.split(",")],
                    default=[500, 1000, 2000, 4000])
    ap.add_argument("--mem-batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=500, help="memory-point: the trial length")
    ap.add_argument("--speed-steps", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--label", default="chunked",
                    help="iteration: the name of the measured version in the JSON file name")
    ap.add_argument("--profile", action="store_true", help="iteration: also profile one call")
    ap.add_argument("--peer-python", default=None)
    ap.add_argument("--peer-src", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    {"evidence": section_evidence, "pattern": section_pattern, "memory": section_memory,
     "speed": section_speed, "figures": section_figures,
     "iteration": section_iteration, "memory-point": section_memory_point}[args.section](args)


if __name__ == "__main__":
    main()
