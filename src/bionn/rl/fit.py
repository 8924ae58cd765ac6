"""Maximum-likelihood fits of the bandit agents to choice sequences, vectorised over subjects.

Costa et al. (2016) fit a Rescorla-Wagner learner with alpha+, alpha- and a softmax beta to
each animal's choices by maximum likelihood; this module does the same for many subjects at
once, and fits the two-timescale model (adding w):

    1. The model's values start at q0 at every new block (new stimuli) and follow the
       agent's own update (:func:`bionn.rl.agents.rw_update`, Eqs. 2-5 there).
    2. The log likelihood of a subject's choices is sum_t log p(c_t), p = softmax(beta Q)
       (Eq. 1 there), over the trials it has.
    3. Each subject's parameters are fitted in two stages (:func:`fit`): a coarse grid of the
       learning rates, the softmax scales fitted exactly at every grid point (the likelihood
       is convex in them), then Levenberg-Marquardt steps on all the parameters at once from
       the best grid points, with the exact gradient and Fisher information carried forward
       through the trials (:func:`likelihood_derivatives`); the best end point wins.

The loop is over trials with every subject, grid point and restart batched, so fitting 1000
subjects costs a few passes of 80 trials, not 1000.

Choice files (``bionn rl fit CHOICES.csv``): a header naming at least the columns
``subject,block,trial,choice,reward`` (any order, other columns ignored), then one row per
trial. ``subject`` is any non-empty label, ``block`` and ``trial`` integers, ``choice`` the
option chosen (0, 1, ... K - 1), ``reward`` a finite number (usually 0 or 1). Within a
subject, rows come in order of (block, trial), each strictly after the last; a new block
value means new stimuli, so values restart.

Deviations: none from Costa 2016's model; the optimiser (grid, then Levenberg-Marquardt,
rather than fminsearch from starting points) and the bound beta <= beta_max (default 50)
are ours.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bionn.errors import BionnError, ConfigError
from bionn.rl.agents import rw_update

MODELS: dict[str, tuple[str, ...]] = {
    "rw": ("alpha_pos", "alpha_neg", "beta"),
    "two-timescale": ("alpha_fast_pos", "alpha_fast_neg", "alpha_slow", "beta", "w"),
}
COLUMNS = ("subject", "block", "trial", "choice", "reward")


@dataclass
class ChoiceData:
    """Choice sequences of E subjects, padded to N trials: ``choice`` (E, N) long, ``reward``
    (E, N), ``new_block`` (E, N) bool (the first trial of a block), ``valid`` (E, N) bool."""

    choice: torch.Tensor
    reward: torch.Tensor
    new_block: torch.Tensor
    valid: torch.Tensor
    subjects: list[str]
    n_options: int

    @property
    def n(self) -> int:
        """The number of subjects."""
        return self.choice.shape[0]

    def to(self, device: str | torch.device) -> ChoiceData:
        """The same data on ``device``."""
        return ChoiceData(self.choice.to(device), self.reward.to(device),
                          self.new_block.to(device), self.valid.to(device), self.subjects,
                          self.n_options)


def read_choices_csv(path: str | Path) -> ChoiceData:
    """Read a choice file (format in the module docstring); bad rows are named in the error."""
    path = Path(path)
    if not path.is_file():
        raise BionnError(f"no choice file at {path}")
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BionnError(f"cannot read choice file {path}: {exc}") from None
    if not rows:
        raise BionnError(f"{path} is empty; it needs a header {','.join(COLUMNS)}")
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise BionnError(
            f"{path}: the header lacks column(s) {', '.join(missing)}; it needs "
            f"{','.join(COLUMNS)}"
        )
    col = {c: header.index(c) for c in COLUMNS}
    errors: list[str] = []
    per_subject: dict[str, list[tuple[int, int, int, float]]] = {}
    last: dict[str, tuple[int, int]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            errors.append(f"line {line}: {len(row)} fields, the header has {len(header)}")
            continue
        subject = row[col["subject"]].strip()
        try:
            block = int(row[col["block"]])
            trial = int(row[col["trial"]])
        except ValueError:
            errors.append(f"line {line}: block and trial must be integers, got "
                          f"{row[col['block']]!r}, {row[col['trial']]!r}")
            continue
        try:
            choice = int(row[col["choice"]])
        except ValueError:
            errors.append(f"line {line}: choice must be an integer option 0, 1, ..., got "
                          f"{row[col['choice']]!r}")
            continue
        try:
            reward = float(row[col["reward"]])
        except ValueError:
            reward = float("nan")
        if not subject:
            errors.append(f"line {line}: empty subject")
        elif choice < 0:
            errors.append(f"line {line}: choice must be >= 0, got {choice}")
        elif not math.isfinite(reward):
            errors.append(f"line {line}: reward must be a finite number, got "
                          f"{row[col['reward']]!r}")
        elif subject in last and (block, trial) <= last[subject]:
            errors.append(f"line {line}: subject {subject} block {block} trial {trial} does "
                          f"not come after block {last[subject][0]} trial {last[subject][1]}")
        else:
            last[subject] = (block, trial)
            per_subject.setdefault(subject, []).append((block, trial, choice, reward))
        if len(errors) >= 3:
            break
    if errors:
        raise BionnError(f"{path}: bad rows: {'; '.join(errors)}")
    if not per_subject:
        raise BionnError(f"{path} has a header but no trials")
    n_options = 1 + max(c for rows_ in per_subject.values() for _, _, c, _ in rows_)
    if n_options < 2:
        raise BionnError(f"{path}: every choice is 0; a fit needs at least two options")
    subjects = list(per_subject)
    width = max(len(v) for v in per_subject.values())
    e = len(subjects)
    choice_t = torch.zeros(e, width, dtype=torch.long)
    reward_t = torch.zeros(e, width)
    new_block = torch.zeros(e, width, dtype=torch.bool)
    valid = torch.zeros(e, width, dtype=torch.bool)
    for i, s in enumerate(subjects):
        trials = per_subject[s]
        n = len(trials)
        choice_t[i, :n] = torch.tensor([t[2] for t in trials])
        reward_t[i, :n] = torch.tensor([t[3] for t in trials])
        blocks = [t[0] for t in trials]
        new_block[i, :n] = torch.tensor([j == 0 or blocks[j] != blocks[j - 1] for j in range(n)])
        valid[i, :n] = True
    return ChoiceData(choice_t, reward_t, new_block, valid, subjects, n_options)


def write_choices_csv(data: ChoiceData, path: str | Path, block_length: int | None = None) -> Path:
    """Write ``data`` in the format :func:`read_choices_csv` reads (blocks from ``new_block``)."""
    path = Path(path)
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(COLUMNS)
        for i, s in enumerate(data.subjects):
            block, trial = 0, 0
            for j in range(data.choice.shape[1]):
                if not bool(data.valid[i, j]):
                    continue
                if bool(data.new_block[i, j]) and j > 0:
                    block, trial = block + 1, 0
                trial += 1
                out.writerow([s, block, trial, int(data.choice[i, j]),
                              f"{float(data.reward[i, j]):g}"])
    return path


# -- the likelihood -----------------------------------------------------------------------------
def value_features(
    model: str, rates: dict[str, torch.Tensor], data: ChoiceData, q0: float = 0.5
) -> torch.Tensor:
    """The value tables the model's choices depend on, (M, N, K, J), for rate parameters of
    shape (M,) with M a multiple of the number of subjects E (row m is subject m % E).

    Given the observed choices and rewards, the values follow from the learning rates alone;
    the logits are then linear in J scale parameters: beta Q for ``rw`` (J = 1) and
    beta w Q_A + beta (1 - w) Q_S for ``two-timescale`` (J = 2, Eq. 5).
    """
    e, n = data.choice.shape
    m = next(iter(rates.values())).shape[0]
    reps = m // e
    choice, reward = data.choice.repeat(reps, 1), data.reward.repeat(reps, 1)
    new_block, valid = data.new_block.repeat(reps, 1), data.valid.repeat(reps, 1)
    k = data.n_options
    start = torch.full((m, k), q0, device=data.choice.device)
    if model == "rw":
        tables = [(rates["alpha_pos"], rates["alpha_neg"])]
    elif model == "two-timescale":
        tables = [(rates["alpha_fast_pos"], rates["alpha_fast_neg"]),
                  (rates["alpha_slow"], rates["alpha_slow"])]
    else:
        raise ConfigError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    qs = [start for _ in tables]
    steps: list[list[torch.Tensor]] = [[] for _ in tables]
    fresh = new_block.any(0).tolist()
    for t in range(n):
        for j, (a_pos, a_neg) in enumerate(tables):
            q = torch.where(new_block[:, t, None], start, qs[j]) if fresh[t] else qs[j]
            steps[j].append(q)
            dq, _ = rw_update(q, choice[:, t], reward[:, t] * valid[:, t], a_pos, a_neg)
            qs[j] = q + dq * valid[:, t, None]  # Eqs. (2-4)
    return torch.stack([torch.stack(v, 1) for v in steps], -1)


def _nll_of(logits: torch.Tensor, choice: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits, dim=-1)  # Eq. (1)
    return -(logp.gather(2, choice[..., None])[..., 0] * valid).sum(1)


def fit_scales(
    features: torch.Tensor,
    choice: torch.Tensor,
    valid: torch.Tensor,
    scale_max: float,
    iterations: int = 10,
    start: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The scales s in [0, scale_max]^J that minimise -sum_t log softmax(F_t s)[c_t].

    The objective is convex in s (a log-sum-exp of functions linear in s, minus a linear
    term), so damped Newton steps (step halved where the objective would rise, projected on
    the box) find the minimum. With two options it depends on the value differences
    D_t = F_t[c_t] - F_t[other] alone: -log p(c_t) = softplus(-D_t s). Returns
    ``(s (M, J), nll (M,))``.
    """
    m, _, k, j = features.shape
    valid_f = valid.float()
    fc = features.gather(2, choice[:, :, None, None].expand(-1, -1, 1, j))[:, :, 0, :]
    padding = (valid_f.shape[1] - valid_f.sum(1)) * math.log(2)
    if k == 2 and j == 1:
        d1 = (2 * fc - features.sum(2))[..., 0] * valid_f  # (M, N): chosen minus the other

        def objective(s):
            # padded trials have d = 0 and add softplus(0) = log 2 each: taken off again
            return nn.functional.softplus(-d1 * s).sum(1) - padding

        def newton(s):
            sig = torch.sigmoid(-d1 * s)
            grad = -(d1 * sig).sum(1, keepdim=True)
            hess = (d1 * d1 * sig * (1 - sig)).sum(1)[:, None, None]
            return grad, hess
    elif k == 2:
        diff = (2 * fc - features.sum(2)) * valid_f[..., None]  # (M, N, J)

        def objective(s):
            z = (diff * s[:, None, :]).sum(-1)
            return nn.functional.softplus(-z).sum(1) - padding

        def newton(s):
            z = (diff * s[:, None, :]).sum(-1)
            sig = torch.sigmoid(-z)  # (M, N)
            grad = -(diff * sig[..., None]).sum(1)
            curv = sig * (1 - sig)
            hess = torch.einsum("mn,mni,mnj->mij", curv, diff, diff)
            return grad, hess
    else:

        def objective(s):
            return _nll_of((features * s[:, None, None, :]).sum(-1), choice, valid_f)

        def newton(s):
            p = torch.softmax((features * s[:, None, None, :]).sum(-1), dim=-1)
            ef = (p[..., None] * features).sum(2)  # (M, N, J)
            grad = ((ef - fc) * valid_f[..., None]).sum(1)
            eff = torch.einsum("mnk,mnki,mnkj->mnij", p, features, features)
            hess = ((eff - ef[..., :, None] * ef[..., None, :]) * valid_f[..., None, None]).sum(1)
            return grad, hess

    s = torch.full((m, j), 2.0, device=features.device) if start is None else start.clone()
    nll = objective(s)
    step_size = torch.ones(m, 1, device=features.device)
    eye = torch.eye(j, device=features.device)
    for _ in range(iterations):
        grad, hess = newton(s)
        if j == 1:
            step = grad / (hess[:, :, 0] + 1e-6)
        else:
            # a ridge relative to the curvature: the two scales' features coincide where the
            # fast and slow rates do, and the Hessian is then singular
            ridge = 1e-5 * torch.diagonal(hess, dim1=1, dim2=2).mean(1) + 1e-6
            a = hess + ridge[:, None, None] * eye
            step, info = torch.linalg.solve_ex(a, grad[..., None])
            diag = torch.diagonal(a, dim1=1, dim2=2)
            step = torch.where((info == 0)[:, None], step[..., 0], grad / diag)
        trial = (s - step_size * step).clamp(0.0, scale_max)
        new = objective(trial)
        better = new <= nll
        s = torch.where(better[:, None], trial, s)
        nll = torch.where(better, new, nll)
        step_size = torch.where(better[:, None], (step_size * 2).clamp(max=1.0), step_size / 2)
    return s, nll


