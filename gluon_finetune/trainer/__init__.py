"""``LayerwiseTrainer`` and what it owns: arguments, states files, the kvstore side, freezing.

The names below are the trainer's public API; the recipes use nothing else.
"""
from .freezing import (
    BN_POLICIES,
    batchnorm_layers,
    bn_state,
    check_bn_policy,
    clear_cached_graphs,
    describe_blocks,
    freeze,
    prepare_for_finetuning,
    restore_bn_state,
    unfreeze,
)
from .horovod import HorovodKVStore, horovod_store_of
from .layerwise import LayerwiseTrainer

__all__ = ["BN_POLICIES", "HorovodKVStore", "LayerwiseTrainer", "horovod_store_of",
           "batchnorm_layers", "bn_state", "check_bn_policy", "clear_cached_graphs",
           "describe_blocks", "freeze", "prepare_for_finetuning", "restore_bn_state",
           "unfreeze"]
