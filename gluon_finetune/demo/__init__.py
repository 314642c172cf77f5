"""``make demo``: a small transfer-learning study on scikit-learn's 8x8 digits.

A conv net is pretrained on digits 0-4 (about 900 images). Its head is then
replaced and it learns digits 5-9 from a few labelled images per class, four
ways, from the same starting points:

- **scratch**: a fresh network, every layer trained;
- **full fine-tuning**: the pretrained network, every layer at one rate;
- **head only**: the pretrained trunk frozen (``unfreeze=1``);
- **gradual + discriminative**: peak rates spread geometrically from the
  first block to the head (``spread``), each on a slanted triangular
  schedule (ULMFiT), the head alone at first and one more block thawed each
  epoch, its schedule starting as it thaws
  (``GradualUnfreezing(every=1, restart="schedule")``);
- **LoRA**: rank-4 adapters on both convolutions (``add_lora``), trained
  with the new head; the pretrained weights stay as they are.

Each method runs for several seeds; the table gives the validation accuracy
(mean, min, max) and the time per method. Two PNGs are written: each layer's
learning rate over the steps of the gradual run, and the accuracy curves.
Runs offline, on CPU, in well under five minutes.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Dict, List, Optional, Sequence

import mxnet as mx
import numpy as np
from mxnet import gluon
from mxnet.gluon import nn

from ..checks import require
from ..lora import add_lora
from ..optim.schedules import SlantedTriangular
from ..recipes.training import fit
from ..recipes.unfreezing import GradualUnfreezing
from ..reporting.plots import RateRecorder, plot_accuracy, plot_lr_curves
from ..rules.spreads import spread
from ..trainer.freezing import unfreeze
from ..trainer.layerwise import LayerwiseTrainer

METHODS = ("scratch", "full fine-tuning", "head only", "gradual + discriminative", "LoRA")
LEARNING_RATE = 1e-3


def digits_split(seed: int = 0, per_class: int = 20):
    """(pretrain, fine-tune train, fine-tune validation) arrays from sklearn's digits.

    Pretraining sees digits 0-4; the target task is digits 5-9 (labels 0-4),
    ``per_class`` labelled images each, validated on all the other 5-9 images.
    """
    data = require("sklearn.datasets", needed_for="the demo").load_digits()
    x = (data.data / 16.0).astype("float32")
    y = data.target.astype("float32")
    rng = np.random.RandomState(seed)
    source = y < 5
    target = np.flatnonzero(~source)
    rng.shuffle(target)
    few = np.concatenate([target[y[target] == c][:per_class] for c in range(5, 10)])
    rest = np.setdiff1d(target, few)
    return (x[source], y[source]), (x[few], y[few] - 5), (x[rest], y[rest] - 5)


class DigitsNet(gluon.HybridBlock):
    """A small conv net laid out like the zoo's: ``features`` then ``output``.

    The head reads the conv features directly: those transfer between digit
    sets, where a hidden dense layer would learn the source classes.
    """

    def __init__(self, classes: int, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.features = nn.HybridSequential()
            self.features.add(nn.Conv2D(16, 3, padding=1, in_channels=1, activation="relu"),
                              nn.Conv2D(32, 3, padding=1, in_channels=16, activation="relu"),
                              nn.MaxPool2D(2), nn.Flatten())
            self.output = nn.Dense(classes, in_units=32 * 16)

    def hybrid_forward(self, F, x):  # noqa: N803 (Gluon's own signature)
        return self.output(self.features(x.reshape((0, 1, 8, 8))))


def loader(data, batch_size: int = 16, shuffle: bool = False) -> gluon.data.DataLoader:
    return gluon.data.DataLoader(gluon.data.ArrayDataset(*data), batch_size=batch_size,
                                 shuffle=shuffle)


def pretrain(source, epochs: int = 5, seed: int = 0, progress: bool = True) -> DigitsNet:
    """The source model: digits 0-4, every layer trained with Adam."""
    mx.random.seed(seed)
    net = DigitsNet(classes=5)
    net.initialize(mx.init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 3e-3})
    fit(net, trainer, loader(source, 32, shuffle=True), epochs, progress=progress,
        desc="pretrain")
    return net


def transferred(base: Optional[DigitsNet], seed: int) -> DigitsNet:
    """A 5-class network with ``base``'s trunk (or a fresh one) and a new head."""
    mx.random.seed(seed)
    net = DigitsNet(classes=5)
    net.initialize(mx.init.Xavier())
    if base is not None:
        for mine, theirs in zip(net.features.collect_params().values(),
                                base.features.collect_params().values()):
            mine.set_data(theirs.data())
    return net


def method_setup(method: str, base: DigitsNet, seed: int, steps: int):
    """(net, trainer, on_epoch) of one method of the study, for ``steps`` updates."""
    net = transferred(None if method == "scratch" else base, seed)
    on_epoch = None
    if method == "head only":
        unfreeze(net, 1)
        trainer = LayerwiseTrainer(net, "adam", {"learning_rate": 10 * LEARNING_RATE})
    elif method == "LoRA":
        add_lora(net, rank=4, alpha=8)
        trainer = LayerwiseTrainer(net, "adam", {"learning_rate": 10 * LEARNING_RATE})
    elif method == "gradual + discriminative":
        triangle = SlantedTriangular(steps, cut_frac=0.2, ratio=10)
        rules = {block: {**rule, "lr_scheduler": triangle}
                 for block, rule in spread(net, LEARNING_RATE, 10 * LEARNING_RATE).items()}
        trainer = LayerwiseTrainer(net, "adam", {"learning_rate": LEARNING_RATE}, layers=rules)
        on_epoch = GradualUnfreezing(trainer, every=1, restart="schedule").on_epoch
    else:
        trainer = LayerwiseTrainer(net, "adam", {"learning_rate": LEARNING_RATE})
    return net, trainer, on_epoch


