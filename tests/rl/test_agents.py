"""The agents: closed forms (TD on the delay line, Rescorla-Wagner moments and fixed points),
the three-factor rule against a hand-written update, the softmax, and the rule contract."""

import math

import pytest
import torch

from bionn.errors import ConfigError
from bionn.rl import envs
from bionn.rl.agents import (
    ActorCritic,
    ActorCriticConfig,
    RescorlaWagner,
    RWConfig,
    TDConfig,
    TDDelayLine,
    Transition,
    TwoTimescale,
    TwoTimescaleConfig,
    sample_actions,
    softmax_policy,
    three_factor_update,
)
from bionn.rl.loop import TaskSpec, make_agent, run_episode


def _train_td(config, gamma, trials, lr=0.5):
    task = envs.ConditioningTask(1, config)
    agent = TDDelayLine(1, config.n_features, config=TDConfig(lr=lr, gamma=gamma))
    opt = agent.make_optimizer()
    g = torch.Generator().manual_seed(0)
    for _ in range(trials):
        run_episode(task, agent, opt, g, fresh=False)
    return task, agent, opt, g


def test_td_rpe_after_learning_matches_the_closed_form():
    # oracle: the TD fixed point. After learning, the RPE is 0 at the reward,
    # gamma^(t_US - t_CS + 1) r on the step into the cue, and -r at an omitted reward.
    config = envs.ConditioningConfig(n_steps=20, t_cs=4, t_us=12, reward=1.5)
    gamma = 0.9
    # alpha = 1 backs each value up exactly: the fixed point is reached in t_US - t_CS + 1
    # trials; 30 leave no remainder
    task, agent, opt, g = _train_td(config, gamma, trials=30, lr=1.0)
    ep = run_episode(task, agent, opt, g, fresh=False, learn=False)
    rpe = ep.rpe[:, 0]  # rpe[k]: the step from t = k to t = k + 1
    cue = gamma ** (config.t_us - config.t_cs + 1) * config.reward
    assert rpe[config.t_cs - 1].item() == pytest.approx(cue, abs=1e-5)
    assert rpe[config.t_us].item() == pytest.approx(0.0, abs=1e-5)
    others = [k for k in range(len(rpe)) if k != config.t_cs - 1]
    assert rpe[others].abs().max().item() < 1e-5
    probe = run_episode(task, agent, opt, g, fresh=False, learn=False,
                        reset_kwargs={"omit": True})
    assert probe.rpe[config.t_us, 0].item() == pytest.approx(-config.reward, abs=1e-5)


def test_td_rpe_moves_from_the_reward_to_the_cue():
    # the Schultz et al. (1997) result: early trials respond at the reward, late at the cue
    config = envs.ConditioningConfig()
    task = envs.ConditioningTask(1, config)
    agent = TDDelayLine(1, config.n_features, config=TDConfig(lr=0.5, gamma=0.98))
    opt = agent.make_optimizer()
    g = torch.Generator().manual_seed(0)
    first = run_episode(task, agent, opt, g, fresh=False).rpe[:, 0]
    for _ in range(100):
        last = run_episode(task, agent, opt, g, fresh=False).rpe[:, 0]
    assert first[config.t_us].item() == pytest.approx(config.reward)
    assert first[config.t_cs - 1].item() == 0.0
    assert abs(last[config.t_us].item()) < 0.01
    assert last[config.t_cs - 1].item() > 0.7


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_td_rpes_telescope_with_gamma_one_for_any_weights(seed):
    # oracle: sum_t delta_t = sum_t r_t + V(x_T) - V(x_0) when gamma = 1, any weights and
    # any features, computed by hand from the weights
    g = torch.Generator().manual_seed(seed)
    e, n, steps = 4, 6, 9
    agent = TDDelayLine(e, n, config=TDConfig(lr=0.1, gamma=1.0))
    with torch.no_grad():
        agent.w.copy_(torch.randn(e, n, generator=g))
    xs = torch.randn(steps + 1, e, n, generator=g)
    rs = torch.randn(steps, e, generator=g)
    total = torch.zeros(e)
    for k in range(steps):
        t = Transition(xs[k], torch.zeros(e, dtype=torch.long), rs[k], xs[k + 1],
                       torch.zeros(e, dtype=torch.bool), torch.ones(e, dtype=torch.bool))
        total += agent.update(t).rpe
    w = agent.w.detach()
    expected = rs.sum(0) + (w * xs[-1]).sum(-1) - (w * xs[0]).sum(-1)
    torch.testing.assert_close(total, expected, rtol=1e-5, atol=1e-5)


