"""schedules.py: layer_decay and spread (rule makers) and the schedules MXNet lacks."""
import numpy as np
import pytest
from finetune_helpers import four_blocks
from mxnet.gluon import nn

from gluon_finetune import OneCycle, SlantedTriangular, blocks, explain, layer_decay, spread


def block_rates(net, rules, base=None):
    table = explain(net, rules, learning_rate=base)
    return [table[b.weight.name]["lr"] for _, b in blocks(net)]


def test_layer_decay_follows_the_formula():
    net = four_blocks()
    rules = layer_decay(net, 0.1, decay=0.5)
    assert rules == {i: {"learning_rate": 0.1 * 0.5 ** (3 - i)} for i in range(4)}
    assert block_rates(net, rules, base=0.1) == pytest.approx([0.0125, 0.025, 0.05, 0.1])


def test_spread_is_geometric_from_lo_to_hi():
    net = four_blocks()
    rates = block_rates(net, spread(net, 1e-4, 1e-1), base=0.1)
    assert rates == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1])
    one = nn.HybridSequential()
    one.add(nn.Dense(2, in_units=2))
    assert spread(one, 1e-3, 1e-2) == {0: {"learning_rate": 1e-2}}


@pytest.mark.parametrize("call,message", [
    (lambda n: layer_decay(n, 0.1, decay=0), "decay"),
    (lambda n: layer_decay(n, float("nan")), "base_lr"),
    (lambda n: spread(n, -1e-3, 1e-2), "lo"),
    (lambda n: spread(n, 1e-3, float("inf")), "hi"),
])
def test_rate_spreads_reject_bad_numbers(call, message):
    with pytest.raises(ValueError, match=message):
        call(four_blocks())


def test_slanted_triangular_and_one_cycle_shapes():
    stlr = SlantedTriangular(max_update=100, cut_frac=0.1, ratio=32, base_lr=0.32)
    assert stlr(0) == pytest.approx(0.01) and stlr(10) == pytest.approx(0.32)
    assert stlr(100) == pytest.approx(0.01) and stlr(55) == pytest.approx(0.165)
    cycle = OneCycle(max_update=100, pct_start=0.3, div=25, final_div=1e4, base_lr=1.0)
    assert cycle(0) == pytest.approx(0.04) and cycle(30) == pytest.approx(1.0)
    assert cycle(100) == pytest.approx(1e-4) and cycle(65) < cycle(31)
    with pytest.raises(ValueError, match="cut_frac"):
        SlantedTriangular(10, cut_frac=1.5)
    with pytest.raises(ValueError, match="max_update"):
        OneCycle(0)


def test_rate_spreads_take_numpy_numbers_and_refuse_strings():
    net = four_blocks()
    assert spread(net, np.float32(0.25), np.float64(0.5)) == spread(net, 0.25, 0.5)
    assert layer_decay(net, np.float32(0.5), np.int64(1)) == layer_decay(net, 0.5, 1)
    with pytest.raises(TypeError, match="hi must be a finite number > 0, got str '0.1'"):
        spread(net, 1e-3, "0.1")
