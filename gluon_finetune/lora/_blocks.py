"""The MXNet internals LoRA needs, in one place (Gluon 1.x has no public way to do these).

Gluon hands a HybridBlock's ``hybrid_forward`` the parameters registered in
``Block._reg_params`` (by attribute name), and ``collect_params`` lists the
block's ``ParameterDict``: an adapter must be in both, next to the weight it
adapts, and must leave both again when merged. BatchNorm keeps its
``use_global_stats`` switch in ``_kwargs``.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Tuple

import mxnet as mx
from mxnet import gluon

from .. import _compat

__all__ = ["registered", "walk_registrations", "register", "unregister", "contexts",
           "has_data", "plain_layout", "global_stats", "set_global_stats"]


def registered(block: gluon.Block) -> Dict[str, gluon.Parameter]:
    """Attribute name -> parameter, as ``hybrid_forward`` receives them."""
    return _compat.own_params(block)


def walk_registrations(net: gluon.Block) -> Iterator[Tuple[gluon.Block, str, gluon.Parameter]]:
    """Every ``(block, attribute, parameter)`` registration below ``net`` (a shared parameter
    once per block that registers it)."""
    stack: List[gluon.Block] = [net]
    while stack:
        block = stack.pop(0)
        for attr, param in _compat.own_params(block).items():
            yield block, attr, param
        stack.extend(_compat.children(block).values())


def register(block: gluon.Block, attr: str, param: gluon.Parameter, after: str) -> None:
    """Register ``param`` as ``block.<attr>``, listed right after parameter ``after`` (a name)."""
    setattr(block, attr, param)  # Block.__setattr__ puts it in _reg_params
    listed = _compat.listed_params(block)
    items = [(k, v) for k, v in listed.items() if k != param.name]
    at = next((i + 1 for i, (k, _) in enumerate(items) if k == after), len(items))
    items.insert(at, (param.name, param))
    listed.clear()
    listed.update(items)


def unregister(block: gluon.Block, attr: str) -> None:
    """Undo :func:`register`."""
    param = _compat.own_params(block).pop(attr)
    block.__dict__.pop(attr, None)
    _compat.listed_params(block).pop(param.name, None)


def contexts(param: gluon.Parameter):
    """The contexts ``param`` is (or will be, when deferred) initialised on; None if
    ``initialize`` has not been called for it."""
    if not _compat.is_initialized(param) and not _compat.deferred_init(param):
        return None
    return param.list_ctx()


def has_data(param: gluon.Parameter) -> bool:
    """Whether ``param`` holds arrays (initialised, not deferred)."""
    return _compat.is_initialized(param)


def plain_layout(param: gluon.Parameter) -> None:
    """Give ``param`` fresh arrays in MXNet's default layout. An inference pass leaves
    convolution weights in oneDNN's blocked layout, and a hybridized graph that adds an
    update to such a weight fails for some shapes ("could not create a primitive
    descriptor for a sum primitive"; seen on mobilenetv2's convolutions). ``set_data``
    writes into the arrays and keeps their layout."""
    if _compat.is_initialized(param):
        _compat.set_param_data(param, [(mx.np if isinstance(d, mx.np.ndarray) else mx.nd).array(
            d.asnumpy(), ctx=d.context, dtype=d.dtype) for d in _compat.param_data(param)])


def global_stats(layer) -> bool:
    return _compat.uses_global_stats(layer)


def set_global_stats(layer, value: bool) -> None:
    _compat.set_global_stats(layer, value)
