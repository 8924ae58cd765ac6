"""Surrogate spike functions: the Heaviside step forward, a smooth derivative backward.

A spiking neuron emits ``S = Theta(U)`` (1 where ``U > 0``, else 0: a potential exactly at the
threshold does not fire, as in snnTorch and Norse). Its true derivative is zero
almost everywhere, so learning replaces ``Theta'(U)`` by a smooth pseudo-derivative ``sigma'(U)``
in the backward pass (Neftci, Mostafa & Zenke 2019, "Surrogate gradient learning in spiking
neural networks", IEEE Signal Processing Magazine 36:51-63). Each surrogate below is one
``torch.autograd.Function``; its stated derivative is :meth:`derivative`, the derivative of the
smooth relaxation :meth:`primitive` (so ``gradcheck`` of a function that runs ``primitive``
forward and this backward must pass).

- :class:`FastSigmoid` (SuperSpike, Zenke & Ganguli 2018):
  ``sigma'(U) = 1 / (1 + k |U|)^2``, relaxation ``U / (1 + k |U|)``.
- :class:`Boxcar`: DECOLLE's choice (Kaiser, Mostafa & Neftci 2020, the ``SmoothStep`` of its
  reference code): ``sigma'(U) = 1`` for ``|U| < w``, else 0 (here ``w`` = ``scale``, 0.5 in the
  paper), relaxation ``clamp(U, -w, w)``.
- :class:`SigmoidSurrogate`: ``sigma'(U) = k s(kU) (1 - s(kU))`` with the logistic ``s``,
  relaxation ``s(kU)``.

Every function takes ``(u, scale)``; ``scale`` is ``k`` (steepness) or ``w`` (half width).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bionn.errors import ConfigError

__all__ = [
    "SURROGATES",
    "Boxcar",
    "FastSigmoid",
    "SigmoidSurrogate",
    "boxcar",
    "fast_sigmoid",
    "get_surrogate",
    "sigmoid_surrogate",
]


class _Surrogate(torch.autograd.Function):
    """Heaviside forward, ``grad * derivative(u, scale)`` backward."""

    @staticmethod
    def derivative(u: torch.Tensor, scale: float) -> torch.Tensor:  # pragma: no cover
        """The surrogate derivative sigma'(U) at the membrane potential ``u``."""
        raise NotImplementedError

    @staticmethod
    def primitive(u: torch.Tensor, scale: float) -> torch.Tensor:  # pragma: no cover
        """A smooth function whose derivative is :meth:`derivative` (for plots and tests)."""
        raise NotImplementedError

    @staticmethod
    def forward(ctx, u: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.scale = scale
        return (u > 0).to(u.dtype)

    @classmethod
    def backward(cls, ctx, grad: torch.Tensor):
        (u,) = ctx.saved_tensors
        return grad * cls.derivative(u, ctx.scale), None


class FastSigmoid(_Surrogate):
    """SuperSpike's fast sigmoid: ``sigma'(U) = 1 / (1 + k|U|)^2``."""

    @staticmethod
    def derivative(u: torch.Tensor, scale: float) -> torch.Tensor:
        return (scale * u.abs() + 1.0).reciprocal_().square_()

    @staticmethod
    def primitive(u: torch.Tensor, scale: float) -> torch.Tensor:
        return u / (1.0 + scale * u.abs())


class Boxcar(_Surrogate):
    """DECOLLE's straight-through window: ``sigma'(U) = 1`` for ``|U| < w``, else 0."""

    @staticmethod
    def derivative(u: torch.Tensor, scale: float) -> torch.Tensor:
        return (u.abs() < scale).to(u.dtype)

    @staticmethod
    def primitive(u: torch.Tensor, scale: float) -> torch.Tensor:
        return u.clamp(-scale, scale)


class SigmoidSurrogate(_Surrogate):
    """Logistic surrogate: ``sigma'(U) = k s(kU)(1 - s(kU))``."""

    @staticmethod
    def derivative(u: torch.Tensor, scale: float) -> torch.Tensor:
        s = torch.sigmoid(scale * u)
        return scale * s * (1.0 - s)

    @staticmethod
    def primitive(u: torch.Tensor, scale: float) -> torch.Tensor:
        return torch.sigmoid(scale * u)


def fast_sigmoid(u: torch.Tensor, scale: float = 10.0) -> torch.Tensor:
    """``Theta(u)`` with the fast-sigmoid surrogate derivative of steepness ``scale``."""
    return FastSigmoid.apply(u, scale)


def boxcar(u: torch.Tensor, scale: float = 0.5) -> torch.Tensor:
    """``Theta(u)`` with a boxcar surrogate derivative of half width ``scale`` (DECOLLE)."""
    return Boxcar.apply(u, scale)


def sigmoid_surrogate(u: torch.Tensor, scale: float = 4.0) -> torch.Tensor:
    """``Theta(u)`` with the logistic surrogate derivative of steepness ``scale``."""
    return SigmoidSurrogate.apply(u, scale)


SURROGATES: dict[str, type[_Surrogate]] = {
    "fast-sigmoid": FastSigmoid,
    "boxcar": Boxcar,
    "sigmoid": SigmoidSurrogate,
}


def get_surrogate(name: str) -> Callable[[torch.Tensor, float], torch.Tensor]:
    """The spike function ``f(u, scale)`` of the surrogate called ``name``."""
    try:
        return SURROGATES[name].apply
    except KeyError:
        valid = ", ".join(SURROGATES)
        raise ConfigError(f"unknown surrogate {name!r}; choose one of: {valid}") from None
