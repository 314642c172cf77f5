"""Fine-tune a GluonCV model on an image folder, with per-layer rates and gradual unfreezing.

    python examples/gluoncv_finetune.py DATA [--model resnet18_v1b] [--root WEIGHTS]

``DATA`` is an image folder (``DATA/<class>/<image>`` or ``DATA/train/...``
and ``DATA/val/...``). The model comes from GluonCV's zoo through
``get_model``, with its head replaced for the folder's classes and the
pretrained weights read from ``--root`` (GluonCV's model store by default;
nothing is downloaded where there is no network: the error says which file
to put where). The rates decay by 0.7 per block from the head down
(``layer_decay``); the head trains alone for the first epoch, then one more
block thaws every epoch (``GradualUnfreezing``).
"""
import argparse

import mxnet as mx
import numpy as np

from gluon_finetune import (
    GradualUnfreezing,
    LayerwiseTrainer,
    fit,
    get_model,
    image_folders,
    layer_decay,
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="image folder")
    parser.add_argument("--model", default="resnet18_v1b", help="a GluonCV model name")
    parser.add_argument("--root", help="folder with the pretrained weights")
    parser.add_argument("--no-pretrained", action="store_true", help="start from random weights")
    parser.add_argument("--lr", type=float, default=0.01, help="the head's learning rate")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args(argv)
    mx.random.seed(0)
    np.random.seed(0)
    data = image_folders(args.data, args.image_size, args.batch_size)
    net = get_model(args.model, classes=len(data.classes), pretrained=not args.no_pretrained,
                    root=args.root)
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": args.lr, "momentum": 0.9},
                               layers=layer_decay(net, args.lr, decay=0.7))
    unfreezer = GradualUnfreezing(trainer, every=1)
    history = fit(net, trainer, data.train, args.epochs, data.val, on_epoch=unfreezer.on_epoch)
    for h in history:
        val = f", val_acc {h['val_acc']:.3f}" if "val_acc" in h else ""
        print(f"epoch {h['epoch']}: {unfreezer.blocks_at(h['epoch'])} trainable blocks, "
              f"train_loss {h['train_loss']:.3f}{val}")
    return {"history": history, "net": net, "trainer": trainer, "classes": data.classes}


if __name__ == "__main__":
    main()
