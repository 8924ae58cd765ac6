"""Reinforcement-learning measurements (Neftci & Averbeck 2019; Costa et al. 2016; Schultz,
Dayan & Montague 1997), written to ``benchmarks/results/reinforcement.json``.

    python benchmarks/reinforcement.py
        [--sections reversal,mixture,noise,lesions,dopamine,speed]
        [--experiments 2000] [--mixture-experiments 4000] [--noise-levels 0,0.25,0.5,1]
        [--lesion-noise 0.25,0,0.5] [--threads 1] [--out benchmarks/results/reinforcement.json]

- reversal: P(better choice) around the reversal and the reward per block, per schedule
  (100/0, 80/20, 70/30, 60/40), for the fast system alone (w = 1), the slow system alone
  (w = 0), their mixture (w = 0.5) and a Rescorla-Wagner learner;
- mixture: the two-timescale agent's reward per block against its mixing weight w (0, 0.25,
  0.5, 0.75, 1), per schedule, with standard errors;
- noise: the same against w for each level sigma_A of the amygdala's activity-dependent
  noise, per schedule, and whether the mixture (w = 0.5, and the best interior w) earns
  more than both systems alone, with the standard error of each difference (figure
  ``reinforcement_noise.png``);
- lesions: the two-timescale agent intact, with the fast or the slow system removed (its
  term removed from the decision, the other system keeping its own inverse temperature; or
  the other system renormalised to full weight), for each level in ``--lesion-noise``; a
  Rescorla-Wagner model fitted to each simulated subject's choices (alpha+, alpha-, beta):
  group means with standard errors and medians, per schedule;
- dopamine: TD(0) on the delay line, the RPE at the cue and at the reward over trials, and
  an omission probe after learning;
- speed: simulating and fitting 1000 experiments of one 80-trial block.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from bionn.core.resources import cpu_model
from bionn.rl import envs
from bionn.rl.agents import TDConfig, TDDelayLine
from bionn.rl.fit import fit, negative_log_likelihood, simulate_choices
from bionn.rl.loop import TaskSpec, make_agent, run_episode

SCHEDULES = ("100/0", "80/20", "70/30", "60/40")
WINDOW = range(-10, 30)


def reversal_curve(task, ep) -> list[float]:
    offsets = torch.tensor(list(WINDOW))
    idx = (task.reversal[None, :] - 1 + offsets[:, None]).clamp(0, ep.action.shape[0] - 1)
    hit = ep.action.gather(0, idx) == ep.better.gather(0, idx)
    return hit.float().mean(1).tolist()


def run_group(schedule, agent, options, n, seed, blocks=1):
    task = TaskSpec("reversal", schedule).build(n)
    ag = make_agent(agent, task, options)
    g = torch.Generator().manual_seed(seed)
    curves, rewards, stationary, per_exp = [], [], [], []
    for _ in range(blocks):
        ep = run_episode(task, ag, None, g, fresh=True)
        curves.append(reversal_curve(task, ep))
        rewards.append(ep.reward.sum(0).mean().item())
        per_exp.append(ep.reward.sum(0))
        # stationary phase: trials 15-29 (before any reversal), choice of the better option
        stationary.append((ep.action[14:29] == ep.better[14:29]).float().mean().item())
    curve = torch.tensor(curves).mean(0)
    after = curve[10:15].mean().item()  # trials 0-4 after the reversal
    per_exp = torch.cat(per_exp)
    return {"curve": curve.tolist(), "reward_per_block": sum(rewards) / blocks,
            "reward_per_block_se": (per_exp.std() / per_exp.numel() ** 0.5).item(),
            "p_better_trials_15_29": sum(stationary) / blocks,
            "p_better_first5_after_reversal": after}


AGENTS = {
    "fast (amygdala, w=1)": ("two-timescale", {"w": 1.0}),
    "slow (striatum, w=0)": ("two-timescale", {"w": 0.0}),
    "mixture (w=0.5)": ("two-timescale", {}),
    "rw (alpha 0.4, beta 5)": ("rw", {}),
}


def section_reversal(n, seed):
    out = {}
    for s in SCHEDULES:
        out[s] = {name: run_group(s, a, o, n, seed) for name, (a, o) in AGENTS.items()}
    mean_reward = {name: sum(out[s][name]["reward_per_block"] for s in SCHEDULES) / 4
                   for name in AGENTS}
    return {"per_schedule": out, "mean_reward_over_schedules": mean_reward,
            "offsets": list(WINDOW)}


def _se_diff(a, b):
    return (a["reward_per_block_se"] ** 2 + b["reward_per_block_se"] ** 2) ** 0.5


def section_noise(n, seed, levels, weights=(0.0, 0.25, 0.5, 0.75, 1.0)):
    """Reward per block against w for each amygdala noise level sigma_A, per schedule; the
    mixture's margin over the better of the two systems alone, in standard errors."""
    out = {}
    for sigma in levels:
        per = {}
        for s in SCHEDULES:
            row = {str(w): run_group(s, "two-timescale", {"w": w, "noise_fast": sigma}, n,
                                     seed) for w in weights}
            for r in row.values():
                del r["curve"]
            ends = max((row["0.0"], row["1.0"]), key=lambda r: r["reward_per_block"])
            mix = row["0.5"]
            best = max((row[str(w)] for w in weights[1:-1]),
                       key=lambda r: r["reward_per_block"])
            per[s] = {
                "by_w": row,
                "best_w": max(row, key=lambda w: row[w]["reward_per_block"]),
                "mixture_minus_best_single": mix["reward_per_block"] - ends["reward_per_block"],
                "mixture_minus_best_single_se": _se_diff(mix, ends),
                "best_interior_minus_best_single": (best["reward_per_block"]
                                                    - ends["reward_per_block"]),
                "best_interior_minus_best_single_se": _se_diff(best, ends),
            }
        out[str(sigma)] = per
    return {"per_noise": out, "experiments": n, "weights": list(weights)}


