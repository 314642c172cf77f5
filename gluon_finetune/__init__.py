"""gluon-finetune: per-layer learning rates, schedules and freezing for MXNet Gluon.

The public API is imported lazily (PEP 562): nothing heavy happens at ``import
gluon_finetune``. A kvstore server unpickles our optimizer while ``import
mxnet`` is still running, so importing ``gluon_finetune.optim`` must not pull
in ``mxnet.gluon`` through here. Type checkers and IDEs read the imports under
``TYPE_CHECKING``; ``_EXPORTS`` maps the same names for the run time (a test
keeps the two equal).
"""
from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

try:
    __version__ = version("gluon-finetune")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from .cli.config import load_config
    from .errors import (
        ConfigError,
        FinetuneError,
        NoMatchError,
        RuleError,
        StatesError,
    )
    from .lora import add_lora, load_lora, lora_adapters, merge_lora, save_lora
    from .models import export_network, export_onnx, get_model, model_names
    from .optim import OneCycle, SlantedTriangular
    from .recipes import (
        FeatureCache,
        GradualUnfreezing,
        LRFinderResult,
        ModelEMA,
        Preprocessing,
        cache_features,
        epoch_data,
        evaluate,
        fine_tune,
        fit,
        image_folders,
        lr_find,
        split_frozen,
    )
    from .reporting import (
        Explanation,
        RateRecorder,
        explain,
        lr_curves,
        plot_lr_curves,
        plot_schedules,
    )
    from .rules import Setting, combine, layer_decay, no_weight_decay, resolve, spread
    from .runs import RunFolder, evaluate_run, export_run, load_network, predict, train_run
    from .structure import (
        BlockGroup,
        automatic_blocks,
        block_names,
        block_params,
        blocks,
        can_train,
        declare_blocks,
        structural_paths,
    )
    from .trainer import LayerwiseTrainer, freeze, unfreeze

_EXPORTS = {
    "gluon_finetune.errors": ["ConfigError", "FinetuneError", "NoMatchError", "RuleError",
                              "StatesError"],
    "gluon_finetune.lora": ["add_lora", "load_lora", "lora_adapters", "merge_lora", "save_lora"],
    "gluon_finetune.models": ["export_network", "export_onnx", "get_model", "model_names"],
    "gluon_finetune.optim": ["OneCycle", "SlantedTriangular"],
    "gluon_finetune.recipes": ["FeatureCache", "GradualUnfreezing", "LRFinderResult", "ModelEMA",
                               "Preprocessing", "cache_features", "epoch_data", "evaluate",
                               "fine_tune", "fit", "image_folders", "lr_find", "split_frozen"],
    "gluon_finetune.runs": ["RunFolder", "evaluate_run", "export_run", "load_network", "predict",
                            "train_run"],
    "gluon_finetune.reporting": ["Explanation", "RateRecorder", "explain", "lr_curves",
                                 "plot_lr_curves", "plot_schedules"],
    "gluon_finetune.rules": ["Setting", "combine", "layer_decay", "no_weight_decay", "resolve",
                             "spread"],
    "gluon_finetune.structure": ["BlockGroup", "automatic_blocks", "block_names", "block_params",
                                 "blocks", "can_train", "declare_blocks", "structural_paths"],
    "gluon_finetune.trainer": ["LayerwiseTrainer", "freeze", "unfreeze"],
    "gluon_finetune.cli.config": ["load_config"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE) + ["__version__"]


def __getattr__(name):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'gluon_finetune' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
