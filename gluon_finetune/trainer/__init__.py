"""``LayerwiseTrainer`` and what it owns: arguments, states files, the kvstore side, freezing.

The names below are the trainer's public API; the recipes use nothing else.
"""
from .freezing import (
    BN_POLICIES,
    batchnorm_layers,
    check_bn_policy,
    clear_cached_graphs,
    describe_blocks,
    freeze,
    prepare_for_finetuning,
    unfreeze,
)
from .layerwise import LayerwiseTrainer

__all__ = ["BN_POLICIES", "LayerwiseTrainer", "batchnorm_layers", "check_bn_policy",
           "clear_cached_graphs", "describe_blocks", "freeze", "prepare_for_finetuning",
           "unfreeze"]
