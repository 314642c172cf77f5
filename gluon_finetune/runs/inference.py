"""A run's network at work: predict images, evaluate on a labelled folder.

Both read images with MXNet's decoder, apply the run's deterministic
preprocessing (resize the shorter side, centre crop, normalise) and call the
network in batches; evaluate is predict on a folder's images plus the labels,
so their numbers agree. ``preprocess`` is the same step for your own calls.
"""
from __future__ import annotations

import csv
import os
import sys
from typing import IO, Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import mxnet as mx
import numpy as np
from mxnet import gluon, nd
from tqdm.auto import tqdm

from ..checks import (
    InvalidTypeError,
    InvalidValueError,
    MissingFileError,
    check_bool,
    check_int,
    check_positive_int,
    last_line,
)
from ..models import get_model
from ..recipes.augmentation import Preprocessing
from ..reporting.classification import classification_report, plot_confusion_matrix
from .folder import RunFolder, write_json

__all__ = ["Prediction", "load_network", "image_files", "preprocess", "predict",
           "write_predictions", "evaluate_run", "run_folder"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")  # ImageFolderDataset's


def run_folder(run: Union[str, RunFolder]) -> RunFolder:
    """``run`` itself, or the run folder at that path (checked)."""
    return run if isinstance(run, RunFolder) else RunFolder.open(run)


def load_network(run: Union[str, RunFolder], params: str = "best", ctx=None
                 ) -> gluon.HybridBlock:
    """The run's network with its ``params`` (``"best"``, ``"last"`` or a ``.params`` file):
    the zoo model of the record, its head sized for the run's classes.

    Parameters
    ----------
    run : str or RunFolder
        A run folder written by ``train_run`` with ``model=`` (a zoo name).
    params : str
        ``"best"``, ``"last"`` or the path of a ``.params`` file for the model.
    ctx : Context or list of Context, optional
        Where the network goes (default: CPU).

    Returns
    -------
    HybridBlock
        ``get_model(model, classes=len(classes), pretrained=params_file)``.

    Raises
    ------
    InvalidTypeError
        If ``run`` or ``params`` is not a str or path.
    MissingFileError
        If the run folder or the parameters file does not exist.
    InvalidValueError
        If ``run`` is not a run folder, or its record names no zoo model (a
        network built in Python: pass ``net=`` to ``predict``,
        ``evaluate_run`` or ``export_run`` instead).

    Examples
    --------
    >>> from gluon_finetune import epoch_data, get_model, train_run
    >>> data = epoch_data(data_dir, image_size=16, batch_size=12)
    >>> zoo_net = get_model("mobilenet0.25", classes=2)
    >>> trainer = gluon.Trainer(zoo_net.collect_params(), "sgd", {"learning_rate": 0.01})
    >>> _ = train_run(zoo_net, trainer, data, 1, "run", model="mobilenet0.25", progress=False)
    >>> best = load_network("run", "best")
    >>> x = nd.random.uniform(shape=(1, 3, 16, 16))
    >>> bool((best(x) == zoo_net(x)).min())
    True
    """
    folder = run_folder(run)
    path = folder.params_file(params)
    model = folder.record.get("model")
    if not model:
        raise InvalidValueError(f"run {folder.path!r} records no zoo model (it was trained "
                                f"from Python on another network): pass net=", argument="net")
    return get_model(model, classes=len(folder.classes), pretrained=path, ctx=ctx)


def image_files(images: Union[str, Sequence[str]]) -> List[str]:
    """The image files of ``images``: files as given, folders searched (sorted, recursively)
    for .jpg, .jpeg and .png files."""
    images = [images] if isinstance(images, (str, os.PathLike)) else list(images)
    if not images:
        raise InvalidValueError("no images given", argument="images")
    files: List[str] = []
    for item in images:
        if not isinstance(item, (str, os.PathLike)):
            raise InvalidTypeError(f"an image must be a file or folder name, got {item!r}",
                                   argument="images")
        item = os.fspath(item)
        if os.path.isdir(item):
            found = sorted(os.path.join(d, f) for d, _, names in os.walk(item) for f in names
                           if f.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                raise InvalidValueError(f"folder {item!r} holds no images "
                                        f"({', '.join(IMAGE_EXTENSIONS)})", argument="images")
            files.extend(found)
        elif os.path.isfile(item):
            files.append(item)
        else:
            raise MissingFileError(f"image {item!r} does not exist", argument="images")
    return files


def _read(path: str) -> nd.NDArray:
    try:
        return mx.image.imread(path, 1)
    except (mx.base.MXNetError, OSError) as err:
        raise InvalidValueError(f"cannot read image {path!r}: {last_line(err)}",
                                argument="images") from None


def preprocess(files: Sequence[str], preprocessing: Preprocessing) -> nd.NDArray:
    """The network's input for ``files``: a ``(N, 3, size, size)`` batch, each image read,
    resized, centre-cropped and normalised as the run's validation does."""
    if not isinstance(preprocessing, Preprocessing):
        raise InvalidTypeError(f"preprocessing must be a Preprocessing, got "
                               f"{type(preprocessing).__name__}", argument="preprocessing")
    return _stacked(files, preprocessing.eval_transform())


def _stacked(files: Sequence[str], transform) -> nd.NDArray:
    return nd.stack(*[transform(_read(path)) for path in files])


def _probabilities(net, files: List[str], preprocessing: Preprocessing, batch_size: int,
                   ctx, progress: bool) -> np.ndarray:
    out = []
    transform = preprocessing.eval_transform()  # one for all batches: a new one runs slower
    with tqdm(total=len(files), desc="predict", disable=not progress, leave=False,
              dynamic_ncols=True) as bar:
        for start in range(0, len(files), batch_size):
            batch = files[start:start + batch_size]
            x = _stacked(batch, transform).as_in_context(ctx or mx.cpu())
            probabilities = nd.softmax(net(x), axis=1)
            if out:  # the batch before, read only now: this batch's images were read and
                out[-1] = out[-1].asnumpy()  # queued while the network ran on it
            out.append(probabilities)
            bar.update(len(batch))
    out[-1] = out[-1].asnumpy()
    return np.concatenate(out)


class Prediction(NamedTuple):
    """One image's prediction: the class, its probability, the top-k ``(class, p)``."""

    path: str
    label: str
    probability: float
    top: List[Tuple[str, float]]


def _checked_args(folder: RunFolder, top_k, batch_size, progress) -> Tuple[int, int]:
    classes = len(folder.classes)
    top_k = min(5, classes) if top_k is None else check_int("top_k", top_k, minimum=1)
    if top_k > classes:
        raise InvalidValueError(f"--top-k {top_k} is more than the run's {classes} classes "
                                f"({', '.join(folder.classes)})", argument="top_k")
    check_bool("progress", progress)
    return top_k, check_positive_int("batch_size", batch_size)


def predict(run: Union[str, RunFolder], images: Union[str, Sequence[str]],
            params: str = "best", top_k: Optional[int] = None, batch_size: int = 32,
            net: Optional[gluon.Block] = None, ctx=None, progress: bool = False
            ) -> List[Prediction]:
    """Predict the class of each image with the run's network.

    Parameters
    ----------
    run : str or RunFolder
    images : str or list of str
        Image files, or folders (searched recursively).
    params : str
        ``"best"``, ``"last"`` or a ``.params`` file.
    top_k : int, optional
        Classes listed per image (default 5, or the number of classes if fewer).
    batch_size : int
        Images per forward pass.
    net : Block, optional
        The network to use instead of rebuilding the run's (its ``params`` are
        then not loaded).
    ctx : Context, optional
        Where the batches go (default: CPU).
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    list of Prediction
        One per image file, in order: ``path``, ``label``, ``probability``
        and ``top`` (``(class, probability)`` pairs, best first). The
        probabilities are the network's softmax on the run's validation
        preprocessing of the images, in batches of ``batch_size``.

    Raises
    ------
    InvalidTypeError
        If ``run`` or an image is not a file or folder name, ``top_k`` not an
        int or ``progress`` not a bool.
    MissingFileError
        If the run folder, an image or the parameters file does not exist.
    InvalidValueError
        If ``run`` is not a run folder, ``top_k`` is not in 1..classes,
        ``batch_size`` < 1, no images are given, a folder holds none, an image
        cannot be decoded, or (without ``net``) the run records no zoo model.

    Examples
    --------
    >>> from gluon_finetune import epoch_data, train_run
    >>> data = epoch_data(data_dir, image_size=16, batch_size=4)
    >>> trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    >>> _ = train_run(net, trainer, data, 2, "run", progress=False)
    >>> rows = predict("run", os.path.join(data_dir, "val", "red"), net=net, top_k=2)
    >>> len(rows), rows[0].label, [name for name, p in rows[0].top]
    (3, 'red', ['red', 'blue'])
    >>> round(sum(p for _, p in rows[0].top), 4)
    1.0
    """
    folder = run_folder(run)
    top_k, batch_size = _checked_args(folder, top_k, batch_size, progress)
    files = image_files(images)
    net = net if net is not None else load_network(folder, params, ctx)
    probabilities = _probabilities(net, files, Preprocessing.from_dict(
        folder.record["preprocessing"]), batch_size, ctx, progress)
    return [_prediction(path, p, folder.classes, top_k) for path, p in zip(files, probabilities)]


def _prediction(path: str, p: np.ndarray, classes: List[str], top_k: int) -> Prediction:
    order = np.argsort(-p, kind="stable")[:top_k]
    top = [(classes[i], float(p[i])) for i in order]
    return Prediction(path, top[0][0], top[0][1], top)


def write_predictions(predictions: Sequence[Prediction], out: Union[str, IO[str], None] = None
                      ) -> None:
    """CSV: ``path, class, probability`` then ``top1_class, top1_probability, ...``; to the
    file ``out`` (or a stream; default stdout). Probabilities are written in full (the
    float32 value, exactly)."""
    k = len(predictions[0].top) if predictions else 0
    header = ["path", "class", "probability"] + [
        f"top{i}_{field}" for i in range(1, k + 1) for field in ("class", "probability")]
    stream = open(out, "w", newline="", encoding="utf-8") \
        if isinstance(out, (str, os.PathLike)) else (out or sys.stdout)
    try:
        writer = csv.writer(stream)
        writer.writerow(header)
        for row in predictions:
            writer.writerow([row.path, row.label, repr(row.probability)] +
                            [v for name, p in row.top for v in (name, repr(p))])
    finally:
        if stream is not out and stream is not sys.stdout:
            stream.close()


def _labelled(data: str, classes: List[str]) -> Tuple[List[str], List[int]]:
    """Files and the run's class index of each, from ``data/<class>/<image>``."""
    if not isinstance(data, (str, os.PathLike)) or not os.path.isdir(data):
        raise MissingFileError(f"image folder {data!r} does not exist", argument="data")
    dataset = gluon.data.vision.ImageFolderDataset(os.fspath(data))
    unknown = [name for name in dataset.synsets if name not in classes]
    if unknown or not dataset.items:
        what = f"class folders {unknown} that the run does not have" if unknown else "no images"
        raise InvalidValueError(f"{data!r} has {what}; expected {data}/<class>/<image> with the "
                                f"run's classes ({', '.join(classes)})", argument="data")
    return ([path for path, _ in dataset.items],
            [classes.index(dataset.synsets[label]) for _, label in dataset.items])


def evaluate_run(run: Union[str, RunFolder], data: str, params: str = "best",
                 out: Optional[str] = None, batch_size: int = 32,
                 net: Optional[gluon.Block] = None, ctx=None, progress: bool = False
                 ) -> Dict[str, Any]:
    """Evaluate the run's network on ``data/<class>/<image>`` (the run's classes, all or
    some); write ``report.json`` and ``confusion_matrix.png`` under ``out`` (default
    ``RUN/eval``).

    The images go through :func:`predict`'s steps (the run's validation
    preprocessing, softmax), so the two agree.

    Parameters
    ----------
    run : str or RunFolder
    data : str
        A labelled folder: one subfolder per class, named as the run's.
    params : str
        ``"best"``, ``"last"`` or a ``.params`` file (ignored with ``net``).
    out : str, optional
        Where to write the report and the plot (made if needed).
    batch_size : int
        Images per forward pass.
    net : Block, optional
        The network to use instead of rebuilding the run's.
    ctx, progress
        As for :func:`predict`.

    Returns
    -------
    dict
        ``accuracy``, ``images``, ``per_class`` (precision, recall, f1,
        support), ``macro_avg``, ``confusion_matrix`` (rows: true classes;
        top-5 accuracy too with more than five classes), plus ``params``,
        ``data`` (absolute path) and ``files`` (where it was written).

    Raises
    ------
    InvalidTypeError
        If ``run`` is not a folder name or ``progress`` not a bool.
    MissingFileError
        If the run folder, ``data`` or the parameters file does not exist.
    InvalidValueError
        If ``run`` is not a run folder, ``batch_size`` < 1, ``data`` has class
        folders the run lacks or no images, an image cannot be decoded, or
        (without ``net``) the run records no zoo model.

    Examples
    --------
    >>> from gluon_finetune import epoch_data, train_run
    >>> data = epoch_data(data_dir, image_size=16, batch_size=4)
    >>> trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    >>> _ = train_run(net, trainer, data, 2, "run", progress=False)
    >>> report = evaluate_run("run", os.path.join(data_dir, "val"), net=net)
    >>> report["images"], sorted(report["per_class"])
    (6, ['blue', 'red'])
    >>> sorted(os.listdir(os.path.join("run", "eval")))
    ['confusion_matrix.png', 'report.json']
    """
    folder = run_folder(run)
    _, batch_size = _checked_args(folder, 1, batch_size, progress)
    files, labels = _labelled(data, folder.classes)
    net = net if net is not None else load_network(folder, params, ctx)
    probabilities = _probabilities(net, files, Preprocessing.from_dict(
        folder.record["preprocessing"]), batch_size, ctx, progress)
    report = classification_report(labels, probabilities, folder.classes)
    out = folder.file("eval") if out is None else os.fspath(out)
    os.makedirs(out, exist_ok=True)
    report.update(params=str(params), data=os.path.abspath(data),
                  files={"report": os.path.join(out, "report.json"),
                         "confusion_matrix": os.path.join(out, "confusion_matrix.png")})
    plot_confusion_matrix(report["confusion_matrix"], folder.classes,
                          report["files"]["confusion_matrix"],
                          title=f"confusion matrix ({os.path.basename(os.path.abspath(data))}, "
                                f"{params} parameters)")
    write_json(report["files"]["report"], report)
    return report
