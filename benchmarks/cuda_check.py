"""Every rule on a CUDA device beside the CPU: does it train there, and to what accuracy.

For each registered rule, a short run on the digits data set (no download needed) on the CPU and
on ``--device`` with the same seed, through ``run_training`` (the library path): test accuracy,
wall time, and the error text if a run fails. Then the competing-hidden-units update computed by
the torch code on the device beside the compiled C kernel on the CPU, on the same float64 W and
inputs (the two implementations must agree). Results go to JSON.

    python benchmarks/cuda_check.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from bionn.core.config import TrainConfig
from bionn.core.registry import rule_names
from bionn.core.run import run_training
from bionn.native import krotov_kernel, unavailable_reason
from bionn.rules.krotov_hopfield import lp_weights, synaptic_update

# short runs that still learn the digits; rule options that keep them short
EPOCHS = 3
OPTIONS: dict[str, dict[str, Any]] = {
    "krotov": {"hidden": 200, "unsupervised_epochs": 3, "k": 3, "n": 2.0, "beta": 0.1},
    "decolle": {"timesteps": 20},
    "snn-bptt": {"timesteps": 20},
}


def train(rule: str, device: str, folder: Path) -> dict[str, Any]:
    config = TrainConfig(rule=rule, dataset="digits", model="mlp:256", epochs=EPOCHS,
                         batch_size=64, device=device, out=str(Path(tempfile.mkdtemp(dir=folder))),
                         options=OPTIONS.get(rule, {}))
    start = time.perf_counter()
    try:
        summary = run_training(config, progress=False, plot=False)
    except Exception as exc:  # noqa: BLE001 - the point is to record what breaks
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc()[-3000:]}
    return {"ok": True, "test_accuracy": summary.get("test_accuracy"),
            "wall_time_s": time.perf_counter() - start}


def krotov_parity(device: str) -> dict[str, Any]:
    """The torch update on the device against the C kernel on the CPU, float64."""
    kernel = krotov_kernel()
    if kernel is None:
        return {"skipped": f"no C kernel: {unavailable_reason('krotov')}"}
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(2000, 784, generator=gen, dtype=torch.float64)
    v = torch.rand(100, 784, generator=gen, dtype=torch.float64)
    result = {}
    for p, k in ((3.0, 7), (2.0, 2), (4.5, 5)):
        args = (p, k, 0.4, 1.3, 1e-30)
        rows_c, grad_c, scale_c, win_c = synaptic_update(W, v, *args, kernel=kernel)
        rows_d, grad_d, scale_d, win_d = synaptic_update(
            W.to(device), v.to(device), *args, weights=lp_weights(W.to(device), p))
        same_rows = torch.equal(rows_c, rows_d.cpu()) and torch.equal(win_c, win_d.cpu())
        result[f"p{p:g}_k{k}"] = {
            "same_rows_and_winners": same_rows,
            "max_abs_difference": float((grad_c - grad_d.cpu()).abs().max()) if same_rows
            else None,
            "scale_relative_difference": abs(scale_c - scale_d) / scale_c,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rules", default=None, help="comma-separated; default every rule")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--out", default="benchmarks/results/cuda_check.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device is visible to torch")
    rules = args.rules.split(",") if args.rules else rule_names()
    results: dict[str, Any] = {"rules": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for rule in rules:
            row = {"cpu": train(rule, "cpu", Path(tmp)),
                   "device": train(rule, args.device, Path(tmp))}
            results["rules"][rule] = row
            print(json.dumps({rule: {d: {k: v for k, v in r.items() if k != "traceback"}
                                     for d, r in row.items()}}), flush=True)
    results["krotov_parity"] = krotov_parity(args.device)
    print(json.dumps({"krotov_parity": results["krotov_parity"]}), flush=True)
    results["environment"] = {
        "torch": torch.__version__, "python": sys.version.split()[0],
        "machine": platform.machine(), "cpus": os.cpu_count(), "threads": args.threads,
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "epochs": EPOCHS, "dataset": "digits",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
