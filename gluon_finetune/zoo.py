"""``get_model``: MXNet's and GluonCV's model zoos, ready for fine-tuning.

Build the zoo network, load its weights (offline-friendly), swap the head
for ``classes`` outputs in place, and freeze all but the last ``unfreeze``
blocks. Names are looked up in ``mxnet.gluon.model_zoo.vision`` first, then
in GluonCV's classification zoo.
"""
from __future__ import annotations

import difflib
import os
from typing import List, Optional, Tuple, Union

import mxnet as mx
from mxnet import gluon
from mxnet.gluon import nn

from .freezing import (
    check_bn_policy,
    check_unfreeze,
    clear_cached_graphs,
    prepare_for_finetuning,
)
from .nlp import NLP_MODELS, get_nlp_model, is_nlp_model
from .structure import GRANULARITIES, block_names, blocks

__all__ = ["get_model", "model_names"]


def _mxnet_names() -> List[str]:
    # vision.get_model keeps its table local; its error message lists the names
    try:
        gluon.model_zoo.vision.get_model("\0")
    except ValueError as err:
        return [n.strip() for n in str(err).split("\n")[1:] if n.strip()]
    return []


def _gluoncv_names() -> List[str]:
    try:
        from gluoncv.model_zoo import get_model_list
    except ImportError:  # GluonCV is optional
        return []
    return list(get_model_list())


def model_names() -> List[str]:
    """Every name ``get_model`` accepts (MXNet's zoo first, then GluonCV's)."""
    mx_names = _mxnet_names()
    return mx_names + [n for n in _gluoncv_names() if n not in set(mx_names)] + list(NLP_MODELS)


def _zoo_of(name: str) -> str:
    if name.lower() in _mxnet_names():
        return "mxnet"
    if name.lower() in _gluoncv_names():
        return "gluoncv"
    close = difflib.get_close_matches(name.lower(), model_names(), n=5, cutoff=0.6)
    hint = f" Close names: {close}." if close else ""
    raise ValueError(f"unknown model {name!r}: not in MXNet's model zoo nor in GluonCV's."
                     f"{hint} (gluon_finetune.model_names() lists them all)")


def _model_store(zoo: str):
    if zoo == "mxnet":
        from mxnet.gluon.model_zoo import model_store
    else:
        from gluoncv.model_zoo import model_store
    return model_store


def _default_root() -> str:
    return os.path.join(mx.base.data_dir(), "models")


def _weights_file(name: str, zoo: str, root: str) -> str:
    """The zoo's weights file: verified official file, a local ``<name>.params``, or the
    zoo's own download; a clear error when none can be had (e.g. offline)."""
    store = _model_store(zoo)
    root = os.path.expanduser(root)
    official = os.path.join(root, f"{name}-{store.short_hash(name)}.params")
    if os.path.exists(official) and store.check_sha1(official, store._model_sha1[name]):
        return official
    local = os.path.join(root, f"{name}.params")
    if os.path.exists(local):
        return local
    try:
        return store.get_model_file(name, root=root)
    except Exception as err:  # offline: the zoo's downloader cannot reach its server
        mismatch = " (it exists but its checksum does not match)" if os.path.exists(official) \
            else ""
        raise FileNotFoundError(
            f"pretrained weights for {name!r} ({zoo} zoo) are not on this machine and could "
            f"not be downloaded ({type(err).__name__}). Looked for {official}{mismatch} and "
            f"{local}. Copy the zoo's file to the first path, or save weights as the second "
            f"(net.save_parameters), or pass pretrained='path/to/file.params'.") from None


def _build(name: str, zoo: str, kwargs) -> gluon.HybridBlock:
    if zoo == "mxnet":
        return gluon.model_zoo.vision.get_model(name, **kwargs)
    from gluoncv.model_zoo import get_model as gluoncv_get_model
    return gluoncv_get_model(name, pretrained=False, **kwargs)


def _new_head(old, classes: int):
    """A freshly initialised layer like ``old`` with ``classes`` outputs."""
    if isinstance(old, nn.Dense):
        return nn.Dense(classes, flatten=old._flatten, use_bias=old.bias is not None,
                        in_units=old.weight.shape[1] if old.weight.shape else 0)
    if isinstance(old, nn.Conv2D):
        k = old._kwargs
        return nn.Conv2D(classes, kernel_size=k["kernel"], strides=k["stride"],
                         padding=k["pad"], dilation=k["dilate"], groups=k["num_group"],
                         layout=k["layout"], use_bias=not k["no_bias"],
                         in_channels=old._in_channels)
    raise TypeError(f"cannot replace a head of type {type(old).__name__}; expected the last "
                    f"block to be a Dense or Conv2D layer")


def _parent(net, path: str) -> Tuple[gluon.Block, str, gluon.Block]:
    """(parent block, child key, the nearest ancestor with a name prefix).

    Zoo heads often sit in a container made with prefix '' (SqueezeNet's
    ``output``), whose ``name_scope()`` does nothing: a layer made there
    would get a global name (``conv0_weight``) instead of the network's
    (``deep_dog_conv26_weight``).
    """
    parts = path.split(".")
    block = scope = net
    for part in parts[:-1]:
        block = block._children[part]
        scope = scope if getattr(block, "_empty_prefix", False) else block
    return block, parts[-1], scope


