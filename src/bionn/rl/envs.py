"""Tasks for the reinforcement-learning agents, batched over experiments and as gymnasium envs.

Papers:
    V. D. Costa, O. Dal Monte, D. R. Lucas, E. A. Murray & B. B. Averbeck (2016), "Amygdala and
    ventral striatum make distinct contributions to reinforcement learning", Neuron 92:505-517,
    doi:10.1016/j.neuron.2016.09.025 (two-armed bandit reversal blocks).
    W. Schultz, P. Dayan & P. R. Montague (1997), "A neural substrate of prediction and
    reward", Science 275:1593-1599, doi:10.1126/science.275.5306.1593 (classical conditioning
    on a tapped delay line).
    N. D. Daw, J. P. O'Doherty, P. Dayan, B. Seymour & R. J. Dolan (2006), "Cortical substrates
    for exploratory decisions in humans", Nature 441:876-879 (the restless bandit).
    E. O. Neftci & B. B. Averbeck (2019), "Reinforcement learning in artificial and biological
    systems", Nature Machine Intelligence 1:133-143 (the actor-critic in a small maze).

Every task exists twice:

- a **batched task** (``ReversalTask``, ``RestlessTask``, ``ConditioningTask``, ``MazeTask``)
  that runs E independent experiments at once as torch tensors: ``reset(generator)`` starts
  an episode in all of them and returns the observations, ``step(action)`` advances all of
  them and returns a :class:`Step`. This is what :mod:`bionn.rl.loop`, the fits and the
  benchmarks use, so simulating 1000 experiments costs one loop over trials;
- a **gymnasium environment** (``ReversalBanditEnv``, ...), registered as
  ``bionn/ReversalBandit-v0``, ``bionn/RestlessBandit-v0``, ``bionn/DelayConditioning-v0`` and
  ``bionn/GridMaze-v0``, which wraps the batched task with E = 1 and follows the gymnasium API
  (``reset(seed=...)``, ``step``, spaces). Each passes ``gymnasium.utils.env_checker``.

Tasks (one episode each):

1. Reversal block (Costa 2016): two new stimuli (so values start again), 80 trials; the better
   one is rewarded with probability p, the other with 1 - p (schedules 100/0, 80/20, 70/30,
   60/40); at a trial drawn uniformly from 30-50 the contingencies reverse.
2. Restless bandit (Daw 2006): K arms whose reward probabilities drift as independent Gaussian
   random walks reflected into [0.05, 0.95]; rewards are Bernoulli.
3. Classical conditioning (Schultz 1997): T time steps, a cue at t_CS, a reward r at t_US,
   paid on the step from t_US to t_US + 1 (omitted on probe trials). The observation is
   the tapped delay line x_i(t) = 1 if t - t_CS = i (i = 0..n-1), else 0 (the cue's stimulus
   representation).
4. Grid maze: a small grid with walls; the agent starts in one corner, 4 moves, reward 1 at the
   goal (the episode ends), a step limit truncates.

Deviations from the papers:

- Costa's monkeys chose between stimuli shown at random left/right locations and the
  schedules were blocked per session; here the choice is between two stimulus identities
  (position plays no role) and a task has one schedule.
- Daw's restless bandit paid Gaussian-distributed points; here rewards are Bernoulli with
  drifting probabilities (so the same agents and fits apply).
- The conditioning task's reward is paid on the step out of t_US; the cue's onset
  cannot be predicted (the steps before the cue have an all-zero representation), as in
  Schultz et al.'s Fig. 4 model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch

from bionn.errors import ConfigError

SCHEDULES: dict[str, float] = {"100/0": 1.0, "80/20": 0.8, "70/30": 0.7, "60/40": 0.6}


class Step(NamedTuple):
    """What a batched task returns from ``step``: all tensors have the experiments first."""

    obs: torch.Tensor
    reward: torch.Tensor  # (E,) float
    done: torch.Tensor  # (E,) bool: the episode ended (terminated or truncated)
    info: dict[str, torch.Tensor]


def _uniform(shape: tuple[int, ...], generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device)


def parse_schedule(text: str) -> float:
    """The better option's reward probability for a schedule ``'80/20'`` (also ``'0.8'``)."""
    if text in SCHEDULES:
        return SCHEDULES[text]
    try:
        p = float(text)
    except ValueError:
        raise ConfigError(
            f"schedule must be one of {', '.join(SCHEDULES)} or a probability in (0.5, 1], "
            f"got {text!r}"
        ) from None
    if not 0.5 < p <= 1.0:
        raise ConfigError(f"schedule probability must be in (0.5, 1], got {p}")
    return p