def section_mixture(n, seed, weights=(0.0, 0.25, 0.5, 0.75, 1.0)):
    """Reward per block of the two-timescale agent against its mixing weight w, per schedule
    (w = 1 the fast system alone, w = 0 the slow one), with standard errors."""
    out = {s: {str(w): run_group(s, "two-timescale", {"w": w}, n, seed) for w in weights}
           for s in SCHEDULES}
    for s in SCHEDULES:
        for row in out[s].values():
            del row["curve"]
    mean = {str(w): sum(out[s][str(w)]["reward_per_block"] for s in SCHEDULES) / 4
            for w in weights}
    return {"per_schedule": out, "mean_reward_over_schedules": mean, "experiments": n}


# A lesion removes a system's term from the decision (Eq. 5): the other keeps its own inverse
# temperature (beta w or beta (1 - w)), so the softmax sees smaller value differences;
# the "renormalised" groups instead let the remaining system drive choice at full weight
# (w = 0 or 1: the choice stage compensates), which separates learning from consistency.
LESIONS = {"intact": {}, "fast lesion": {"lesion_fast": 1.0}, "slow lesion": {"lesion_slow": 1.0},
           "fast lesion, renormalised": {"w": 0.0}, "slow lesion, renormalised": {"w": 1.0}}


def _mean_se(x):
    x = x.double()
    return x.mean().item(), (x.std() / x.numel() ** 0.5).item()


def section_lesions(n, seed, blocks, sigma=0.0):
    out = {}
    for s in SCHEDULES:
        row = {}
        for name, opts in LESIONS.items():
            params = {k: torch.full((n,), float(v)) for k, v in opts.items()} or {
                "w": torch.full((n,), 0.5)}
            params["noise_fast"] = torch.full((n,), float(sigma))
            data, info = simulate_choices("two-timescale", params, s, n_blocks=blocks,
                                          seed=seed)
            res = fit(data, "rw", restarts=2)
            hit = (data.choice == info["better"]).float().mean(1)
            rew = data.reward.sum(1) / blocks
            entry = {"p_better": _mean_se(hit)[0], "p_better_se": _mean_se(hit)[1],
                     "reward_per_block": _mean_se(rew)[0],
                     "reward_per_block_se": _mean_se(rew)[1]}
            for k, v in res.params.items():
                entry[f"fitted_{k}_median"] = v.median().item()
                entry[f"fitted_{k}_mean"], entry[f"fitted_{k}_se"] = _mean_se(v)
            row[name] = entry
        intact = row["intact"]
        for entry in row.values():  # what the group loses against the intact agent
            entry["p_better_deficit"] = intact["p_better"] - entry["p_better"]
            entry["p_better_deficit_se"] = (intact["p_better_se"] ** 2
                                            + entry["p_better_se"] ** 2) ** 0.5
        out[s] = row
    return out


def section_dopamine(trials, seed):
    config = envs.ConditioningConfig()
    task = envs.ConditioningTask(1, config)
    agent = TDDelayLine(1, config.n_features, config=TDConfig(lr=0.2, gamma=0.98))
    opt = agent.make_optimizer()
    g = torch.Generator().manual_seed(seed)
    rows = [run_episode(task, agent, opt, g, fresh=False).rpe[:, 0] for _ in range(trials)]
    rpe = torch.stack(rows)
    probe = run_episode(task, agent, opt, g, fresh=False, learn=False,
                        reset_kwargs={"omit": True}).rpe[:, 0]
    from bionn.plots.reinforcement import plot_rpe_heatmap

    fig = plot_rpe_heatmap(rpe, Path("benchmarks/results/reinforcement_rpe.png"),
                           t_cs=config.t_cs, t_us=config.t_us, probe=probe)
    pick = [0, 4, 9, 19, 49, 99, trials - 1]
    return {
        "config": {"n_steps": config.n_steps, "t_cs": config.t_cs, "t_us": config.t_us,
                   "gamma": 0.98, "lr": 0.2, "trials": trials},
        "rpe_at_cue_by_trial": {str(i + 1): rpe[i, config.t_cs - 1].item() for i in pick},
        "rpe_at_reward_by_trial": {str(i + 1): rpe[i, config.t_us].item() for i in pick},
        "closed_form_cue": 0.98 ** (config.t_us - config.t_cs + 1),
        "omission_probe_rpe_at_reward": probe[config.t_us].item(),
        "figure": str(fig),
    }