def _bernoulli_trials(agent, p, e, trials, g):
    """``trials`` rewards of Bernoulli(p) for action 0 of state 0 in each of ``e`` experiments."""
    obs = torch.zeros(e, dtype=torch.long)
    a = torch.zeros(e, dtype=torch.long)
    for _ in range(trials):
        r = (torch.rand(e, generator=g) < p).float()
        t = Transition(obs, a, r, obs, torch.zeros(e, dtype=torch.bool),
                       torch.ones(e, dtype=torch.bool))
        agent.apply(agent.update(t).deltas)


def _rw_run(alpha_pos, alpha_neg, p, e=20000, trials=400, seed=0):
    agent = RescorlaWagner(e, 1, 2, RWConfig(alpha_pos=alpha_pos, alpha_neg=alpha_neg))
    _bernoulli_trials(agent, p, e, trials, torch.Generator().manual_seed(seed))
    return agent.Q[:, 0, 0]


def test_rescorla_wagner_mean_and_variance_match_the_closed_form():
    # oracle: with constant alpha and Bernoulli(p) rewards, E[Q] -> p and
    # Var[Q] -> alpha p (1 - p) / (2 - alpha). 20000 independent learners, 400 trials
    # ((1 - alpha)^400 < 1e-18 of the start remains); tolerances: 5 standard errors for the
    # mean, 5% for the variance (its relative standard error here is about 1%)
    alpha, p = 0.1, 0.7
    q = _rw_run(alpha, alpha, p)
    var = alpha * p * (1 - p) / (2 - alpha)
    assert abs(q.mean().item() - p) < 5 * math.sqrt(var / q.numel())
    assert q.var().item() == pytest.approx(var, rel=0.05)


@pytest.mark.parametrize(("alpha_pos", "alpha_neg", "p"), [(0.2, 0.05, 0.3), (0.05, 0.3, 0.8)])
def test_asymmetric_rates_converge_to_the_biased_fixed_point(alpha_pos, alpha_neg, p):
    # oracle: E[dQ] = alpha+ p (1 - Q) - alpha- (1 - p) Q = 0 at
    # Q* = alpha+ p / (alpha+ p + alpha- (1 - p)); tolerance 0.005 (about 5 standard errors)
    q = _rw_run(alpha_pos, alpha_neg, p, trials=600)
    fixed = alpha_pos * p / (alpha_pos * p + alpha_neg * (1 - p))
    assert q.mean().item() == pytest.approx(fixed, abs=5e-3)
    assert abs(fixed - p) > 0.1  # the asymmetry really biases the value away from p


def test_rescorla_wagner_update_by_hand():
    # oracle: Eqs. (2-3) written out for two experiments
    agent = RescorlaWagner(2, 1, 2, RWConfig(alpha_pos=0.3, alpha_neg=0.1, q0=0.5))
    t = Transition(torch.zeros(2, dtype=torch.long), torch.tensor([0, 1]),
                   torch.tensor([1.0, 0.0]), torch.zeros(2, dtype=torch.long),
                   torch.zeros(2, dtype=torch.bool), torch.ones(2, dtype=torch.bool))
    upd = agent.update(t)
    torch.testing.assert_close(upd.rpe, torch.tensor([0.5, -0.5]))
    expected = torch.tensor([[[0.3 * 0.5, 0.0]], [[0.0, 0.1 * -0.5]]])
    torch.testing.assert_close(upd.deltas["Q"], expected)
    assert torch.equal(agent.Q, torch.full((2, 1, 2), 0.5))  # update returns, never writes
    agent.apply(upd.deltas)
    torch.testing.assert_close(agent.Q, 0.5 + expected)