RATES = {"rw": ("alpha_pos", "alpha_neg"),
         "two-timescale": ("alpha_fast_pos", "alpha_fast_neg", "alpha_slow")}


def _evaluate(model: str, grid: torch.Tensor, data: ChoiceData, scale_max: float, q0: float,
              chunk: int, start: torch.Tensor | None = None, iterations: int = 10
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """NLL and best scales at rate points ``grid`` (P, E, R): each subject its own points;
    ``start`` (P, E, J) warm-starts the scales."""
    pts, e, _ = grid.shape
    n, k = data.choice.shape[1], data.n_options
    j = 1 if model == "rw" else 2
    per = max(1, chunk // max(1, e * n * k * j))  # rate points per chunk
    nlls, scales = [], []
    for lo in range(0, pts, per):
        g = grid[lo:lo + per]
        p = g.shape[0]
        rates = {name: g[:, :, i].reshape(p * e) for i, name in enumerate(RATES[model])}
        feats = value_features(model, rates, data, q0)
        init = None if start is None else start[lo:lo + per].reshape(p * e, j)
        s, nll = fit_scales(feats, data.choice.repeat(p, 1), data.valid.repeat(p, 1), scale_max,
                            iterations, init)
        nlls.append(nll.reshape(p, e))
        scales.append(s.reshape(p, e, j))
    return torch.cat(nlls), torch.cat(scales)


@dataclass
class FitResult:
    """Best parameters per subject (name -> (E,)), their NLL, the trials each had, and the
    number of restarts used."""

    model: str
    params: dict[str, torch.Tensor]
    nll: torch.Tensor
    n_trials: torch.Tensor
    restarts: int

    def rows(self, subjects: list[str]) -> list[dict[str, Any]]:
        """One row per subject: its fitted parameters and fit statistics."""
        k = len(self.params)
        out = []
        for i, s in enumerate(subjects):
            row: dict[str, Any] = {"subject": s}
            row.update({name: float(v[i]) for name, v in self.params.items()})
            nll, n = float(self.nll[i]), int(self.n_trials[i])
            row.update({"nll": nll, "trials": n, "bic": 2 * nll + k * math.log(max(n, 1))})
            out.append(row)
        return out


# -- the joint refinement ------------------------------------------------------------------------
def _tables(model: str) -> list[tuple[int, int]]:
    """For each value table, the indices (in RATES[model]) of its rates for delta > 0 and < 0."""
    return [(0, 1)] if model == "rw" else [(0, 1), (2, 2)]


def likelihood_derivatives(
    model: str, theta: torch.Tensor, data: ChoiceData, q0: float = 0.5,
    rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-log p(choices | theta), its gradient and its Fisher information, per row of ``theta``.

    ``theta`` (M, P) holds the rates (RATES[model]) then the softmax scales (beta; or beta w
    and beta (1 - w)); row m belongs to subject ``rows[m]`` (by default M is a multiple of
    the number of subjects E and row m is subject m % E). The derivatives of the values with
    respect to the rates are carried forward through the trials with the values
    (forward-mode differentiation of Eqs. 2-4: the chosen value's derivative becomes
    (1 - alpha) dQ + delta e_alpha, e_alpha the rate that was used), so one pass over the
    trials gives the gradient sum_t J_t^T (p_t - onehot(c_t)) and the Fisher information
    sum_t J_t^T (diag p_t - p_t p_t^T) J_t of the logits' Jacobians J_t. Returns
    ``(nll (M,), grad (M, P), fisher (M, P, P))``.
    """
    e, n = data.choice.shape
    m, n_par = theta.shape
    dev, dt = theta.device, theta.dtype
    if rows is None:
        rows = torch.arange(m, device=dev) % e
    choice, reward, new_block = data.choice[rows], data.reward[rows], data.new_block[rows]
    valid = data.valid[rows].to(dt)
    k, r = data.n_options, len(RATES[model])
    tables = _tables(model)
    onehot = (choice[:, :, None] == torch.arange(k, device=dev)).to(dt)  # (M, N, K)
    step = onehot * valid[:, :, None]
    reward = reward * valid
    rate_ids = torch.eye(r, device=dev, dtype=dt)
    q_steps: list[list[torch.Tensor]] = [[] for _ in tables]
    g_steps: list[list[torch.Tensor]] = [[] for _ in tables]
    fresh = new_block.any(0).tolist()
    for j, (i_pos, i_neg) in enumerate(tables):
        q = torch.full((m, k), q0, device=dev, dtype=dt)
        g = torch.zeros(m, k, r, device=dev, dtype=dt)
        a_pos, a_neg = theta[:, i_pos], theta[:, i_neg]
        e_pos, e_neg = rate_ids[i_pos], rate_ids[i_neg]
        for t in range(n):
            if fresh[t]:
                nb = new_block[:, t]
                q = torch.where(nb[:, None], q0, q)
                g = torch.where(nb[:, None, None], 0.0, g)
            q_steps[j].append(q)
            g_steps[j].append(g)
            oh = onehot[:, t]
            delta = reward[:, t] - (q * oh).sum(-1)  # Eq. (2)
            pos = (delta > 0)[:, None]
            alpha = torch.where(pos, a_pos[:, None], a_neg[:, None])  # (M, 1)
            g_c = (g * oh[:, :, None]).sum(1)  # (M, R)
            # d/dtheta of Q(c) + alpha delta: (1 - alpha) dQ(c) + delta e_alpha
            change = delta[:, None] * torch.where(pos, e_pos, e_neg) - alpha * g_c
            st = step[:, t]
            q = q + st * (alpha * delta[:, None])  # Eq. (3)
            g = g + st[:, :, None] * change[:, None, :]
    qv = torch.stack([torch.stack(v, 1) for v in q_steps], -1)  # (M, N, K, J)
    gv = torch.stack([torch.stack(v, 1) for v in g_steps], -1)  # (M, N, K, R, J)
    scales = theta[:, r:]
    logits = (qv * scales[:, None, None, :]).sum(-1)  # Eqs. (1, 5)
    jac = torch.cat([(gv * scales[:, None, None, None, :]).sum(-1), qv], -1)  # (M, N, K, P)
    logp = torch.log_softmax(logits, -1)
    p = logp.exp()
    nll = -(logp * onehot).sum(-1).mul(valid).sum(1)
    grad = (((p - onehot) * valid[:, :, None])[..., None] * jac).sum((1, 2))
    mean_j = (p[..., None] * jac).sum(2)  # (M, N, P)
    flat = jac.flatten(1, 2)  # (M, N K, P)
    fisher = ((flat * (p * valid[:, :, None]).flatten(1, 2)[..., None]).transpose(1, 2) @ flat
              - (mean_j * valid[..., None]).transpose(1, 2) @ mean_j)
    return nll, grad, fisher


def refine(
    model: str,
    theta: torch.Tensor,
    data: ChoiceData,
    beta_max: float = 50.0,
    q0: float = 0.5,
    iterations: int = 15,
    tol: float = 1e-3,
    lam0: float = 1e-2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Levenberg-Marquardt (Fisher scoring) on all parameters at once from starts ``theta``
    (M, P), every row its own damped step inside the box (rates in [0, 1], scales in
    [0, beta_max]; a coordinate on the box with its gradient pointing out is held). A step is
    kept only where it lowers that row's NLL; a row stops once a kept step gains less than
    ``tol`` in NLL or the damping has grown so large that no step is kept. Returns
    ``(theta, nll)``."""
    r = len(RATES[model])
    theta = theta.clone()
    m, n_par = theta.shape
    dev, dt = theta.device, theta.dtype
    lo = torch.zeros(n_par, device=dev, dtype=dt)
    hi = torch.tensor([1.0] * r + [beta_max] * (n_par - r), device=dev, dtype=dt)
    rows = torch.arange(m, device=dev) % data.n
    nll, grad, fisher = likelihood_derivatives(model, theta, data, q0, rows)
    lam = torch.full((m,), lam0, device=dev, dtype=dt)
    active = torch.arange(m, device=dev)  # the rows still moving
    for _ in range(iterations):
        if active.numel() == 0:
            break
        th, g, f, la = theta[active], grad[active], fisher[active], lam[active]
        held = ((th <= lo) & (g > 0)) | ((th >= hi) & (g < 0))
        free = (~held).to(dt)
        diag = torch.diagonal(f, dim1=1, dim2=2)
        a = f * free[:, :, None] * free[:, None, :]
        a = a + torch.diag_embed(la[:, None] * (diag + 1e-6) + 1e-9 + (1 - free))
        step, info = torch.linalg.solve_ex(a, (g * free)[..., None])
        step = torch.where((info == 0)[:, None], step[..., 0], 0.0)  # a failed solve: no step
        trial = torch.minimum(torch.maximum(th - step, lo), hi)
        t_nll, t_grad, t_fisher = likelihood_derivatives(model, trial, data, q0, rows[active])
        better = t_nll < nll[active]
        gain = nll[active] - t_nll
        pick = active[better]
        theta[pick], nll[pick] = trial[better], t_nll[better]
        grad[pick], fisher[pick] = t_grad[better], t_fisher[better]
        la = torch.where(better, la / 3, la * 4).clamp(1e-6, 1e6)
        lam[active] = la
        # converged: a kept step gained less than tol, or no step is kept even tiny
        done = (better & (gain < tol)) | (la >= 1e4)
        active = active[~done]
    return theta, nll


def fit(
    data: ChoiceData,
    model: str = "rw",
    restarts: int = 3,
    grid: int | None = None,
    iterations: int = 15,
    beta_max: float = 50.0,
    q0: float = 0.5,
    chunk: int = 1 << 23,
    progress: bool = False,
) -> FitResult:
    """Maximum-likelihood fit of ``model`` (``rw`` or ``two-timescale``) to every subject.

    1. The learning rates lie on a coarse grid (``grid`` points per rate; 6 for ``rw``, 4
       for ``two-timescale``); at each point the scales (beta, or beta w and beta (1 - w))
       are fitted exactly by :func:`fit_scales` (the likelihood is convex in them).
    2. From each subject's ``restarts`` best grid points, :func:`refine` moves all the
       parameters at once (``iterations`` Levenberg-Marquardt steps on the exact gradient and
       Fisher information of :func:`likelihood_derivatives`); the most likely end point is the
       fit.

    The grid finds the basin (no stall in a poor local minimum of the rates from a random
    start), the joint steps its bottom; every subject, grid point and restart shares the one
    loop over trials.
    """
    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    grid = grid or (6 if model == "rw" else 4)
    if restarts < 1 or grid < 2 or iterations < 0:
        raise ConfigError(
            f"need restarts >= 1, grid >= 2, iterations >= 0; got {restarts}, {grid}, "
            f"{iterations}"
        )
    if not beta_max > 0:
        raise ConfigError(f"beta_max must be > 0, got {beta_max}")
    from tqdm.auto import tqdm

    e, r = data.n, len(RATES[model])
    device = data.choice.device
    axis = (torch.arange(grid, device=device) + 0.5) / grid
    coarse = torch.cartesian_prod(*([axis] * r)).reshape(-1, r)  # (P, R)
    bar = tqdm(total=2, desc=f"fit {model}", disable=not progress, leave=False)
    nll, sc = _evaluate(model, coarse[:, None, :].expand(-1, e, -1), data, beta_max, q0, chunk)
    bar.update(1)
    restarts = min(restarts, coarse.shape[0])
    best = nll.topk(restarts, dim=0, largest=False).indices  # (restarts, E)
    cols = torch.arange(e, device=device)
    start = torch.cat([coarse[best], sc[best, cols[None, :]]], -1)  # (restarts, E, R + J)
    theta, best_nll = refine(model, start.reshape(restarts * e, -1), data, beta_max, q0,
                             iterations)
    bar.update(1)
    bar.close()
    theta, best_nll = theta.reshape(restarts, e, -1), best_nll.reshape(restarts, e)
    winner = best_nll.argmin(0)
    pt = theta[winner, cols]
    params = {name: pt[:, i] for i, name in enumerate(RATES[model])}
    s = pt[:, r:]
    if model == "rw":
        params["beta"] = s[:, 0]
    else:
        beta = s.sum(1)
        params["beta"] = beta
        params["w"] = torch.where(beta > 0, s[:, 0] / beta.clamp(min=1e-12), 0.5)
    params = {k: params[k].cpu() for k in MODELS[model]}
    return FitResult(model, params, best_nll[winner, cols].cpu(), data.valid.sum(1).cpu(),
                     restarts)


def negative_log_likelihood(
    model: str, params: dict[str, torch.Tensor], data: ChoiceData, q0: float = 0.5
) -> torch.Tensor:
    """-log p(choices | params) per subject (E,), for parameters of shape (E,)."""
    rates = {name: params[name] for name in RATES[model]}
    feats = value_features(model, rates, data, q0)
    if model == "rw":
        scales = params["beta"][:, None]
    else:
        scales = torch.stack([params["beta"] * params["w"], params["beta"] * (1 - params["w"])],
                             1)
    logits = (feats * scales[:, None, None, :]).sum(-1)
    return _nll_of(logits, data.choice, data.valid.float())


# -- simulation -----------------------------------------------------------------------------------
def simulate_choices(
    agent: str,
    params: dict[str, torch.Tensor],
    schedule: str = "80/20",
    n_blocks: int = 1,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[ChoiceData, dict[str, torch.Tensor]]:
    """Choices of E simulated subjects (E = the length of each tensor in ``params``) on
    ``n_blocks`` reversal blocks of ``schedule``; returns the data and per-trial facts
    (``better``: the better option on each trial, (E, N))."""
    from bionn.rl.loop import TaskSpec, make_agent, run_episode

    e = next(iter(params.values())).shape[0]
    task = TaskSpec("reversal", schedule).build(e, device)
    ag = make_agent(agent, task, options, **{k: v.to(device) for k, v in params.items()})
    g = torch.Generator(device=device).manual_seed(seed)
    choices, rewards, betters, firsts = [], [], [], []
    for _ in range(n_blocks):
        ep = run_episode(task, ag, None, g, fresh=True)
        choices.append(ep.action.T)
        rewards.append(ep.reward.T)
        betters.append(ep.better.T)
        first = torch.zeros_like(ep.action.T, dtype=torch.bool)
        first[:, 0] = True
        firsts.append(first)
    choice = torch.cat(choices, 1).cpu()
    data = ChoiceData(choice, torch.cat(rewards, 1).cpu(), torch.cat(firsts, 1).cpu(),
                      torch.ones_like(choice, dtype=torch.bool), [f"s{i}" for i in range(e)], 2)
    return data, {"better": torch.cat(betters, 1).cpu()}
