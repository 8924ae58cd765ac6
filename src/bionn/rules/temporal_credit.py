"""Temporal credit assignment in recurrent networks: BPTT, truncated BPTT, RTRL, UORO, RFLO.

Lillicrap & Santoro 2019, "Backpropagation through time and the brain", Current Opinion in
Neurobiology 55:82-89, doi:10.1016/j.conb.2019.01.011: BPTT is the normative guide to credit
across time, its biological problem is storing and replaying the whole history, and the
alternatives are online approximations and memories that carry credit across long delays.
The algorithms follow their own papers:

- RTRL: Williams & Zipser 1989, "A learning algorithm for continually running fully recurrent
  neural networks", Neural Computation 1:270-280, doi:10.1162/neco.1989.1.2.270.
- UORO: Tallec & Ollivier 2018, "Unbiased online recurrent optimization", ICLR,
  arXiv:1702.05043.
- RFLO: Murray 2019, "Local online learning in recurrent networks with random feedback",
  eLife 8:e43299, doi:10.7554/eLife.43299.
- Truncated BPTT: Williams & Peng 1990, Neural Computation 2:490-501.
- Memory read by attention: Hung et al. 2019, Nat Commun 10:5223 (credit through retrieval).

The network (:class:`bionn.nn.recurrent.LeakyRNN`, Murray's Eq. 1 in discrete time; ``Theta =
[W | U | b]``, ``z_t = [a_{t-1}; x_t; 1]``, see :mod:`bionn.functional.recurrent`)::

    (1) h_t = Theta z_t,   a_t = (1 - alpha) a_{t-1} + alpha phi(h_t),   y_t = W_out a_t + b_out
    (2) L = (1 / n) sum_t sum_b l(y_t, target_t)     over the n (t, b) entries with a target
    (3) e_t = dL / dy_t,   dL/dW_out = sum_t e_t a_t^T,   dL/db_out = sum_t e_t

Algorithms (each writes p.grad = dL/dp, or its estimate, for the whole sequence):

1. ``bptt``: autograd through the unrolled sequence (memory O(T N)).
2. ``tbptt``: the sequence in chunks of K steps, the state detached between chunks; each
   chunk's loss is back-propagated through its own K steps only (memory O(K N)).
3. ``rtrl``: forward-mode influence matrices (Williams & Zipser Eqs. 10-13)::

       J_t = (1 - alpha) I + alpha diag(phi'(h_t)) W                        # Eq. (RTRL-J)
       M_t = J_t M_{t-1} + Mbar_t                                           # Eq. (RTRL-M)
       Mbar_t[i, k, l] = alpha phi'(h_t)_i z_t[l] delta_ik
       dL/dTheta = sum_t (W_out^T e_t)^T M_t                                # Eq. (RTRL-g)

   memory O(N^2 D), compute O(N^3 D) per step.
4. ``uoro``: the rank-one unbiased estimate M_t ~ a~_t theta~_t^T (Tallec & Ollivier Alg. 1;
   random signs nu_t, normalisers rho0, rho1)::

       a~_t = rho0 J_t a~_{t-1} + rho1 nu_t,  theta~_t = theta~_{t-1} / rho0 + nu_t^T Mbar_t / rho1
       dL/dTheta ~ sum_t ((W_out^T e_t) . a~_t) theta~_t                         # Eq. (UORO-g)

   memory O(N D), compute O(N D) per step (plus the network's own O(N^2)).
5. ``rflo``: J_t replaced by (1 - alpha) I, which keeps only the diagonal of M_t (Murray Eqs.
   13-15), and W_out^T replaced by a fixed random B::

       p_t = (1 - alpha) p_{t-1} + alpha phi'(h_t) z_t^T                        # Eq. (15)
       dTheta = -sum_t (B e_t) * p_t   (row i scaled by (B e_t)_i)              # Eq. (14)

   memory O(N D), compute O(N D) per step.

The attention-memory network (:class:`bionn.nn.recurrent.AttentionRNN`, ``--model attention``)
is trained by ``bptt`` or ``tbptt``: its read reaches every stored state, so credit for a
recall reaches the retrieved state's key and value whatever the truncation.

Symbols (paper -> code)

| paper | code | meaning |
| --- | --- | --- |
| ``W, U, b`` | ``weight_hh, weight_ih, bias`` | recurrent, input weights, bias |
| ``alpha = dt/tau`` | ``leak`` (``model.alpha``) | leak of the rate units |
| ``phi`` | ``--activation`` | the units' non-linearity |
| ``W_out`` | ``readout`` | linear readout |
| ``B`` | ``model.feedback`` (buffer) | RFLO's fixed random feedback (N, C) |
| ``K`` (``h`` in Williams & Peng) | ``truncation`` | TBPTT chunk length |
| ``M_t`` / ``p_t`` | ``m`` / ``p`` | influence matrix / RFLO eligibility trace |
| ``a~, theta~, nu`` | ``a_tilde, theta_tilde, nu`` | UORO's rank-one factors, random signs |
| ``e_t`` | ``e`` | error at the readout, dL/dy_t |

Deviations from the papers

- The online rules (rtrl, uoro, rflo) run forward in time with memory independent of T, but
  add their per-step contributions over the sequence and fill ``.grad`` once per batch
  instead of updating the weights at every step. So RTRL's update is exactly BPTT's (the
  identity the tests check), every rule gets one optimizer step per batch (the same budget
  as BPTT), and any optimizer can step them. Williams & Zipser and Murray also describe
  this accumulated form ("epochwise"/trial-averaged); the per-step form differs by O(eta^2).
- The loss is the mean over the entries with a target (Eq. 2) of the cross-entropy, or of the
  squared error for values; Murray uses squared error per step, Tallec & Ollivier any loss.
- RFLO learns U and b with the same eligibility trace as W (Murray learns W_in and W with
  Eq. 14-15 as here); W_out learns by its exact gradient, as in Murray.
- UORO adds eps = 1e-7 inside rho0 and rho1 (the paper's Alg. 1 leaves the zero start open);
  the random signs come from torch's generator, so the run's seed fixes them.
- Truncated BPTT adds the chunks' gradients into one update per batch (Williams & Peng's
  BPTT(h; h) applies one per chunk); memory is O(K N) either way.
- RFLO and UORO run by default (``kernel = auto``) as one C loop over the steps
  (:mod:`bionn.native.recurrent`), which computes the same recursions as the torch code here
  (the fallback, and ``kernel = torch``); the equations' line markers are in both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bionn.core.registry import RuleInfo, register_rule
from bionn.core.rule import LearningRule, backprop_grads, batch_metrics, trainable_parameters
from bionn.errors import ConfigError
from bionn.functional.recurrent import (
    ACTIVATIONS,
    phi_and_derivative,
    rflo_step_,
    rtrl_step,
    uoro_step_,
)
from bionn.functional.targets import (
    IGNORE_INDEX,
    sequence_loss,
    step_targets,
    target_mask,
)
from bionn.nn.recurrent import AttentionRNN, LeakyRNN
from bionn.rules.feedback_alignment import check_feedback_scale, feedback_scale_field

__all__ = [
    "BPTT",
    "RFLO",
    "OnlineConfig",
    "RFLOConfig",
    "RTRL",
    "RecurrentConfig",
    "TBPTT",
    "TBPTTConfig",
    "UORO",
    "build_recurrent_model",
    "online_gradients",
]

PAPER = "Lillicrap & Santoro 2019, Curr Opin Neurobiol 55:82-89 (doi:10.1016/j.conb.2019.01.011)"
DEFAULT_HIDDEN = 64
MODEL_FORMS = "'rnn' (a leaky RNN of 64 units), 'rnn:N', 'attention' or 'attention:N'"
RUN_DEFAULT_MODEL = "mlp:1000"  # TrainConfig's default --model: the rule's default network


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class RecurrentConfig:
    """The recurrent network every temporal-credit rule trains."""

    leak: float = field(
        default=0.5, metadata=_help("alpha = dt/tau in (0, 1]: leak of the rate units (Eq. 1)")
    )

    def __post_init__(self) -> None:
        if (
            isinstance(self.leak, bool)
            or not isinstance(self.leak, int | float)
            or not 0.0 < self.leak <= 1.0
        ):
            raise ConfigError(f"--leak must lie in (0, 1], got {self.leak!r}")


@dataclass(frozen=True)
class TBPTTConfig(RecurrentConfig):
    """Truncated BPTT: the chunk length K."""

    truncation: int = field(
        default=10, metadata=_help("K: steps each chunk is back-propagated through (TBPTT)")
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if (
            isinstance(self.truncation, bool)
            or not isinstance(self.truncation, int)
            or self.truncation <= 0
        ):
            raise ConfigError(f"--truncation must be a positive integer, got {self.truncation!r}")


KERNELS = ("auto", "native", "torch")


@dataclass(frozen=True)
class OnlineConfig(RecurrentConfig):
    """UORO and RFLO: which implementation of the online loop runs."""

    kernel: str = field(
        default="auto",
        metadata=_help("which implementation runs the rule's inner loop: native (a C "
                       "kernel compiled on first use), torch, or auto (native where a C "
                       "compiler is found, else torch); both compute the same update "
                       "(krotov: the ranking and row update after the product; uoro, "
                       "rflo: the online loop over the steps, on CPU tensors)"),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kernel not in KERNELS:
            raise ConfigError(
                f"--kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}"
            )


@dataclass(frozen=True)
class RFLOConfig(OnlineConfig):
    """RFLO: the scale of the fixed random feedback B."""

    feedback_scale: float = feedback_scale_field()

    def __post_init__(self) -> None:
        super().__post_init__()
        check_feedback_scale(self.feedback_scale)


def build_recurrent_model(
    spec: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    activation: str,
    leak: float,
    feedback_scale: float | None = None,
    attention: bool = True,
) -> nn.Module:
    """The network ``spec`` names (see ``MODEL_FORMS``) for inputs of ``input_shape[-1]``
    channels; the run's default ``--model`` gives a leaky RNN of 64 units."""
    if spec == RUN_DEFAULT_MODEL:
        spec = "rnn"
    kind, _, size = spec.partition(":")
    try:
        hidden = int(size) if size else DEFAULT_HIDDEN
    except ValueError:
        raise ConfigError(f"--model {spec!r}: the size must be an integer; {MODEL_FORMS}") from None
    if activation not in ACTIVATIONS:
        raise ConfigError(
            f"recurrent rules take --activation {', '.join(ACTIVATIONS)}, got {activation!r}"
        )
    features = int(input_shape[-1])
    if kind == "rnn":
        return LeakyRNN(features, hidden, num_classes, leak, activation,
                        feedback_scale=feedback_scale)
    if kind == "attention":
        if not attention:
            raise ConfigError(
                f"--model {spec}: this online rule trains the leaky RNN only; "
                "use bptt or tbptt for the attention-memory network"
            )
        return AttentionRNN(features, hidden, num_classes, leak, activation)
    raise ConfigError(f"unknown --model {spec!r} for a recurrent rule; {MODEL_FORMS}")


