"""Writes the golden states files of tests/test_golden_states.py (run once, on the code
whose files they stand for; the files in this folder came from the flat layout, 0.1.0).

Each case trains a small net 4 steps, saves params + states, then trains 3 more steps
and saves the weights it ends with: a later version must load the pair and continue
to exactly those weights.
"""
import os
import sys

import mxnet as mx
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from finetune_helpers import bn_chain, four_blocks, train_step  # noqa: E402

from gluon_finetune import LayerwiseTrainer, OneCycle, layer_decay  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def cases():
    """name -> (net builder, trainer builder); shared with the test."""
    def sgd_rules(net):
        return LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-4},
                                layers={"*": 0.5, 0: 0, -1: {"lr_scheduler": OneCycle(10),
                                                             "wd_mult": 0}})

    def adam_decay(net):
        return LayerwiseTrainer(net, "adam", {"learning_rate": 0.01,
                                              "lr_scheduler": mx.lr_scheduler.FactorScheduler(
                                                  step=2, factor=0.5)},
                                layers=layer_decay(net, 0.01, decay=0.5))

    def limit(net):
        trainer = LayerwiseTrainer(net, "nag", {"learning_rate": 0.05, "momentum": 0.9},
                                   layers={"*": 1.0, -1: 4.0})
        trainer.set_trainable_blocks(2)
        return trainer

    return {"sgd_rules": (four_blocks, sgd_rules), "adam_decay": (bn_chain, adam_decay),
            "nag_limit": (four_blocks, limit)}


def expected_arrays(net):
    """The weights by position in ``collect_params`` (names carry a process-dependent prefix)."""
    return {f"p{i}": p.data().asnumpy() for i, p in enumerate(net.collect_params().values())}


def main():
    for name, (build_net, build_trainer) in cases().items():
        net = build_net(seed=1)
        trainer = build_trainer(net)
        for step in range(4):
            train_step(net, trainer, seed=step)
        net.save_parameters(os.path.join(HERE, f"{name}.params"))
        trainer.save_states(os.path.join(HERE, f"{name}.states"))
        for step in range(4, 7):
            train_step(net, trainer, seed=step)
        np.savez(os.path.join(HERE, f"{name}.expected.npz"),
                 **expected_arrays(net))


if __name__ == "__main__":
    main()
