"""Training steps per second with the rule's metrics converted every step or only when logged.

Before, every update's metrics were copied to the host (``.item()``/``.tolist()``) at once, so
every step waited for the device; now they stay 0-d tensors until the Trainer logs (every
``log_every`` updates and at the end of an epoch). For backprop (bp), feedback alignment (fa),
predictive coding (pc) and DECOLLE on the MNIST MLP (784-1000-10; DECOLLE's own spiking network
for ``mlp:1000``), this times ``Trainer.train_epoch`` over a number of batches of 100 MNIST
training images (``--steps``: 60 for bp and fa, 10 for pc, 4 for DECOLLE, whose batch is 25
time steps of updates) in these modes:

- ``deferred``: this checkout, metrics converted every 50 updates (the default);
- ``per-step``: this checkout with ``log_every=1``, a conversion, and so a wait, after every
  update (what the Trainer did before);
- ``before``: the source tree given by ``--before-src`` (for instance the previous release's
  ``src`` folder), as it is.

Each (rule, mode) lives in its own worker process (one thread by default, ``--threads``), warmed
up once; the rounds then alternate between the modes so that machine noise hits them alike, and
the result is the median over rounds. On the CPU the clock is the worker's CPU time (so that
the time it waits for a core on a shared machine does not count; the wall times are recorded
too), on a GPU the wall clock. On the CPU nothing waits, so the modes should be level (no
regression); on a GPU small networks are bound by the per-step wait, which the ``deferred`` mode
removes. One command measures it on a GPU machine:

    python benchmarks/host_sync.py --data-dir DATA --device cuda [--before-src OLD/src]
        [--rules bp,fa,pc,decolle] [--steps bp=60,fa=60,pc=10,decolle=4] [--rounds 5]
        [--threads 1] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

RULES = ("bp", "fa", "pc", "decolle")
STEPS = {"bp": 60, "fa": 60, "pc": 10, "decolle": 4}
OPTIONS = {"decolle": {"timesteps": 25}}  # its default T; written out so the JSON says it

WORKER = textwrap.dedent(
    """
    import inspect, json, sys, time
    import torch
    rule_name, mode, device, threads, steps, data_dir, options = sys.argv[1:8]
    torch.set_num_threads(int(threads))
    from bionn.core.registry import make_rule
    from bionn.core.trainer import Trainer
    from bionn.data import load_dataset
    device = torch.device(device)
    torch.manual_seed(0)
    rule = make_rule(rule_name, json.loads(options))
    train = load_dataset("mnist", data_dir or None, train=True)
    n = int(steps) * 100
    x = (train.normalized() if rule.normalize_inputs else train.data)[:n].to(device)
    y = train.targets[:n].to(device)
    model = rule.build_model("mlp:1000", tuple(train.input_shape), 10, "relu").to(device)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    kwargs = {}
    if mode == "per-step":
        kwargs["log_every"] = 1
    elif "log_every" in inspect.signature(Trainer).parameters:
        kwargs["log_every"] = 50
    trainer = Trainer(model, rule, opt, (x, y), None, batch_size=100, progress=False, **kwargs)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    epoch = 0
    def run():
        global epoch
        epoch += 1
        sync()
        start, cpu = time.perf_counter(), time.process_time()
        means = trainer.train_epoch(epoch, 10**6)
        sync()
        return time.perf_counter() - start, time.process_time() - cpu, means.get("loss")

    run()  # warm-up
    print("ready", flush=True)
    for line in sys.stdin:
        seconds, cpu_seconds, loss = run()
        print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "loss": loss}),
              flush=True)
    """
)


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor()
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


class Worker:
    """One (rule, mode) in its own process, timing an epoch of ``steps`` updates on request."""

    def __init__(self, rule: str, mode: str, args, src: str | None) -> None:
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONWARNINGS="ignore")
        if src is not None:
            env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, rule, mode, args.device, str(args.threads),
             str(args.steps[rule]), args.data_dir or "", json.dumps(OPTIONS.get(rule, {}))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"the worker for {rule} ({mode}) did not start")

    def run(self) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("BIONN_DATA"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--before-src", default=None,
                        help="a source tree of bionn to time as the 'before' mode")
    parser.add_argument("--steps", default=None,
                        help="batches per measured epoch: N for every rule, or rule=N,...")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--out", default=None,
                        help="JSON file (default benchmarks/results/host_sync_<device>.json)")
    args = parser.parse_args()
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    steps = dict(STEPS)
    if args.steps and "=" not in args.steps:
        steps = dict.fromkeys(rules, int(args.steps))
    elif args.steps:
        steps.update({k.strip(): int(v) for k, v in
                      (item.split("=") for item in args.steps.split(",") if item.strip())})
    args.steps = {rule: steps.get(rule, 20) for rule in rules}
    here = str(Path(__file__).resolve().parent.parent / "src")
    modes = {"deferred": here, "per-step": here}
    if args.before_src:
        modes["before"] = str(Path(args.before_src).resolve())
    results: dict = {}
    for rule in rules:
        workers = {mode: Worker(rule, mode, args, src) for mode, src in modes.items()}
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        walls: dict[str, list[float]] = {mode: [] for mode in modes}
        losses: dict[str, list[float | None]] = {mode: [] for mode in modes}
        try:
            order = list(modes)
            for r in range(args.rounds):
                for mode in order if r % 2 == 0 else order[::-1]:
                    out = workers[mode].run()
                    cpu = args.device == "cpu"
                    times[mode].append(out["cpu_seconds"] if cpu else out["seconds"])
                    walls[mode].append(out["seconds"])
                    losses[mode].append(out["loss"])
        finally:
            for w in workers.values():
                w.close()
        row = {mode: {"epoch_s": t, "wall_s": walls[mode], "median_s": statistics.median(t),
                      "steps_per_s": args.steps[rule] / statistics.median(t),
                      "train_loss": losses[mode]} for mode, t in times.items()}
        for mode in modes:
            if mode != "deferred":
                row[f"deferred_speedup_over_{mode}"] = (
                    row["deferred"]["steps_per_s"] / row[mode]["steps_per_s"])
        results[rule] = row
        print(rule + ": " + ", ".join(f"{m} {row[m]['steps_per_s']:.2f} steps/s" for m in modes),
              flush=True)
    import torch

    cuda = args.device.startswith("cuda")
    device_name = torch.cuda.get_device_name(args.device) if cuda else None

    shown = list(sys.argv[1:])
    for flag, placeholder in (("--data-dir", "DATA"), ("--out", "OUT"),
                              ("--before-src", "BEFORE_SRC")):
        if flag in shown[:-1]:
            shown[shown.index(flag) + 1] = placeholder
    record = {
        "benchmark": "host_sync",
        "model": "mlp:1000 (784-1000-10; DECOLLE: its spiking network for mlp:1000)",
        "batch_size": 100, "optimizer": "adam lr 1e-3 (torch default implementation)",
        "dataset": "mnist, the first 100 x steps_per_epoch training images",
        "rule_options": {r: OPTIONS.get(r, {}) for r in rules},
        "steps_per_epoch": args.steps, "rounds": args.rounds, "modes": list(modes),
        "clock": "process CPU time" if args.device == "cpu" else "wall clock",
        "a_step_is": "one batch of 100 (DECOLLE: one batch, 25 - burn-in optimizer updates)",
        "results": results,
        "device": args.device, "device_name": device_name,
        "cpu": _cpu_model(), "torch": torch.__version__, "threads": args.threads,
        "python": platform.python_version(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python benchmarks/host_sync.py " + " ".join(shown),
    }
    out = Path(args.out or f"benchmarks/results/host_sync_{args.device.split(':')[0]}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
