"""The layered Hopfield energy, its cost and its relaxation (pure functions, no autograd).

Papers:
    Scellier, B. & Bengio, Y. (2017). Equilibrium propagation: bridging the gap between
    energy-based models and backpropagation. Front. Comput. Neurosci. 11:24.
    doi:10.3389/fncom.2017.00024
    Laborieux, A., Ernoult, M., Scellier, B., Bengio, Y., Grollier, J. & Querlioz, D. (2021).
    Scaling equilibrium propagation to deep ConvNets by drastically reducing its gradient
    estimator bias. Front. Neurosci. 15:633674. doi:10.3389/fnins.2021.633674

A layered network has the input x = s_0 (clamped) and state layers s_1 .. s_L (output s_L).
Layer l -> l+1 is one symmetric connection: the weight ``W_l`` of shape (n_{l+1}, n_l), the
layout of ``nn.Linear``, used bottom-up as ``W_l rho(s_l)`` and top-down as
``W_l^T rho(s_{l+1})``, and the bias ``b_l`` of layer l+1. Tensors are batch-first,
``(B, n_l)``. The equation numbers are this module's own::

    E(s)   = sum_{k>=1} ||s_k||^2 / 2 - sum_l rho(s_{l+1}) . W_l rho(s_l)
             - sum_l b_l . rho(s_{l+1})                      (rho(s_0) = x)        Eq. (1)
    C(s)   = ||s_L - d||^2 / 2                                                     Eq. (2)
    F      = E + beta C                                                            Eq. (3)
    ds_k/dt = -dF/ds_k = rho'(s_k) * (W_{k-1} rho(s_{k-1}) + W_k^T rho(s_{k+1}) + b_{k-1})
              - s_k - beta [k = L] (s_L - d)                                       Eq. (4)
    Euler:  s_k <- clip(s_k + eps ds_k/dt, 0, 1)   (clip only for the hard sigmoid) Eq. (5)

``rho`` is the hard sigmoid clip(s, 0, 1) (Scellier & Bengio 2017); its slope is taken as 1 on
the closed interval [0, 1], as Theano's clip did in the reference code, so that a unit resting
at 0 or 1 can move back inside. Because the states are clipped to [0, 1], rho(s) = s there and
the step is the affine map ``clip((1 - eps) s + eps drive)``. ``sigmoid`` is the smooth
rho(s) = 1 / (1 + exp(-4 (s - 1/2))) (same range, slope 1 at 1/2), used unclipped by the theory
tests, where F is smooth.

Inside the box [0, 1] the hard-sigmoid F is a quadratic with Hessian
``H = I - W~ + beta P_L`` (W~ the symmetric block matrix of the weights, P_L the projection on
the output units), and the clipped Euler step is projected gradient descent on it: F cannot
increase when eps < 2 / lambda_max(H) (:func:`step_size_bound`).

Primitive-function form (Laborieux et al. 2021): the dynamics ``s_{t+1} = rho(dPhi/ds)`` with
``Phi = sum_l s_{l+1} . (W_l s_l + b_l) - beta C``; for the layered network with the hard
sigmoid this is exactly Eq. (5) with eps = 1 (the states already being rates). The convolutional
network (:func:`conv_primitive`, :func:`conv_step`) is written in this form, with
``P(conv(s_l))`` (max pooling after the convolution) in place of ``W_l s_l``.

Cross-entropy output (Laborieux et al. 2021): the output layer is removed from the dynamics;
the top state layer is s_{L-1} and the class scores are the readout ``o = W_{L-1} rho(s_{L-1})
+ b_{L-1}``; the cost is C = CE(o, y), whose gradient nudges s_{L-1} through W_{L-1}^T.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch.nn import functional as F

from bionn.errors import ConfigError

RHOS = ("hard-sigmoid", "sigmoid")


def _check_rho(name: str) -> None:
    if name not in RHOS:
        raise ConfigError(f"unknown rho {name!r}; choose one of: {', '.join(RHOS)}")


def rho(s: torch.Tensor, name: str = "hard-sigmoid") -> torch.Tensor:
    """The firing rate rho(s): ``clip(s, 0, 1)`` or the smooth ``sigmoid(4 (s - 1/2))``."""
    if name == "hard-sigmoid":
        return s.clamp(0.0, 1.0)
    if name == "sigmoid":
        return torch.sigmoid(4.0 * (s - 0.5))
    _check_rho(name)
    raise AssertionError


def rho_prime(s: torch.Tensor, name: str = "hard-sigmoid") -> torch.Tensor:
    """rho'(s): 1 on [0, 1] (closed) and 0 outside for the hard sigmoid; 4 r (1 - r) smooth."""
    if name == "hard-sigmoid":
        return ((s >= 0) & (s <= 1)).to(s.dtype)
    if name == "sigmoid":
        r = torch.sigmoid(4.0 * (s - 0.5))
        return 4.0 * r * (1 - r)
    _check_rho(name)
    raise AssertionError


