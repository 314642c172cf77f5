"""Why MXNet's fused multi-tensor SGD is slower than per-array updates on this CPU.

Calls the operators directly (no Trainer), interleaved, median:

- resnet50_v1's arrays: ``sgd_mom_update`` per array vs ``multi_sgd_mom_update``
  in chunks of 4 (gluon.Trainer's default) and in chunks of 1. Chunks of 1 do
  the same work per call as per-array updates, so any gap there is the
  kernel's own inner loop, not chunking.
- one cache-resident array (256 Ki floats): the per-element cost of each kernel.
- 193 tiny arrays (4 floats): the per-call dispatch cost that fusing saves.

Run: ``.venv/bin/python bench/fused_sgd.py [--repeats N]``.
"""
import argparse

import mxnet as mx
from mxnet import gluon, nd
from timing import interleaved, table

HYPER = {"momentum": 0.9, "rescale_grad": 1.0}
LR, WD = 0.01, 1e-4


def resnet50_arrays():
    net = gluon.model_zoo.vision.resnet50_v1(classes=10)
    net.initialize(mx.init.Xavier())
    net(nd.zeros((1, 3, 32, 32)))
    return [p.data().shape for p in net.collect_params().values() if p.grad_req != "null"]


def triples(shapes):
    return [(nd.random.normal(shape=s), nd.random.normal(shape=s) * 1e-3, nd.zeros(s))
            for s in shapes]


def per_array(arrays):
    def run():
        for w, g, m in arrays:
            nd.sgd_mom_update(w, g, m, out=w, lr=LR, wd=WD, **HYPER)
    return run


def fused(arrays, chunk: int):
    def run():
        for start in range(0, len(arrays), chunk):
            part = arrays[start:start + chunk]
            n = len(part)
            nd.multi_sgd_mom_update(*[a for t in part for a in t], out=[w for w, _, _ in part],
                                    num_weights=n, lrs=(LR,) * n, wds=(WD,) * n, **HYPER)
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args(argv)
    shapes = resnet50_arrays()
    big, one, tiny = triples(shapes), triples([(256 * 1024,)]), triples([(4,)] * len(shapes))
    loops = 40  # the cache-resident array: many calls per timing
    cases = {
        ("resnet50_v1", "per array (sgd_mom_update)"): per_array(big),
        ("resnet50_v1", "fused, chunks of 4 (gluon default)"): fused(big, 4),
        ("resnet50_v1", "fused, chunks of 1"): fused(big, 1),
        ("256Ki floats, in cache", "per array"): lambda: [per_array(one)() for _ in range(loops)],
        ("256Ki floats, in cache", "fused, 1 array"): lambda: [fused(one, 1)()
                                                                for _ in range(loops)],
        ("193 x 4 floats", "per array"): per_array(tiny),
        ("193 x 4 floats", "fused, chunks of 4"): fused(tiny, 4),
    }
    medians = interleaved({k[1] + k[0]: fn for k, fn in cases.items()}, args.repeats, 2)
    rows, base = [], None
    for (workload, variant), m in zip(cases, medians.values()):
        if variant.startswith("per array"):
            base = m
        elements = {"resnet50_v1": sum(_size(s) for s in shapes),
                    "256Ki floats, in cache": 256 * 1024 * loops}.get(workload)
        per = f"{m.cpu / elements * 1e9:.2f} ns/elem" if elements else \
            f"{m.cpu / len(shapes) * 1e6:.1f} us/array"
        rows.append((workload, variant, m.wall * 1e3, m.cpu * 1e3, per, m.cpu / base.cpu))
    print(f"MXNet {mx.__version__} SGD-momentum operators on CPU, median of {args.repeats} "
          f"interleaved repeats; ratio: CPU time to per array")
    print(table(rows, ["workload", "variant", "wall ms", "CPU ms", "cost", "ratio"]))


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


if __name__ == "__main__":
    main()