# -- 1. reversal blocks ------------------------------------------------------------------------
@dataclass(frozen=True)
class ReversalConfig:
    p_better: float = field(
        default=0.8, metadata={"help": "p: the better option's reward probability"}
    )
    n_trials: int = field(default=80, metadata={"help": "trials per block"})
    reversal_min: int = field(default=30, metadata={"help": "earliest reversal trial (1-based)"})
    reversal_max: int = field(default=50, metadata={"help": "latest reversal trial (1-based)"})

    def __post_init__(self) -> None:
        if not 0.5 < self.p_better <= 1.0:
            raise ConfigError(f"p_better must be in (0.5, 1], got {self.p_better}")
        if self.n_trials < 2:
            raise ConfigError(f"n_trials must be at least 2, got {self.n_trials}")
        if not 1 < self.reversal_min <= self.reversal_max <= self.n_trials:
            raise ConfigError(
                f"need 1 < reversal_min <= reversal_max <= n_trials, got {self.reversal_min}, "
                f"{self.reversal_max}, {self.n_trials}"
            )


class ReversalTask:
    """E reversal blocks at once. Observation: the block's (single) state, 0, shape (E,).

    ``info`` carries ``better`` (the option that is better on this trial, (E,)), ``trial``
    (1-based) and ``reversal`` (the first trial after the reversal, (E,)).
    """

    n_actions = 2
    n_states = 1

    def __init__(self, n: int, config: ReversalConfig | None = None, device="cpu") -> None:
        self.n = n
        self.config = config or ReversalConfig()
        self.device = torch.device(device)
        self.horizon = self.config.n_trials

    def reset(self, generator: torch.Generator) -> torch.Tensor:
        """Start a block in every experiment, with its reversal trial drawn."""
        c = self.config
        span = c.reversal_max - c.reversal_min + 1
        self.reversal = c.reversal_min + torch.randint(
            span, (self.n,), generator=generator, device=self.device
        )
        self.first_better = torch.randint(2, (self.n,), generator=generator, device=self.device)
        self.trial = 0
        self.generator = generator
        return torch.zeros(self.n, dtype=torch.long, device=self.device)

    def better(self, trial: int) -> torch.Tensor:
        """The better option on 1-based ``trial`` for every experiment."""
        flipped = (trial >= self.reversal).long()
        return (self.first_better + flipped) % 2

    def step(self, action: torch.Tensor) -> Step:
        """Pay the chosen option with its schedule's probability."""
        self.trial += 1
        better = self.better(self.trial)
        p = torch.where(action == better, self.config.p_better, 1.0 - self.config.p_better)
        reward = (_uniform((self.n,), self.generator, self.device) < p).float()
        done = torch.full((self.n,), self.trial >= self.config.n_trials, device=self.device)
        info = {
            "better": better,
            "trial": torch.full((self.n,), self.trial, device=self.device),
            "reversal": self.reversal,
        }
        return Step(torch.zeros_like(action), reward, done, info)


# -- 2. restless bandit ------------------------------------------------------------------------
@dataclass(frozen=True)
class RestlessConfig:
    n_arms: int = field(default=2, metadata={"help": "K: arms"})
    n_trials: int = field(default=200, metadata={"help": "trials per episode"})
    drift: float = field(default=0.05, metadata={"help": "sd of the per-trial random walk"})

    def __post_init__(self) -> None:
        if self.n_arms < 2:
            raise ConfigError(f"n_arms must be at least 2, got {self.n_arms}")
        if self.n_trials < 1:
            raise ConfigError(f"n_trials must be positive, got {self.n_trials}")
        if not 0.0 <= self.drift <= 0.5:
            raise ConfigError(f"drift must be in [0, 0.5], got {self.drift}")


LOW, HIGH = 0.05, 0.95


def _reflect(p: torch.Tensor) -> torch.Tensor:
    p = torch.where(p > HIGH, 2 * HIGH - p, p)
    return torch.where(p < LOW, 2 * LOW - p, p)


class RestlessTask:
    """E restless bandits; ``info['p']`` holds each arm's reward probability on the trial."""

    n_states = 1

    def __init__(self, n: int, config: RestlessConfig | None = None, device="cpu") -> None:
        self.n = n
        self.config = config or RestlessConfig()
        self.n_actions = self.config.n_arms
        self.device = torch.device(device)
        self.horizon = self.config.n_trials

    def reset(self, generator: torch.Generator) -> torch.Tensor:
        """Draw new reward probabilities for every experiment."""
        self.generator = generator
        self.p = LOW + (HIGH - LOW) * _uniform((self.n, self.n_actions), generator, self.device)
        self.trial = 0
        return torch.zeros(self.n, dtype=torch.long, device=self.device)

    def step(self, action: torch.Tensor) -> Step:
        """Pay the chosen arm, then let the reward probabilities drift."""
        self.trial += 1
        p_now = self.p
        chosen = p_now.gather(1, action[:, None])[:, 0]
        reward = (_uniform((self.n,), self.generator, self.device) < chosen).float()
        noise = torch.randn(p_now.shape, generator=self.generator, device=self.device)
        self.p = _reflect(p_now + self.config.drift * noise).clamp(LOW, HIGH)
        done = torch.full((self.n,), self.trial >= self.config.n_trials, device=self.device)
        info = {"p": p_now, "better": p_now.argmax(1),
                "trial": torch.full((self.n,), self.trial, device=self.device)}
        return Step(torch.zeros_like(action), reward, done, info)


# -- 3. classical conditioning on a tapped delay line -------------------------------------------
@dataclass(frozen=True)
class ConditioningConfig:
    n_steps: int = field(default=25, metadata={"help": "T: time steps per trial"})
    t_cs: int = field(default=5, metadata={"help": "t_CS: the step of the cue"})
    t_us: int = field(default=15, metadata={"help": "t_US: the step the reward arrives"})
    reward: float = field(default=1.0, metadata={"help": "r: reward magnitude"})
    omission_prob: float = field(
        default=0.0, metadata={"help": "probability that a trial is an omission probe"}
    )

    def __post_init__(self) -> None:
        if not 0 < self.t_cs < self.t_us < self.n_steps:
            raise ConfigError(
                f"need 0 < t_cs < t_us < n_steps, got {self.t_cs}, {self.t_us}, {self.n_steps}"
            )
        if not 0.0 <= self.omission_prob <= 1.0:
            raise ConfigError(f"omission_prob must be in [0, 1], got {self.omission_prob}")

    @property
    def n_features(self) -> int:
        """Taps of the delay line: one per step from the cue to the end of the trial."""
        return self.n_steps - self.t_cs


def delay_line(t: int, config: ConditioningConfig, device="cpu") -> torch.Tensor:
    """x(t): the tapped delay line at step ``t`` (one-hot on t - t_CS, zero before the cue)."""
    x = torch.zeros(config.n_features, device=device)
    lag = t - config.t_cs
    if 0 <= lag < config.n_features:
        x[lag] = 1.0
    return x


class ConditioningTask:
    """E conditioning trials. The observation is x(t), shape (E, n); one action (none).

    A step goes from t to t + 1 and pays ``reward`` on the step out of t_US (so x(t_US) is the
    last tap that predicts it) unless the trial is an omission probe (``info['omitted']``).
    The trial ends on reaching T - 1.
    ``reset(generator, omit=True)`` forces an omission probe in every experiment.
    """

    n_actions = 1

    def __init__(self, n: int, config: ConditioningConfig | None = None, device="cpu") -> None:
        self.n = n
        self.config = config or ConditioningConfig()
        self.device = torch.device(device)
        self.horizon = self.config.n_steps - 1
        self.n_features = self.config.n_features

    def _obs(self) -> torch.Tensor:
        return delay_line(self.t, self.config, self.device).expand(self.n, -1).clone()

    def reset(self, generator: torch.Generator, omit: bool | None = None) -> torch.Tensor:
        """Start a trial in every experiment; ``omit`` forces (or forbids) reward omission."""
        self.generator = generator
        self.t = 0
        if omit is None:
            self.omitted = _uniform((self.n,), generator, self.device) < self.config.omission_prob
        else:
            self.omitted = torch.full((self.n,), bool(omit), device=self.device)
        return self._obs()

    def step(self, action: torch.Tensor) -> Step:
        """Advance the delay line by one step."""
        c = self.config
        paid = (self.t == c.t_us) & ~self.omitted
        self.t += 1
        reward = paid.float() * c.reward
        done = torch.full((self.n,), self.t >= c.n_steps - 1, device=self.device)
        info = {"t": torch.full((self.n,), self.t, device=self.device), "omitted": self.omitted}
        return Step(self._obs(), reward, done, info)


# -- 4. grid maze --------------------------------------------------------------------------------
DEFAULT_MAZE = (
    ".....",
    ".###.",
    "...#.",
    ".#...",
    ".#.#G",
)
MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # up, right, down, left


@dataclass(frozen=True)
class MazeConfig:
    layout: tuple[str, ...] = field(
        default=DEFAULT_MAZE, metadata={"help": "rows of '.', '#' (wall) and one 'G' (goal)"}
    )
    max_steps: int = field(default=100, metadata={"help": "steps before truncation"})

    def __post_init__(self) -> None:
        widths = {len(row) for row in self.layout}
        if len(widths) != 1 or not self.layout:
            raise ConfigError("maze layout rows must be non-empty and of equal length")
        text = "".join(self.layout)
        if set(text) - set(".#G") or text.count("G") != 1 or self.layout[0][0] != ".":
            raise ConfigError("maze layout needs '.', '#', one 'G' and a free top-left start")
        if self.max_steps < 1:
            raise ConfigError(f"max_steps must be positive, got {self.max_steps}")


def _maze_tables(config: MazeConfig) -> tuple[torch.Tensor, int, int]:
    """next_state[s, a] over cells (walls never entered), the goal cell and the start cell."""
    rows, cols = len(config.layout), len(config.layout[0])
    nxt = torch.zeros(rows * cols, 4, dtype=torch.long)
    goal = 0
    for r in range(rows):
        for c in range(cols):
            s = r * cols + c
            if config.layout[r][c] == "G":
                goal = s
            for a, (dr, dc) in enumerate(MOVES):
                rr, cc = r + dr, c + dc
                free = 0 <= rr < rows and 0 <= cc < cols and config.layout[rr][cc] != "#"
                nxt[s, a] = rr * cols + cc if free else s
    return nxt, goal, 0


def maze_shortest_path(config: MazeConfig) -> int:
    """Moves from the start to the goal on the shortest path (breadth-first search)."""
    nxt, goal, start = _maze_tables(config)
    dist = {start: 0}
    frontier = [start]
    while frontier:
        s = frontier.pop(0)
        for a in range(4):
            n = int(nxt[s, a])
            if n not in dist:
                dist[n] = dist[s] + 1
                frontier.append(n)
    if goal not in dist:
        raise ConfigError("the maze's goal cannot be reached from the start")
    return dist[goal]


class MazeTask:
    """E mazes. Observation: the cell index (E,). ``info['active']``: still running before the
    step (an experiment whose episode ended stays at the goal, pays nothing and is masked)."""

    n_actions = 4

    def __init__(self, n: int, config: MazeConfig | None = None, device="cpu") -> None:
        self.n = n
        self.config = config or MazeConfig()
        self.device = torch.device(device)
        nxt, self.goal, self.start = _maze_tables(self.config)
        self.next_state = nxt.to(self.device)
        self.n_states = nxt.shape[0]
        self.horizon = self.config.max_steps

    def reset(self, generator: torch.Generator) -> torch.Tensor:
        """Put every experiment's agent at the start cell."""
        self.generator = generator
        self.steps = 0
        self.state = torch.full((self.n,), self.start, dtype=torch.long, device=self.device)
        self.active = torch.ones(self.n, dtype=torch.bool, device=self.device)
        return self.state.clone()

    def step(self, action: torch.Tensor) -> Step:
        """Move every active agent one cell; reward at the goal."""
        self.steps += 1
        active = self.active
        moved = self.next_state[self.state, action]
        self.state = torch.where(active, moved, self.state)
        reached = active & (self.state == self.goal)
        reward = reached.float()
        self.active = active & ~reached & (self.steps < self.config.max_steps)
        done = ~self.active
        info = {"active": active, "terminated": reached,
                "steps": torch.full((self.n,), self.steps, device=self.device)}
        return Step(self.state.clone(), reward, done, info)


# -- gymnasium wrappers ---------------------------------------------------------------------------
class _TorchTaskEnv(gym.Env):
    """A batched task with E = 1 behind the gymnasium API; randomness from ``self.np_random``."""

    metadata: dict[str, Any] = {"render_modes": []}

    def _generator(self) -> torch.Generator:
        g = torch.Generator()
        g.manual_seed(int(self.np_random.integers(0, 2**62)))
        return g

    def _task_reset(self, options: dict | None) -> torch.Tensor:
        return self.task.reset(self._generator())

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs = self._task_reset(options)
        return self._to_obs(obs), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        out = self.task.step(torch.tensor([int(action)]))
        info = {k: v[0].tolist() for k, v in out.info.items()}
        terminated, truncated = self._ends(out)
        return self._to_obs(out.obs), float(out.reward[0]), terminated, truncated, info

    def _ends(self, out: Step) -> tuple[bool, bool]:
        return bool(out.done[0]), False

    def _to_obs(self, obs: torch.Tensor):
        return int(obs[0])


class ReversalBanditEnv(_TorchTaskEnv):
    """``bionn/ReversalBandit-v0``: one 80-trial reversal block per episode (Costa 2016)."""

    def __init__(self, schedule: str = "80/20", n_trials: int = 80) -> None:
        self.task = ReversalTask(1, ReversalConfig(parse_schedule(schedule), n_trials))
        self.observation_space = gym.spaces.Discrete(1)
        self.action_space = gym.spaces.Discrete(2)


class RestlessBanditEnv(_TorchTaskEnv):
    """``bionn/RestlessBandit-v0``: K arms with drifting reward probabilities."""

    def __init__(self, n_arms: int = 2, n_trials: int = 200, drift: float = 0.05) -> None:
        self.task = RestlessTask(1, RestlessConfig(n_arms, n_trials, drift))
        self.observation_space = gym.spaces.Discrete(1)
        self.action_space = gym.spaces.Discrete(n_arms)


class DelayConditioningEnv(_TorchTaskEnv):
    """``bionn/DelayConditioning-v0``: one conditioning trial per episode on a tapped delay line.

    ``reset(options={'omit': True})`` makes the trial an omission probe.
    """

    def __init__(self, n_steps: int = 25, t_cs: int = 5, t_us: int = 15, reward: float = 1.0,
                 omission_prob: float = 0.0) -> None:
        config = ConditioningConfig(n_steps, t_cs, t_us, reward, omission_prob)
        self.task = ConditioningTask(1, config)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (config.n_features,), np.float32)
        self.action_space = gym.spaces.Discrete(1)

    def _task_reset(self, options: dict | None) -> torch.Tensor:
        omit = None if not options or "omit" not in options else bool(options["omit"])
        return self.task.reset(self._generator(), omit=omit)

    def _to_obs(self, obs: torch.Tensor):
        return obs[0].numpy().astype(np.float32)


class GridMazeEnv(_TorchTaskEnv):
    """``bionn/GridMaze-v0``: reach the goal of a small grid maze (terminated) within
    ``max_steps`` moves (else truncated)."""

    def __init__(self, layout: tuple[str, ...] = DEFAULT_MAZE, max_steps: int = 100) -> None:
        self.task = MazeTask(1, MazeConfig(tuple(layout), max_steps))
        self.observation_space = gym.spaces.Discrete(self.task.n_states)
        self.action_space = gym.spaces.Discrete(4)

    def _ends(self, out: Step) -> tuple[bool, bool]:
        terminated = bool(out.info["terminated"][0])
        return terminated, bool(out.done[0]) and not terminated


ENV_IDS = {
    "bionn/ReversalBandit-v0": "bionn.rl.envs:ReversalBanditEnv",
    "bionn/RestlessBandit-v0": "bionn.rl.envs:RestlessBanditEnv",
    "bionn/DelayConditioning-v0": "bionn.rl.envs:DelayConditioningEnv",
    "bionn/GridMaze-v0": "bionn.rl.envs:GridMazeEnv",
}


def register_envs() -> None:
    """Register the environments with gymnasium (idempotent); importing this module does it."""
    for env_id, entry in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry)


register_envs()