def section_speed(n, seed):
    g = torch.Generator().manual_seed(seed)
    true = {"alpha_pos": 0.1 + 0.8 * torch.rand(n, generator=g),
            "alpha_neg": 0.1 + 0.8 * torch.rand(n, generator=g),
            "beta": 2.0 + 8.0 * torch.rand(n, generator=g)}
    # wall time, and the CPU time of this process (on a shared machine the two differ)
    t0, c0 = time.perf_counter(), time.process_time()
    data, _ = simulate_choices("rw", true, "80/20", n_blocks=1, seed=seed)
    t1, c1 = time.perf_counter(), time.process_time()
    res = fit(data, "rw", restarts=3)
    t2, c2 = time.perf_counter(), time.process_time()
    at_truth = negative_log_likelihood("rw", true, data)

    def rank(x):
        return x.argsort().argsort().float()

    return {"experiments": n, "trials": 80, "simulate_s": t1 - t0, "fit_s": t2 - t1,
            "total_s": t2 - t0, "simulate_cpu_s": c1 - c0, "fit_cpu_s": c2 - c1,
            "total_cpu_s": c2 - c0,
            "fraction_fit_at_least_as_likely_as_truth": (
                res.nll <= at_truth + 1e-3).float().mean().item(),
            "mean_nll_fit": res.nll.mean().item(), "mean_nll_truth": at_truth.mean().item(),
            "rank_correlation_true_fitted": {
                k: torch.corrcoef(torch.stack([rank(true[k]), rank(res.params[k])]))[0, 1].item()
                for k in true}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sections", default="reversal,mixture,noise,lesions,dopamine,speed")
    p.add_argument("--experiments", type=int, default=2000)
    p.add_argument("--mixture-experiments", type=int, default=4000)
    p.add_argument("--lesion-experiments", type=int, default=200)
    p.add_argument("--lesion-blocks", type=int, default=4)
    p.add_argument("--noise-levels", default="0,0.25,0.5,1",
                   help="sigma_A levels of the noise section (comma-separated)")
    p.add_argument("--lesion-noise", default="0.25,0,0.5",
                   help="sigma_A levels of the lesion section (comma-separated)")
    p.add_argument("--trials", type=int, default=300, help="conditioning trials")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results/reinforcement.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    result = {"command": " ".join(["python", *sys.argv]), "cpu": cpu_model(),
              "torch": torch.__version__, "threads": args.threads}
    for name in args.sections.split(","):
        start = time.perf_counter()
        if name == "reversal":
            result[name] = section_reversal(args.experiments, args.seed)
            from bionn.plots.reinforcement import plot_reversal_grid

            panels = {s: {a: (list(WINDOW), r["curve"]) for a, r in
                          result[name]["per_schedule"][s].items()} for s in SCHEDULES}
            result[name]["figure"] = str(plot_reversal_grid(
                panels, Path("benchmarks/results/reinforcement_reversal.png")))
        elif name == "mixture":
            result[name] = section_mixture(args.mixture_experiments, args.seed)
        elif name == "noise":
            result[name] = section_noise(args.mixture_experiments, args.seed,
                                         [float(x) for x in args.noise_levels.split(",")])
            from bionn.plots.reinforcement import plot_reward_against_w

            per = result[name]["per_noise"]
            panels = {s: {f"sigma_A {sig}": (
                [float(w) for w in per[sig][s]["by_w"]],
                [r["reward_per_block"] for r in per[sig][s]["by_w"].values()],
                [r["reward_per_block_se"] for r in per[sig][s]["by_w"].values()])
                for sig in per} for s in SCHEDULES}
            result[name]["figure"] = str(plot_reward_against_w(
                panels, Path("benchmarks/results/reinforcement_noise.png")))
        elif name == "lesions":
            result[name] = {
                "experiments": args.lesion_experiments, "blocks": args.lesion_blocks,
                "per_noise": {x: section_lesions(args.lesion_experiments, args.seed,
                                                 args.lesion_blocks, float(x))
                              for x in args.lesion_noise.split(",")}}
        elif name == "dopamine":
            result[name] = section_dopamine(args.trials, args.seed)
        elif name == "speed":
            result[name] = section_speed(1000, args.seed)
        else:
            raise SystemExit(f"unknown section {name!r}")
        result[name + "_wall_s"] = time.perf_counter() - start
        print(name, json.dumps(result[name], default=str)[:300], flush=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")  # after every section
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
