"""Reinforcement learning in artificial and biological systems (Neftci & Averbeck 2019).

- :mod:`bionn.rl.envs`: tasks batched over experiments, and the same tasks as gymnasium
  environments registered under ``bionn/`` (reversal blocks, restless bandit, conditioning on
  a tapped delay line, a grid maze);
- :mod:`bionn.rl.agents`: Rescorla-Wagner / Q learning, the fast-amygdala / slow-striatum
  model, a cortico-striatal actor-critic with a three-factor rule, TD(0) dopamine;
- :mod:`bionn.rl.loop`: the loop (the rule contract with a transition in place of (x, y));
- :mod:`bionn.rl.fit`: maximum-likelihood fits to choice data, and simulated choices;
- :mod:`bionn.rl.run`: what ``bionn rl`` does (run folder, checkpoint, resume).
"""

from bionn.rl.agents import (
    AGENTS,
    ActorCritic,
    Agent,
    RescorlaWagner,
    TDDelayLine,
    Transition,
    TwoTimescale,
    Update,
)
from bionn.rl.envs import ENV_IDS
from bionn.rl.fit import ChoiceData, fit, read_choices_csv, simulate_choices
from bionn.rl.loop import TaskSpec, make_agent, run_episode

__all__ = [
    "AGENTS",
    "ENV_IDS",
    "ActorCritic",
    "Agent",
    "ChoiceData",
    "RescorlaWagner",
    "TDDelayLine",
    "TaskSpec",
    "Transition",
    "TwoTimescale",
    "Update",
    "fit",
    "make_agent",
    "read_choices_csv",
    "run_episode",
    "simulate_choices",
]
