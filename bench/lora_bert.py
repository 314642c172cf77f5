"""LoRA on BERT-base against full fine-tuning: what trains, optimizer state, step time.

Two BERT-base sentence classifiers (GluonNLP's ``bert_12_768_12``, 30522-word
vocabulary, random weights, hybridized), sequences of 128 tokens, Adam:

- **full fine-tuning**: every parameter trains;
- **LoRA**: ``add_lora(net, rank=8)``: adapters on the query and value weights
  of the 12 layers, the head trains, everything else is locked.

Prints the parameters that train, the bytes of Adam's state after a step (its
two moments per trained parameter, as the trainer holds them), and the time
of a whole training step (recorded forward, backward, ``trainer.step``):
warm-up, interleaved repeats, median, wall and process CPU time.
Targets: trained parameters and state bytes at most 2% of full fine-tuning;
a LoRA step at most 0.8x a full fine-tuning step.
Run: ``.venv/bin/python bench/lora_bert.py [--batch-size 2] [--repeats 3]``.
"""
import argparse
import warnings

import gluonnlp as nlp
import mxnet as mx
from mxnet import autograd, gluon
from timing import interleaved, table

from gluon_finetune import LayerwiseTrainer, add_lora, get_model

warnings.filterwarnings("ignore")
LENGTH = 128


def bert_base(vocab, lora: bool, seed: int = 0):
    mx.random.seed(seed)
    net = get_model("bert_12_768_12", classes=2, vocab=vocab)
    if lora:
        add_lora(net, rank=8, alpha=16)
    net.hybridize(static_alloc=True)
    return net


def batch(vocab, size: int):
    tokens = mx.nd.random.randint(5, len(vocab), shape=(size, LENGTH)).astype("float32")
    return tokens, mx.nd.zeros((size, LENGTH)), mx.nd.full((size,), LENGTH), \
        mx.nd.array([i % 2 for i in range(size)])


def stepper(net, data):
    trainer = LayerwiseTrainer(net, "adam", {"learning_rate": 1e-4})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    tokens, types, lengths, labels = data

    def step():
        with autograd.record():
            loss = loss_fn(net(tokens, types, lengths), labels)
        loss.backward()
        trainer.step(tokens.shape[0])
    return trainer, step


def trained(net) -> int:
    return sum(p.data().size for p in net.collect_params().values() if p.grad_req != "null")


def state_bytes(trainer) -> int:
    """Bytes of the optimizer's state arrays (Adam: mean and variance per trained array)."""
    def size(state) -> int:
        if isinstance(state, (list, tuple)):
            return sum(size(s) for s in state)
        return state.size * state.dtype(0).itemsize if isinstance(state, mx.nd.NDArray) else 0
    return sum(size(s) for updater in trainer._updaters for s in updater.states.values())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    words = [f"w{i}" for i in range(30522 - 5)]  # BERT-base's vocabulary size
    vocab = nlp.vocab.BERTVocab(nlp.data.count_tokens(words))
    data = batch(vocab, args.batch_size)
    nets = {"full fine-tuning": bert_base(vocab, False), "LoRA r=8 (query, value)":
            bert_base(vocab, True)}
    steps = {name: stepper(net, data) for name, net in nets.items()}
    medians = interleaved({name: step for name, (_, step) in steps.items()}, args.repeats,
                          warmup=1)
    full, lora = nets
    rows = []
    for name, net in nets.items():
        trainer, _ = steps[name]
        m = medians[name]
        share = trained(net) / trained(nets[full])
        state = state_bytes(trainer) / state_bytes(steps[full][0])
        rows.append((name, trained(net), f"{100 * share:.2f}%", state_bytes(trainer) / 2 ** 20,
                     f"{100 * state:.2f}%", m.wall * 1e3, m.wall / medians[full].wall,
                     m.cpu * 1e3, m.cpu / medians[full].cpu))
    total = sum(p.data().size for p in nets[lora].collect_params().values())
    print(f"BERT-base classifier ({total / 1e6:.1f}M parameters with adapters), batch "
          f"{args.batch_size} x {LENGTH} tokens, Adam, hybridized; median of {args.repeats} "
          f"interleaved steps (forward, backward, update); ratios: to full fine-tuning")
    print(table(rows, ["variant", "trained", "share", "state MiB", "share", "step wall ms",
                       "ratio", "step CPU ms", "ratio"]))


if __name__ == "__main__":
    main()