class Relaxation(NamedTuple):
    """The end of a relaxation.

    Attributes:
        states: s_1 .. s_L (s_1 .. s_{L-1} for the cross-entropy output) after the last step.
        energies: F (mean over the batch) before the first step and after every step, shape
            ``(steps + 1,)``, when asked for; else None.
    """

    states: list[torch.Tensor]
    energies: torch.Tensor | None


def energy(
    x: torch.Tensor,
    states: Sequence[torch.Tensor],
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    rho_name: str = "hard-sigmoid",
    input_drive: torch.Tensor | None = None,
) -> torch.Tensor:
    """E(s) of Eq. (1) per example, shape (B,) (the constant terms of the input omitted).

    With fewer state layers than weights (the cross-entropy output), the last weight is the
    readout and is not part of E. ``input_drive`` may hold W_0 x + b_0 (see :func:`input_drive`).
    """
    rates = [x.flatten(1)] + [rho(s, rho_name) for s in states]
    total = sum(0.5 * s.square().sum(1) for s in states)  # Eq. (1)
    for l in range(len(states)):
        if l == 0 and input_drive is not None:
            drive = input_drive
        else:
            drive = torch.addmm(biases[l], rates[l], weights[l].t())
        total = total - (rates[l + 1] * drive).sum(1)  # Eq. (1)
    return total


def cost(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """C = ||s_L - d||^2 / 2 per example (Eq. 2)."""
    return 0.5 * (output - target).square().sum(1)  # Eq. (2)


def readout_cost(
    states: Sequence[torch.Tensor],
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    labels: torch.Tensor,
    rho_name: str = "hard-sigmoid",
) -> torch.Tensor:
    """C = CE(W_{L-1} rho(s_{L-1}) + b_{L-1}, y) per example (the cross-entropy output)."""
    logits = torch.addmm(biases[-1], rho(states[-1], rho_name), weights[-1].t())
    return F.cross_entropy(logits, labels, reduction="none")


def total_energy(
    x: torch.Tensor,
    states: Sequence[torch.Tensor],
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    nudging: float = 0.0,
    target: torch.Tensor | None = None,
    rho_name: str = "hard-sigmoid",
    labels: torch.Tensor | None = None,
    input_drive: torch.Tensor | None = None,
) -> torch.Tensor:
    """F = E + beta C of Eq. (3) per example (C the cross-entropy when ``labels`` is given)."""
    e = energy(x, states, weights, biases, rho_name, input_drive)
    if nudging == 0.0:
        return e
    if labels is not None:
        return e + nudging * readout_cost(states, weights, biases, labels, rho_name)  # Eq. (3)
    assert target is not None
    return e + nudging * cost(states[-1], target)  # Eq. (3)


def input_drive(
    x: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]
) -> torch.Tensor:
    """W_0 x + b_0, the input's drive of s_1: constant while x is clamped, so computed once
    per batch and shared by every phase (the ``input_drive`` argument of :func:`relax`)."""
    return torch.addmm(biases[0], x.flatten(1), weights[0].t())


def zero_states(
    batch: int, sizes: Sequence[int], like: torch.Tensor
) -> list[torch.Tensor]:
    """States s_1 .. of the given sizes, all 0 (the free phase's start without particles)."""
    return [like.new_zeros(batch, n) for n in sizes]


