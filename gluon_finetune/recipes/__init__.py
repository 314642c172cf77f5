"""Fine-tuning recipes on top of the trainer's public API.

Gradual unfreezing, ``fine_tune``, ``lr_find``, feature caching, the training
loop, image-folder data (seeded loaders and augmentation presets) and EMA weights.
"""
from .augmentation import Preprocessing
from .caching import FeatureCache, cache_features, split_frozen
from .data import EpochData, epoch_data, image_folders
from .ema import ModelEMA
from .fine_tuning import FineTuneSchedule, fine_tune, plan_phases
from .lr_finder import LRFinderResult, lr_find
from .training import evaluate, fit
from .unfreezing import GradualUnfreezing

__all__ = ["EpochData", "FeatureCache", "FineTuneSchedule", "GradualUnfreezing", "LRFinderResult",
           "ModelEMA", "Preprocessing", "cache_features", "epoch_data", "evaluate", "fine_tune",
           "fit", "image_folders", "lr_find", "plan_phases", "split_frozen"]
