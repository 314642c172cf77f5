"""gluon-finetune: per-layer learning rates, schedules and freezing for MXNet Gluon.

Public API (imported lazily, PEP 562): nothing heavy happens at ``import
gluon_finetune``. This also matters for distributed training: a kvstore server
unpickles our optimizer while ``import mxnet`` is still running, so importing
``gluon_finetune.optimizer`` must not pull in ``mxnet.gluon`` through here.
"""
from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "blocks": "gluon_finetune.structure",
    "block_params": "gluon_finetune.structure",
    "block_names": "gluon_finetune.structure",
    "automatic_blocks": "gluon_finetune.structure",
    "declare_blocks": "gluon_finetune.structure",
    "can_train": "gluon_finetune.structure",
    "BlockGroup": "gluon_finetune.structure",
    "resolve": "gluon_finetune.rules",
    "Setting": "gluon_finetune.rules",
    "RuleError": "gluon_finetune.rules",
    "NoMatchError": "gluon_finetune.rules",
    "explain": "gluon_finetune.report",
    "Explanation": "gluon_finetune.report",
    "LayerwiseTrainer": "gluon_finetune.trainer",
    "structural_paths": "gluon_finetune.structure",
    "freeze": "gluon_finetune.freezing",
    "unfreeze": "gluon_finetune.freezing",
    "get_model": "gluon_finetune.zoo",
    "model_names": "gluon_finetune.zoo",
    "layer_decay": "gluon_finetune.schedules",
    "spread": "gluon_finetune.schedules",
    "no_weight_decay": "gluon_finetune.recipes",
    "combine": "gluon_finetune.recipes",
    "SlantedTriangular": "gluon_finetune.schedules",
    "OneCycle": "gluon_finetune.schedules",
    "GradualUnfreezing": "gluon_finetune.unfreezing",
    "fit": "gluon_finetune.training",
    "fine_tune": "gluon_finetune.fine_tuning",
    "lr_find": "gluon_finetune.lr_finder",
    "LRFinderResult": "gluon_finetune.lr_finder",
    "evaluate": "gluon_finetune.training",
    "image_folders": "gluon_finetune.data",
    "load_config": "gluon_finetune.config",
    "ConfigError": "gluon_finetune.config",
    "lr_curves": "gluon_finetune.plots",
    "plot_lr_curves": "gluon_finetune.plots",
    "plot_schedules": "gluon_finetune.plots",
    "RateRecorder": "gluon_finetune.plots",
    "cache_features": "gluon_finetune.caching",
    "split_frozen": "gluon_finetune.caching",
    "FeatureCache": "gluon_finetune.caching",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gluon_finetune' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