def relax(
    x: torch.Tensor,
    states: Sequence[torch.Tensor],
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    steps: int,
    step_size: float,
    nudging: float = 0.0,
    target: torch.Tensor | None = None,
    clamp_output: bool = False,
    rho_name: str = "hard-sigmoid",
    labels: torch.Tensor | None = None,
    record_energy: bool = False,
    differentiable: bool = False,
    input_drive: torch.Tensor | None = None,
) -> Relaxation:
    """Run ``steps`` Euler steps of Eq. (4)-(5) from ``states`` (not modified); no autograd.

    Args:
        x: the clamped input, (B, n_0) (flattened if it has more dimensions).
        states: s_1 .. s_L, or s_1 .. s_{L-1} with the cross-entropy output (then ``weights``
            has one more entry than ``states``: the readout).
        weights, biases: W_l of shape (n_{l+1}, n_l) and b_l of shape (n_{l+1},).
        steps, step_size: the number of Euler steps and eps.
        nudging: beta of Eq. (3), the strength of the pull toward ``target`` (or ``labels``).
        target: d, (B, n_L), for the squared-error cost; ``clamp_output`` holds s_L = d
            instead (the clamped phase of contrastive Hebbian learning and GeneRec).
        labels: class indices for the cross-entropy output.
        record_energy: also return F (mean over the batch) at every step.
        input_drive: W_0 x + b_0 if already computed (:func:`input_drive`).

    All layers are updated synchronously from the previous state (as in the reference code).
    Without ``differentiable`` nothing is recorded for autograd; with it the steps can be
    back-propagated through (backprop through time, the oracle of the theory tests).
    """
    with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
        return _relax(x, states, weights, biases, steps, step_size, nudging, target,
                      clamp_output, rho_name, labels, record_energy, input_drive)


def _relax(x, states, weights, biases, steps, step_size, nudging, target, clamp_output,
           rho_name, labels, record_energy, drive0) -> Relaxation:
    x = x.flatten(1)
    if (rho_name == "hard-sigmoid" and not record_energy and not torch.is_grad_enabled()
            and len(weights) == len(states)):
        return Relaxation(_relax_packed(x, states, weights, biases, steps, float(step_size),
                                        nudging, target, clamp_output, drive0), None)
    states = [s.clone() for s in states]
    L = len(states)
    ce = len(weights) == L + 1
    eps = float(step_size)
    hard = rho_name == "hard-sigmoid"
    _check_rho(rho_name)
    if clamp_output:
        assert target is not None and not ce
        states[-1] = target.clone()
    energies: list[torch.Tensor] = []

    def record() -> None:
        if record_energy:
            f = total_energy(x, states, weights, biases, 0.0 if clamp_output else nudging,
                             target, rho_name, labels if ce else None, drive0)
            energies.append(f.mean())

    # the input's drive is constant while x is clamped: eps (W_0 x + b_0), computed once
    if drive0 is None:
        drive0 = torch.addmm(biases[0], x, weights[0].t())
    bottom = drive0 * eps
    scaled_biases = [b * eps for b in biases]
    readout_w = weights[-1] if ce else None
    record()
    free_top = L - 1 if clamp_output else L
    for _ in range(steps):
        rates = states if hard else [rho(s, rho_name) for s in states]
        new = list(states)
        for k in range(free_top):
            # eps * (W_{k-1} rho(s_{k-1}) + b_{k-1})                                  Eq. (4)
            if k == 0:
                acc = bottom
            else:
                acc = torch.addmm(scaled_biases[k], rates[k - 1], weights[k].t(), alpha=eps)
            if k + 1 < L:  # + eps W_k^T rho(s_{k+1})                                    Eq. (4)
                acc = torch.addmm(acc, rates[k + 1], weights[k + 1], alpha=eps)
            top = k == L - 1
            if top and ce and nudging != 0.0:  # - eps beta W^T (softmax(o) - onehot(y))
                logits = torch.addmm(biases[-1], rates[k], readout_w.t())
                err = torch.softmax(logits, 1) - F.one_hot(labels, logits.shape[1]).to(x.dtype)
                acc = torch.addmm(acc, err, readout_w, alpha=-eps * nudging)
            if hard:
                if top and not ce and nudging != 0.0:  # - eps beta (s_L - d)            Eq. (4)
                    acc = acc.add(target, alpha=eps * nudging)
                    keep = 1.0 - eps - eps * nudging
                else:
                    keep = 1.0 - eps
                s = acc.add(states[k], alpha=keep) if acc is bottom else acc.add_(
                    states[k], alpha=keep
                )
                new[k] = s.clamp_(0.0, 1.0)  # Eq. (5)
            else:
                ds = acc.mul_(rho_prime(states[k], rho_name)).sub_(states[k], alpha=eps)
                if top and not ce and nudging != 0.0:
                    ds.sub_(states[k] - target, alpha=eps * nudging)  # Eq. (4)
                new[k] = ds.add_(states[k])  # Eq. (5), unclipped
        states = new
        record()
    return Relaxation(states, torch.stack(energies) if record_energy else None)


