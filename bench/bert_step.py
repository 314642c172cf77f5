"""BERT step overhead: LayerwiseTrainer.step with one rule per block vs gluon.Trainer.step.

The parameters of a BERT-base sentence classifier (GluonNLP's
``bert_12_768_12``, 30522-word vocabulary, 110M parameters, random weights)
with gradients set (no forward/backward in the timed part), Adam and SGD with
momentum, in one process: warm-up, interleaved repeats, median. Ours has one
rule per block of ``blocks(net)`` (embeddings, each of the 12 encoder layers,
pooler, head: ``layer_decay``), once with plain rates and once with a warm-up
then linear decay per rule (the fine-tuning recipe). Prints ratios against
gluon.Trainer.step (lower is better) and the update path of each row.
Run: ``.venv/bin/python bench/bert_step.py [--repeats N]``.
"""
import argparse
import warnings

import gluonnlp as nlp
import mxnet as mx
from mxnet import autograd, gluon
from step_overhead import mark_fresh, path_of
from timing import STEP_HEADERS, interleaved, step_rows, table

from gluon_finetune import LayerwiseTrainer, get_model, layer_decay

warnings.filterwarnings("ignore")
MAX_UPDATE = 10_000


def bert_base():
    words = [f"w{i}" for i in range(30522 - 5)]  # BERT-base's vocabulary size
    vocab = nlp.vocab.BERTVocab(nlp.data.count_tokens(words))
    net = get_model("bert_12_768_12", classes=2, vocab=vocab)
    tokens = mx.nd.ones((2, 8))
    with autograd.record():  # shapes are deferred until the first forward
        net(tokens, mx.nd.zeros((2, 8)), mx.nd.array([8, 8])).sum().backward()
    for p in net.collect_params().values():
        if p.grad_req != "null":
            p.grad()[:] = mx.nd.random.normal(shape=p.shape) * 1e-3
    mx.nd.waitall()
    return net


def rules(net, lr, scheduled):
    found = layer_decay(net, lr, decay=0.8)
    if scheduled:
        sched = mx.lr_scheduler.PolyScheduler(max_update=MAX_UPDATE, base_lr=lr, pwr=1,
                                              final_lr=0.0, warmup_steps=MAX_UPDATE // 10)
        found = {k: dict(v, lr_scheduler=sched) for k, v in found.items()}
    return found


def cases(net, optimizer, args):
    stock = gluon.Trainer(net.collect_params(), optimizer, dict(args))
    rows = {("gluon.Trainer", path_of(stock)): lambda: stock.step(1)}
    for scheduled in (False, True):
        ours = LayerwiseTrainer(net, optimizer, dict(args),
                                layers=rules(net, args["learning_rate"], scheduled))
        name = f"LayerwiseTrainer, {len(ours.layers)} rules" + \
            (", warm-up + decay each" if scheduled else "")
        rows[(name, ours.update_path)] = lambda ours=ours: ours.step(1)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args(argv)
    net = bert_base()
    out = []
    for optimizer, opt_args in (("adam", {"learning_rate": 1e-4}),
                                ("sgd", {"learning_rate": 0.01, "momentum": 0.9})):
        rows = cases(net, optimizer, opt_args)
        by_name = {name: fn for (name, _), fn in rows.items()}
        medians = interleaved(by_name, args.repeats, warmup=2,
                              before=lambda _name: mark_fresh(net))
        out += step_rows(optimizer, rows, medians)
    count = sum(p.data().size for p in net.collect_params().values())
    print(f"step on a BERT-base classifier's {count / 1e6:.1f}M parameters, median of "
          f"{args.repeats} interleaved repeats; ratio: to gluon.Trainer.step")
    print(table(out, STEP_HEADERS))


if __name__ == "__main__":
    main()
