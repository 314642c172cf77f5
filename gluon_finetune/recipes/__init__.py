"""Fine-tuning recipes on top of the trainer's public API.

Gradual unfreezing, ``fine_tune``, ``lr_find``, feature caching, the training
loop and image-folder data.
"""
from .caching import FeatureCache, cache_features, split_frozen
from .data import image_folders
from .fine_tuning import fine_tune
from .lr_finder import LRFinderResult, lr_find
from .training import evaluate, fit
from .unfreezing import GradualUnfreezing

__all__ = ["FeatureCache", "GradualUnfreezing", "LRFinderResult", "cache_features", "evaluate",
           "fine_tune", "fit", "image_folders", "lr_find", "split_frozen"]
