"""Pure functions: neuron dynamics, surrogate spike functions, traces.

Convention for every spiking tensor in bionn: **time-major**, ``(T, B, N)`` for dense layers and
``(T, B, C, H, W)`` for convolutional ones: time first, then the batch, then the neurons. A step
function sees one time slice ``(B, ...)`` and a state ``NamedTuple``; a module loops over the
first dimension.
"""

from bionn.functional.lif import LIFParameters, LIFState, lif_initial_state, lif_step, trace_step
from bionn.functional.surrogate import (
    SURROGATES,
    Boxcar,
    FastSigmoid,
    SigmoidSurrogate,
    boxcar,
    fast_sigmoid,
    get_surrogate,
    sigmoid_surrogate,
)

__all__ = [
    "SURROGATES",
    "Boxcar",
    "FastSigmoid",
    "LIFParameters",
    "LIFState",
    "SigmoidSurrogate",
    "boxcar",
    "fast_sigmoid",
    "get_surrogate",
    "lif_initial_state",
    "lif_step",
    "sigmoid_surrogate",
    "trace_step",
]