def run_method(method: str, base: DigitsNet, train, val, epochs: int, seed: int,
               progress: bool = True, recorder: Optional[RateRecorder] = None) -> Dict:
    """Train one method from its starting point; its accuracy curve and time."""
    train_loader = loader(train, shuffle=True)
    net, trainer, on_epoch = method_setup(method, base, seed, epochs * len(train_loader))
    np.random.seed(seed)  # the DataLoader's shuffling
    history = fit(net, trainer, train_loader, epochs, loader(val, 256),
                  on_epoch=on_epoch, on_step=recorder, progress=progress,
                  desc=f"{method} (seed {seed})")
    trained = sum(int(np.prod(p.shape)) for p in net.collect_params().values()
                  if p.grad_req != "null")
    return {"curve": [h["val_acc"] for h in history], "seconds": history[-1]["seconds"],
            "net": net, "trained": trained}


def study(seeds: Sequence[int] = (0, 1, 2, 3, 4), epochs: int = 12, per_class: int = 10,
          pretrain_epochs: int = 5, progress: bool = True):
    """Run every method for every seed; (results per method, rate curves, trunk check)."""
    results: Dict[str, List[Dict]] = {m: [] for m in METHODS}
    recorder = RateRecorder()
    frozen_kept = True
    for seed in seeds:
        source, train, val = digits_split(seed, per_class)
        base = pretrain(source, pretrain_epochs, seed, progress)
        for method in METHODS:
            record = recorder if method == METHODS[-1] and seed == seeds[0] else None
            run = run_method(method, base, train, val, epochs, seed, progress, record)
            if method in ("head only", "LoRA"):
                frozen_kept &= _same_trunk(run.pop("net"), base)
            results[method].append(run)
    return results, recorder.curves, frozen_kept


def _same_trunk(net: DigitsNet, base: DigitsNet) -> bool:
    mx.nd.waitall()
    mine = [p for n, p in net.features.collect_params().items() if "_lora_" not in n]
    return all(np.array_equal(a.data().asnumpy(), b.data().asnumpy())
               for a, b in zip(mine, base.features.collect_params().values()))


def table(results: Dict[str, List[Dict]]) -> str:
    """Final validation accuracy (mean, min, max over seeds), seconds and the number of
    parameters trained (at the end) per method."""
    lines = [f"{'method':<26} {'val acc':>8} {'min':>6} {'max':>6} {'seconds':>8} "
             f"{'trained':>8}", "-" * 67]
    for method, runs in results.items():
        final = [run["curve"][-1] for run in runs]
        seconds = sum(run["seconds"] for run in runs)
        lines.append(f"{method:<26} {np.mean(final):8.3f} {min(final):6.3f} "
                     f"{max(final):6.3f} {seconds:8.1f} {runs[0].get('trained', 0):8d}")
    return "\n".join(lines)


def mean_curves(results: Dict[str, List[Dict]]) -> Dict[str, List[float]]:
    return {m: list(np.mean([run["curve"] for run in runs], axis=0))
            for m, runs in results.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gluon_finetune.demo",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="runs per method (default 5)")
    parser.add_argument("--epochs", type=int, default=12, help="fine-tuning epochs")
    parser.add_argument("--per-class", type=int, default=10,
                        help="labelled images per target class")
    parser.add_argument("--pretrain-epochs", type=int, default=5)
    parser.add_argument("--out", default=os.path.join("out", "demo"),
                        help="folder for the PNGs (default out/demo)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, List[Dict]]:
    args = build_parser().parse_args(argv)
    for name in ("seeds", "epochs", "per_class", "pretrain_epochs"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1")
    for package in ("sklearn", "matplotlib"):  # before any training, not after it
        try:
            require(package, needed_for="the demo")
        except ImportError as err:
            raise SystemExit(f"gluon-finetune demo: {err}") from None
    start = time.perf_counter()
    results, rate_curves, frozen_kept = study(tuple(range(args.seeds)), args.epochs,
                                              args.per_class, args.pretrain_epochs,
                                              not args.no_progress)
    print(f"\nDigits 5-9 from {args.per_class} labelled images per class, "
          f"{args.epochs} epochs, {args.seeds} seed(s); network pretrained on digits 0-4\n")
    print(table(results))
    print(f"\nhead only and LoRA: pretrained trunk bit-identical after training: "
          f"{frozen_kept}")
    lr_png = plot_lr_curves(rate_curves, os.path.join(args.out, "learning_rates.png"),
                            title="gradual + discriminative: learning rate per block")
    acc_png = plot_accuracy(mean_curves(results), os.path.join(args.out, "accuracy.png"),
                            title=f"validation accuracy (mean of {args.seeds} seeds)")
    print(f"wrote {lr_png} and {acc_png} ({time.perf_counter() - start:.0f} s in all)")
    return results

