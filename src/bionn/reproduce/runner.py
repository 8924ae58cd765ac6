"""Run one paper's profile through bionn's own training code and write its run folder.

The run folder holds one sub-folder per run (each a ``bionn train`` or ``bionn rl`` run folder
with its own ``summary.json``, ``metrics.jsonl`` and figures), and at its top:

- ``summary.json``: ``"kind": "reproduce"``, the paper, the profile and its budget, the table
  (one row per claim: the paper's number and source, ours, the verdict), the runs, the wall
  time and the environment;
- ``reproduce.png``: ours against the paper's number, claim by claim.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from bionn.errors import ConfigError
from bionn.reproduce.registry import PROFILES, Paper, Run, get_paper, verdict

SUMMARY_NAME = "summary.json"


def environment(device: str = "cpu") -> dict[str, Any]:
    """Versions, the CPU, the torch thread count and the device of this process."""
    import platform

    import numpy
    import torch

    from bionn import __version__

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    env = {
        "bionn": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
        "python": platform.python_version(), "platform": platform.platform(), "cpu": cpu,
        "threads": torch.get_num_threads(), "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


def _run_one(run: Run, out: Path, data_dir: str | None, device: str, progress: bool,
             download: bool) -> dict[str, Any]:
    """Train ``run`` into ``out``; its summary, with its history (and RL traces)."""
    from bionn.core.checkpoint import CHECKPOINT_NAME, load_checkpoint

    config = dict(run.config)
    config.update(out=str(out), device=device)
    if run.kind == "rl":
        from bionn.rl.run import RLConfig, run_rl

        summary = dict(run_rl(RLConfig(**config), progress=progress))
        state = load_checkpoint(out / CHECKPOINT_NAME)
        summary["traces"] = {k: v.tolist() for k, v in state.get("traces", {}).items()}
    else:
        from bionn.core.config import TrainConfig
        from bionn.core.run import run_training

        config.update(data_dir=data_dir, download=download)
        summary = dict(run_training(TrainConfig(**config), progress=progress,
                                    train_size=run.train_size))
    metrics = out / "metrics.jsonl"
    summary["history"] = [json.loads(line) for line in metrics.read_text().splitlines()
                          if line.strip()] if metrics.exists() else []
    summary["run_dir"] = str(out)
    return summary


def table_rows(paper: Paper, ours: dict[str, float | None]) -> list[dict[str, Any]]:
    """One row per claim: the paper's number and source, ours and the verdict."""
    rows = []
    for claim in paper.claims:
        value = ours.get(claim.key)
        value = None if value is None or not math.isfinite(float(value)) else float(value)
        rows.append({
            "key": claim.key, "quantity": claim.quantity, "unit": claim.unit,
            "paper": claim.paper, "source": claim.source, "ours": value,
            "direction": claim.direction, "tolerance": claim.tolerance,
            "verdict": verdict(value, claim),
        })
    return rows


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    text = f"{value:.4f}" if unit == "" else f"{value:.2f}"
    return text + ("%" if unit == "%" else f" {unit}" if unit else "")


def format_table(summary: dict[str, Any]) -> str:
    """The table ``bionn reproduce`` prints: quantity, paper (source), ours, verdict."""
    header = ("quantity", "paper", "ours", "verdict", "source")
    rows = [(r["quantity"] + (f" ({r['unit']})" if r["unit"] == "points" else ""),
             _fmt(r["paper"], r["unit"]), _fmt(r["ours"], r["unit"]), r["verdict"],
             r["source"]) for r in summary["rows"]]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    lines = [f"{summary['paper']} ({summary['profile']}): {summary['setting']}",
             f"budget: {summary['budget']}; wall time {summary['wall_time_s']:.0f} s"]
    for row in [header, *rows]:
        cells = [c.ljust(w) for c, w in zip(row[:4], widths, strict=True)] + [row[4]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def run_reproduction(
    name: str,
    profile: str = "quick",
    out: str | Path | None = None,
    data_dir: str | None = None,
    device: str = "cpu",
    progress: bool = True,
    download: bool = False,
) -> dict[str, Any]:
    """Run the ``profile`` of paper ``name`` into ``out``; return (and write) its summary."""
    from bionn.core.run import default_run_dir, prepare_run_dir, resolve_device

    paper = get_paper(name)
    if profile not in PROFILES:
        raise ConfigError(f"--profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    resolve_device(device)
    spec = paper.profiles[profile]
    root = Path(out) if out else default_run_dir(f"reproduce-{paper.name}-{profile}")
    root = prepare_run_dir(root, resume=False, command="compare")
    results: dict[str, dict[str, Any]] = {}
    start = time.perf_counter()
    bar = tqdm(spec.runs, desc=f"reproduce {paper.name} ({profile})", unit="run",
               disable=not progress, file=sys.stderr, leave=False)
    try:
        for run in bar:
            bar.set_postfix_str(run.label)
            results[run.label] = _run_one(run, root / run.label, data_dir, device,
                                          progress, download)
    finally:
        bar.close()
    wall = time.perf_counter() - start
    rows = table_rows(paper, dict(paper.measure(results)))
    summary: dict[str, Any] = {
        "kind": "reproduce", "paper": paper.name, "citation": paper.citation,
        "family": paper.family, "docs": f"docs/rules/{paper.family}.md",
        "setting": paper.setting, "profile": profile, "budget": spec.budget,
        "expected_s": spec.expected_s, "wall_time_s": wall, "rows": rows,
        "runs": [{"label": run.label, "kind": run.kind, "config": dict(run.config),
                  "train_size": run.train_size,
                  "test_accuracy": results[run.label].get("test_accuracy"),
                  "wall_time_s": results[run.label].get("wall_time_s"),
                  "run_dir": run.label} for run in spec.runs],
        "seed": sorted({int(run.config.get("seed", 0)) for run in spec.runs}),
        "environment": environment(device), "run_dir": str(root),
    }
    from bionn.plots.reproduce import plot_claims

    summary["plots"] = [str(plot_claims(rows, root / "reproduce.png",
                                        title=f"{paper.name} ({profile})"))]
    (root / SUMMARY_NAME).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary
