"""Dopamine-driven agents: Rescorla-Wagner / Q learning, a fast amygdala and a slow striatum,
a cortico-striatal actor-critic with a three-factor rule, and TD(0) on a tapped delay line.

Papers:
    E. O. Neftci & B. B. Averbeck (2019), "Reinforcement learning in artificial and biological
    systems", Nature Machine Intelligence 1:133-143, doi:10.1038/s42256-019-0025-4.
    V. D. Costa, O. Dal Monte, D. R. Lucas, E. A. Murray & B. B. Averbeck (2016), "Amygdala and
    ventral striatum make distinct contributions to reinforcement learning", Neuron
    92:505-517, doi:10.1016/j.neuron.2016.09.025.
    W. Schultz, P. Dayan & P. R. Montague (1997), "A neural substrate of prediction and
    reward", Science 275:1593-1599, doi:10.1126/science.275.5306.1593.
    R. A. Rescorla & A. R. Wagner (1972), in Classical Conditioning II, 64-99.

Algorithm. The papers number few of these equations, so they are numbered here (Costa 2016's
model is written in its Experimental Procedures; Neftci & Averbeck's Box 1 and Fig. 4 give the
actor-critic and the two systems; Schultz et al.'s Fig. 4 legend gives TD). Each line that
implements one ends with ``# Eq. (n)``:

    1. Choice: p(a) = exp(beta Q(a)) / sum_b exp(beta Q(b)) (softmax, inverse temperature
       beta).                                                                      Eq. (1)
    2. Reward prediction error of the chosen option: delta = r - Q(a) (Rescorla-Wagner), or
       delta = r + gamma max_b Q(s', b) - Q(s, a) (Q learning, gamma > 0).             Eq. (2)
    3. Update with separate rates: Q(a) <- Q(a) + alpha+ delta if delta > 0, else
       Q(a) + alpha- delta.                                                        Eq. (3)
    4. Two systems: an amygdala with fast, outcome-driven (activity-dependent) values
       Q_A(a) <- Q_A(a) + alpha_A (r + sigma_A xi - Q_A(a)), xi ~ N(0, 1) the noise in the
       outcome-evoked activity that drives its Hebbian change (sigma_A = 0: none), and a
       striatum with slow, dopamine-gated values Q_S(a) <- Q_S(a) + alpha_S delta_DA,
       delta_DA = r - Q_S(a) (rates split by sign as in step 3).                   Eq. (4)
    5. Their mixture drives choice: Q(a) = w Q_A(a) + (1 - w) Q_S(a), then Eq. (1), so each
       system has its own inverse temperature, beta_A = beta w and beta_S = beta (1 - w); a
       lesion scales a system's output, Q = w (1 - l_A) Q_A + (1 - w)(1 - l_S) Q_S, and a
       lesion of 1 removes that system's term and leaves the other's temperature as it
       was (no compensation at the choice stage).                                  Eq. (5)
    6. Cortico-striatal actor-critic: cortex x = onehot(s) (pre), striatal action channels
       m = W x and p(a) = softmax(beta m); the chosen channel is active (post = onehot(a)).
       Critic V(s) = v . x.                                                        Eq. (6)
    7. Dopamine: the TD error delta = r + gamma V(s') - V(s) (V(s') = 0 at a terminal
       state).                                                                     Eq. (7)
    8. Three-factor rule: eligibility e <- lambda e + post pre^T, then
       dW = eta delta e (pre x post x dopamine); the critic learns dv = eta delta x.    Eq. (8)
    9. TD(0) on the delay line: V(t) = w . x(t), delta(t) = r(t) + gamma V(t+1) - V(t),
       dw = alpha delta(t) x(t).                                                   Eq. (9)

The agents are batched over E independent experiments (a leading dimension on every state,
value and parameter), so 1000 simulated animals cost one loop over trials.

Learning follows bionn's rule contract with a transition in place of (x, y): ``update``
returns an :class:`Update`. An agent with trainable parameters (actor-critic, TD) fills
``p.grad = -delta_p`` (the paper's change without its rate) and returns no deltas; an optimizer
(``torch.optim.SGD(lr=eta)`` reproduces the paper) steps. A tabular agent (Rescorla-Wagner,
two-timescale) returns its value change exactly as the paper writes it (rate included, since
alpha+ and alpha- differ by the sign of delta and cannot be one optimizer rate) and the loop
adds it with :meth:`Agent.apply`.

Symbols:

    ==================  ===================================================================
    paper               code
    ==================  ===================================================================
    Q(s, a)             ``RescorlaWagner.Q`` (E, S, A), initial value q0
    alpha+, alpha-      ``alpha_pos``, ``alpha_neg``
    beta                ``beta`` (inverse temperature)
    gamma               ``gamma`` (discount)
    delta (dopamine)    ``rpe``
    Q_A, alpha_A+/-     ``TwoTimescale.Q_fast``, ``alpha_fast_pos``, ``alpha_fast_neg``
    sigma_A, xi         ``noise_fast``; xi drawn from the run's generator (``bind_generator``)
    Q_S, alpha_S+/-     ``TwoTimescale.Q_slow``, ``alpha_slow_pos``, ``alpha_slow_neg``
    w                   ``w`` (weight of the fast system)
    l_A, l_S            ``lesion_fast``, ``lesion_slow`` (0 intact, 1 removed)
    beta_A, beta_S      ``beta * w``, ``beta * (1 - w)`` (each system's inverse temperature)
    W (cortex->str.)    ``ActorCritic.W`` (E, A, S); ``v`` (E, S) the critic
    e, lambda           ``ActorCritic.trace``, ``trace_decay``
    eta                 the optimizer's learning rate (``lr``)
    x(t), w (TD)        the delay line from :mod:`bionn.rl.envs`, ``TDDelayLine.w`` (E, n)
    ==================  ===================================================================

Deviations from the papers:

- Costa 2016 fit one Rescorla-Wagner learner (alpha+, alpha-, beta) per animal; the
  two-timescale agent is the mechanism Neftci & Averbeck describe in words (fast amygdala,
  slow striatum), written as two such learners mixed by w. Its amygdala error r - Q_A is its
  own outcome-driven (Hebbian: outcome x chosen-stimulus activity, with decay) signal, not
  the dopamine RPE; the RPE reported is the striatum's delta_DA.
- The amygdala's noise is described in words (fast learning, susceptible to noise); no
  equation or size for it was available. Here it is noise in the outcome-evoked activity
  that drives the activity-dependent change, so it enters scaled by the amygdala's own rate
  (alpha_A sigma_A xi): the faster the system, the noisier its values (stationary variance
  alpha (p (1 - p) + sigma_A^2) / (2 - alpha) for a constant rate). The striatum's dopamine
  signal carries no extra noise. With no value for sigma_A, the default is 0 (the only
  noise is the schedule's own).
- Lesions scale a system's contribution to choice (Eq. 5) rather than removing tissue; a
  lesion of 1 removes the system's term from the decision, so the softmax sees only the
  other system's values at that system's own inverse temperature (the two-timescale fit's
  parametrisation beta w, beta (1 - w)); nothing renormalises the remaining system.
- The actor's post-synaptic factor is the chosen action channel (onehot(a)); a new block of
  new stimuli (the reversal task) starts the actor-critic's synapses and trace from zero.
- Values start at q0 = 0.5 (Costa 2016) for the tabular agents; TD and the actor-critic start
  from zero weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from bionn.errors import ConfigError


class Transition(NamedTuple):
    """One step of E experiments: the reinforcement-learning counterpart of a batch (x, y).

    ``mask`` marks the experiments still running (a finished maze episode learns nothing).
    """

    obs: torch.Tensor
    action: torch.Tensor  # (E,) long
    reward: torch.Tensor  # (E,) float
    next_obs: torch.Tensor
    done: torch.Tensor  # (E,) bool: next_obs is terminal
    mask: torch.Tensor  # (E,) bool


class Update(NamedTuple):
    """What :meth:`Agent.update` returns: value changes to add (tabular agents; empty for an
    agent that filled ``.grad``) and the dopamine RPE of each experiment, (E,)."""

    deltas: dict[str, torch.Tensor]
    rpe: torch.Tensor


# -- pure functions: the equations ------------------------------------------------------------
def softmax_policy(values: torch.Tensor, beta: torch.Tensor | float) -> torch.Tensor:
    """p(a) = softmax(beta * values) over the last dimension."""
    beta = _col(beta, values)
    return torch.softmax(beta * values, dim=-1)  # Eq. (1)


def log_softmax_policy(values: torch.Tensor, beta: torch.Tensor | float) -> torch.Tensor:
    """log p(a) of :func:`softmax_policy` (numerically stable)."""
    beta = _col(beta, values)
    return torch.log_softmax(beta * values, dim=-1)  # Eq. (1)


def _col(x: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor | float:
    """A per-experiment (E,) parameter as a column that broadcasts against (E, ..., A)."""
    if isinstance(x, torch.Tensor) and x.dim() >= 1:
        return x.reshape(x.shape + (1,) * (like.dim() - x.dim()))
    return x


def rw_update(
    q: torch.Tensor,
    action: torch.Tensor,
    reward: torch.Tensor,
    alpha_pos: torch.Tensor | float,
    alpha_neg: torch.Tensor | float,
    target: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Rescorla-Wagner change of values ``q`` (E, A) after choosing ``action``.

    Returns ``(dq, delta)``: dq is zero except at the chosen option. ``target`` replaces
    ``reward`` as what the value is driven towards (Q learning's r + gamma max Q(s')).
    """
    onehot = (action[:, None] == torch.arange(q.shape[-1], device=q.device)).to(q.dtype)
    q_chosen = (q * onehot).sum(-1)
    delta = (reward if target is None else target) - q_chosen  # Eq. (2)
    alpha = torch.where(delta > 0, alpha_pos, alpha_neg)
    dq = (alpha * delta)[:, None] * onehot  # Eq. (3)
    return dq, delta


