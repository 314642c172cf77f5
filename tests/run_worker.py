"""A training run in its own process, for the kill-and-resume tests (test_runs.py).

    python run_worker.py IMAGES RUN [--resume] [--kill-after-steps N] [--kill-before NAME:K]

trains mobilenet0.25 (32x32, batches of 4, three epochs, standard augmentation, EMA,
gradual unfreezing, a layer rule) into RUN. ``--kill-after-steps N`` ends the process
(``os._exit``, as a kill would: no cleanup) right after the N-th ``trainer.step``;
``--kill-before NAME:K`` ends it just before the K-th ``os.replace`` onto a file named
NAME (``run.json:3``: before epoch 1's record; ``last.params:2``: before epoch 1's
``last.params`` is moved into place).
"""
import argparse
import os

import mxnet as mx

from gluon_finetune.models import get_model
from gluon_finetune.recipes import GradualUnfreezing
from gluon_finetune.recipes.data import epoch_data
from gluon_finetune.runs import train_run
from gluon_finetune.trainer import LayerwiseTrainer

KILLED = 9


def _kill_after(count, function):
    calls = [0]

    def wrapped(*args, **kwargs):
        out = function(*args, **kwargs)
        calls[0] += 1
        if calls[0] == count:
            os._exit(KILLED)
        return out
    return wrapped


def _kill_before(name, count, replace=os.replace):
    calls = [0]

    def wrapped(source, destination):
        if os.path.basename(destination) == name:
            calls[0] += 1
            if calls[0] == count:
                os._exit(KILLED)
        return replace(source, destination)
    return wrapped


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("images")
    parser.add_argument("run")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kill-after-steps", type=int)
    parser.add_argument("--kill-before")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    mx.random.seed(7)
    net = get_model("mobilenet0.25", classes=2)
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.05, "momentum": 0.9},
                               layers={"output": 2.0})
    data = epoch_data(args.images, image_size=32, batch_size=4, augment="standard", seed=3)
    if args.kill_after_steps:
        trainer.step = _kill_after(args.kill_after_steps, trainer.step)
    if args.kill_before:
        name, count = args.kill_before.split(":")
        os.replace = _kill_before(name, int(count))
    train_run(net, trainer, data, args.epochs, args.run, resume=args.resume, ema=0.9,
              on_epoch=GradualUnfreezing(trainer, schedule={0: 2, 1: 10}).on_epoch,
              model="mobilenet0.25", progress=False)


if __name__ == "__main__":
    main()
