"""The structure of a network: structural paths, the block list in forward order, declared lists.

``index`` is the one place a network's paths, block list and auxiliary states are
computed; ``automatic`` finds blocks (containers, repeated stacks), ``tracing``
orders them by a symbolic trace, ``declared`` holds lists given as data, ``detectors``
the lists shipped for GluonCV's detectors (registered on import).
"""
from . import detectors  # noqa: F401  (registers its block lists)
from .index import (
           GRANULARITIES,
           BlockGroup,
           BlockIndex,
           BlockNames,
           block_params,
           declare_blocks,
           param_shape,
)
from .listing import automatic_blocks, block_names, blocks, can_train, structural_paths

__all__ = ["GRANULARITIES", "BlockGroup", "BlockIndex", "BlockNames", "automatic_blocks",
           "block_names", "block_params", "blocks", "can_train", "declare_blocks", "param_shape",
           "structural_paths"]
