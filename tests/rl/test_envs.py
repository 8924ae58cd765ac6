"""The tasks: gymnasium's own checker, the schedules, the delay line, the maze."""

import gymnasium as gym
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from bionn.errors import ConfigError
from bionn.rl import envs


@pytest.mark.parametrize("env_id", sorted(envs.ENV_IDS))
def test_env_passes_gymnasium_checker(env_id):
    # oracle: gymnasium's own environment checker (spaces, seeding determinism, API)
    env = gym.make(env_id)
    assert env_id.startswith("bionn/")
    check_env(env.unwrapped, skip_render_check=True)


def test_reversal_bandit_env_seeding_reproduces_an_episode():
    def episode(seed):
        env = gym.make("bionn/ReversalBandit-v0", schedule="70/30")
        env.reset(seed=seed)
        out = []
        for t in range(80):
            _, r, term, trunc, info = env.step(t % 2)
            out.append((r, info["better"]))
        assert term and not trunc
        return out

    assert episode(3) == episode(3)
    assert episode(3) != episode(4)


def test_reversal_blocks_follow_the_schedule():
    # oracle: the schedule's definition; 4000 blocks, tolerance 5 standard errors
    n = 4000
    task = envs.ReversalTask(n, envs.ReversalConfig(p_better=0.7))
    g = torch.Generator().manual_seed(0)
    task.reset(g)
    assert int(task.reversal.min()) >= 30 and int(task.reversal.max()) <= 50
    assert set(task.reversal.tolist()) == set(range(30, 51))
    first = task.better(1)
    assert torch.equal(task.better(29), first)
    assert torch.equal(task.better(51), 1 - first)
    got_better = []
    for t in range(1, 81):
        better = task.better(t)
        step = task.step(better)  # always choose the better option
        got_better.append(step.reward.mean().item())
        assert torch.equal(step.info["better"], better)
    mean = sum(got_better) / len(got_better)
    se = (0.7 * 0.3 / (n * 80)) ** 0.5
    assert abs(mean - 0.7) < 5 * se
    assert bool(step.done.all())


def test_deterministic_schedule_pays_only_the_better_option():
    task = envs.ReversalTask(500, envs.ReversalConfig(p_better=1.0))
    task.reset(torch.Generator().manual_seed(1))
    for t in range(1, 81):
        worse = 1 - task.better(t)
        assert float(task.step(worse).reward.sum()) == 0.0


def test_schedule_names():
    assert envs.parse_schedule("60/40") == 0.6
    assert envs.parse_schedule("100/0") == 1.0
    with pytest.raises(ConfigError, match="schedule"):
        envs.parse_schedule("40/60")
    with pytest.raises(ConfigError, match="schedule"):
        envs.parse_schedule("often")


def test_restless_probabilities_stay_in_bounds_and_drift():
    task = envs.RestlessTask(200, envs.RestlessConfig(n_arms=3, drift=0.1))
    task.reset(torch.Generator().manual_seed(0))
    p0 = task.p.clone()
    for _ in range(100):
        step = task.step(torch.zeros(200, dtype=torch.long))
        assert float(step.info["p"].min()) >= envs.LOW and float(step.info["p"].max()) <= envs.HIGH
    assert float((task.p - p0).abs().mean()) > 0.1


def test_delay_line_is_one_hot_after_the_cue():
    c = envs.ConditioningConfig(n_steps=10, t_cs=2, t_us=6)
    assert float(envs.delay_line(1, c).sum()) == 0.0
    for t in range(2, 10):
        x = envs.delay_line(t, c)
        assert float(x.sum()) == 1.0 and int(x.argmax()) == t - 2


def test_conditioning_pays_on_the_step_out_of_t_us_unless_omitted():
    c = envs.ConditioningConfig(n_steps=10, t_cs=2, t_us=6, reward=2.0)
    task = envs.ConditioningTask(3, c)
    task.reset(torch.Generator().manual_seed(0))
    rewards = [task.step(torch.zeros(3, dtype=torch.long)).reward for _ in range(9)]
    paid = [k for k, r in enumerate(rewards) if float(r[0]) != 0.0]
    assert paid == [6] and float(rewards[6][0]) == 2.0
    task.reset(torch.Generator().manual_seed(0), omit=True)
    assert all(float(task.step(torch.zeros(3, dtype=torch.long)).reward.sum()) == 0.0
               for _ in range(9))


def test_maze_shortest_path_and_termination():
    config = envs.MazeConfig()
    best = envs.maze_shortest_path(config)
    assert best == 8  # hand-counted on the default layout
    env = envs.GridMazeEnv()
    env.reset(seed=0)
    # the shortest route on the default layout: right x4, down x4
    for k, a in enumerate([1, 1, 1, 1, 2, 2, 2, 2]):
        _, r, term, trunc, _ = env.step(a)
        assert term == (k == 7) and not trunc
    assert r == 1.0


def test_maze_truncates_at_the_step_limit():
    env = envs.GridMazeEnv(max_steps=5)
    env.reset(seed=0)
    for _ in range(5):
        _, r, term, trunc, _ = env.step(0)  # up into the wall: never reaches the goal
    assert r == 0.0 and not term and trunc


def test_bad_configs_raise_config_errors():
    with pytest.raises(ConfigError):
        envs.ConditioningConfig(t_cs=10, t_us=5)
    with pytest.raises(ConfigError):
        envs.MazeConfig(layout=("..", "#."))
    with pytest.raises(ConfigError):
        envs.ReversalConfig(reversal_min=60)
