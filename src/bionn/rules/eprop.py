"""e-prop: online learning in recurrent spiking networks with eligibility traces.

Bellec, Scherr, Subramoney, Hajek, Salaj, Legenstein & Maass 2020, "A solution to the learning
dilemma for recurrent networks of spiking neurons", Nature Communications 11:3625,
doi:10.1038/s41467-020-17236-y; the online alternatives to BPTT in Lillicrap & Santoro 2019,
Curr Opin Neurobiol 55:82-89. The network (:class:`bionn.nn.eprop.RecurrentSpikingNetwork`)
and the neuron and trace equations (M1)-(M10) are in :mod:`bionn.functional.eprop`.

The gradient of the loss E factorises exactly into a learning signal per neuron and an
eligibility trace per synapse, both available forward in time except for the total
derivative::

    (1) dE/dW_ji = sum_t (dE/dz_j^t) e_ji^t,   e_ji^t = [dz_j^t / dW_ji]_local

e-prop replaces the total derivative dE/dz_j^t by the partial one, dE/dz_j^t ~ L_j^t, which
only needs the present error of the readout::

    (2) L_j^t = dE/dz_j^t  (partial: through the readout only)
    (3) DeltaW_ji = -eta sum_t L_j^t ebar_ji^t,    ebar = the readout-filtered trace (Eq. M10)
    (4) L_j^t = sum_k B_jk dE/dy_k^t   (B_jk (y_k^t - y*_k^t) for the squared error,
                                        B_jk (pi_k^t - pi*_k^t) for the cross-entropy)

Algorithm (``eprop`` and ``eprop-random``; one pass forward in time, in chunks of K steps,
memory independent of T):

1. Step the neurons (Eqs. M1-M5) and the presynaptic traces zbar (Eq. M7) for the K steps of
   a chunk, keeping only per-neuron quantities (z, psi, zbar).
2. The readout over the chunk (Eq. M6) and, where a step has a target, the error at the
   readout e^t = dE/dy^t and the learning signal L^t = B e^t (Eq. 4): ``B = W_out^T``
   (``eprop``, symmetric) or a fixed random B (``eprop-random``).
3. -DeltaW = sum_t L^t ebar^t (Eq. 3) for W_in and W_rec, evaluated for the chunk by the
   linear identity sum_t L^t ebar^t = kappa Lbar^{t0} ebar^{t0-1} + sum_s (1 - kappa)
   Lbar^s e^s (Lbar the learning signal filtered backwards within the chunk), with e^s's
   eps_a part carried by a backward recursion of per-neuron scalars (Eq. C1 of
   :mod:`bionn.functional.eprop`): one matrix product over (K x B) rows per chunk. The
   per-synapse states ebar (Eq. M10) and eps_a (Eq. M8) are carried to the next chunk the
   same way. W_out and b_out by their exact gradients sum_t e^t zbar_out^t and sum_t e^t
   (zbar_out: the spikes filtered as by the readout).
4. Firing-rate regulariser E_reg = c_reg sum_j (f_j - f_target)^2 (f_j the neuron's mean rate
   over the batch and trial, in spikes per ms): its learning signal dE_reg/dz_j^t =
   2 c_reg (f_j - f_target) / (T B) is the same at every step, so its update is that factor
   times the sum of the unfiltered traces e^t, accumulated over the chunks (Eq. REG).
5. ``p.grad = -DeltaW / eta`` for every parameter.

``rsnn-bptt`` trains the same network by autograd through the unrolled trial, the spikes
differentiated through their pseudo-derivative psi (Eq. M5), with the same regulariser.

Symbols (paper -> code)

| paper | code | meaning |
| --- | --- | --- |
| ``tau_m``, ``alpha = exp(-dt/tau_m)`` | ``tau_m`` | membrane time constant (ms) |
| ``tau_a``, ``rho = exp(-dt/tau_a)`` | ``tau_a`` | adaptation time constant (ms) |
| ``tau_out``, ``kappa = exp(-dt/tau_out)`` | ``tau_out`` | readout time constant (ms) |
| ``v_th`` | ``v_th`` | base threshold |
| ``beta`` | ``adapt_beta`` | ALIF threshold adaptation (``beta`` is taken by other rules) |
| ``gamma_pd`` | ``gamma_pd`` | dampening of the pseudo-derivative psi |
| ``n_ref`` | ``n_ref`` | refractory steps |
| ``c_reg``, ``f_target`` | ``reg_weight``, ``reg_rate`` (Hz) | firing-rate regulariser |
| ``W_in, W_rec, W_out`` | ``weight_ih, weight_hh, readout_weight`` | weights |
| ``B`` | ``W_out^T`` / ``model.feedback`` | feedback of the learning signal |
| ``e, ebar, eps_a, zbar`` | ``e``, ``traces.ebar``, ``traces.eps_a``, ``traces.zbar`` | traces |
| ``L_j^t`` | ``signal`` | learning signal |
| ``K`` | ``trace_chunk`` | steps contracted at once (Eq. C1); not in the paper |

Deviations from the paper

- The update is accumulated over the trial and written to ``.grad`` once per batch (as the
  authors' code does), not applied at every step; any optimizer then steps it (the paper uses
  Adam).
- The readout has a bias b_out added after the filter (y^t + b_out); the authors' code has none.
- The regulariser uses the rate averaged over the whole trial (the authors' "simple" form),
  which an online learner knows only at the trial's end; its update is still accumulated
  online from the summed traces, so memory stays independent of T.
- A refractory neuron is silent for the ``n_ref`` steps after its spike (the authors' code
  silences ``n_ref - 1``).
- Random feedback B is uniform in +-``feedback_scale`` times the range of W_out's initial
  weights (the authors draw it from a standard normal).
- The sums of Eq. (3) are evaluated per chunk of K steps (Eq. C1) instead of one step at a
  time: the same update to float rounding, whatever K (the tests check K = 1 .. T against
  autograd), with memory O(K) instead of O(1) in T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bionn.core.registry import RuleInfo, register_rule
from bionn.core.rule import LearningRule, batch_metrics, trainable_parameters
from bionn.errors import ConfigError
from bionn.functional.eprop import eprop_chunk_sums
from bionn.functional.targets import (
    sequence_loss,
    step_loss_and_error,
    step_targets,
    target_mask,
)
from bionn.nn.eprop import RecurrentSpikingNetwork
from bionn.rules.feedback_alignment import check_feedback_scale, feedback_scale_field

__all__ = [
    "EProp",
    "EPropConfig",
    "EPropRandom",
    "EPropRandomConfig",
    "RSNNBPTT",
    "build_spiking_model",
    "eprop_gradients",
    "rate_regulariser",
]

PAPER = "Bellec et al. 2020, Nat Commun 11:3625 (doi:10.1038/s41467-020-17236-y)"
MODEL_FORMS = "'rsnn' (50 LIF + 50 ALIF neurons) or 'rsnn:L+A' (L LIF and A ALIF neurons)"
RUN_DEFAULT_MODEL = "mlp:1000"  # TrainConfig's default --model: the rule's default network


def _help(text: str) -> dict[str, str]:
    return {"help": text}


def _number(name: str, value: Any, low: float, low_open: bool = True) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= low if low_open else value < low):
        sign = ">" if low_open else ">="
        flag = "--" + name.replace("_", "-")
        raise ConfigError(f"{flag} must be a number {sign} {low}, got {value!r}")


@dataclass(frozen=True)
class EPropConfig:
    """The spiking network and the regulariser of e-prop (defaults: the authors' evidence
    accumulation settings, dt = 1 ms)."""

    tau_m: float = field(default=20.0, metadata=_help(
        "tau_m (ms): membrane time constant, alpha = exp(-1/tau_m) (Eq. M1)"))
    tau_a: float = field(default=2000.0, metadata=_help(
        "tau_a (ms): threshold-adaptation time constant, rho = exp(-1/tau_a) (Eq. M2)"))
    tau_out: float = field(default=20.0, metadata=_help(
        "tau_out (ms): readout time constant, kappa = exp(-1/tau_out) (Eq. M6)"))
    v_th: float = field(default=0.6, metadata=_help("v_th: base firing threshold (Eq. M3)"))
    adapt_beta: float = field(default=0.0174, metadata=_help(
        "beta: threshold increase per unit of adaptation of the ALIF neurons (Eq. M3)"))
    gamma_pd: float = field(default=0.3, metadata=_help(
        "gamma_pd: dampening of the pseudo-derivative psi (Eq. M5)"))
    n_ref: int = field(default=5, metadata=_help(
        "n_ref: refractory steps after a spike, psi = 0 during them (Eq. M4)"))
    reg_weight: float = field(default=1.0, metadata=_help(
        "c_reg: weight of the firing-rate regulariser (Eq. REG); 0 disables it"))
    reg_rate: float = field(default=10.0, metadata=_help(
        "f_target (Hz): the target firing rate of the regulariser (Eq. REG)"))
    trace_chunk: int = field(default=100, metadata=_help(
        "K: steps whose eligibility traces e-prop contracts at once (Eq. C1; rsnn-bptt "
        "ignores it); memory grows with K, not with the trial length; the update does not "
        "depend on it"))

    def __post_init__(self) -> None:
        for name in ("tau_m", "tau_a", "tau_out", "v_th", "gamma_pd"):
            _number(name, getattr(self, name), 0.0)
        for name in ("adapt_beta", "reg_weight", "reg_rate"):
            _number(name, getattr(self, name), 0.0, low_open=False)
        if isinstance(self.n_ref, bool) or not isinstance(self.n_ref, int) or self.n_ref < 0:
            raise ConfigError(f"--n-ref must be an integer >= 0, got {self.n_ref!r}")
        if (isinstance(self.trace_chunk, bool) or not isinstance(self.trace_chunk, int)
                or self.trace_chunk < 1):
            raise ConfigError(f"--trace-chunk must be an integer >= 1, got {self.trace_chunk!r}")
        if self.reg_rate >= 1000.0:
            raise ConfigError(
                f"--reg-rate is in Hz with 1 ms steps and must be < 1000, got {self.reg_rate}"
            )


@dataclass(frozen=True)
class EPropRandomConfig(EPropConfig):
    """Random e-prop: the scale of the fixed random feedback B."""

    feedback_scale: float = feedback_scale_field()

    def __post_init__(self) -> None:
        super().__post_init__()
        check_feedback_scale(self.feedback_scale)


def build_spiking_model(
    spec: str, input_shape: tuple[int, ...], num_classes: int, config: EPropConfig
) -> RecurrentSpikingNetwork:
    """The network ``spec`` names (see ``MODEL_FORMS``) for inputs of ``input_shape[-1]``
    channels; the run's default ``--model`` gives 50 LIF + 50 ALIF neurons."""
    if spec == RUN_DEFAULT_MODEL:
        spec = "rsnn"
    kind, _, size = spec.partition(":")
    if kind != "rsnn":
        raise ConfigError(f"unknown --model {spec!r} for a spiking recurrent rule; {MODEL_FORMS}")
    n_lif, n_alif = 50, 50
    if size:
        lif, plus, alif = size.partition("+")
        try:
            n_lif, n_alif = int(lif), int(alif) if plus else 0
        except ValueError:
            raise ConfigError(f"--model {spec!r}: sizes must be integers; {MODEL_FORMS}") from None
        if n_lif < 0 or n_alif < 0 or n_lif + n_alif == 0:
            raise ConfigError(f"--model {spec!r}: needs at least one neuron; {MODEL_FORMS}")
    return RecurrentSpikingNetwork(
        int(input_shape[-1]), n_lif, n_alif, num_classes,
        tau_m=config.tau_m, tau_a=config.tau_a, tau_out=config.tau_out, v_th=config.v_th,
        adapt_beta=config.adapt_beta, gamma=config.gamma_pd, n_ref=config.n_ref,
        feedback_scale=getattr(config, "feedback_scale", None),
    )


