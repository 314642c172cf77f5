"""LoRA adapters for any Gluon network: add, merge, save and load them.

``network`` adds and merges (``add_lora``, ``merge_lora``), ``adapters`` is
one adapted weight (its parameters, the forward, the merge arithmetic),
``targets`` chooses the weights, ``files`` writes and reads adapter files.
Between ``models`` (``get_model(lora=...)``) and ``trainer`` in the layers.
"""
from .adapters import Adapter
from .files import load_lora, save_lora
from .network import BIAS_POLICIES, add_lora, lora_adapters, merge_lora

__all__ = ["Adapter", "BIAS_POLICIES", "add_lora", "load_lora", "lora_adapters", "merge_lora",
           "save_lora"]