def _registrations(block, child) -> List[Tuple[gluon.Block, str]]:
    """Every (parent, key) under which ``child`` is registered below ``block``."""
    found = [(block, key) for key, c in block._children.items() if c is child]
    for c in block._children.values():
        if c is not child:
            found.extend(_registrations(c, child))
    return found


def _swap_head(net, classes: int, ctx) -> str:
    path, old = blocks(net)[-1]
    parent, key, scope = _parent(net, path)
    with scope.name_scope():
        head = _new_head(old, classes)
    head.initialize(mx.init.Xavier(), ctx=ctx)
    for parent, key in _registrations(net, old):  # GluonCV's GoogLeNet: head.2 is output
        if key.isdigit():  # a Sequential child: replace it in place, keeping its position
            parent._children[key] = head
        else:  # an attribute (net.output, net.fc): setattr keeps net.output pointing at it
            setattr(parent, key, head)
    clear_cached_graphs(net)
    return path


def _check_args(name, classes, pretrained, granularity, bn) -> None:
    if not isinstance(name, str):
        raise TypeError(f"name must be a model name such as 'resnet18_v1', got {name!r}")
    if classes is not None and (isinstance(classes, bool) or not isinstance(classes, int)
                                or classes < 1):
        raise ValueError(f"classes must be an int >= 1 (the new head's outputs), got "
                         f"{classes!r}")
    if not (isinstance(pretrained, (bool, str, os.PathLike))):
        raise TypeError(f"pretrained must be True/False or a .params path, got {pretrained!r}")
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    check_bn_policy(bn)


def get_model(name: str, classes: Optional[int] = None, unfreeze: Optional[int] = None,
              pretrained: Union[bool, str] = False, root: Optional[str] = None, ctx=None,
              granularity: str = "unit", bn: str = "frozen", blocks=None,
              **kwargs) -> gluon.HybridBlock:
    """A zoo network ready for fine-tuning.

    Parameters
    ----------
    name : str
        A name from MXNet's ``gluon.model_zoo.vision`` or GluonCV's
        classification zoo, or a GluonNLP encoder (``bert_12_768_12``,
        ``roberta_12_768_12`` ...: a sentence classifier, see ``nlp.py``;
        ``model_names()`` lists them all).
    classes : int, optional
        Replace the classifier head (wherever the architecture keeps it:
        ``output``, ``fc``, a conv head) by a fresh one with ``classes``
        outputs, at the same attribute, after the weights are loaded.
    unfreeze : int, optional
        Keep the last ``unfreeze`` blocks of ``blocks(net, granularity)``
        trainable and freeze the rest; ``None`` freezes nothing, ``1``
        trains the head only.
    pretrained : bool or str
        ``True``: the zoo's weights from the local model store ``root``
        (``<name>-<hash>.params`` checked against the zoo's checksum, or a
        ``<name>.params`` you saved), downloading only where that is
        possible; a path: load that file.
    root : str, optional
        Model store folder (default: MXNet's, ``$MXNET_HOME/models``).
    ctx : Context or list of Context, optional
    granularity : {"unit", "stage"}
    bn : {"frozen", "stats", "train"}
        BatchNorm policy for frozen blocks (see ``freezing.py``).
    blocks : list, optional
        An explicit block list (see ``structure.blocks``), recorded on the
        net (``net.finetune_block_list``) for every later call.
    **kwargs
        Passed to the zoo's constructor (e.g. ``norm_kwargs`` for GluonCV).

    Returns
    -------
    HybridBlock
        With ``net.finetune_blocks`` (the paths of the block list that
        ``unfreeze`` counts; ``blocks(net, net.finetune_granularity)`` gives
        the blocks) and ``net.finetune_granularity``, which ``LayerwiseTrainer``
        and gradual unfreezing follow.

    Examples
    --------
    >>> net = get_model("resnet18_v1", classes=2, unfreeze=1)  # doctest: +SKIP
    """
    _check_args(name, classes, pretrained, granularity, bn)
    if is_nlp_model(name):
        return get_nlp_model(name, classes, unfreeze, pretrained, root, ctx, granularity, bn,
                             blocks, **kwargs)
    zoo = _zoo_of(name)
    ctx = ctx or mx.cpu()
    net = _build(name.lower(), zoo, kwargs)
    check_unfreeze(unfreeze, block_names(net, granularity, blocks))
    if pretrained is False:
        net.initialize(mx.init.Xavier(), ctx=ctx)
    else:
        path = pretrained if not isinstance(pretrained, bool) else \
            _weights_file(name.lower(), zoo, root or _default_root())
        if not os.path.exists(path):
            raise FileNotFoundError(f"pretrained weights file {path!r} does not exist")
        net.load_parameters(str(path), ctx=ctx)
    if classes is not None:
        _swap_head(net, classes, ctx)
    return prepare_for_finetuning(net, unfreeze, granularity, bn, blocks)
