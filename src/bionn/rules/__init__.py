"""The learning rules, one module per paper family; importing this package registers them all.

``bionn.core.registry.make_rule`` and the command line import it, so every rule below appears in
``bionn rules`` and can be trained with ``bionn train --rule NAME``.
"""

from bionn.rules import (
    contrastive,
    decolle,
    dendritic,
    eprop,
    feedback_alignment,
    krotov_hopfield,
    predictive_coding,
    temporal_credit,
)

__all__ = [
    "contrastive",
    "decolle",
    "dendritic",
    "eprop",
    "feedback_alignment",
    "krotov_hopfield",
    "predictive_coding",
    "temporal_credit",
]