def _relax_packed(x, states, weights, biases, steps, eps, nudging, target, clamp_output,
                  drive0) -> list[torch.Tensor]:
    """Eq. (4)-(5) for the hard sigmoid with the squared-error output, packed for speed.

    All state layers live side by side in one (B, sum n_k) buffer (two of them, alternated,
    for the synchronous update). Inside the box rho(s) = s, so one step is, for every layer k,

        s_k <- clip(c_k + kappa_k s_k + eps W_{k-1} s_{k-1} + eps W_k^T s_{k+1}, 0, 1)

    with the constant c_k = eps (W_0 x + b_0) for k = 1, eps b_{k-1} above it, plus
    eps beta d for the nudged output, and kappa_k = 1 - eps (1 - eps - eps beta for the
    nudged output). Each layer's products go into its columns of the next buffer, and the terms
    without a product, c + kappa s, and the clip are applied to the whole buffer at once: one
    pass of a small C kernel (:mod:`bionn.native.energy`) where it can be built, else three
    in-place torch operations (:func:`_torch_tail`). The returned states are column blocks of
    one buffer (not contiguous, not shared with the inputs).
    """
    L = len(states)
    sizes = [s.shape[1] for s in states]
    offsets = [0]
    for n in sizes:
        offsets.append(offsets[-1] + n)
    cur = torch.cat([s.detach() for s in states], 1)
    if clamp_output:
        assert target is not None
        cur[:, offsets[-2]:] = target
    free_top = L - 1 if clamp_output else L
    if steps == 0 or free_top == 0:
        return [cur[:, offsets[k]:offsets[k + 1]] for k in range(L)]
    nxt = torch.empty_like(cur)
    if clamp_output:
        nxt[:, offsets[-2]:] = target
    if drive0 is None:
        drive0 = torch.addmm(biases[0], x, weights[0].t())
    width = offsets[free_top]
    const = torch.empty_like(cur[:, :width])
    nudged = free_top == L and nudging != 0.0
    for k in range(free_top):
        part = const[:, offsets[k]:offsets[k + 1]]
        if k == 0:
            torch.mul(drive0, eps, out=part)  # eps (W_0 x + b_0)                      Eq. (4)
        else:
            part.copy_((biases[k] * eps).expand_as(part))  # eps b_{k-1}                 Eq. (4)
    keep = torch.full((width,), 1.0 - eps, dtype=cur.dtype, device=cur.device)
    if nudged:  # - eps beta (s_L - d)                                                   Eq. (4)
        const[:, offsets[-2]:].add_(target, alpha=eps * nudging)
        keep[offsets[-2]:] = 1.0 - eps - eps * nudging
    # eps folded into the weights once, so that a step's calls carry no scalars
    down = [None] + [(w.t() * eps) for w in weights[1:]]  # eps W_{k-1}^T, bottom-up
    up = [(w * eps) for w in weights[1:]] + [None]  # eps W_k, top-down from s_{k+1}
    bufs = (cur, nxt)
    views = [[b[:, offsets[k]:offsets[k + 1]] for k in range(L)] for b in bufs]
    heads = list(bufs) if width == cur.shape[1] else [b[:, :width] for b in bufs]
    kernel = _tail_kernel(cur)
    plans = []  # per parity of the step: the products, then the tail
    for t in (0, 1):
        s_in, s_out = views[t], views[1 - t]
        calls = []
        for k in range(free_top):
            # the first product of a layer overwrites its columns of the next buffer, a
            # second one adds (a layer without products, the lone output, starts from 0)
            terms = []
            if k > 0:  # eps W_{k-1} s_{k-1}                                               Eq. (4)
                terms.append((s_in[k - 1], down[k]))
            if k + 1 < L:  # + eps W_k^T s_{k+1}                                           Eq. (4)
                terms.append((s_in[k + 1], up[k]))
            if not terms:
                calls.append(s_out[k].zero_)
            for i, (a, b) in enumerate(terms):
                calls.append(functools.partial(torch.mm, a, b, out=s_out[k]) if i == 0
                             else functools.partial(s_out[k].addmm_, a, b))
        # + c + kappa s, then the clip (Eq. 5): one C pass where the kernel exists
        calls.append(kernel.bind(heads[1 - t], const, heads[t], keep) if kernel is not None
                     else functools.partial(_torch_tail, heads[1 - t], const, heads[t], keep))
        plans.append(calls)
    for t in range(steps):
        for call in plans[t & 1]:
            call()
    # views of the last buffer (column blocks, one per layer): no copies
    return views[steps & 1]