def rate_regulariser(z: torch.Tensor, weight: float, rate_hz: float) -> torch.Tensor:
    """Eq. (REG): ``c_reg sum_j (f_j - f_target)^2`` with f_j the mean of the spikes z
    ``(T, B, N)`` over time and batch (spikes per 1 ms step)."""
    f = z.mean(dim=(0, 1))
    return weight * ((f - rate_hz / 1000.0) ** 2).sum()  # Eq. (REG)


def _check_model(model: nn.Module) -> RecurrentSpikingNetwork:
    if not isinstance(model, RecurrentSpikingNetwork):
        raise ConfigError("e-prop trains the recurrent spiking network (--model rsnn[:L+A]) only")
    return model


TRACE_CHUNK = 100  # K: steps whose traces are contracted at once (memory ~ K, not T)



def eprop_gradients(
    model: RecurrentSpikingNetwork,
    x: torch.Tensor,
    y: torch.Tensor,
    feedback: torch.Tensor | None = None,
    reg_weight: float = 0.0,
    reg_rate: float = 10.0,
    total_signal: torch.Tensor | None = None,
    chunk: int = TRACE_CHUNK,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Run ``model`` forward over ``x`` once and return e-prop's gradient (minus its update).

    Args:
        model: the spiking network.
        x: inputs ``(T, B, F)``; y: targets (see :mod:`bionn.functional.targets`).
        feedback: B ``(N, C)``; None takes ``W_out^T`` (symmetric e-prop).
        reg_weight, reg_rate: c_reg and f_target (Hz) of the regulariser (Eq. REG).
        total_signal: if given, a learning signal ``(T, B, N)`` to use with the *unfiltered*
            traces e^t in place of Eqs. (3)-(4) and the regulariser: with the total
            derivative dE/dz (the spikes' explicit effect) this is Eq. (1), BPTT's gradient.
        chunk: K, the steps simulated before their traces are contracted (Eq. C1 of
            :mod:`bionn.functional.eprop`); the update does not depend on it, the memory does.

    Returns the gradients by parameter name, the task loss (Eq. 2 of the loss, without the
    regulariser) and the outputs ``(T, B, C)``. Only the per-synapse states eps_a and ebar and
    K steps of per-neuron quantities are kept: memory is independent of T.
    """
    model = _check_model(model)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ConfigError(f"--trace-chunk must be an integer >= 1, got {chunk!r}")
    with torch.no_grad():
        params = model.parameters_tuple()
        alpha, rho, kappa, v_th = params.alpha, params.rho, params.kappa, params.v_th
        gamma, n_ref = params.gamma, params.n_ref
        w_in, w_rec = model.weight_ih.detach(), model.recurrent_weight().detach()
        w_out, b_out = model.readout_weight.detach(), model.readout_bias.detach()
        b_fb = w_out.T if feedback is None else feedback
        steps, batch, f_in = x.shape
        n, n_out = model.hidden, model.out_features
        targets = step_targets(x.new_empty(steps, batch, 1), y)
        mask = target_mask(targets)
        count = int(mask.sum())
        has_target = mask.reshape(steps, -1).any(1)
        later = torch.flip(torch.cumsum(torch.flip(has_target, (0,)).int(), 0), (0,)).tolist()
        has_target = has_target.tolist()
        pre_n = f_in + n
        n_a = model.n_alif
        exact = total_signal is not None
        k_max = min(chunk, steps)
        eye = torch.eye(n, dtype=x.dtype, device=x.device)
        # [x^{t+1}, z^t] @ w_all = W_in x^{t+1} + W_rec z^t - v_th z^t, Eq. (M1)
        w_all = torch.cat([w_in.T, (w_rec - v_th * eye).T]).contiguous()
        beta = params.beta
        # the state: neurons (B, N); the per-synapse traces eps_a (B, N_a, P), ebar (B, N, P)
        v, a = x.new_zeros(batch, n), x.new_zeros(batch, n)
        last = x.new_full((batch, n), -math.inf)
        vm, scratch = x.new_empty(batch, n), x.new_empty(batch, n)
        spike, free = (torch.empty(batch, n, dtype=torch.bool, device=x.device)
                       for _ in range(2))
        eps_a = x.new_zeros(batch, n_a, pre_n)
        ebar = x.new_zeros(batch, n, pre_n)
        # K steps of per-neuron quantities; index 0 carries the previous chunk's last step
        pre = x.new_zeros(k_max + 1, batch, pre_n)  # [x^{t+1}, z^t]; z of step k in pre[k + 1]
        zbar = x.new_zeros(batch, k_max + 1, pre_n)  # eps_v, Eq. (M7)
        psi = x.new_zeros(batch, k_max + 1, n)  # Eq. (M5)
        pre_k = pre.unbind(0)
        z_k = [p[:, f_in:] for p in pre_k]
        zbar_k = zbar.unbind(1)
        psi_k = psi.unbind(1)
        # the readout filter over a chunk: filt[k, s] = (1 - kappa) kappa^(k - s), s <= k
        lag = torch.arange(k_max, device=x.device)
        lag = (lag[:, None] - lag[None, :]).to(x.dtype)
        filt = torch.where(lag >= 0, (1.0 - kappa) * kappa ** lag.clamp(min=0),
                           torch.zeros_like(lag))
        powers = kappa ** torch.arange(1, k_max + 1, dtype=x.dtype, device=x.device)
        zbar_out = x.new_zeros(batch, n)  # the spikes filtered by the readout, Eq. (M6)
        g = x.new_zeros(n, pre_n)
        e_sum = x.new_zeros(n, pre_n)
        g_out = torch.zeros_like(w_out)
        g_bout = torch.zeros_like(b_out)
        z_count = x.new_zeros(n)
        total = x.new_zeros(())
        outputs = x.new_empty(steps, batch, n_out)
        c_psi, c_abs = gamma / v_th, -gamma / v_th**2
        for t0 in range(0, steps, k_max):
            k_len = min(k_max, steps - t0)
            t1 = t0 + k_len
            pre[:k_len, :, :f_in] = x[t0:t1]
            for k in range(k_len):  # Eqs. (M1)-(M5), (M7), in place
                t = t0 + k
                p_in = pre_k[k]
                torch.add(p_in, zbar_k[k], alpha=alpha, out=zbar_k[k + 1])  # Eq. (M7)
                v.addmm_(p_in, w_all, beta=alpha)  # Eq. (M1)
                torch.add(z_k[k], a, alpha=rho, out=a)  # Eq. (M2)
                torch.addcmul(v, beta, a, value=-1.0, out=vm).sub_(v_th)  # v - A, Eq. (M3)
                torch.lt(last, t - n_ref, out=free)
                torch.gt(vm, 0.0, out=spike).logical_and_(free)
                z_k[k + 1].copy_(spike)  # Eq. (M4)
                torch.abs(vm, out=scratch)
                torch.add(scratch.mul_(c_abs), c_psi, out=psi_k[k + 1]).clamp_(min=0.0).mul_(
                    free)  # Eq. (M5)
                last.masked_fill_(spike, float(t))
            zb, ps = zbar[:, : k_len + 1], psi[:, : k_len + 1]
            zc = pre[1 : k_len + 1, :, f_in:].reshape(k_len, batch * n)  # the chunk's spikes
            fk = filt[:k_len, :k_len]
            drive = (zc.view(k_len * batch, n) @ w_out.T).view(k_len, batch * n_out)
            y0 = zbar_out @ w_out.T
            out = (fk @ drive).view(k_len, batch, n_out) + powers[:k_len, None, None] * y0
            out += b_out  # Eq. (M6)
            outputs[t0:t1] = out
            z_count += zc.view(k_len, batch, n).sum((0, 1))
            weights = []
            chunk_targets = any(has_target[t0:t1])
            if chunk_targets:
                tgt = targets[t0:t1]
                loss_c, err = step_loss_and_error(
                    out.reshape(k_len * batch, n_out), tgt.reshape(k_len * batch, *tgt.shape[2:]),
                    count)  # e^t = dE/dy^t
                total += loss_c
                zo = ((fk @ zc).view(k_len, batch, n)
                      + powers[:k_len, None, None] * zbar_out).view(k_len * batch, n)
                g_out += err.T @ zo
                g_bout += err.sum(0)
                if not exact:
                    signal = (err @ b_fb.T).view(k_len, batch * n)  # Eq. (4)
                    # (1 - kappa) sum_{t >= s} kappa^{t - s} L^t, Eq. (3) with Eq. (M10)
                    lbar = (fk.T @ signal).view(k_len, batch, n)
                    if t0:
                        g += torch.einsum("bj,bji->ji", lbar[0] * (kappa / (1.0 - kappa)),
                                          ebar)  # Eq. (3), the carried ebar
                    weights.append(lbar)
            if exact:
                weights.append(total_signal[t0:t1])  # Eq. (1)
            if reg_weight and not exact:
                weights.append(x.new_ones(k_len, batch, n))  # sum_t e^t, Eq. (REG)
            u_sum = torch.stack(weights, 2).transpose(0, 1) if weights else None
            u_each = None
            if not exact and t1 < steps and later[t1]:  # a target lies ahead: carry ebar
                u_each = fk[-1][None, :, None, None].expand(batch, k_len, 1, n)
            sums, each, eps_a = eprop_chunk_sums(u_sum, u_each, zb, ps, eps_a, params)
            if sums is not None:
                if exact or chunk_targets:
                    g += sums[0]
                if reg_weight and not exact:
                    e_sum += sums[-1]
            if each is not None:
                ebar = each[0].add_(ebar, alpha=kappa**k_len)  # Eq. (M10) over the chunk
            zbar_out = (fk[-1] @ zc).view(batch, n) + powers[k_len - 1] * zbar_out
            pre[0] = pre[k_len]
            zbar[:, 0] = zbar[:, k_len]
            psi[:, 0] = psi[:, k_len]
        if not exact and reg_weight:
            rate = z_count / (steps * batch)
            factor = 2.0 * reg_weight * (rate - reg_rate / 1000.0) / (steps * batch)
            g += factor[:, None] * e_sum  # Eq. (REG)
        g_rec = g[:, f_in:] * model.autapse_mask
    grads = {
        "weight_ih": g[:, :f_in],
        "weight_hh": g_rec,
        "readout_weight": g_out,
        "readout_bias": g_bout,
    }
    return grads, total, outputs


class _Spiking(LearningRule):
    """What the three rules share: the network, the loss, the figures."""

    supervised = True
    time_major = True
    normalize_inputs = False
    config_class = EPropConfig

    def __init__(self, config: EPropConfig | None = None) -> None:
        self.config = config or self.config_class()

    def build_model(
        self, spec: str, input_shape: tuple[int, ...], num_classes: int, activation: str
    ) -> nn.Module:
        """The spiking network of ``spec`` (``rsnn`` or ``rsnn:L+A``); ``--activation`` is
        not used (the neurons spike)."""
        return build_spiking_model(spec, input_shape, num_classes, self.config)

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The task loss: the mean over the (step, example) entries that have a target."""
        return sequence_loss(output, y)

    def plots(
        self,
        model: nn.Module,
        history: list[dict[str, Any]],
        run_dir: Path,
        data: tuple[torch.Tensor, torch.Tensor],
    ) -> list[Path]:
        """Spike rasters of the LIF and ALIF populations on the first test sequence."""
        from bionn.plots.eprop import plot_rsnn_raster

        x, _ = data
        if x.dim() != 3 or not isinstance(model, RecurrentSpikingNetwork):
            return []
        with torch.no_grad():
            record = model.simulate(x[:, :1])
        return [plot_rsnn_raster(record, model.n_lif, Path(run_dir) / "raster.png", x=x[:, :1])]


class EProp(_Spiking):
    """Symmetric e-prop: learning signal through B = W_out^T."""

    name = "eprop"

    def feedback(self, model: RecurrentSpikingNetwork) -> torch.Tensor | None:
        """The feedback matrix B (None: W_out^T)."""
        return None

    def fill_grads(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        model = _check_model(model)
        grads, loss, outputs = eprop_gradients(
            model, x, y, self.feedback(model), self.config.reg_weight, self.config.reg_rate,
            chunk=self.config.trace_chunk,
        )
        named = dict(model.named_parameters())
        for key, g in grads.items():
            if named[key].requires_grad:
                named[key].grad = g.clone()  # p.grad = -DeltaW / eta
        return batch_metrics(loss, outputs, y)


class EPropRandom(EProp):
    """Random e-prop: learning signal through a fixed random B."""

    name = "eprop-random"
    config_class = EPropRandomConfig

    def feedback(self, model: RecurrentSpikingNetwork) -> torch.Tensor | None:
        if model.feedback is None:
            raise ConfigError("eprop-random needs a network with a feedback matrix B")
        return model.feedback


class RSNNBPTT(_Spiking):
    """BPTT through the spiking network, the spikes differentiated by their psi."""

    name = "rsnn-bptt"

    def fill_grads(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        model = _check_model(model)
        for p in trainable_parameters(model):
            p.grad = None
        record = model.simulate(x)
        loss = sequence_loss(record.output, y)
        total = loss
        if self.config.reg_weight:
            total = loss + rate_regulariser(record.z, self.config.reg_weight,
                                            self.config.reg_rate)
        total.backward()
        return batch_metrics(loss, record.output, y)


_DESCRIPTIONS = {
    "eprop": "e-prop: eligibility traces x learning signals through W_out^T, online (spiking)",
    "eprop-random": "random e-prop: eligibility traces x learning signals through fixed random B",
    "rsnn-bptt": "BPTT through the e-prop spiking network (pseudo-derivative of the spikes)",
}
for _cls in (EProp, EPropRandom, RSNNBPTT):
    register_rule(RuleInfo(
        name=_cls.name,
        factory=_cls,
        description=_DESCRIPTIONS[_cls.name],
        paper=PAPER,
        config_class=_cls.config_class,
    ))
