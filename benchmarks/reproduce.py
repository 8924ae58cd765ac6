"""Every paper's ``bionn reproduce`` profile in turn, timed, with its table.

Runs :func:`bionn.reproduce.run_reproduction` (what ``bionn reproduce PAPER --profile P``
does) for each paper named, one after the other in this process, and writes the tables, the
wall times against the expected ones the CPU time this
process spent, the load average and the machine to
``benchmarks/results/reproduce_<profile>.json`` (rewritten after every paper, so a run cut
short keeps what it finished).

    python benchmarks/reproduce.py --data-dir DATA [--profile quick] [--papers a,b,...]
        [--runs-dir DIR] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from bionn.core.resources import cpu_model as _cpu_model
from bionn.reproduce import all_papers, format_table, run_reproduction

RESULTS = Path(__file__).resolve().parent / "results"


def _load() -> float | None:
    """The machine's 1-minute load average (other jobs slow a run's wall time)."""
    try:
        import os

        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--profile", default="quick", choices=("quick", "full"))
    parser.add_argument("--papers", default=None, help="comma-separated (default: all)")
    parser.add_argument("--runs-dir", default=None, help="keep the run folders here")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.papers.split(",") if args.papers else list(all_papers())
    out = Path(args.out) if args.out else RESULTS / f"reproduce_{args.profile}.json"
    record = {"benchmark": f"bionn reproduce, {args.profile} profiles",
              "cpu": _cpu_model(), "torch": torch.__version__, "threads": args.threads,
              "device": args.device, "python": platform.python_version(),
              "command": "python benchmarks/reproduce.py " + " ".join(
                  {args.data_dir: "DATA", args.runs_dir: "RUNS"}.get(a, a)
                  for a in sys.argv[1:]),
              "papers": {}}
    if out.exists():  # a run of some papers updates their entries and keeps the others'
        try:
            record["papers"] = json.loads(out.read_text()).get("papers", {})
        except (OSError, ValueError):
            pass
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.runs_dir) if args.runs_dir else Path(tmp)
        for name in names:
            start, cpu_start = time.perf_counter(), time.process_time()
            summary = run_reproduction(name, args.profile, out=root / name,
                                       data_dir=args.data_dir, device=args.device,
                                       progress=False)
            wall = time.perf_counter() - start
            cpu = time.process_time() - cpu_start
            print(format_table(summary), flush=True)
            print(f"{name}: {wall:.0f} s wall, {cpu:.0f} s of CPU (expected "
                  f"{summary['expected_s']:.0f} s)\n", flush=True)
            record["papers"][name] = {
                "command": record["command"],
                "budget": summary["budget"], "expected_s": summary["expected_s"],
                "wall_time_s": wall, "cpu_time_s": cpu,
                "load_average_1min": _load(), "rows": summary["rows"],
                "runs": [{k: r[k] for k in ("label", "train_size", "test_accuracy",
                                            "wall_time_s")} for r in summary["runs"]],
            }
            out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