def _torch_tail(out: torch.Tensor, c: torch.Tensor, s: torch.Tensor, kappa: torch.Tensor):
    """out = clip(out + c + kappa s, 0, 1) in torch (the fallback of the C kernel)."""
    out.add_(c).addcmul_(s, kappa).clamp_(0.0, 1.0)


#: Whether :func:`relax` may finish its steps with the compiled kernel of
#: :mod:`bionn.native.energy` (where it can be built); False runs the torch code only.
USE_NATIVE = True


def _tail_kernel(buffer: torch.Tensor):
    if not USE_NATIVE:
        return None
    from bionn.native.energy import relax_tail_kernel

    kernel = relax_tail_kernel()
    return kernel if kernel is not None and kernel.supports(buffer) else None


def hessian_top_eigenvalue(
    weights: Sequence[torch.Tensor], nudging: float = 0.0, clamp_output: bool = False
) -> float:
    """lambda_max of H = I - W~ + beta P_L, the Hessian of the hard-sigmoid F inside [0, 1].

    The free units are s_1 .. s_L (s_1 .. s_{L-1} when the output is clamped).
    """
    sizes = [w.shape[0] for w in weights]
    if clamp_output:
        sizes = sizes[:-1]
    n = sum(sizes)
    w0 = weights[0]
    h = torch.eye(n, dtype=torch.float64, device=w0.device)
    offsets = [0]
    for m in sizes:
        offsets.append(offsets[-1] + m)
    for l in range(1, len(sizes)):  # W_l couples s_l (rows offsets[l-1]) and s_{l+1}
        w = weights[l].detach().to(torch.float64)
        a, b = offsets[l - 1], offsets[l]
        h[b : b + sizes[l], a : a + sizes[l - 1]] -= w
        h[a : a + sizes[l - 1], b : b + sizes[l]] -= w.t()
    if nudging and not clamp_output:
        h[offsets[-2] :, offsets[-2] :] += nudging * torch.eye(sizes[-1], dtype=torch.float64,
                                                               device=w0.device)
    return float(torch.linalg.eigvalsh(h)[-1])


def step_size_bound(
    weights: Sequence[torch.Tensor], nudging: float = 0.0, clamp_output: bool = False
) -> float:
    """The Euler step eps below which the hard-sigmoid F never increases: 2 / lambda_max(H).

    The clipped step is projected gradient descent on the quadratic F over the box [0, 1]^n
    with Hessian H; for a projected gradient step of size eps on a function whose curvature is
    at most lambda, F(s') <= F(s) - (1/eps - lambda/2) ||s' - s||^2 (descent lemma), so F does
    not increase for eps <= 2 / lambda. Above the bound the component along the top eigenvector
    grows by |1 - eps lambda| > 1 per step and F increases near an interior fixed point.
    """
    lam = hessian_top_eigenvalue(weights, nudging, clamp_output)
    return math.inf if lam <= 0 else 2.0 / lam


# ---------------------------------------------------------------------------------------------
# the primitive-function form and the convolutional network (Laborieux et al. 2021)


class ConvParams(NamedTuple):
    """Parameters of the convolutional energy network.

    Attributes:
        conv_weights, conv_biases: the convolutions s_l -> s_{l+1}, each followed by a 2x2
            max pooling (P).
        padding: the convolutions' padding.
        fc_weights, fc_biases: the fully connected layers after the last convolution (the last
            one the output layer, or the readout with the cross-entropy output).
    """

    conv_weights: list[torch.Tensor]
    conv_biases: list[torch.Tensor]
    padding: int
    fc_weights: list[torch.Tensor]
    fc_biases: list[torch.Tensor]


def channels_last(t: torch.Tensor) -> torch.Tensor:
    """A 4-d tensor in the channels-last layout (a no-op when it is already): the pooling of
    a channels-last map is many times faster on the CPU, and the convolutions are faster too;
    the values are the same."""
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t


