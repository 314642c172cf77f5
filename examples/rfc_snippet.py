"""The RFC's own snippet, in the RFC's form, running.

The RFC ("Differential Learning Rate / Gradual Freezing and Unfreezing")
proposes two things, written here as it wrote them, with our names:

1. ``get_model(..., prefix='deep_dog_', classes=2, unfreeze=5)``: a zoo model
   with a new 2-class head and only its last 5 blocks trainable;
2. layer rules inside the trainer's ``optimizer_params``, each layer name
   mapped to its own ``learning_rate`` and ``lr_scheduler``.

Then a few steps of training on random images check what the RFC promises:
the frozen blocks do not move, each layer follows its own schedule.
Run: ``python examples/rfc_snippet.py [--steps N]``.
"""
import argparse

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from gluon_finetune import LayerwiseTrainer, block_params, get_model

learning_rate = 0.01


def rfc_trainer(net, steps_per_decay=2):
    lr_scheduler = mx.lr_scheduler.FactorScheduler(step=steps_per_decay, factor=0.5)
    lr_scheduler2 = mx.lr_scheduler.PolyScheduler(max_update=10, pwr=1)
    # The RFC's form: rules live in optimizer_params, next to the optimizer's own arguments.
    return LayerwiseTrainer(net.collect_params(), 'sgd', {
        'learning_rate': learning_rate,
        'features.12': {'learning_rate': 0.01, 'lr_scheduler': lr_scheduler},
        'output': {'learning_rate': 0.001, 'lr_scheduler': lr_scheduler2},
    }, net=net)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args(argv)
    mx.random.seed(0)
    net = get_model('squeezenet1.1', prefix='deep_dog_', classes=2, unfreeze=5)
    trainer = rfc_trainer(net)
    print(trainer.explain())
    x = mx.nd.random.uniform(shape=(2, 3, 224, 224))
    y = mx.nd.array([0, 1])
    net(x)  # the zoo's layers infer their input shapes at the first forward
    mx.nd.waitall()
    frozen = [p for p in net.collect_params().values() if p.grad_req == "null"]
    before = {p.name: p.data().asnumpy().copy() for p in frozen}
    watched = {"features.12": block_params(net, "features.12")[0].name,
               "output": block_params(net, "output")[0].name}
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    rates = []
    for _ in range(args.steps):
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(x.shape[0])
        lrs = dict(zip((p.name for p in trainer._params), trainer.current_lrs()))
        rates.append((lrs[watched["features.12"]], lrs[watched["output"]]))
    mx.nd.waitall()
    kept = all(np.array_equal(p.data().asnumpy(), before[p.name]) for p in frozen)
    print(f"\nfrozen parameters ({len(frozen)}) bit-identical after {args.steps} steps: {kept}")
    print("step  features.12 lr  output lr")
    for step, (features_lr, output_lr) in enumerate(rates, 1):
        print(f"{step:4d}  {features_lr:14.6g}  {output_lr:9.6g}")
    return {"frozen_kept": kept, "frozen_count": len(frozen), "rates": rates,
            "trainable_blocks": list(net.finetune_blocks[-5:])}


if __name__ == "__main__":
    main()