def test_q_learning_bootstraps_on_the_next_state():
    agent = RescorlaWagner(1, 2, 2, RWConfig(alpha_pos=0.5, alpha_neg=0.5, gamma=0.9, q0=0.0))
    agent.Q[0, 1] = torch.tensor([0.2, 1.0])
    t = Transition(torch.tensor([0]), torch.tensor([1]), torch.tensor([0.5]), torch.tensor([1]),
                   torch.tensor([False]), torch.tensor([True]))
    upd = agent.update(t)
    assert upd.rpe.item() == pytest.approx(0.5 + 0.9 * 1.0)
    assert upd.deltas["Q"][0, 0, 1].item() == pytest.approx(0.5 * 1.4)


def test_softmax_with_beta_zero_is_uniform():
    # oracle: exp(0) / sum exp(0) = 1 / A for any values; and choices drawn from it are
    # uniform (20000 draws, 5 standard errors)
    values = torch.randn(5, 3) * 10
    torch.testing.assert_close(softmax_policy(values, 0.0), torch.full((5, 3), 1 / 3))
    agent = RescorlaWagner(20000, 1, 2, RWConfig(beta=0.0))
    agent.Q[:, 0, 0] = 1.0  # option 0 is worth far more, which beta = 0 ignores
    a = agent.act(torch.zeros(20000, dtype=torch.long), torch.Generator().manual_seed(0))
    assert abs(a.float().mean().item() - 0.5) < 5 * math.sqrt(0.25 / 20000)


def test_softmax_matches_the_formula_and_sampling_follows_it():
    values, beta = torch.tensor([[0.2, 0.9, 0.5]]), 4.0
    e = torch.exp(beta * values)
    torch.testing.assert_close(softmax_policy(values, beta), e / e.sum())
    probs = torch.tensor([[0.1, 0.6, 0.3]]).expand(30000, 3)
    a = sample_actions(probs, torch.Generator().manual_seed(0))
    freq = torch.bincount(a, minlength=3).float() / 30000
    torch.testing.assert_close(freq, probs[0], atol=0.015, rtol=0)


def test_three_factor_rule_is_zero_when_the_rpe_is_zero():
    # the critic predicts the outcome exactly: r = V(s) - gamma V(s'), so delta = 0
    agent = ActorCritic(2, 3, 2, ActorCriticConfig(lr=0.5, gamma=0.9, trace_decay=0.7))
    with torch.no_grad():
        agent.v.copy_(torch.tensor([[0.4, 0.2, -0.3], [1.0, 0.5, 0.1]]))
    obs, nxt = torch.tensor([0, 2]), torch.tensor([1, 0])
    v = agent.v.detach()
    r = v[[0, 1], obs] - 0.9 * v[[0, 1], nxt]
    t = Transition(obs, torch.tensor([1, 0]), r, nxt, torch.zeros(2, dtype=torch.bool),
                   torch.ones(2, dtype=torch.bool))
    upd = agent.update(t)
    assert upd.rpe.abs().max().item() < 1e-6
    assert agent.W.grad.abs().max().item() < 1e-6
    assert agent.v.grad.abs().max().item() < 1e-6
    pre = torch.rand(2, 4)
    dw, _ = three_factor_update(torch.rand(2, 3, 4), pre, torch.rand(2, 3), torch.zeros(2), 0.5)
    assert torch.equal(dw, torch.zeros(2, 3, 4))


