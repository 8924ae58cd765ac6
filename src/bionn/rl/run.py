"""What ``bionn rl`` does: run an agent on a task for some episodes, in a run folder.

The run folder holds ``metrics.jsonl`` (one line per episode: reward, P(better choice), mean
|RPE|, steps), ``summary.json``, ``checkpoint.pt`` (written atomically after every episode;
loads with ``torch.load(weights_only=True)``) and the task's figure. ``resume=True`` continues
a run from its checkpoint; the agent, optimizer and random generator come back exactly, so a
resumed run ends where an uninterrupted one does, bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from bionn.core.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from bionn.core.run import default_run_dir, prepare_run_dir, resolve_device
from bionn.errors import ConfigError, TrainingDiverged
from bionn.rl.agents import AGENTS, make_agent_config
from bionn.rl.loop import TaskSpec, make_agent, run_episode

METRICS_NAME = "metrics.jsonl"
SUMMARY_NAME = "summary.json"
WINDOW = (-10, 30)  # trials around the reversal kept for the reversal curve


@dataclass(frozen=True)
class RLConfig:
    """A ``bionn rl`` run."""

    agent: str = field(default="rw", metadata={"help": "agent (rw, two-timescale, ...)"})
    task: str = field(default="reversal", metadata={"help": "task, e.g. reversal:70/30"})
    episodes: int = field(default=100, metadata={"help": "episodes (blocks, trials, runs)"})
    experiments: int = field(default=1, metadata={"help": "independent experiments, batched"})
    seed: int = field(default=0, metadata={"help": "random seed"})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda"})
    out: str | None = field(default=None, metadata={"help": "run folder"})
    options: dict[str, Any] = field(default_factory=dict, metadata={"help": "agent options"})

    def __post_init__(self) -> None:
        if self.agent not in AGENTS:
            raise ConfigError(f"unknown agent {self.agent!r}; choose one of {', '.join(AGENTS)}")
        TaskSpec.parse(self.task)
        for name in ("episodes", "experiments"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{name} must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"--seed must be an integer, got {self.seed!r}")
        make_agent_config(self.agent, self.options)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain values (recorded in the checkpoint and the summary)."""
        return dataclasses.asdict(self)


CHANGEABLE = ("episodes", "device")


def resume_rl_config(out: str | Path, overrides: dict[str, Any]) -> RLConfig:
    """The configuration in ``out``'s checkpoint; only episodes and device may change."""
    state = load_checkpoint(Path(out) / CHECKPOINT_NAME)
    saved = dict(state["config"])
    for key, value in overrides.items():
        if key in CHANGEABLE:
            saved[key] = value
        elif key == "options":
            old = saved.get("options", {})
            for k, v in value.items():
                if old.get(k) != v:
                    raise ConfigError(
                        f"--resume continues the run as it was configured; {k} was "
                        f"{old.get(k)!r}, got {v!r} (only {', '.join(CHANGEABLE)} may change)"
                    )
        elif key != "out" and key in saved and saved[key] != value:
            raise ConfigError(
                f"--resume continues the run as it was configured; {key} was {saved[key]!r}, "
                f"got {value!r} (only {', '.join(CHANGEABLE)} may change)"
            )
    saved["out"] = str(out)
    return RLConfig(**saved)


