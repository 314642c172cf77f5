"""Small Gluon networks shared by test_rules.py and test_blocks.py (built, not initialised)."""
import pytest
from finetune_helpers import ThreeLayers
from mxnet import gluon
from mxnet.gluon import nn


class SharedPair(gluon.Block):
    """Two child layers sharing one weight and bias (Gluon 1.x ``params=`` sharing)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.a = nn.Dense(4, in_units=4)
            self.b = nn.Dense(4, in_units=4, params=self.a.params)

    def forward(self, x):
        return self.b(self.a(x))


@pytest.fixture
def three():
    return ThreeLayers(prefix="net_")


@pytest.fixture
def shared():
    return SharedPair(prefix="shared_")
