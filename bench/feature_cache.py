"""Feature caching: head-only training for 5 epochs with and without ``cache_features``.

resnet50_v1 (random init) with ``unfreeze=1``, hybridized, batch 16, SGD with
momentum, a dataset of in-memory images (no augmentation). Uncached: every
epoch runs the frozen trunk again. Cached: one pass through the trunk
(``cache_features``), then epochs over the cached features. Both run in one
process, interleaved, after a warm-up; medians per epoch and end to end
(caching included). Ratios: uncached time over cached time (higher is better).
Run: ``.venv/bin/python bench/feature_cache.py [--repeats N] [--images N] [--size S]``.
"""
import argparse
import time
import warnings

import mxnet as mx
from mxnet import autograd, gluon
from timing import table

from gluon_finetune import LayerwiseTrainer, cache_features, get_model

warnings.filterwarnings("ignore")
BATCH, CLASSES, EPOCHS = 16, 10, 5
LOSS = gluon.loss.SoftmaxCrossEntropyLoss()


def network():
    net = get_model("resnet50_v1", classes=CLASSES, unfreeze=1)
    net.hybridize(static_alloc=True, static_shape=True)
    return net, LayerwiseTrainer(net, "sgd", {"learning_rate": 0.01, "momentum": 0.9})


def epoch(model, trainer, loader):
    for x, y in loader:
        with autograd.record():
            loss = LOSS(model(x), y)
        loss.backward()
        trainer.step(x.shape[0])
    mx.nd.waitall()


def clock():
    mx.nd.waitall()
    return time.perf_counter(), time.process_time()


def since(start):
    wall, cpu = clock()
    return wall - start[0], cpu - start[1]


def uncached(net, trainer, dataset, epochs):
    """Seconds (wall, CPU) of each epoch, and end to end."""
    begin = clock()
    loader = gluon.data.DataLoader(dataset, BATCH, shuffle=True)
    out = []
    for _ in range(epochs):
        start = clock()
        epoch(net, trainer, loader)
        out.append(since(start))
    return out, since(begin)


def cached(net, trainer, dataset, epochs):
    """Seconds of each epoch (the first includes caching) and end to end."""
    begin = start = clock()
    cache = cache_features(net, dataset, batch_size=BATCH)
    loader = cache.loader(BATCH, shuffle=True)  # once: DataLoader() runs gc.collect()
    out = []
    for _ in range(epochs):
        epoch(cache.suffix, trainer, loader)
        out.append(since(start))
        start = clock()
    return out, since(begin)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=224, help="image side")
    args = parser.parse_args(argv)
    rng = mx.nd.random
    dataset = gluon.data.ArrayDataset(
        rng.uniform(shape=(args.images, 3, args.size, args.size)),
        mx.nd.array([i % CLASSES for i in range(args.images)]))
    runs = {"uncached": (uncached, network()), "cached": (cached, network())}
    for run, (net, trainer) in runs.values():  # warm-up: graphs built, memory allocated
        run(net, trainer, gluon.data.ArrayDataset(*dataset[:BATCH]), 1)
    results = {name: [] for name in runs}
    for r in range(args.repeats):
        for name in list(runs)[r % 2:] + list(runs)[:r % 2]:
            run, (net, trainer) = runs[name]
            results[name].append(run(net, trainer, dataset, EPOCHS))
    print(f"resnet50_v1 unfreeze=1, {args.images} images {args.size}x{args.size}, batch "
          f"{BATCH}, median of {args.repeats} interleaved runs; ratio: uncached / cached "
          f"CPU time")
    print(table(rows(results), ["what", "uncached wall ms", "uncached CPU ms",
                                "cached wall ms", "cached CPU ms", "ratio"]))


def rows(results):
    def median(values):
        values = sorted(values)
        return values[len(values) // 2] if len(values) % 2 else \
            (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2

    def pair(name, pick):
        return tuple(median([pick(r)[k] for r in results[name]]) for k in (0, 1))

    out = []
    labels = [f"epoch {e + 1}" + (" (cached: + caching)" if e == 0 else "")
              for e in range(EPOCHS)]
    picks = [lambda r, e=e: r[0][e] for e in range(EPOCHS)] + \
        [lambda r: tuple(map(sum, zip(*r[0][1:]))), lambda r: r[1]]
    for label, pick in zip(labels + ["epochs 2..5", "end to end, 5 epochs"], picks):
        u, c = pair("uncached", pick), pair("cached", pick)
        out.append((label, u[0] * 1e3, u[1] * 1e3, c[0] * 1e3, c[1] * 1e3, u[1] / c[1]))
    return out


if __name__ == "__main__":
    main()