def conv_primitive(
    x: torch.Tensor,
    states: Sequence[torch.Tensor],
    params: ConvParams,
    nudging: float = 0.0,
    target: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Phi per example: sum_l s_{l+1} . P(conv(s_l)) + sum fc terms - beta C.        Eq. (6)

    ``states`` are the conv layers' pooled maps, then the fully connected layers (the output
    last, or, with ``labels``, without the output, which is then the readout of the last).
    """
    layers = [channels_last(t) for t in (x, *states)]
    nc = len(params.conv_weights)
    phi = x.new_zeros(x.shape[0])
    for l in range(nc):
        pre = F.conv2d(layers[l], channels_last(params.conv_weights[l]), params.conv_biases[l],
                       padding=params.padding)
        phi = phi + (F.max_pool2d(pre, 2) * layers[l + 1]).flatten(1).sum(1)  # Eq. (6)
    for j in range(len(states) - nc):
        drive = F.linear(layers[nc + j].flatten(1), params.fc_weights[j], params.fc_biases[j])
        phi = phi + (drive * layers[nc + j + 1]).sum(1)  # Eq. (6)
    if nudging != 0.0:
        if labels is not None:
            logits = F.linear(layers[-1].flatten(1), params.fc_weights[-1], params.fc_biases[-1])
            phi = phi - nudging * F.cross_entropy(logits, labels, reduction="none")  # Eq. (6)
        else:
            assert target is not None
            phi = phi - nudging * cost(layers[-1], target)  # Eq. (6)
    return phi


def conv_step(
    x: torch.Tensor,
    states: Sequence[torch.Tensor],
    params: ConvParams,
    nudging: float = 0.0,
    target: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    bottom: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """One step s_{t+1} = rho(dPhi/ds) (hard sigmoid), dPhi/ds in closed form.       Eq. (7)

    The top-down term of a pooled convolution is the transposed convolution of the unpooled
    state (the upper layer's value routed to the position that won the pooling of the current
    drive). ``bottom`` may hold P(conv_0(x)), which is constant while x is clamped.
    """
    layers = [channels_last(t) for t in (x, *states)]
    weights = [channels_last(w) for w in params.conv_weights]
    nc = len(params.conv_weights)
    n = len(states)
    ce = labels is not None
    grads: list[torch.Tensor] = [None] * n  # type: ignore[list-item]
    # bottom-up: P(conv_l(s_l)) for the conv layers, with the pooling indices for top-down
    indices: list[torch.Tensor] = [None] * nc  # type: ignore[list-item]
    shapes: list[torch.Size] = [None] * nc  # type: ignore[list-item]
    for l in range(nc):
        if l == 0 and bottom is not None:  # the input's drive; its pooling routes nothing down
            grads[0] = bottom
            continue
        pre = F.conv2d(layers[l], weights[l], params.conv_biases[l], padding=params.padding)
        pooled, idx = F.max_pool2d(pre, 2, return_indices=True)
        indices[l], shapes[l] = idx, pre.shape
        grads[l] = pooled
    for j in range(n - nc):
        grads[nc + j] = F.linear(layers[nc + j].flatten(1), params.fc_weights[j],
                                 params.fc_biases[j])
    # top-down: d/ds_l of s_{l+1} . P(conv_l(s_l)), l >= 1
    for l in range(1, nc):
        up = F.max_unpool2d(layers[l + 1], indices[l], 2, output_size=shapes[l][-2:])
        grads[l - 1] = grads[l - 1] + F.conv_transpose2d(up, weights[l], padding=params.padding)
    n_fc = n - nc
    if n_fc >= 1:  # the first fully connected layer feeds back into the last conv layer
        td = layers[nc + 1].flatten(1) @ params.fc_weights[0]
        grads[nc - 1] = grads[nc - 1] + td.view_as(grads[nc - 1])
    for j in range(n_fc - 1):  # fully connected state nc + j gets W_{j+1}^T s_{nc+j+2}
        grads[nc + j] = grads[nc + j] + layers[nc + j + 2].flatten(1) @ params.fc_weights[j + 1]
    if nudging != 0.0:
        if ce:
            w, b = params.fc_weights[-1], params.fc_biases[-1]
            top = layers[-1].flatten(1)
            logits = F.linear(top, w, b)
            err = torch.softmax(logits, 1) - F.one_hot(labels, logits.shape[1]).to(top.dtype)
            grads[-1] = grads[-1] - nudging * (err @ w).view_as(grads[-1])  # Eq. (7)
        else:
            grads[-1] = grads[-1] - nudging * (layers[-1] - target)  # Eq. (7)
    return [g.clamp_(0.0, 1.0) if g is not bottom else g.clamp(0.0, 1.0) for g in grads]
