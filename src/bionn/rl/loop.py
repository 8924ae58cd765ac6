"""The reinforcement-learning loop: the Trainer's contract with a transition in place of (x, y).

Per step, for E experiments at once::

    probs  = agent.policy(obs)                 # (E, A)
    action = sample(probs)                     # from the run's generator
    step   = task.step(action)
    optimizer.zero_grad()                      # if the agent has parameters
    upd    = agent.update(Transition(...))     # fills .grad and/or returns tabular deltas
    agent.apply(upd.deltas); optimizer.step()

The loop never asks which agent runs: an agent without parameters has no optimizer and its
``update`` returns deltas; one with parameters fills ``.grad`` and returns none. Everything
random (tasks, choices and an agent's own noise, handed over by ``agent.bind_generator``)
draws from one ``torch.Generator``, which a checkpoint holds, so a resumed run is
bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from bionn.errors import ConfigError
from bionn.rl import envs
from bionn.rl.agents import AGENTS, Agent, Transition, make_agent_config

TASKS = ("reversal", "restless", "conditioning", "maze")


@dataclass(frozen=True)
class TaskSpec:
    """A task name as the command line gives it: ``reversal`` or ``reversal:70/30``,
    ``restless``, ``conditioning`` (``conditioning:0.1`` adds omission probes with that
    probability), ``maze``."""

    name: str
    arg: str | None = None

    @classmethod
    def parse(cls, text: str) -> TaskSpec:
        """The task named by ``text`` (``reversal:80/20``, ``maze``, ...), or a ConfigError."""
        name, _, arg = str(text).partition(":")
        if name not in TASKS:
            raise ConfigError(f"unknown task {text!r}; choose one of {', '.join(TASKS)} "
                              "(reversal:100/0, reversal:80/20, reversal:70/30, reversal:60/40)")
        if arg and name not in ("reversal", "conditioning"):
            raise ConfigError(f"task {name} takes no ':' argument, got {text!r}")
        spec = cls(name, arg or None)
        spec.build(1)  # validate the argument now
        return spec

    def build(self, n: int, device: str | torch.device = "cpu"):
        """The batched task with ``n`` experiments."""
        if self.name == "reversal":
            p = envs.parse_schedule(self.arg or "80/20")
            return envs.ReversalTask(n, envs.ReversalConfig(p_better=p), device)
        if self.name == "restless":
            return envs.RestlessTask(n, envs.RestlessConfig(), device)
        if self.name == "conditioning":
            try:
                prob = float(self.arg) if self.arg else 0.0
            except ValueError:
                raise ConfigError(
                    f"conditioning:P needs an omission probability, got {self.arg!r}"
                ) from None
            return envs.ConditioningTask(n, envs.ConditioningConfig(omission_prob=prob), device)
        return envs.MazeTask(n, envs.MazeConfig(), device)

    @property
    def new_stimuli(self) -> bool:
        """Every episode shows new stimuli (reversal blocks), so tabular values restart."""
        return self.name == "reversal"

    def __str__(self) -> str:
        return self.name if self.arg is None else f"{self.name}:{self.arg}"


def make_agent(name: str, task, options: dict[str, Any] | None = None, **params) -> Agent:
    """Agent ``name`` sized for the batched ``task`` (refuses a task it does not solve)."""
    config = make_agent_config(name, options)
    cls = AGENTS[name]
    kind = type(task).__name__.removesuffix("Task").lower()
    if kind not in cls.tasks:
        raise ConfigError(
            f"agent {name} does not run task {kind}; it runs {', '.join(cls.tasks)}"
        )
    n_states = task.n_features if kind == "conditioning" else task.n_states
    agent = cls(task.n, n_states, task.n_actions, config, **params)
    return agent.to(task.device)


@dataclass
class Episode:
    """What one episode recorded, all (steps, E): rewards, actions, RPEs, and when the task
    says so the better option (bandits) and whether the step was still running (maze)."""

    reward: torch.Tensor
    action: torch.Tensor
    rpe: torch.Tensor
    better: torch.Tensor | None
    active: torch.Tensor
    extra: dict[str, torch.Tensor]

    def summary(self) -> dict[str, float]:
        """Means over experiments: reward per episode, P(better choice), mean |RPE|, steps."""
        active = self.active.float()
        out = {
            "reward": float(self.reward.sum(0).mean()),
            "mean_abs_rpe": float((self.rpe.abs() * active).sum() / active.sum().clamp(min=1)),
            "steps": float(active.sum(0).mean()),
        }
        if self.better is not None:
            out["p_better"] = float((self.action == self.better).float().mean())
        return out


def run_episode(
    task,
    agent: Agent,
    optimizer: torch.optim.Optimizer | None,
    generator: torch.Generator,
    fresh: bool,
    learn: bool = True,
    reset_kwargs: dict[str, Any] | None = None,
) -> Episode:
    """One episode of every experiment of ``task``; the agent learns after every step."""
    obs = task.reset(generator, **(reset_kwargs or {}))
    agent.bind_generator(generator)
    agent.begin_episode(fresh)
    rewards, actions, rpes, betters, actives = [], [], [], [], []
    extra: dict[str, list[torch.Tensor]] = {}
    for _ in range(task.horizon):
        action = agent.act(obs, generator)
        step = task.step(action)
        mask = step.info.get("active", torch.ones_like(step.done))
        done = step.info.get("terminated", step.done)
        t = Transition(obs, action, step.reward, step.obs, done, mask)
        if learn:
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
            upd = agent.update(t)
            agent.apply(upd.deltas)
            if optimizer is not None:
                optimizer.step()
        else:
            with torch.no_grad():
                upd = agent.update(t)
            for p in agent.parameters():
                p.grad = None
        rewards.append(step.reward)
        actions.append(action)
        rpes.append(upd.rpe.detach())
        actives.append(mask)
        if "better" in step.info:
            betters.append(step.info["better"])
        for key in ("p", "omitted"):
            if key in step.info:
                extra.setdefault(key, []).append(step.info[key])
        obs = step.obs
        if bool(step.done.all()):
            break
    return Episode(
        torch.stack(rewards), torch.stack(actions), torch.stack(rpes),
        torch.stack(betters) if betters else None, torch.stack(actives),
        {k: torch.stack(v) for k, v in extra.items()},
    )
