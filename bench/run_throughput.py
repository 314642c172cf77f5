"""Images per second of the whole job against the loops a user would write by hand.

* train: ``runs.train_run`` (seeded order and augmentation, a checkpoint and
  the run record written after every epoch) with a ``LayerwiseTrainer`` (what
  ``gluon-finetune train`` runs; with ``--plain-trainer`` also with a
  ``gluon.Trainer``: the loop alone), against a hand-written Gluon loop
  (``DataLoader(shuffle=True)``, ``gluon.Trainer``) on the same images, model,
  batch size and transforms (the
  ``light`` preset);
* predict: ``runs.predict`` against a bare loop that reads, preprocesses and
  calls the network on the same batches.

Both run in this process, in interleaved rounds after a warm-up
(``timing.samples``); building the network, the trainer and the loader is not
timed. Printed: images per second of wall time and of process CPU time (medians
of the repeats) and three ratios: of the medians, "paired" (the median of each
round's own ratio: the two jobs of a round ran back to back, so a slow moment of
the machine hits both) and "best" (of the fastest repeats; on cores shared with
other jobs the least disturbed). The bar is 0.95x or better. Both loops decode
and augment images in the training process, as ``epoch_data`` does (seeded, no
worker processes). About two minutes on 2 cores:

    python bench/run_throughput.py [--images 480] [--size 64] [--epochs 2] [--repeats 7]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from timing import samples, table  # noqa: E402

from gluon_finetune.models import get_model  # noqa: E402
from gluon_finetune.recipes import Preprocessing, epoch_data  # noqa: E402
from gluon_finetune.runs import RunFolder, image_files, predict, train_run  # noqa: E402
from gluon_finetune.trainer import LayerwiseTrainer  # noqa: E402

MODEL, BATCH, AUGMENT = "mobilenet0.25", 16, "light"


def make_images(root: str, count: int, size: int) -> str:
    rng = np.random.RandomState(0)
    for i in range(count):
        folder = os.path.join(root, ("red", "blue")[i % 2])
        os.makedirs(folder, exist_ok=True)
        pixels = rng.randint(0, 255, (size + 8, size + 8, 3)).astype("uint8")
        Image.fromarray(pixels).save(os.path.join(folder, f"{i}.png"))
    return root


def fresh(seed: int = 0):
    mx.random.seed(seed)
    net = get_model(MODEL, classes=2)
    with autograd.record():  # initialise as training would (an inference pass would leave
        net(mx.nd.zeros((1, 3, 8, 8)))  # the weights in oneDNN's layout)
    return net


TRAIN_OURS = "train, gluon-finetune"             # runs.train_run + LayerwiseTrainer: the CLI's
TRAIN_OURS_PLAIN = "train, gluon-finetune, gluon.Trainer"  # the loop alone
TRAIN_HAND = "train, by hand"


class Cases:
    """The jobs, each with what it needs built untimed before it (``before``)."""

    def __init__(self, images: str, size: int, epochs: int, folder: str):
        self.images, self.size, self.epochs, self.folder = images, size, epochs, folder
        self.files = image_files(images)
        self.preprocessing = Preprocessing.for_size(size)
        self.runs = 0
        self.run = None

    def before(self, name: str) -> None:
        self.net = fresh()
        params = {"learning_rate": 0.01, "momentum": 0.9}
        if name == TRAIN_OURS:
            self.trainer = LayerwiseTrainer(self.net, "sgd", params)
        elif name in (TRAIN_OURS_PLAIN, TRAIN_HAND):
            self.trainer = gluon.Trainer(self.net.collect_params(), "sgd", params)
        if name in (TRAIN_OURS, TRAIN_OURS_PLAIN):
            self.data = epoch_data(self.images, self.size, BATCH, augment=AUGMENT, seed=0,
                                   check_images=False)
            self.runs += 1
        elif name == TRAIN_HAND:
            transform = self.preprocessing.train_transform(AUGMENT)
            self.loader = gluon.data.DataLoader(gluon.data.vision.ImageFolderDataset(
                self.images).transform_first(transform), batch_size=BATCH, shuffle=True)

    def train_ours(self) -> None:
        out = os.path.join(self.folder, f"run{self.runs}")
        train_run(self.net, self.trainer, self.data, self.epochs, out, progress=False)
        self.run = self.run or RunFolder.open(out)

    def train_by_hand(self) -> None:
        loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
        for _ in range(self.epochs):
            for x, y in self.loader:
                with autograd.record():
                    loss = loss_fn(self.net(x), y)
                loss.backward()
                self.trainer.step(x.shape[0])

    def predict_ours(self) -> None:
        predict(self.run, [self.images], batch_size=BATCH, net=self.net)

    def predict_by_hand(self) -> None:
        transform = self.preprocessing.eval_transform()
        for i in range(0, len(self.files), BATCH):
            batch = mx.nd.stack(*[transform(mx.image.imread(path, 1))
                                  for path in self.files[i:i + BATCH]])
            mx.nd.softmax(self.net(batch), axis=1).asnumpy()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=480)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--plain-trainer", action="store_true",
                        help="also train_run with a gluon.Trainer (the loop without "
                             "LayerwiseTrainer's update path)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cases = Cases(make_images(os.path.join(tmp, "images"), args.images, args.size),
                      args.size, args.epochs, tmp)
        jobs = {TRAIN_OURS: cases.train_ours, TRAIN_HAND: cases.train_by_hand}
        if args.plain_trainer:
            jobs = {TRAIN_OURS: cases.train_ours, TRAIN_OURS_PLAIN: cases.train_ours,
                    TRAIN_HAND: cases.train_by_hand}
        train = samples(jobs, args.repeats, before=cases.before)
        # predict changes nothing: both use the network the last training left, built once
        # (a fresh network's first passes convert its weights to oneDNN's layout)
        infer = samples({"predict, gluon-finetune": cases.predict_ours,
                         "predict, by hand": cases.predict_by_hand}, args.repeats)
    print(f"{MODEL} {args.size}x{args.size}, batch {BATCH}, {args.images} images, "
          f"{args.epochs} epochs, augment {AUGMENT}; {os.cpu_count()} CPUs; medians of "
          f"{args.repeats} interleaved repeats")
    rows = []
    for times, count in ((train, args.images * args.epochs), (infer, args.images)):
        *ours, (_, hand) = times.items()
        for name, mine in ours:
            rows.append((name, *_speeds(mine, hand, count)))
    print(table(rows, ["job", "wall img/s", "by hand", "ratio", "paired", "best", "CPU img/s",
                       "by hand", "ratio", "paired", "best"]))


def _speeds(mine, hand, count):
    """Images/s of ours and by hand (medians) and three ratios (by hand's time / ours):
    of the medians, the median of each round's own ratio (the two ran back to back, so
    a slow moment of the machine hits both), of the best times; for wall then CPU time."""
    out = []
    for k in (0, 1):
        ours_t, hand_t = [t[k] for t in mine], [t[k] for t in hand]
        median_ours, median_hand = statistics.median(ours_t), statistics.median(hand_t)
        paired = statistics.median(h / o for h, o in zip(hand_t, ours_t))
        out += [count / median_ours, count / median_hand, median_hand / median_ours, paired,
                min(hand_t) / min(ours_t)]
    return out

if __name__ == "__main__":
    main()