def test_three_factor_rule_without_trace_decay_is_eta_rpe_pre_post():
    # oracle: a hand-written loop over synapses; SGD(lr=eta) on the filled .grad gives
    # dW[a, s] = eta * rpe * post[a] * pre[s] and the critic dv[s] = eta * rpe * pre[s]
    eta, gamma = 0.3, 0.9
    agent = ActorCritic(1, 4, 3, ActorCriticConfig(lr=eta, gamma=gamma, trace_decay=0.0))
    with torch.no_grad():
        agent.v.copy_(torch.tensor([[0.1, 0.7, -0.2, 0.4]]))
        agent.W.copy_(torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(0)))
    w0, v0 = agent.W.detach().clone(), agent.v.detach().clone()
    opt = agent.make_optimizer()
    t = Transition(torch.tensor([1]), torch.tensor([2]), torch.tensor([1.0]), torch.tensor([3]),
                   torch.tensor([False]), torch.tensor([True]))
    opt.zero_grad()
    upd = agent.update(t)
    assert torch.equal(agent.W.detach(), w0)  # update fills .grad, never writes p.data
    opt.step()
    rpe = 1.0 + gamma * 0.4 - 0.7
    assert upd.rpe.item() == pytest.approx(rpe)
    pre, post = [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0]
    for a in range(3):
        for s in range(4):
            expected = w0[0, a, s].item() + eta * rpe * pre[s] * post[a]
            assert agent.W[0, a, s].item() == pytest.approx(expected, abs=1e-6)
    for s in range(4):
        assert agent.v[0, s].item() == pytest.approx(v0[0, s].item() + eta * rpe * pre[s])


def test_eligibility_trace_accumulates_with_its_decay():
    # oracle: e2 = lambda (post1 pre1^T) + post2 pre2^T by hand, dW = rpe2 e2
    lam = 0.6
    pre1, post1 = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, 0.0, 1.0]])
    pre2, post2 = torch.tensor([[0.0, 3.0]]), torch.tensor([[1.0, 1.0, 0.0]])
    trace = torch.zeros(1, 3, 2)
    _, trace = three_factor_update(trace, pre1, post1, torch.tensor([0.0]), lam)
    dw, trace = three_factor_update(trace, pre2, post2, torch.tensor([2.0]), lam)
    e2 = torch.zeros(3, 2)
    for a in range(3):
        for s in range(2):
            e2[a, s] = lam * post1[0, a] * pre1[0, s] + post2[0, a] * pre2[0, s]
    torch.testing.assert_close(trace[0], e2)
    torch.testing.assert_close(dw[0], 2.0 * e2)


def test_parametric_agents_fill_finite_grads_and_are_reproducible():
    def one(seed):
        task = TaskSpec("maze").build(3)
        agent = make_agent("actor-critic", task)
        g = torch.Generator().manual_seed(seed)
        obs = task.reset(g)
        a = agent.act(obs, g)
        step = task.step(a)
        t = Transition(obs, a, step.reward, step.obs, step.done, step.info["active"])
        agent.update(t)
        return {k: p.grad.clone() for k, p in agent.named_parameters()}, agent

    grads, agent = one(0)
    for name, p in agent.named_parameters():
        assert grads[name].shape == p.shape and torch.isfinite(grads[name]).all()
    again, _ = one(0)
    for name in grads:
        assert torch.equal(grads[name], again[name])


def test_rpe_vanishes_on_a_deterministic_bandit():
    # the invariant of DESIGN: on a 100/0 schedule a learner's RPE -> 0 before the reversal
    task = TaskSpec("reversal", "100/0").build(500)
    agent = make_agent("rw", task, {"alpha_pos": 0.5, "alpha_neg": 0.5, "beta": 20.0})
    ep = run_episode(task, agent, None, torch.Generator().manual_seed(0), fresh=True)
    assert ep.rpe[20:29].abs().mean().item() < 0.01  # the reversal comes at trial 30 or later
    assert ep.rpe[:3].abs().mean().item() > 0.2


def test_actor_critic_learns_the_maze():
    # it learns: the three-factor rule finds a near-shortest route (8 moves) in 60 episodes
    task = TaskSpec("maze").build(32)
    agent = make_agent("actor-critic", task, {"lr": 0.5, "beta": 3.0, "trace_decay": 0.5})
    opt = agent.make_optimizer()
    g = torch.Generator().manual_seed(0)
    steps = [run_episode(task, agent, opt, g, fresh=False).summary()["steps"]
             for _ in range(60)]
    assert steps[0] > 30
    assert sum(steps[-10:]) / 10 < 1.5 * envs.maze_shortest_path(envs.MazeConfig())


