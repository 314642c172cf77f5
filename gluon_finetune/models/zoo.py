"""``get_model``: MXNet's and GluonCV's model zoos, ready for fine-tuning.

Build the zoo network, load its weights (offline-friendly), swap the head
for ``classes`` outputs in place, and freeze all but the last ``unfreeze``
blocks. Names are looked up in ``mxnet.gluon.model_zoo.vision`` first, then
in GluonCV's classification zoo.
"""
from __future__ import annotations

import os
import warnings
from typing import List, Optional, Tuple, Union

import mxnet as mx
from mxnet import gluon
from mxnet.gluon import nn

from .._compat import (
    children,
    conv_in_channels,
    dense_flatten,
    has_empty_prefix,
    init_weight,
    operator_flags,
    set_child,
)
from ..checks import InvalidTypeError, InvalidValueError, did_you_mean, require
from ..structure.index import GRANULARITIES
from ..structure.listing import block_names, blocks
from ..trainer.freezing import (
    check_bn_policy,
    check_unfreeze,
    clear_cached_graphs,
    prepare_for_finetuning,
)
from .adapting import check_lora, with_lora
from .auxiliary import auxiliary_classifiers, outputs_of, warn_auxiliary
from .detection import check_classes, is_detector, load_detector, refuse_names, reset_detector
from .nlp import NLP_MODELS, get_nlp_model, is_nlp_model
from .weights import default_root, head_outputs, load_weights, read_weights, weights_file

__all__ = ["get_model", "model_names"]



class Fresh(mx.init.Xavier):
    """Xavier for weight matrices; a vector without an initializer of its own (BatchNorm
    inside a part built from symbols, as SSD's feature expander) by its name, as MXNet's
    default does (gamma 1, beta 0, moving_var 1 ...): Xavier needs two dimensions."""

    def _init_weight(self, name, arr):
        if len(arr.shape) >= 2:
            super()._init_weight(name, arr)
        elif str(name).endswith("weight"):
            init_weight(mx.init.Uniform(), name, arr)
        else:
            self._legacy_init(str(name), arr)