def mixed_values(
    q_fast: torch.Tensor,
    q_slow: torch.Tensor,
    w: torch.Tensor | float,
    lesion_fast: torch.Tensor | float = 0.0,
    lesion_slow: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """The values that drive choice in the two-system model (Eq. 5)."""
    w = _col(w, q_fast)
    lf, ls = _col(lesion_fast, q_fast), _col(lesion_slow, q_fast)
    return w * (1 - lf) * q_fast + (1 - w) * (1 - ls) * q_slow  # Eq. (5)


def td_error(
    reward: torch.Tensor,
    value: torch.Tensor,
    next_value: torch.Tensor,
    gamma: float,
    done: torch.Tensor | None = None,
) -> torch.Tensor:
    """delta = r + gamma V(s') - V(s), with V(s') = 0 where ``done``."""
    if done is not None:
        next_value = torch.where(done, torch.zeros_like(next_value), next_value)
    return reward + gamma * next_value - value  # Eq. (7)


def three_factor_update(
    trace: torch.Tensor,
    pre: torch.Tensor,
    post: torch.Tensor,
    rpe: torch.Tensor,
    trace_decay: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The three-factor change (without eta) and the new eligibility trace.

    ``trace`` (E, post, pre), ``pre`` (E, pre), ``post`` (E, post), ``rpe`` (E,). Returns
    ``(dW, trace')`` with trace' = lambda trace + post pre^T and dW = rpe trace'.
    """
    new_trace = trace_decay * trace + post[:, :, None] * pre[:, None, :]  # Eq. (8)
    return rpe[:, None, None] * new_trace, new_trace  # Eq. (8)


def sample_actions(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One action per row of ``probs`` (E, A) by inverting the cumulative distribution."""
    u = torch.rand(probs.shape[:-1] + (1,), generator=generator, device=probs.device)
    cdf = probs.cumsum(-1)
    return (cdf < u).sum(-1).clamp(max=probs.shape[-1] - 1)


# -- configs -----------------------------------------------------------------------------------
def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be in [0, 1], got {value}")


def _check_beta(value: float) -> None:
    if not value >= 0.0 or value == float("inf"):
        raise ConfigError(f"beta (inverse temperature) must be finite and >= 0, got {value}")


def _check_gamma(value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"gamma (discount) must be in [0, 1], got {value}")


@dataclass(frozen=True)
class RWConfig:
    alpha_pos: float = field(default=0.4, metadata={"help": "alpha+: rate after a positive RPE"})
    alpha_neg: float = field(default=0.4, metadata={"help": "alpha-: rate after a negative RPE"})
    beta: float = field(default=5.0, metadata={"help": "beta: softmax inverse temperature"})
    gamma: float = field(
        default=0.0, metadata={"help": "gamma: discount (0: Rescorla-Wagner; > 0: Q learning)"}
    )
    q0: float = field(default=0.5, metadata={"help": "initial value of every option"})

    def __post_init__(self) -> None:
        _check_rate("alpha_pos", self.alpha_pos)
        _check_rate("alpha_neg", self.alpha_neg)
        _check_beta(self.beta)
        _check_gamma(self.gamma)


@dataclass(frozen=True)
class TwoTimescaleConfig:
    alpha_fast_pos: float = field(
        default=0.8, metadata={"help": "alpha_A+: amygdala (fast) rate after a positive error"}
    )
    alpha_fast_neg: float = field(
        default=0.5, metadata={"help": "alpha_A-: amygdala (fast) rate after a negative error"}
    )
    alpha_slow_pos: float = field(
        default=0.2, metadata={"help": "alpha_S+: striatum (slow) rate after a positive RPE"}
    )
    alpha_slow_neg: float = field(
        default=0.2, metadata={"help": "alpha_S-: striatum (slow) rate after a negative RPE"}
    )
    beta: float = field(default=10.0, metadata={"help": "beta: softmax inverse temperature"})
    w: float = field(default=0.5, metadata={"help": "w: weight of the fast system in choice"})
    lesion_fast: float = field(
        default=0.0, metadata={"help": "l_A: lesion of the fast system (0 intact, 1 removed)"}
    )
    lesion_slow: float = field(
        default=0.0, metadata={"help": "l_S: lesion of the slow system (0 intact, 1 removed)"}
    )
    noise_fast: float = field(default=0.25, metadata={
        "help": "sigma_A: s.d. of the noise in the amygdala's outcome signal (0: none)"})
    q0: float = field(default=0.5, metadata={"help": "initial value of every option"})

    def __post_init__(self) -> None:
        if not 0.0 <= self.noise_fast < float("inf"):
            raise ConfigError(
                f"noise_fast (sigma_A) must be finite and >= 0, got {self.noise_fast}")
        for f in ("alpha_fast_pos", "alpha_fast_neg", "alpha_slow_pos", "alpha_slow_neg", "w",
                  "lesion_fast", "lesion_slow"):
            _check_rate(f, getattr(self, f))
        _check_beta(self.beta)


@dataclass(frozen=True)
class ActorCriticConfig:
    lr: float = field(default=0.1, metadata={"help": "eta: learning rate of actor and critic"})
    beta: float = field(default=3.0, metadata={"help": "beta: softmax inverse temperature"})
    gamma: float = field(default=0.95, metadata={"help": "gamma: discount"})
    trace_decay: float = field(
        default=0.0, metadata={"help": "lambda: eligibility-trace decay per step (0: no trace)"}
    )

    def __post_init__(self) -> None:
        if not self.lr > 0.0:
            raise ConfigError(f"lr (eta) must be > 0, got {self.lr}")
        _check_beta(self.beta)
        _check_gamma(self.gamma)
        _check_rate("trace_decay", self.trace_decay)


@dataclass(frozen=True)
class TDConfig:
    lr: float = field(default=0.2, metadata={"help": "alpha: TD learning rate"})
    gamma: float = field(default=0.98, metadata={"help": "gamma: discount"})

    def __post_init__(self) -> None:
        if not 0.0 < self.lr <= 1.0:
            raise ConfigError(f"lr (alpha) must be in (0, 1], got {self.lr}")
        _check_gamma(self.gamma)


# -- agents ------------------------------------------------------------------------------------
class Agent(nn.Module):
    """E experiments of one agent. Subclasses set ``name``, ``config_class`` and implement
    ``policy`` and ``update``; values live in buffers, weights in parameters.

    Hooks (each has a default):

    - ``begin_episode(fresh)``: called at every episode start; ``fresh`` says the task shows
      new stimuli (a reversal block), so values learnt about the old ones no longer apply.
    - ``make_optimizer()``: the optimizer that steps the parameters whose ``.grad`` ``update``
      fills (SGD at the config's ``lr``); None for a tabular agent.
    - ``bind_generator(generator)``: the loop hands over the run's generator (the one the
      checkpoint holds) before every episode; an agent with noise of its own draws it from
      ``self.generator`` (default: keep it; None means torch's global generator).
    """

    generator: torch.Generator | None = None

    name: ClassVar[str] = ""
    config_class: ClassVar[type] = object
    tasks: ClassVar[tuple[str, ...]] = ()

    def __init__(self, n: int, n_states: int, n_actions: int, config: Any) -> None:
        super().__init__()
        if n < 1:
            raise ConfigError(f"the number of experiments must be positive, got {n}")
        self.n, self.n_states, self.n_actions, self.config = n, n_states, n_actions, config

    def _register_parameters(self, keys: Sequence[str], params: dict[str, torch.Tensor]) -> None:
        """One (E,) buffer per name in ``keys``: the given per-experiment tensor, or the
        config's value for every experiment; a name not in ``keys`` is a ConfigError."""
        for key in keys:
            value = params.pop(key, None)
            if value is None:
                value = torch.full((self.n,), float(getattr(self.config, key)))
            self.register_buffer(key, value.detach().float().reshape(self.n).clone())
        if params:
            raise ConfigError(f"unknown per-experiment parameters {sorted(params)}")

    def begin_episode(self, fresh: bool) -> None:  # noqa: B027 - a hook with a default
        """Nothing by default."""

    def bind_generator(self, generator: torch.Generator | None) -> None:
        """Keep the run's generator for the agent's own noise."""
        self.generator = generator

    def make_optimizer(self) -> torch.optim.Optimizer | None:
        """Plain SGD at the agent's learning rate over its trainable parameters, or None."""
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.SGD(params, lr=self.config.lr) if params else None

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        """Action probabilities (E, A) in observation ``obs``."""
        raise NotImplementedError

    def update(self, t: Transition) -> Update:
        """Learn from ``t``: fill ``.grad`` and/or return tabular deltas, and the RPE."""
        raise NotImplementedError

    @torch.no_grad()
    def apply(self, deltas: dict[str, torch.Tensor]) -> None:
        """Add the tabular changes ``update`` returned to the named buffers."""
        for name, d in deltas.items():
            getattr(self, name).add_(d)

    def act(self, obs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Actions sampled from the policy for each observation."""
        with torch.no_grad():
            return sample_actions(self.policy(obs), generator)


class RescorlaWagner(Agent):
    """Rescorla-Wagner (gamma = 0) or Q learning with alpha+, alpha- and a softmax (beta).

    ``alpha_pos``, ``alpha_neg`` and ``beta`` are buffers of shape (E,), so every experiment
    may have its own (parameter recovery sets them from the fitted distribution).
    """

    name = "rw"
    config_class = RWConfig
    tasks = ("reversal", "restless")

    def __init__(self, n: int, n_states: int, n_actions: int, config: RWConfig | None = None,
                 **params: torch.Tensor) -> None:
        config = config or RWConfig()
        super().__init__(n, n_states, n_actions, config)
        self.register_buffer("Q", torch.full((n, n_states, n_actions), config.q0))
        self._register_parameters(("alpha_pos", "alpha_neg", "beta"), params)

    def begin_episode(self, fresh: bool) -> None:
        if fresh:
            self.Q.fill_(self.config.q0)

    def _values(self, obs: torch.Tensor) -> torch.Tensor:
        return self.Q[torch.arange(self.n, device=obs.device), obs]

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        return softmax_policy(self._values(obs), self.beta)  # Eq. (1)

    def update(self, t: Transition) -> Update:
        q = self._values(t.obs)
        target = None
        if self.config.gamma > 0:
            nxt = self._values(t.next_obs).max(-1).values
            target = t.reward + self.config.gamma * torch.where(t.done, 0.0, nxt)  # Eq. (2)
        dq, rpe = rw_update(q, t.action, t.reward, self.alpha_pos, self.alpha_neg, target)
        dq = dq * t.mask[:, None]
        full = torch.zeros_like(self.Q)
        full[torch.arange(self.n, device=dq.device), t.obs] = dq
        return Update({"Q": full}, rpe * t.mask)


class TwoTimescale(Agent):
    """A fast amygdala and a slow striatum, mixed by w (Eqs. 4-5). Per-experiment parameters
    as in :class:`RescorlaWagner` (any config field but q0 may be given as an (E,) tensor).
    With ``noise_fast`` > 0 the amygdala's outcome signal is noisy (Eq. 4), drawn from the
    generator :meth:`Agent.bind_generator` handed over."""

    name = "two-timescale"
    config_class = TwoTimescaleConfig
    tasks = ("reversal", "restless")
    PARAMS = ("alpha_fast_pos", "alpha_fast_neg", "alpha_slow_pos", "alpha_slow_neg", "beta",
              "w", "lesion_fast", "lesion_slow", "noise_fast")

    def __init__(self, n: int, n_states: int, n_actions: int,
                 config: TwoTimescaleConfig | None = None, **params: torch.Tensor) -> None:
        config = config or TwoTimescaleConfig()
        super().__init__(n, n_states, n_actions, config)
        self.register_buffer("Q_fast", torch.full((n, n_states, n_actions), config.q0))
        self.register_buffer("Q_slow", torch.full((n, n_states, n_actions), config.q0))
        self._register_parameters(self.PARAMS, params)

    def begin_episode(self, fresh: bool) -> None:
        if fresh:
            self.Q_fast.fill_(self.config.q0)
            self.Q_slow.fill_(self.config.q0)

    def _rows(self, table: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        return table[torch.arange(self.n, device=obs.device), obs]

    def values(self, obs: torch.Tensor) -> torch.Tensor:
        """The action values: fast and slow values mixed by w, with any lesion applied."""
        return mixed_values(self._rows(self.Q_fast, obs), self._rows(self.Q_slow, obs), self.w,
                            self.lesion_fast, self.lesion_slow)  # Eq. (5)

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        return softmax_policy(self.values(obs), self.beta)  # Eq. (1)

    def outcome_noise(self, like: torch.Tensor) -> torch.Tensor | None:
        """sigma_A xi for each experiment, xi ~ N(0, 1) from ``self.generator``; None (and
        nothing drawn) when no experiment has noise."""
        if not bool((self.noise_fast > 0).any()):
            return None
        xi = torch.randn(like.shape, generator=self.generator, device=like.device,
                         dtype=like.dtype)
        return self.noise_fast * xi  # Eq. (4)

    def update(self, t: Transition) -> Update:
        idx = torch.arange(self.n, device=t.obs.device)
        noise = self.outcome_noise(t.reward)
        target = None if noise is None else t.reward + noise  # Eq. (4)
        dq_fast, _ = rw_update(self._rows(self.Q_fast, t.obs), t.action, t.reward,
                               self.alpha_fast_pos, self.alpha_fast_neg, target)  # Eq. (4)
        dq_slow, rpe = rw_update(self._rows(self.Q_slow, t.obs), t.action, t.reward,
                                 self.alpha_slow_pos, self.alpha_slow_neg)  # Eq. (4)
        fast, slow = torch.zeros_like(self.Q_fast), torch.zeros_like(self.Q_slow)
        fast[idx, t.obs] = dq_fast * t.mask[:, None]
        slow[idx, t.obs] = dq_slow * t.mask[:, None]
        return Update({"Q_fast": fast, "Q_slow": slow}, rpe * t.mask)


class ActorCritic(Agent):
    """Cortico-striatal actor-critic (Eqs. 6-8): parameters ``W`` (E, A, S) and ``v`` (E, S)
    whose ``.grad`` ``update`` fills; the eligibility trace is a buffer."""

    name = "actor-critic"
    config_class = ActorCriticConfig
    tasks = ("maze", "reversal", "restless")

    def __init__(self, n: int, n_states: int, n_actions: int,
                 config: ActorCriticConfig | None = None) -> None:
        super().__init__(n, n_states, n_actions, config or ActorCriticConfig())
        self.W = nn.Parameter(torch.zeros(n, n_actions, n_states))
        self.v = nn.Parameter(torch.zeros(n, n_states))
        self.register_buffer("trace", torch.zeros(n, n_actions, n_states))

    def begin_episode(self, fresh: bool) -> None:
        self.trace.zero_()
        if fresh:  # new stimuli: new cortical inputs, whose synapses start from zero
            with torch.no_grad():
                self.W.zero_()
                self.v.zero_()

    def cortex(self, obs: torch.Tensor) -> torch.Tensor:
        """The cortical representation of each observation: a one-hot code of the state."""
        return nn.functional.one_hot(obs, self.n_states).float()  # Eq. (6)

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        m = torch.einsum("eas,es->ea", self.W.detach(), self.cortex(obs))  # Eq. (6)
        return softmax_policy(m, self.config.beta)  # Eq. (1)

    def update(self, t: Transition) -> Update:
        c = self.config
        pre, nxt = self.cortex(t.obs), self.cortex(t.next_obs)
        v = self.v.detach()
        rpe = td_error(t.reward, (v * pre).sum(-1), (v * nxt).sum(-1), c.gamma, t.done)  # Eq. (7)
        rpe = rpe * t.mask
        post = nn.functional.one_hot(t.action, self.n_actions).float()  # Eq. (6)
        post = post * t.mask[:, None]
        dW, trace = three_factor_update(self.trace, pre, post, rpe, c.trace_decay)  # Eq. (8)
        self.trace.copy_(trace)
        self.W.grad = -dW
        self.v.grad = -(rpe[:, None] * pre)  # Eq. (8)
        return Update({}, rpe)


class TDDelayLine(Agent):
    """TD(0) on the tapped delay line (Eq. 9); parameter ``w`` (E, n), ``.grad`` filled."""

    name = "td"
    config_class = TDConfig
    tasks = ("conditioning",)

    def __init__(self, n: int, n_features: int, n_actions: int = 1,
                 config: TDConfig | None = None) -> None:
        super().__init__(n, n_features, n_actions, config or TDConfig())
        self.w = nn.Parameter(torch.zeros(n, n_features))

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """V = w . x for each experiment."""
        return (self.w.detach() * x).sum(-1)  # Eq. (9)

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.ones(obs.shape[0], self.n_actions, device=obs.device) / self.n_actions

    def update(self, t: Transition) -> Update:
        rpe = td_error(t.reward, self.value(t.obs), self.value(t.next_obs), self.config.gamma,
                       t.done) * t.mask  # Eq. (9)
        self.w.grad = -(rpe[:, None] * t.obs)  # Eq. (9)
        return Update({}, rpe)


AGENTS: dict[str, type[Agent]] = {
    cls.name: cls for cls in (RescorlaWagner, TwoTimescale, ActorCritic, TDDelayLine)
}


def make_agent_config(name: str, options: dict[str, Any] | None = None) -> Any:
    """The config of agent ``name`` with ``options`` (field name -> value), validated."""
    if name not in AGENTS:
        raise ConfigError(f"unknown agent {name!r}; choose one of {', '.join(AGENTS)}")
    cls = AGENTS[name].config_class
    known = {f.name: f for f in fields(cls)}
    options = dict(options or {})
    unknown = sorted(set(options) - set(known))
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise ConfigError(f"{flags} does not apply to agent {name}")
    return cls(**options)
