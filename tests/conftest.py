"""Small Gluon networks shared by test_rules.py and test_blocks.py (built, not initialised)."""
import pytest
from mxnet import gluon
from mxnet.gluon import nn


class ThreeLayers(gluon.Block):
    """The seed case: attributes l1, l2, l3 created in name_scope."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.l1 = nn.Dense(6, in_units=4, activation="tanh")
            self.l2 = nn.Dense(5, in_units=6, activation="tanh")
            self.l3 = nn.Dense(3, in_units=5)

    def forward(self, x):
        return self.l3(self.l2(self.l1(x)))


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
