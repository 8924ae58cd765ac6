"""Layers: the feedback-alignment family, free convolutions, spiking LIF layers, and the model
converter."""

from bionn.nn.convert import FREE_MODES, MODES, ConversionReport, convert
from bionn.nn.eprop import RecurrentSpikingNetwork, RSNNRecord
from bionn.nn.feedback_alignment import (
    BRSFConv2d,
    BRSFFreeConv2d,
    BRSFLinear,
    DFAConv2d,
    DFAFreeConv2d,
    DFALinear,
    DFANetwork,
    FAConv2d,
    FAFreeConv2d,
    FALinear,
    FRSFConv2d,
    FRSFFreeConv2d,
    FRSFLinear,
    OutputError,
    USFConv2d,
    USFFreeConv2d,
    USFLinear,
)
from bionn.nn.free_conv import FreeConv2d, VariableConnections
from bionn.nn.lif import LIFConv2d, LIFLayer, LIFLinear, LIFNetwork

__all__ = [
    "FREE_MODES",
    "MODES",
    "BRSFConv2d",
    "BRSFFreeConv2d",
    "BRSFLinear",
    "ConversionReport",
    "DFAConv2d",
    "DFAFreeConv2d",
    "DFALinear",
    "DFANetwork",
    "FAConv2d",
    "FAFreeConv2d",
    "FALinear",
    "FRSFConv2d",
    "FRSFFreeConv2d",
    "FRSFLinear",
    "FreeConv2d",
    "LIFConv2d",
    "LIFLayer",
    "LIFLinear",
    "LIFNetwork",
    "OutputError",
    "RSNNRecord",
    "RecurrentSpikingNetwork",
    "USFConv2d",
    "USFFreeConv2d",
    "USFLinear",
    "VariableConnections",
    "convert",
]
