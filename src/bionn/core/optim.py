"""Optimizers the runs build: torch's fused Adam with less Python around its kernel.

A rule that learns at every time step (DECOLLE: 20 updates per batch) steps the optimizer
dozens of times per batch on small networks, where ``torch.optim.Adam(fused=True).step``
spends more time in Python (grouping the tensors by device and dtype, reading the state,
checking the options) than in its one fused kernel. :class:`LeanAdam` is that optimizer, with
the same state, the same state dict and the same kernel; once every parameter's state exists
(after the first step, which torch's own code takes) a plain CPU step calls the kernel
directly with the lists it keeps. Anything else (a closure, AMSGrad, ``maximize``, a tensor
learning rate, mixed devices or dtypes, a GPU) goes through torch's own ``step``, so the result
is always bit-identical to ``torch.optim.Adam(fused=True)``. Step hooks run as for any torch
optimizer (torch wraps every optimizer class's ``step`` with them).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["LeanAdam"]

_PLAIN = {"amsgrad": False, "maximize": False, "capturable": False, "differentiable": False}


class LeanAdam(torch.optim.Adam):
    """``torch.optim.Adam(params, lr, fused=True)`` whose plain CPU steps skip its bookkeeping.

    Args:
        params: the parameters (or parameter groups), as for ``torch.optim.Adam``.
        **kwargs: ``torch.optim.Adam``'s options; ``fused`` is always True.
    """

    def __init__(self, params: Any, **kwargs: Any) -> None:
        kwargs["fused"] = True
        super().__init__(params, **kwargs)

    def _lean_groups(self) -> list[tuple[dict, list, list, list, list]] | None:
        """Per group: (group, params, grads, exp_avgs, exp_avg_sqs), or None to defer."""
        out = []
        kind = None
        for group in self.param_groups:
            if any(group.get(k, v) != v for k, v in _PLAIN.items()):
                return None
            if group.get("decoupled_weight_decay", False) or isinstance(group["lr"], torch.Tensor):
                return None
            params, grads, avgs, sqs = [], [], [], []
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                state = self.state.get(p)
                if not state or grad.is_sparse or grad.dtype != p.dtype:
                    return None
                if kind is None:
                    kind = (p.device, p.dtype)
                    if p.device.type != "cpu":
                        return None
                elif (p.device, p.dtype) != kind:
                    return None
                params.append(p)
                grads.append(grad)
                avgs.append(state["exp_avg"])
                sqs.append(state["exp_avg_sq"])
            out.append((group, params, grads, avgs, sqs))
        return out

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One Adam step (torch's fused kernel; see the module docstring for when)."""
        groups = None if closure is not None else self._lean_groups()
        if groups is None:
            # torch's own step, without the hook wrapper a second time (this step has it)
            step = torch.optim.Adam.step
            if getattr(step, "hooked", False):
                step = step.__wrapped__
            return step(self, closure)
        for group, params, grads, avgs, sqs in groups:
            if not params:
                continue
            steps = [self.state[p]["step"] for p in params]
            beta1, beta2 = group["betas"]
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(
                params, grads, avgs, sqs, [], steps,
                amsgrad=False, lr=float(group["lr"]), beta1=float(beta1), beta2=float(beta2),
                weight_decay=float(group["weight_decay"]), eps=float(group["eps"]),
                maximize=False, grad_scale=None, found_inf=None,
            )
        return None

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every gradient (``set_to_none``, the default) or zero it (torch's way)."""
        if not set_to_none:
            super().zero_grad(set_to_none=False)
            return
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None
