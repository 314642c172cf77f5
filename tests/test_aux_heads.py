"""Which block is the head: the one the network's output is computed from, never an
auxiliary head registered after it (issue 21, item 16)."""
import mxnet as mx
import pytest
from mxnet import autograd, gluon
from mxnet.gluon import nn

from gluon_finetune import LayerwiseTrainer, blocks, explain, get_model, unfreeze
from gluon_finetune.recipes.fine_tuning import phase_rules


def paths_of(net):
    return [label for label, _ in blocks(net)]


class TrainingAux(gluon.HybridBlock):
    """An auxiliary classifier used in training only, registered after the head."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.stem = nn.Dense(8, in_units=4, activation="relu")
            self.body = nn.Dense(8, in_units=8, activation="relu")
            self.output = nn.Dense(3, in_units=8)
            self.aux = nn.Dense(3, in_units=8)

    def hybrid_forward(self, f, x):
        early = self.stem(x)
        out = self.output(self.body(early))
        if autograd.is_training():
            return out, self.aux(early)
        return out


class SiblingAux(TrainingAux):
    """An auxiliary output always returned second, as deep as the main one."""

    def hybrid_forward(self, f, x):
        features = self.body(self.stem(x))
        return self.output(features), self.aux(features)


class FeaturesThenLogits(gluon.HybridBlock):
    """Returns (features, logits): the logits are computed from the first output."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.body = nn.Dense(8, in_units=4)
            self.output = nn.Dense(3, in_units=8)

    def hybrid_forward(self, f, x):
        features = self.body(x)
        return features, self.output(features)


class UnusedAux(TrainingAux):
    """An auxiliary head the traced graph never reads, in either mode."""

    def hybrid_forward(self, f, x):
        return self.output(self.body(self.stem(x)))


def test_a_training_only_aux_head_is_not_the_head():
    # on main: ['stem', 'body', 'output', 'aux']
    net = TrainingAux(prefix="ta_")
    assert paths_of(net) == ["stem", "body", "aux", "output"]  # aux by its depth in training
    net.initialize()
    assert unfreeze(net, 1) == ["output"]
    assert net.aux.weight.grad_req == "null" and net.output.weight.grad_req == "write"


@pytest.mark.parametrize("cls", [SiblingAux, UnusedAux])
def test_an_aux_head_registered_after_the_head_goes_before_it(cls):
    net = cls()
    assert paths_of(net)[-2:] == ["aux", "output"]
    net.initialize()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers={-1: 10})
    assert net.output.weight.lr_mult == 10 and net.aux.weight.lr_mult == 1
    assert explain(trainer)[net.output.weight.name]["block"] == "3:output"


def test_an_output_computed_from_the_first_output_is_the_head():
    assert paths_of(FeaturesThenLogits()) == ["body", "output"]


def test_fine_tunes_head_phase_trains_the_real_head():
    net = TrainingAux(prefix="ft_")
    net.initialize()
    rules = phase_rules(net, "head", steps=4, base_lr=0.1, no_decay=False)
    assert rules[0][0] == 3  # the last block, which is the output layer
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, layers=rules)
    trainer.set_trainable_blocks(1)  # as fine_tune's head phase does
    trainable = {n for n, p in net.collect_params().items() if p.grad_req != "null"}
    assert trainable == set(net.output.collect_params().keys())
    x, y = mx.nd.ones((2, 4)), mx.nd.array([0, 1])
    before = net.aux.weight.data().asnumpy().copy()
    with autograd.record():
        out, aux = net(x)
        loss = gluon.loss.SoftmaxCrossEntropyLoss()(out, y) + \
            gluon.loss.SoftmaxCrossEntropyLoss()(aux, y)
    loss.backward()
    trainer.step(2)
    assert (net.aux.weight.data().asnumpy() == before).all()


def test_gluoncv_aux_heads_are_not_the_head():
    with pytest.warns(UserWarning, match=r"classes=3 replaced the head \(head.2\); "
                                         r"\['aux1.6', 'aux2.6'\] also have the zoo's 1000 "
                                         r"outputs .*\(GoogLeNet: aux_logits=False\)"):
        googlenet = get_model("googlenet", classes=3, aux_logits=True)
    assert paths_of(googlenet)[-1] == "head.2" and googlenet.output.weight.shape[0] == 3
    from gluoncv.model_zoo import get_model as gluoncv_model
    fcn = gluoncv_model("fcn_resnet50_voc", pretrained_base=False, aux=True)
    assert paths_of(fcn)[-1] == "head" and "auxlayer" in paths_of(fcn)
