"""Layers: the feedback-alignment family, spiking LIF layers, and the model converter."""

from bionn.nn.convert import MODES, ConversionReport, convert
from bionn.nn.feedback_alignment import (
    BRSFConv2d,
    BRSFLinear,
    DFAConv2d,
    DFALinear,
    DFANetwork,
    FAConv2d,
    FALinear,
    FRSFConv2d,
    FRSFLinear,
    OutputError,
    USFConv2d,
    USFLinear,
)
from bionn.nn.lif import LIFConv2d, LIFLayer, LIFLinear, LIFNetwork

__all__ = [
    "MODES",
    "BRSFConv2d",
    "BRSFLinear",
    "ConversionReport",
    "DFAConv2d",
    "DFALinear",
    "DFANetwork",
    "FAConv2d",
    "FALinear",
    "FRSFConv2d",
    "FRSFLinear",
    "LIFConv2d",
    "LIFLayer",
    "LIFLinear",
    "LIFNetwork",
    "OutputError",
    "USFConv2d",
    "USFLinear",
    "convert",
]
