"""``get_model(..., lora=r)``: LoRA adapters on a freshly built model, the head trainable."""
from __future__ import annotations

from typing import Optional

from ..checks import check_int, check_real
from ..lora import add_lora
from ..structure.listing import block_names
from ..trainer.freezing import check_unfreeze

__all__ = ["check_lora", "with_lora"]


def check_lora(lora, lora_alpha) -> Optional[int]:
    """The adapters' rank (None: no LoRA), once ``lora`` and ``lora_alpha`` are checked."""
    if lora is None:
        return None
    check_real("lora_alpha", lora_alpha, positive=True)
    return check_int("lora", lora, minimum=1)


def with_lora(net, rank: int, alpha: float, targets, unfreeze: Optional[int], bn: str):
    """``add_lora`` with the last ``unfreeze`` blocks (default 1: the head) trainable."""
    keep = check_unfreeze(1 if unfreeze is None else unfreeze, block_names(net))
    add_lora(net, targets, rank, alpha, train=slice(-keep, None) if keep else None, bn=bn)
    return net