def test_two_timescale_values_and_lesions_by_hand():
    agent = TwoTimescale(1, 1, 2, TwoTimescaleConfig(w=0.25, lesion_fast=0.5, noise_fast=0.0))
    agent.Q_fast[0, 0] = torch.tensor([1.0, 0.0])
    agent.Q_slow[0, 0] = torch.tensor([0.2, 0.6])
    v = agent.values(torch.tensor([0]))
    expected = 0.25 * 0.5 * torch.tensor([1.0, 0.0]) + 0.75 * torch.tensor([0.2, 0.6])
    torch.testing.assert_close(v, expected[None])
    t = Transition(torch.tensor([0]), torch.tensor([1]), torch.tensor([1.0]), torch.tensor([0]),
                   torch.tensor([False]), torch.tensor([True]))
    upd = agent.update(t)
    c = agent.config
    assert upd.deltas["Q_fast"][0, 0, 1].item() == pytest.approx(c.alpha_fast_pos * 1.0)
    assert upd.deltas["Q_slow"][0, 0, 1].item() == pytest.approx(c.alpha_slow_pos * 0.4)
    assert upd.rpe.item() == pytest.approx(0.4)  # the dopamine RPE is the striatum's


def test_fast_system_readapts_after_reversal_faster_than_the_slow_one():
    def p_better_after(opts):
        task = TaskSpec("reversal", "100/0").build(2000)
        agent = make_agent("two-timescale", task, opts)
        ep = run_episode(task, agent, None, torch.Generator().manual_seed(0), fresh=True)
        rev = task.reversal - 1  # index of the first trial after the reversal
        idx = (rev[None, :] + torch.arange(3, 8)[:, None]).clamp(max=79)
        return (ep.action.gather(0, idx) == ep.better.gather(0, idx)).float().mean().item()

    fast, slow = p_better_after({"w": 1.0}), p_better_after({"w": 0.0})
    assert fast > slow + 0.1


def test_bad_agent_configs_raise():
    with pytest.raises(ConfigError, match="alpha_pos"):
        RWConfig(alpha_pos=1.5)
    with pytest.raises(ConfigError, match="beta"):
        RWConfig(beta=-1.0)
    with pytest.raises(ConfigError, match="does not run"):
        make_agent("td", TaskSpec("maze").build(1))
    with pytest.raises(ConfigError, match="unknown agent"):
        make_agent("sarsa", TaskSpec("maze").build(1))
    with pytest.raises(ConfigError, match="--nope"):
        make_agent("rw", TaskSpec("reversal").build(1), {"nope": 1})


def _two_timescale_run(alpha, sigma, p, e=20000, trials=400, seed=0):
    agent = TwoTimescale(e, 1, 2, TwoTimescaleConfig(
        alpha_fast_pos=alpha, alpha_fast_neg=alpha, alpha_slow_pos=alpha, alpha_slow_neg=alpha,
        noise_fast=sigma))
    agent.bind_generator(torch.Generator().manual_seed(seed + 1))
    _bernoulli_trials(agent, p, e, trials, torch.Generator().manual_seed(seed))
    return agent.Q_fast[:, 0, 0], agent.Q_slow[:, 0, 0]


@pytest.mark.parametrize("p", [0.7, 1.0])
def test_amygdala_noise_adds_the_closed_form_variance_and_the_striatum_none(p):
    # oracle: Q_A <- (1 - alpha) Q_A + alpha (r + sigma xi) is an AR(1) process with
    # stationary mean p and variance alpha (p (1 - p) + sigma^2) / (2 - alpha); the striatum,
    # at the same rate, keeps alpha p (1 - p) / (2 - alpha) (zero when p = 1). 20000
    # learners x 400 trials; tolerances as in the Rescorla-Wagner test (5 standard errors
    # for the mean, 5% for the variance)
    alpha, sigma = 0.1, 0.5
    q_fast, q_slow = _two_timescale_run(alpha, sigma, p)
    var_fast = alpha * (p * (1 - p) + sigma ** 2) / (2 - alpha)
    var_slow = alpha * p * (1 - p) / (2 - alpha)
    assert abs(q_fast.mean().item() - p) < 5 * math.sqrt(var_fast / q_fast.numel())
    assert q_fast.var().item() == pytest.approx(var_fast, rel=0.05)
    if p < 1:
        assert q_slow.var().item() == pytest.approx(var_slow, rel=0.05)
    else:
        assert q_slow.var().item() < 1e-10


