"""Fine-tuning a small BERT classifier with the usual recipe, offline, on synthetic sentences.

A 4-layer GluonNLP BERT (small units, random initialisation: no download)
learns whether a sentence of filler words holds a positive or a negative
word. The recipe of BERT fine-tuning:

- ``bertadam`` (Adam without bias correction, as in BERT);
- layer-wise rate decay (``layer_decay``): the head at the full rate, each
  block below it 0.8 times the one above, the embeddings lowest;
- per layer a warm-up, then a linear decay to 0 (``PolyScheduler``, one copy
  per rule, peaking at that layer's rate);
- weight decay 0.01, but none on biases and LayerNorm parameters
  (``no_weight_decay``; its rules set only ``wd_mult``, so they compose with
  the rate rules field by field);
- gradual thawing of the top layers (``GradualUnfreezing``): the pooler and
  head first, then the top transformer layers, then everything; a thawed
  layer starts its warm-up again (``restart="schedule"``).

With ``--lora RANK``, the LoRA variant: rank-RANK adapters on every layer's
query and value weights (``add_lora``, alpha = 2 x rank), trained with the
head from the first epoch under the same rules (each layer's adapters at
that layer's decayed rate) and LoRA's usual higher base rate (1e-2); every
other weight stays as it was. ``--lora 8 --epochs 6`` reaches 1.0 training
about a tenth of the parameters.

Prints the rule table, then the validation accuracy after each epoch.
Run: ``python examples/bert_finetune.py [--epochs N] [--layers L] [--lora RANK]``.
"""
import argparse

import gluonnlp as nlp
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from gluon_finetune import (
    GradualUnfreezing,
    LayerwiseTrainer,
    add_lora,
    get_model,
    layer_decay,
    no_weight_decay,
)

POSITIVE = ["good", "great", "fine", "superb"]
NEGATIVE = ["bad", "awful", "poor", "dull"]
FILLER = ["the", "a", "movie", "film", "plot", "actor", "scene", "story", "was", "and", "it",
          "very", "with", "of", "this", "that"]


def sentences(n, length, vocab, rng):
    """Token ids ``[CLS] w1 .. w(length-1)``: fillers and one sentiment word; label 1 = positive."""
    labels = rng.randint(0, 2, n)
    words = rng.choice(FILLER, size=(n, length - 1))
    for row, label in zip(words, labels):
        row[rng.randint(0, length - 1)] = rng.choice(POSITIVE if label else NEGATIVE)
    ids = [[vocab[vocab.cls_token]] + vocab[list(row)] for row in words]
    return mx.nd.array(ids), mx.nd.array(labels)


def batches(data, batch_size, rng=None):
    tokens, labels = data
    order = rng.permutation(len(labels)) if rng is not None else np.arange(len(labels))
    for start in range(0, len(order), batch_size):
        idx = mx.nd.array(order[start:start + batch_size])
        yield tokens.take(idx), labels.take(idx)


def forward(net, tokens):
    types = mx.nd.zeros_like(tokens)
    lengths = mx.nd.full((tokens.shape[0],), tokens.shape[1])
    return net(tokens, types, lengths)


def accuracy(net, data, batch_size=64):
    right = 0
    for tokens, labels in batches(data, batch_size):
        right += int((forward(net, tokens).argmax(axis=1) == labels).sum().asscalar())
    return right / len(data[1])


def recipe(net, base_lr, steps, warmup):
    """Layer decay, each block with its own warm-up then linear decay (peak = its rate),
    and no weight decay on biases and normalization layers."""
    schedule = mx.lr_scheduler.PolyScheduler(max_update=steps, base_lr=base_lr, pwr=1,
                                             final_lr=0.0, warmup_steps=warmup)
    rates = {block: dict(rule, lr_scheduler=schedule)
             for block, rule in layer_decay(net, base_lr, decay=0.8).items()}
    return {**rates, **no_weight_decay(net)}


def build(layers, seed):
    mx.random.seed(seed)
    vocab = nlp.vocab.BERTVocab(nlp.data.count_tokens(POSITIVE + NEGATIVE + FILLER))
    net = get_model("bert_12_768_12", classes=2, vocab=vocab, num_layers=layers, units=32,
                    embed_size=32, hidden_size=64, num_heads=2, max_length=16, dropout=0.0,
                    classifier_dropout=0.0)
    return net, vocab


def trained_share(net) -> str:
    """How many parameters train, of how many."""
    sizes = [(int(np.prod(p.shape)), p.grad_req != "null")
             for p in net.collect_params().values()]
    trained, total = sum(n for n, t in sizes if t), sum(n for n, _ in sizes)
    return f"{trained} of {total} parameters train ({100 * trained / total:.1f}%)"


def run(epochs=4, layers=4, train_size=512, batch_size=32, base_lr=3e-3, seed=0, lora=None):
    """(the rule table at epoch 0, [(trainable blocks, validation accuracy)] per epoch,
    the share of parameters that train at the end)."""
    net, vocab = build(layers, seed)
    rng = np.random.RandomState(seed)
    train, val = sentences(train_size, 8, vocab, rng), sentences(256, 8, vocab, rng)
    forward(net, train[0][:1])  # deferred shapes, so that the share counts every weight
    if lora:
        add_lora(net, rank=lora, alpha=2 * lora)  # query and value weights of every layer
    steps = epochs * -(-train_size // batch_size)
    trainer = LayerwiseTrainer(net, "bertadam", {"learning_rate": base_lr, "wd": 0.01},
                               layers=recipe(net, base_lr, steps, warmup=steps // 10))
    top = len(net.finetune_blocks)
    thaw = None if lora else GradualUnfreezing(trainer, {0: 2, 1: 4, 2: top},
                                               restart="schedule")
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    history = []
    for epoch in range(epochs):
        trainable = thaw.on_epoch(epoch) if thaw else top
        if epoch == 0:
            table = trainer.explain()  # the head and pooler train, the rest waits
        for tokens, labels in batches(train, batch_size, rng):
            with autograd.record():
                loss = loss_fn(forward(net, tokens), labels)
            loss.backward()
            trainer.step(tokens.shape[0])
        history.append((trainable, accuracy(net, val)))
    return table, history, trained_share(net)


def per_block(table) -> str:
    """The explain table with one row per block: a weight's (every weight of a block
    shares its rule; biases and norms differ only in having no weight decay)."""
    rows = {}
    for row in sorted(table, key=lambda row: row["wd_rule"] is not None):
        rows.setdefault(row["block"], dict(row, parameter=f"{row['parameter']} ..."))
    ordered = sorted(rows.values(), key=lambda row: int(row["block"].split(":")[0]))
    return str(type(table)(ordered))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--train-size", type=int, default=512)
    parser.add_argument("--full-table", action="store_true", help="every parameter's row")
    parser.add_argument("--lora", type=int, metavar="RANK",
                        help="the LoRA variant: adapters of this rank on query and value")
    parser.add_argument("--lr", type=float, help="base rate (default 3e-3; with --lora 1e-2)")
    args = parser.parse_args(argv)
    base_lr = args.lr or (1e-2 if args.lora else 3e-3)
    table, history, share = run(args.epochs, args.layers, args.train_size, base_lr=base_lr,
                                lora=args.lora)
    print(table if args.full_table else per_block(table))
    print("\nepoch  trainable blocks  val acc")
    for epoch, (trainable, acc) in enumerate(history):
        print(f"{epoch:5d}  {trainable:16d}  {acc:7.3f}")
    print(share)
    return {"table": table, "history": history, "share": share}


if __name__ == "__main__":
    main()