def _initialize(net, ctx) -> None:
    """Initialise what the zoo's constructor left uninitialised. GluonCV's detectors and
    segmentation nets initialise their heads themselves: no warning per parameter."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Parameter '.*' is already initialized")
        net.initialize(Fresh(), ctx=ctx)


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
    """Every name ``get_model`` accepts: MXNet's zoo, then GluonCV's, then GluonNLP's.

    Returns
    -------
    list of str
        GluonCV's names only where GluonCV is installed (the ``zoo`` extra).

    Examples
    --------
    >>> from gluon_finetune import model_names
    >>> names = model_names()
    >>> "resnet18_v1" in names, "bert_12_768_12" in names
    (True, True)
    """
    mx_names = _mxnet_names()
    return mx_names + [n for n in _gluoncv_names() if n not in set(mx_names)] + list(NLP_MODELS)


def _zoo_of(name: str) -> str:
    if name.lower() in _mxnet_names():
        return "mxnet"
    # without GluonCV its names are unknown: say what to install, not "unknown model"
    require("gluoncv.model_zoo", needed_for=f"get_model({name!r}) (not in MXNet's model zoo; "
                                            f"GluonCV's has more)")
    if name.lower() in _gluoncv_names():
        return "gluoncv"
    hint = did_you_mean(name.lower(), model_names(), n=5, cutoff=0.6)
    raise InvalidValueError(f"unknown model {name!r}: not in MXNet's model zoo nor in "
                            f"GluonCV's. {hint + ' ' if hint else ''}(gluon_finetune."
                            f"model_names() lists them all)",
                            argument="name")


def _build(name: str, zoo: str, kwargs) -> gluon.HybridBlock:
    if zoo == "mxnet":
        return gluon.model_zoo.vision.get_model(name, **kwargs)
    from gluoncv.model_zoo import get_model as gluoncv_get_model
    return gluoncv_get_model(name, pretrained=False, **kwargs)


def _new_head(old, classes: int):
    """A freshly initialised layer like ``old`` with ``classes`` outputs."""
    if isinstance(old, nn.Dense):
        return nn.Dense(classes, flatten=dense_flatten(old), use_bias=old.bias is not None,
                        in_units=old.weight.shape[1] if old.weight.shape else 0)
    if isinstance(old, nn.Conv2D):
        k = operator_flags(old)
        return nn.Conv2D(classes, kernel_size=k["kernel"], strides=k["stride"],
                         padding=k["pad"], dilation=k["dilate"], groups=k["num_group"],
                         layout=k["layout"], use_bias=not k["no_bias"],
                         in_channels=conv_in_channels(old))
    raise InvalidTypeError(f"cannot replace a head of type {type(old).__name__}: classes= "
                           f"replaces a classifier's last block when it is a Dense or Conv2D "
                           f"layer (or resets a GluonCV detector's classes). Build the model "
                           f"without classes= and replace its class-dependent layers yourself",
                           argument="classes")


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
        block = children(block)[part]
        scope = scope if has_empty_prefix(block) else block
    return block, parts[-1], scope


def _registrations(block, child) -> List[Tuple[gluon.Block, str]]:
    """Every (parent, key) under which ``child`` is registered below ``block``."""
    found = [(block, key) for key, c in children(block).items() if c is child]
    for c in children(block).values():
        if c is not child:
            found.extend(_registrations(c, child))
    return found


def _swap_head(net, classes: int, ctx) -> str:
    path, old = blocks(net)[-1]
    auxiliary = auxiliary_classifiers(net, old, outputs_of(old))
    parent, key, scope = _parent(net, path)
    with scope.name_scope():
        head = _new_head(old, classes)
    head.initialize(mx.init.Xavier(), ctx=ctx)
    for parent, key in _registrations(net, old):  # GluonCV's GoogLeNet: head.2 is output
        if key.isdigit():  # a Sequential child: replace it in place, keeping its position
            set_child(parent, key, head)
        else:  # an attribute (net.output, net.fc): setattr keeps net.output pointing at it
            setattr(parent, key, head)
    clear_cached_graphs(net)
    warn_auxiliary(auxiliary, path, outputs_of(old), classes)
    return path


def _check_args(name, classes, pretrained, granularity, bn):
    """``classes`` as an int (NumPy integers welcome) or a tuple of class names, after
    checking every argument."""
    if not isinstance(name, str):
        raise InvalidTypeError(f"name must be a model name such as 'resnet18_v1', got "
                               f"{name!r}", argument="name")
    classes = check_classes(classes)
    if not (isinstance(pretrained, (bool, str, os.PathLike))):
        raise InvalidTypeError(f"pretrained must be True/False or a .params path, got "
                               f"{pretrained!r}", argument="pretrained")
    if granularity not in GRANULARITIES:
        raise InvalidValueError(f"granularity must be one of {GRANULARITIES}, got "
                                f"{granularity!r}", argument="granularity")
    check_bn_policy(bn)
    return classes


def _load_with_head(net, path: str, classes: Optional[int], ctx, name: str) -> None:
    """Load ``path``; its head may have the zoo's outputs or ``classes`` (then it is
    loaded into the new head). The head is swapped where ``classes`` asks for it."""
    head_path, head = blocks(net)[-1]
    weight = getattr(head, "weight", None)
    ours = int(weight.shape[0]) if weight is not None and weight.shape else None
    theirs = head_outputs(read_weights(path), head_path)
    if classes is not None and theirs == classes:  # one's own fine-tuned weights
        _swap_head(net, classes, ctx)
        load_weights(net, path, ctx, name)
        return
    if theirs is not None and ours is not None and theirs != ours:
        wanted = f"{ours} (the zoo's)" + (f" or {classes} (classes)" if classes else "")
        hint = "" if classes else f"; pass classes={theirs} to load it"
        raise InvalidValueError(f"{path!r} has a head ({head_path}) with {theirs} outputs, "
                                f"but {name} needs {wanted}{hint}", argument="pretrained")
    load_weights(net, path, ctx, name)
    if classes is not None:
        _swap_head(net, classes, ctx)


def get_model(name: str, classes: Optional[int] = None, unfreeze: Optional[int] = None,
              pretrained: Union[bool, str] = False, root: Optional[str] = None, ctx=None,
              granularity: str = "unit", bn: str = "frozen", blocks=None,
              lora: Optional[int] = None, lora_alpha: float = 16, lora_targets=None,
              **kwargs) -> gluon.HybridBlock:
    """A zoo network ready for fine-tuning.

    Parameters
    ----------
    name : str
        A name from MXNet's ``gluon.model_zoo.vision`` or GluonCV's
        classification zoo, or a GluonNLP encoder (``bert_12_768_12``,
        ``roberta_12_768_12`` ...: a sentence classifier; ``model_names()``
        lists them all).
    classes : int or list of str, optional
        Replace the classifier head (wherever the architecture keeps it:
        ``output``, ``fc``, a conv head) by a fresh one with ``classes``
        outputs, at the same attribute, after the weights are loaded. A
        weights file whose head already has ``classes`` outputs (your own
        fine-tuned model) loads into the new head instead. A GluonCV
        detector (SSD, YOLOv3, Faster/Mask R-CNN, CenterNet) gets its
        classes from its own ``reset_class`` instead, which remakes every
        class-dependent layer; for a detector ``classes`` may also be the
        class names (a number gives ``class0``, ``class1`` ...). Any other
        model whose last block is not a Dense or Conv2D layer is refused.
    unfreeze : int, optional
        Keep the last ``unfreeze`` blocks of ``blocks(net, granularity)``
        trainable and freeze the rest; ``None`` freezes nothing, ``1``
        trains the head only. Rules given to ``LayerwiseTrainer`` afterwards
        can thaw what this froze: a rule that gives a parameter a rate
        (``{"*": 0.1}``) makes it trainable, and ``explain`` notes it. To
        rate only what is trainable, key the rule ``"trainable:*"``; to keep
        the limit whatever the rules say, call
        ``trainer.set_trainable_blocks(unfreeze)``.
    pretrained : bool or str
        ``True``: the zoo's weights from the local model store ``root``
        (``<name>-<hash>.params`` checked against the zoo's checksum, or a
        ``<name>.params`` you saved), downloading only where that is
        possible; a path: load that file (written by ``save_parameters``; its
        head has the zoo's outputs or ``classes``; anything else is an error).
    root : str, optional
        Model store folder (default: MXNet's, ``$MXNET_HOME/models``).
    ctx : Context or list of Context, optional
        Where the parameters live (default: the CPU).
    granularity : {"unit", "stage"}
        What a block is: a unit (a residual unit) or a whole stage.
    bn : {"frozen", "stats", "train"}
        BatchNorm policy for frozen blocks: 'frozen' also runs them on running
        statistics, as at inference; 'stats' leaves them on batch statistics
        (``grad_req='null'`` alone); 'train' trains their scale and shift.
    blocks : list, optional
        An explicit block list (as ``blocks(net, blocks=...)`` takes it),
        recorded on the net (``net.finetune_block_list``) for every later call.
    lora : int, optional
        Add LoRA adapters of this rank (``add_lora``): only the adapters
        and the last ``unfreeze`` blocks (default 1: the head) train.
    lora_alpha : float, default 16
        The adapters' alpha (the update is scaled by ``lora_alpha / lora``).
    lora_targets : rule key or tuple, optional
        The weights to adapt (default: attention's query and value weights,
        else every Dense and convolution weight outside the head).
    **kwargs
        Passed to the zoo's constructor (e.g. ``norm_kwargs`` for GluonCV).

    Returns
    -------
    HybridBlock
        With ``net.finetune_blocks`` (the paths of the block list that
        ``unfreeze`` counts; ``blocks(net, net.finetune_granularity)`` gives
        the blocks) and ``net.finetune_granularity``, which ``LayerwiseTrainer``
        and gradual unfreezing follow.

    Raises
    ------
    InvalidValueError
        An unknown name (close names suggested), ``unfreeze`` out of range (the
        blocks listed), a weights file with another head size or architecture.
    MissingFileError
        Pretrained weights that are not on this machine and cannot be downloaded.
    MissingDependencyError
        A GluonCV or GluonNLP name without that package (the ``zoo``/``nlp`` extra).

    Examples
    --------
    >>> from gluon_finetune import get_model
    >>> net = get_model("resnet18_v1", classes=2, pretrained=True, unfreeze=1)
    >>> net.output, net.finetune_blocks[-2:]
    (Dense(512 -> 2, linear), ('features.7.1', 'output'))
    >>> [p.grad_req for p in net.collect_params().values()][-2:], net.features[0].weight.grad_req
    (['write', 'write'], 'null')
    """
    classes = _check_args(name, classes, pretrained, granularity, bn)
    rank = check_lora(lora, lora_alpha)
    if rank is not None:
        net = get_model(name, classes, None, pretrained, root, ctx, granularity, bn, blocks,
                        **kwargs)
        return with_lora(net, rank, lora_alpha, lora_targets, unfreeze, bn)
    if is_nlp_model(name):
        if isinstance(classes, tuple):
            refuse_names(classes, name)
        return get_nlp_model(name, classes, unfreeze, pretrained, root, ctx, granularity, bn,
                             blocks, **kwargs)
    zoo = _zoo_of(name)
    ctx = ctx or mx.cpu()
    net = _build(name.lower(), zoo, kwargs)
    unfreeze = check_unfreeze(unfreeze, block_names(net, granularity, blocks))
    path = None if pretrained is False else os.fspath(
        pretrained if not isinstance(pretrained, bool) else
        weights_file(name.lower(), zoo, root or default_root()))
    if is_detector(net):
        _detector_weights(net, path, classes, ctx, name)
    elif isinstance(classes, tuple):
        refuse_names(classes, name)
    elif path is None:
        _initialize(net, ctx)
        if classes is not None:
            _swap_head(net, classes, ctx)
    else:
        _load_with_head(net, path, classes, ctx, name)
    return prepare_for_finetuning(net, unfreeze, granularity, bn, blocks)


def _detector_weights(net, path: Optional[str], classes, ctx, name: str) -> None:
    """A GluonCV detector's weights, and its classes reset by GluonCV (``reset_class``)."""
    if path is not None:
        load_detector(net, path, classes, lambda n, p: load_weights(n, p, ctx, name),
                      clear_cached_graphs)
        return
    _initialize(net, ctx)
    if classes is not None:
        reset_detector(net, classes, clear_cached_graphs)