def test_amygdala_noise_update_by_hand():
    # oracle: a hand-written Eq. (4) with the same N(0, 1) draws: delta_A = r + sigma xi - Q_A,
    # rate alpha_A+ if delta_A > 0 else alpha_A-; the striatum's change has no noise
    sigma = torch.tensor([0.0, 0.3, 2.0])
    agent = TwoTimescale(3, 1, 2, TwoTimescaleConfig(), noise_fast=sigma)
    agent.Q_fast[:, 0] = torch.tensor([[0.9, 0.1], [0.4, 0.5], [0.2, 0.7]])
    agent.Q_slow[:, 0] = torch.tensor([[0.6, 0.3], [0.5, 0.5], [0.1, 0.2]])
    agent.bind_generator(torch.Generator().manual_seed(5))
    xi = torch.randn(3, generator=torch.Generator().manual_seed(5))
    obs, action = torch.zeros(3, dtype=torch.long), torch.tensor([0, 1, 1])
    reward = torch.tensor([1.0, 0.0, 1.0])
    t = Transition(obs, action, reward, obs, torch.zeros(3, dtype=torch.bool),
                   torch.ones(3, dtype=torch.bool))
    upd = agent.update(t)
    c = agent.config
    for i in range(3):
        a = int(action[i])
        delta = float(reward[i]) + float(sigma[i]) * float(xi[i]) - float(agent.Q_fast[i, 0, a])
        rate = c.alpha_fast_pos if delta > 0 else c.alpha_fast_neg
        assert upd.deltas["Q_fast"][i, 0, a].item() == pytest.approx(rate * delta, abs=1e-6)
        assert upd.deltas["Q_fast"][i, 0, 1 - a].item() == 0.0
        d_slow = float(reward[i]) - float(agent.Q_slow[i, 0, a])
        rate = c.alpha_slow_pos if d_slow > 0 else c.alpha_slow_neg
        assert upd.deltas["Q_slow"][i, 0, a].item() == pytest.approx(rate * d_slow, abs=1e-6)
        assert upd.rpe[i].item() == pytest.approx(d_slow, abs=1e-6)


def test_characterises_a_noiseless_amygdala_draws_nothing_from_the_generator():
    # without noise the update leaves the run's generator alone, so every noiseless run
    # draws the same tasks and choices as before the noise existed
    agent = TwoTimescale(4, 1, 2, TwoTimescaleConfig(noise_fast=0.0))
    g = torch.Generator().manual_seed(0)
    agent.bind_generator(g)
    before = g.get_state()
    obs = torch.zeros(4, dtype=torch.long)
    t = Transition(obs, obs, torch.ones(4), obs, torch.zeros(4, dtype=torch.bool),
                   torch.ones(4, dtype=torch.bool))
    agent.update(t)
    assert torch.equal(g.get_state(), before)
    with pytest.raises(ConfigError, match="noise_fast"):
        TwoTimescaleConfig(noise_fast=-0.1)
    with pytest.raises(ConfigError, match="noise_fast"):
        TwoTimescaleConfig(noise_fast=float("nan"))


def test_a_lesion_removes_a_term_and_keeps_the_other_systems_temperature():
    # oracle: the choice logit is beta w Q_A + beta (1 - w) Q_S (each system its own
    # inverse temperature); a lesion of 1 leaves exactly softmax(beta (1 - w) Q_S) or
    # softmax(beta w Q_A), computed here by hand
    beta, w = 10.0, 0.7
    q_fast, q_slow = torch.tensor([0.8, 0.1]), torch.tensor([0.55, 0.45])
    for opts, logit in (({"lesion_fast": 1.0}, beta * (1 - w) * q_slow),
                        ({"lesion_slow": 1.0}, beta * w * q_fast)):
        agent = TwoTimescale(1, 1, 2, TwoTimescaleConfig(beta=beta, w=w, **opts))
        agent.Q_fast[0, 0], agent.Q_slow[0, 0] = q_fast, q_slow
        expected = torch.exp(logit) / torch.exp(logit).sum()
        torch.testing.assert_close(agent.policy(torch.tensor([0]))[0], expected)