class _Recurrent(LearningRule):
    """What every temporal-credit rule shares: the network, the loss, the prediction."""

    supervised = True
    time_major = True
    config_class = RecurrentConfig
    attention = True

    def __init__(self, config: RecurrentConfig | None = None) -> None:
        self.config = config or self.config_class()

    def build_model(
        self, spec: str, input_shape: tuple[int, ...], num_classes: int, activation: str
    ) -> nn.Module:
        """The recurrent network of ``spec`` (``rnn[:N]`` or ``attention[:N]``)."""
        return build_recurrent_model(
            spec, input_shape, num_classes, activation, self.config.leak,
            feedback_scale=getattr(self.config, "feedback_scale", None),
            attention=self.attention,
        )

    def model_name(self, spec: str, model: nn.Module) -> str:
        """The network built, e.g. ``'rnn:64 (leaky RNN 12-64-9, alpha 0.5, tanh)'``; the
        run's default ``--model`` is recorded as the leaky RNN it gives, not as an MLP."""
        kind = "attention" if isinstance(model, AttentionRNN) else "rnn"
        what = "leaky RNN with an attention memory" if kind == "attention" else "leaky RNN"
        return (f"{kind}:{model.hidden} ({what} {model.in_features}-{model.hidden}-"
                f"{model.out_features}, alpha {model.alpha:g}, {model.activation})")

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Eq. (2): the mean loss over the (step, example) entries that have a target."""
        return sequence_loss(output, y)

    def plots(
        self,
        model: nn.Module,
        history: list[dict[str, Any]],
        run_dir: Path,
        data: tuple[torch.Tensor, torch.Tensor],
    ) -> list[Path]:
        """The outputs of the first test sequence against its targets."""
        from bionn.plots.temporal_credit import plot_sequence_outputs

        x, y = data
        if x.dim() != 3:
            return []
        with torch.no_grad():
            out = model(x[:, :1])
        first = y[:1] if y.dim() == 1 else y[:, :1]
        targets = step_targets(out, first)[:, 0]
        return [plot_sequence_outputs(out[:, 0], targets, Path(run_dir) / "outputs.png")]


class BPTT(_Recurrent):
    """Backpropagation through time: autograd through the whole unrolled sequence."""

    name = "bptt"

    def fill_grads(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        return backprop_grads(self, model, x, y)


class TBPTT(_Recurrent):
    """Truncated BPTT: chunks of K steps, the state (and memory) detached between them."""

    name = "tbptt"
    config_class = TBPTTConfig

    def fill_grads(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        params = trainable_parameters(model)
        for p in params:
            p.grad = None
        steps = x.shape[0]
        k = self.config.truncation
        state = model.initial_state(x)
        outputs = []
        template = x.new_empty(steps, x.shape[1], 1)
        targets = step_targets(template, y)
        count = int(target_mask(targets).sum())
        total = x.new_zeros(())
        for start in range(0, steps, k):
            state = model.detach_state(state)  # no credit crosses a chunk boundary
            chunk = []
            for t in range(start, min(start + k, steps)):
                out, state = model.step(x[t], state)
                chunk.append(out)
            out_chunk = torch.stack(chunk)
            y_chunk = targets[start : start + len(chunk)]
            if bool(target_mask(y_chunk).any()):
                loss = sequence_loss(out_chunk, y_chunk, count=count)
                loss.backward()  # gradients of the chunks add up in .grad
                total = total + loss.detach()
            outputs.append(out_chunk.detach())
        return batch_metrics(total, torch.cat(outputs), targets)


def _step_errors(
    targets: torch.Tensor, count: int, dtype: torch.dtype
) -> tuple[Any, ...]:
    """What e_t = dL/dy_t needs besides y_t, per step (views of the sequence's targets).

    Classes: the target index (0 where none) and keep / count, so that
    ``e_t = (softmax(y_t) - onehot) * keep / count``. Values: the target (0 where none) and
    2 keep / count, so that ``e_t = (y_t - target) * 2 keep / count``. Both are the size of
    the targets themselves; nothing here grows with the network.
    """
    count = max(count, 1)
    if targets.is_floating_point():
        keep = ~torch.isnan(targets)
        return (torch.nan_to_num(targets).unbind(0),
                (keep.to(targets.dtype) * (2.0 / count)).unbind(0))
    keep = targets != IGNORE_INDEX
    index = torch.where(keep, targets, torch.zeros_like(targets))[:, :, None]
    return index.unbind(0), (keep[:, :, None].to(dtype) / count).unbind(0)


def online_gradients(
    model: LeakyRNN,
    x: torch.Tensor,
    y: torch.Tensor,
    method: str,
    generator: torch.Generator | None = None,
    kernel: str = "auto",
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Run ``model`` forward over ``x`` once and return the ``method``'s gradient of Eq. (2).

    ``method`` is ``rtrl``, ``uoro`` or ``rflo``. Returns the gradients by parameter name, the
    loss and the outputs (T, B, C). Nothing of size N is stored per step: the traces, the state
    and the accumulated gradients live in buffers allocated once, so memory is independent of
    T except for the outputs (T B C numbers, returned for the loss and the metrics).
    ``generator`` draws UORO's random signs (torch's default generator when None).

    Each step is a fixed, short list of fused in-place operations (``mm``/``addmm`` with
    ``out=``, ``baddbmm_`` for the rank-one trace updates, ``lerp`` for the leak), so a
    single sequence (batch 1) costs a few dozen tensor operations per step, whatever N.
    ``kernel`` (``auto``, ``native``, ``torch``): RFLO and UORO on CPU tensors run instead in
    one C loop (:mod:`bionn.native.recurrent`) where it can be built (``auto``), which
    computes the same update; ``native`` insists on it.
    """
    if not isinstance(model, LeakyRNN) or isinstance(model, AttentionRNN):
        raise ConfigError(f"{method} trains the leaky RNN (--model rnn[:N]) only")
    if method == "rflo" and model.feedback is None:
        raise ConfigError("rflo needs a network with a feedback matrix B (feedback_scale)")
    with torch.no_grad():
        w, u, b = model.weight_hh.detach(), model.weight_ih.detach(), model.bias.detach()
        w_out, b_out = model.readout.weight.detach(), model.readout.bias.detach()
        theta = torch.cat([w, u, b[:, None]], dim=1)  # Theta = [W | U | b], (N, D)
        w = theta[:, : w.shape[1]]
        theta_t, w_out_t = theta.T, w_out.T
        alpha, name = model.alpha, model.activation
        steps, batch, f = x.shape
        n, d = theta.shape
        classes = w_out.shape[0]
        targets = step_targets(x.new_empty(steps, batch, 1), y)
        mask = target_mask(targets)
        count = int(mask.sum())
        has_target = mask.reshape(steps, -1).any(1).tolist()
        regression = targets.is_floating_point()
        native = _native_kernel(x, method, name, kernel)
        if native is not None:
            return _native_online(native, model, x, targets, mask, count, theta, method,
                                  generator)
        goal, scale = _step_errors(targets, count, x.dtype)
        # buffers, allocated once: z_t = [a_{t-1}; x_t; 1] (two, alternating), h_t, phi(h_t),
        # phi'(h_t), the outputs, e_t, and the accumulated gradients
        zs = (x.new_zeros(batch, d), x.new_zeros(batch, d))
        zs[0][:, -1] = 1.0
        zs[1][:, -1] = 1.0
        h, act, dphi = (x.new_empty(batch, n) for _ in range(3))
        outputs = x.new_empty(steps, batch, classes)
        out_steps = outputs.unbind(0)
        e = x.new_empty(batch, classes)
        minus_one = x.new_full((batch, 1), -1.0)
        c = x.new_empty(batch, n)
        if method == "rtrl":
            m = x.new_zeros(batch, n, n, d)
        elif method == "uoro":
            a_tilde = x.new_zeros(batch, n)
            theta_tilde = x.new_zeros(batch, n, d)
            nu = x.new_empty(batch, n)
            scale_b = x.new_empty(batch)
        else:
            p = x.new_zeros(batch, n, d)
            feedback_t = model.feedback.T
        g_theta = torch.zeros_like(theta)
        g_flat = g_theta.view(1, n * d)
        g_wout = torch.zeros_like(w_out)
        g_bout = torch.zeros_like(b_out)
        for t, x_t in enumerate(x.unbind(0)):
            z, z_next = zs[t % 2], zs[(t + 1) % 2]
            z[:, n : n + f].copy_(x_t)
            a, a_new = z[:, :n], z_next[:, :n]
            torch.mm(z, theta_t, out=h)  # Eq. (1)
            phi_and_derivative(name, h, act, dphi)
            torch.lerp(a, act, alpha, out=a_new)  # Eq. (1)
            if method == "rtrl":
                m = rtrl_step(m, dphi, z, w, alpha)  # Eq. (RTRL-M)
            elif method == "uoro":
                if generator is None or generator.device == nu.device:
                    torch.randint(0, 2, (batch, n), generator=generator, out=nu)
                else:  # signs drawn where the generator lives
                    nu.copy_(torch.randint(0, 2, (batch, n), generator=generator,
                                           device=generator.device))
                nu.mul_(2.0).sub_(1.0)
                uoro_step_(a_tilde, theta_tilde, dphi, z, w, alpha, nu)
            else:
                rflo_step_(p, dphi, z, alpha)  # Eq. (15)
            out = torch.addmm(b_out, a_new, w_out_t, out=out_steps[t])
            if not has_target[t]:
                continue
            # Eq. (3): e_t = dL/dy_t of this step's share of Eq. (2), (B, C)
            if regression:
                torch.sub(out, goal[t], out=e).mul_(scale[t])
            else:
                e = torch.softmax(out, 1).scatter_add_(1, goal[t], minus_one).mul_(scale[t])
            g_wout.addmm_(e.T, a_new)  # Eq. (3)
            g_bout.add_(e.sum(0))
            if method == "rtrl":
                torch.mm(e, w_out, out=c)  # dL_t/da_t = W_out^T e_t
                g_theta += torch.einsum("bi,bikl->kl", c, m)  # Eq. (RTRL-g)
            elif method == "uoro":
                torch.mm(e, w_out, out=c)
                torch.sum(c.mul_(a_tilde), 1, out=scale_b)
                g_flat.addmm_(scale_b[None], theta_tilde.view(batch, n * d))  # Eq. (UORO-g)
            else:
                torch.mm(e, feedback_t, out=c)  # B e_t in place of W_out^T e_t
                if batch == 1:
                    g_theta.addcmul_(c[0][:, None], p[0])  # Eq. (14)
                else:
                    g_theta += torch.einsum("bi,bid->id", c, p)  # Eq. (14)
        total = sequence_loss(outputs, targets, count=count)  # Eq. (2), summed over t
    grads = {
        "weight_hh": g_theta[:, :n],
        "weight_ih": g_theta[:, n : n + f],
        "bias": g_theta[:, -1],
        "readout.weight": g_wout,
        "readout.bias": g_bout,
    }
    return grads, total, outputs


NATIVE_CHUNK = 64  # UORO's signs are drawn for this many steps at a time


def _native_kernel(x: torch.Tensor, method: str, activation: str, kernel: str):
    """The C kernel for this call, or None for the torch code (``kernel`` = auto|native|torch)."""
    if kernel == "torch" or method not in ("rflo", "uoro"):
        return None
    from bionn.native import unavailable_reason
    from bionn.native.recurrent import RecurrentKernel, recurrent_kernel

    if not RecurrentKernel.supports(x, method, activation):
        if kernel == "native":
            raise ConfigError(f"--kernel native runs {method} on float32 or float64 CPU "
                              f"tensors, got {x.dtype} on {x.device}")
        return None
    found = recurrent_kernel()
    if found is None and kernel == "native":
        raise ConfigError("--kernel native: the C kernel is not available: "
                          f"{unavailable_reason('recurrent')}")
    return found


def _native_online(
    native: Any, model: LeakyRNN, x: torch.Tensor, targets: torch.Tensor,
    mask: torch.Tensor, count: int, theta: torch.Tensor, method: str,
    generator: torch.Generator | None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """:func:`online_gradients` for RFLO and UORO in the C kernel: the same recursions,
    Eqs. (1), (3), (14), (15) and UORO's, one C loop over the steps (``recurrent.c``)."""
    steps, batch, f = x.shape
    n, d = theta.shape
    x = x.contiguous()
    w_out = model.readout.weight.detach().contiguous()
    b_out = model.readout.bias.detach().contiguous()
    scale_count = 1.0 / max(count, 1)
    if targets.is_floating_point():
        cls = None
        goal = torch.nan_to_num(targets).to(x.dtype).contiguous()
        scale = (~torch.isnan(targets)).to(x.dtype).mul_(2.0 * scale_count).contiguous()
    else:
        goal = None
        cls = torch.where(mask, targets, torch.full_like(targets, -1)).contiguous()
        scale = mask.to(x.dtype).mul_(scale_count).contiguous()
    has_target = mask.reshape(steps, -1).any(1).to(torch.uint8).contiguous()
    feedback = model.feedback.detach().contiguous() if method == "rflo" else None
    a = x.new_zeros(batch, n)
    trace = x.new_zeros(batch, n, d)  # RFLO's p, or UORO's theta~
    a_tilde = x.new_zeros(batch, n) if method == "uoro" else None
    outputs = x.new_empty(steps, batch, w_out.shape[0])
    g_theta, g_wout, g_bout = torch.zeros_like(theta), torch.zeros_like(w_out), \
        torch.zeros_like(b_out)
    chunk = NATIVE_CHUNK if method == "uoro" else max(steps, 1)
    for t0 in range(0, steps, chunk):
        t1 = min(t0 + chunk, steps)
        nu = None
        if method == "uoro":
            nu = torch.randint(0, 2, (t1 - t0, batch, n), generator=generator,
                               dtype=x.dtype).mul_(2.0).sub_(1.0)
        native.run(method, x[t0:t1], None if cls is None else cls[t0:t1],
                   None if goal is None else goal[t0:t1], scale[t0:t1], has_target[t0:t1],
                   theta, w_out, b_out, feedback, model.alpha, model.activation, nu, 1e-7, a,
                   trace, a_tilde, outputs[t0:t1], g_theta, g_wout, g_bout)
    total = sequence_loss(outputs, targets, count=count)  # Eq. (2), summed over t
    grads = {
        "weight_hh": g_theta[:, :n],
        "weight_ih": g_theta[:, n : n + f],
        "bias": g_theta[:, -1],
        "readout.weight": g_wout,
        "readout.bias": g_bout,
    }
    return grads, total, outputs


class _Online(_Recurrent):
    """An online rule: forward-mode traces, one accumulated update per batch."""

    attention = False
    method = ""

    def fill_grads(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        grads, loss, outputs = online_gradients(model, x, y, self.method,
                                                kernel=getattr(self.config, "kernel", "torch"))
        named = dict(model.named_parameters())
        for key, g in grads.items():
            if named[key].requires_grad:
                named[key].grad = g.clone()
        return batch_metrics(loss, outputs, y)


class RTRL(_Online):
    """Real-time recurrent learning: the exact gradient, forward in time."""

    name = "rtrl"
    method = "rtrl"


class UORO(_Online):
    """Unbiased online recurrent optimisation: a rank-one, unbiased estimate of RTRL."""

    name = "uoro"
    method = "uoro"
    config_class = OnlineConfig


class RFLO(_Online):
    """Random-feedback local online learning: diagonal traces and a fixed random B."""

    name = "rflo"
    method = "rflo"
    config_class = RFLOConfig


_PAPERS = {
    "bptt": "Werbos 1990; " + PAPER,
    "tbptt": "Williams & Peng 1990, Neural Computation 2:490-501; " + PAPER,
    "rtrl": "Williams & Zipser 1989, Neural Computation 1:270-280",
    "uoro": "Tallec & Ollivier 2018, ICLR (arXiv:1702.05043)",
    "rflo": "Murray 2019, eLife 8:e43299 (doi:10.7554/eLife.43299)",
}
_DESCRIPTIONS = {
    "bptt": "backpropagation through time over the whole sequence (recurrent nets)",
    "tbptt": "truncated BPTT: chunks of K steps, no credit across chunk boundaries",
    "rtrl": "real-time recurrent learning: exact gradient forward in time, O(N^2 D) memory",
    "uoro": "unbiased online recurrent optimisation: a rank-one estimate of RTRL",
    "rflo": "random-feedback local online learning: diagonal traces, fixed random feedback",
}
for _cls in (BPTT, TBPTT, RTRL, UORO, RFLO):
    register_rule(RuleInfo(
        name=_cls.name,
        factory=_cls,
        description=_DESCRIPTIONS[_cls.name],
        paper=_PAPERS[_cls.name],
        config_class=_cls.config_class,
    ))