def run_rl(config: RLConfig, resume: bool = False, progress: bool = True,
           plot: bool = True) -> dict[str, Any]:
    """Run ``config`` (or continue it); return the summary written to ``summary.json``."""
    device = resolve_device(config.device)
    spec = TaskSpec.parse(config.task)
    task = spec.build(config.experiments, device)
    agent = make_agent(config.agent, task, config.options)
    optimizer = agent.make_optimizer()
    generator = torch.Generator(device=device).manual_seed(config.seed)
    run_dir = Path(config.out) if config.out else default_run_dir(
        f"rl-{config.agent}-{spec.name}")
    run_dir = prepare_run_dir(run_dir, resume)
    history: list[dict[str, Any]] = []
    traces: dict[str, torch.Tensor] = {}
    done, elapsed = 0, 0.0
    if resume:
        state = load_checkpoint(run_dir / CHECKPOINT_NAME, map_location=device)
        agent.load_state_dict(state["agent"])
        if optimizer is not None and state.get("optimizer") is not None:
            optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"].cpu())
        done, elapsed = int(state["episode"]), float(state["elapsed"])
        history = list(state["history"])
        traces = dict(state["traces"])
        _write_metrics(run_dir, history)
    bar = tqdm(total=config.episodes, initial=min(done, config.episodes),
               desc=f"{config.agent} on {spec}", disable=not progress, leave=False,
               file=sys.stderr, mininterval=0.5)
    try:
        for episode in range(done + 1, config.episodes + 1):
            start = time.perf_counter()
            ep = run_episode(task, agent, optimizer, generator, fresh=spec.new_stimuli)
            elapsed += time.perf_counter() - start
            record = {"episode": episode, **ep.summary(), "wall_time_s": elapsed}
            if not all(map(_finite, record.values())):
                raise TrainingDiverged(
                    f"episode {episode} gave a non-finite result {record}; stopped, the last "
                    "good checkpoint is kept. Try a smaller learning rate."
                )
            history.append(record)
            _accumulate(traces, spec, task, ep)
            save_checkpoint({
                "agent": agent.state_dict(),
                "optimizer": None if optimizer is None else optimizer.state_dict(),
                "generator": generator.get_state(),
                "episode": episode,
                "elapsed": elapsed,
                "history": history,
                "traces": traces,
                "config": {**config.to_dict(), "out": str(run_dir)},
            }, run_dir / CHECKPOINT_NAME)
            with open(run_dir / METRICS_NAME, "a") as f:
                f.write(json.dumps(record) + "\n")
            bar.update(1)
            bar.set_postfix({"reward": f"{record['reward']:.3f}"}, refresh=False)
    finally:
        bar.close()
    summary = _summary(config, spec, history, traces, run_dir)
    if plot:
        summary["plots"] = [str(p) for p in _plots(spec, config, history, traces, run_dir)]
    (run_dir / SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _finite(v: Any) -> bool:
    return not isinstance(v, float) or v == v and abs(v) != float("inf")


def _write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    tmp = run_dir / (METRICS_NAME + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in history))
    os.replace(tmp, run_dir / METRICS_NAME)


def _accumulate(traces: dict[str, torch.Tensor], spec: TaskSpec, task, ep) -> None:
    """Per-task figures' data: choices around the reversal, or the RPE of every step."""
    if spec.name == "reversal":
        lo, hi = WINDOW
        offsets = torch.arange(lo, hi, device=ep.action.device)
        idx = task.reversal[None, :] - 1 + offsets[:, None]  # (W, E) 0-based trial index
        ok = (idx >= 0) & (idx < ep.action.shape[0])
        idx = idx.clamp(0, ep.action.shape[0] - 1)
        hit = (ep.action.gather(0, idx) == ep.better.gather(0, idx)) & ok
        traces["reversal_hits"] = traces.get("reversal_hits", 0) + hit.sum(1).double().cpu()
        traces["reversal_counts"] = traces.get("reversal_counts", 0) + ok.sum(1).double().cpu()
    elif spec.name == "conditioning":
        row = ep.rpe.mean(1).float().cpu()[None]
        traces["rpe"] = torch.cat([traces["rpe"], row]) if "rpe" in traces else row


def _summary(config, spec, history, traces, run_dir) -> dict[str, Any]:
    last = history[-10:] if history else []

    def mean(key):
        vals = [r[key] for r in last if key in r]
        return sum(vals) / len(vals) if vals else None

    out: dict[str, Any] = {
        "agent": config.agent, "task": str(spec), "episodes": len(history),
        "experiments": config.experiments, "seed": config.seed,
        "reward_last10": mean("reward"), "p_better_last10": mean("p_better"),
        "steps_last10": mean("steps"), "mean_abs_rpe_last10": mean("mean_abs_rpe"),
        "wall_time_s": history[-1]["wall_time_s"] if history else 0.0,
        "run_dir": str(run_dir),
    }
    if "reversal_hits" in traces:
        curve = traces["reversal_hits"] / traces["reversal_counts"].clamp(min=1)
        out["reversal_curve"] = {"offsets": list(range(*WINDOW)), "p_better": curve.tolist()}
    return out


def _plots(spec, config, history, traces, run_dir) -> list[Path]:
    from bionn.plots import reinforcement as plots

    if spec.name == "reversal" and "reversal_hits" in traces:
        curve = (traces["reversal_hits"] / traces["reversal_counts"].clamp(min=1)).tolist()
        return [plots.plot_reversal_curves(
            {f"{config.agent} ({spec.arg or '80/20'})": (list(range(*WINDOW)), curve)},
            run_dir / "reversal.png")]
    if spec.name == "conditioning" and "rpe" in traces:
        return [plots.plot_rpe_heatmap(traces["rpe"], run_dir / "rpe.png")]
    return [plots.plot_episode_curve(history, run_dir / "episodes.png",
                                     key="steps" if spec.name == "maze" else "reward")]
