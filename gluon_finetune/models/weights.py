"""Weights files for ``get_model``: the zoo's (verified, offline-friendly) or the user's own.

A file is found without a download where one is on the machine, and every file
that cannot be used is a clear error saying what to do.
"""
from __future__ import annotations

import os
from typing import Optional

import mxnet as mx

from .._compat import model_hashes
from ..checks import InvalidValueError, MissingFileError, last_line

__all__ = ["model_store_of", "default_root", "weights_file", "read_weights", "head_outputs",
           "load_weights"]


def model_store_of(zoo: str):
    if zoo == "mxnet":
        from mxnet.gluon.model_zoo import model_store
    else:
        from gluoncv.model_zoo import model_store
    return model_store


def default_root() -> str:
    return os.path.join(mx.base.data_dir(), "models")


def weights_file(name: str, zoo: str, root: str) -> str:
    """The zoo's weights file: verified official file, a local ``<name>.params``, or the
    zoo's own download; a clear error when none can be had (e.g. offline)."""
    store = model_store_of(zoo)
    root = os.path.expanduser(root)
    official = os.path.join(root, f"{name}-{store.short_hash(name)}.params")
    if os.path.exists(official) and store.check_sha1(official, model_hashes(store)[name]):
        return official
    local = os.path.join(root, f"{name}.params")
    if os.path.exists(local):
        return local
    try:
        return store.get_model_file(name, root=root)
    except Exception as err:  # offline: the zoo's downloader cannot reach its server
        mismatch = " (it exists but its checksum does not match)" if os.path.exists(official) \
            else ""
        raise MissingFileError(
            f"pretrained weights for {name!r} ({zoo} zoo) are not on this machine and could "
            f"not be downloaded ({type(err).__name__}). Looked for {official}{mismatch} and "
            f"{local}. Copy the zoo's file to the first path, or save weights as the second "
            f"(net.save_parameters), or pass pretrained='path/to/file.params'.",
            argument="pretrained") from None


def read_weights(path: str) -> dict:
    """The file's arrays by name; a clear error for a file that is not MXNet's."""
    if not os.path.isfile(path):
        raise MissingFileError(f"pretrained weights file {path!r} does not exist",
                               argument="pretrained")
    try:
        loaded = mx.nd.load(path)
    except mx.base.MXNetError as err:
        raise InvalidValueError(f"cannot read weights from {path!r}: {last_line(err)} (expected "
                                f"a file written by net.save_parameters)",
                                argument="pretrained") from None
    if not isinstance(loaded, dict):
        raise InvalidValueError(f"{path!r} holds a list of arrays, not named parameters "
                                f"(expected a file written by net.save_parameters)",
                                argument="pretrained")
    return loaded


def head_outputs(loaded: dict, head_path: str) -> Optional[int]:
    weight = loaded.get(f"{head_path}.weight")  # save_parameters names by structural path
    return None if weight is None or not weight.shape else int(weight.shape[0])


def load_weights(net, path: str, ctx, name: str) -> None:
    try:
        net.load_parameters(path, ctx=ctx)
    except (AssertionError, ValueError, mx.base.MXNetError) as err:
        raise InvalidValueError(f"cannot load {path!r} into {name}: {last_line(err)}",
                                argument="pretrained") from None
