"""LoRA on a small GluonNLP BERT and on zoo CNNs, through get_model, fine_tune and states."""
import importlib
import os

import mxnet as mx
import numpy as np
import pytest
from finetune_helpers import BERT_WORDS, LOSS, SMALL_BERT, trainable_names, weights
from mxnet import autograd, gluon, nd
from test_lora import X, Y, conv_net, train

from gluon_finetune import (
    LayerwiseTrainer,
    add_lora,
    blocks,
    fine_tune,
    get_model,
    layer_decay,
    load_lora,
    lora_adapters,
    merge_lora,
    save_lora,
)


@pytest.fixture(scope="module")
def vocab():
    """The BERT tests' vocabulary; they skip without GluonNLP, except under `make test`,
    which installs it (there they must run). The CNN tests here run either way."""
    nlp = importlib.import_module("gluonnlp") if os.environ.get("CI") else \
        pytest.importorskip("gluonnlp")
    return nlp.vocab.BERTVocab(nlp.data.count_tokens(BERT_WORDS))


def bert(vocab, seed=0, **kwargs):
    mx.random.seed(seed)
    return get_model("bert_12_768_12", classes=2, vocab=vocab, num_layers=2, **SMALL_BERT,
                     **kwargs)


def sentences(vocab, seed=0, n=4, length=6):
    rng = np.random.RandomState(seed)
    tokens = nd.array(rng.randint(5, len(vocab), size=(n, length)))
    return (tokens, nd.zeros((n, length)), nd.array([length] * n)), nd.array(rng.randint(0, 2, n))


def train_bert(net, trainer, vocab, steps=3):
    for seed in range(steps):
        inputs, y = sentences(vocab, seed)
        with autograd.record():
            loss = LOSS(net(*inputs), y)
        loss.backward()
        trainer.step(4)


@pytest.mark.parametrize("hybridize", [False, True])
def test_bert_query_and_value_adapters_train_alone_with_the_head(vocab, hybridize, tmp_path):
    net = bert(vocab)
    if hybridize:
        net.hybridize()
    inputs, _ = sentences(vocab)
    before = net(*inputs).asnumpy()
    net.save_parameters(str(tmp_path / "base.params"))
    names = add_lora(net, rank=4)
    cells = net.bert.encoder.transformer_cells
    assert names == [getattr(c.attention_cell, f"{w}_weight").name for c in cells
                     for w in ("query", "value")]
    assert np.array_equal(before, net(*inputs).asnumpy())
    start = weights(net)
    rules = layer_decay(net, 0.01, 0.5)
    train_bert(net, LayerwiseTrainer(net, "adam", {"learning_rate": 0.01}, layers=rules), vocab)
    moved = {n for n, v in weights(net).items() if not np.array_equal(v, start[n])}
    head = {p.name for p in net.classifier.collect_params().values()}
    assert moved == {n for n in start if "_lora_" in n} | head
    adapted = net(*inputs).asnumpy()
    path = save_lora(net, str(tmp_path / "bert_lora.params"))
    fresh = bert(vocab, seed=5)
    fresh.load_parameters(str(tmp_path / "base.params"))
    add_lora(fresh, rank=4)
    load_lora(fresh, path)
    assert np.array_equal(fresh(*inputs).asnumpy(), adapted)
    merge_lora(net)
    assert sorted(net.collect_params().keys()) == sorted(n for n in start if "_lora_" not in n)
    assert np.allclose(net(*inputs).asnumpy(), adapted, rtol=1e-5, atol=1e-6)


def test_bert_blocks_and_layer_rates_are_those_of_the_weights_layers(vocab):
    net = bert(vocab)
    labels = [label for label, _ in blocks(net)]
    add_lora(net, rank=2, targets="re:_(query|key|value)_weight$")
    assert [label for label, _ in blocks(net)] == labels
    trainer = LayerwiseTrainer(net, "adam", {"learning_rate": 0.1},
                               layers=layer_decay(net, 0.1, 0.5))
    cell = net.bert.encoder.transformer_cells[1].attention_cell
    assert cell.key_weight_lora_a.lr_mult == pytest.approx(0.5 ** 2)
    assert trainer.explain()[cell.key_weight.name]["frozen"]


def test_get_model_with_lora_keeps_the_last_unfreeze_blocks_trainable(vocab):
    net = bert(vocab, lora=2, lora_alpha=4, unfreeze=2)
    adapters = lora_adapters(net)
    assert len(adapters) == 4 and {a.scale for a in adapters.values()} == {2.0}
    pooler_and_head = {p.name for b in (net.bert.pooler, net.classifier)
                       for p in b.collect_params().values()}
    assert trainable_names(net) == pooler_and_head | {
        p.name for a in adapters.values() for p in (a.a, a.b)}
    with pytest.raises(ValueError, match="lora must be an int >= 1"):
        bert(vocab, lora=0)


@pytest.mark.parametrize("name", ["resnet18_v1", "mobilenetv2_0.25"])
def test_zoo_cnn_every_conv_adapted_and_only_adapters_and_head_move(name, tmp_path):
    mx.random.seed(0)
    x = nd.array(np.random.RandomState(0).rand(2, 3, 32, 32))
    net = get_model(name, classes=3)
    net(x)
    net.save_parameters(str(tmp_path / "base.params"))
    before = net(x).asnumpy()
    names = add_lora(net, rank=2)
    convs = [p.name for p in net.collect_params().values()
             if len(p.shape) == 4 and p.name in lora_adapters(net)]
    assert names == convs and len(names) > 15
    assert np.array_equal(before, net(x).asnumpy())
    net.hybridize()
    start = weights(net)
    train(net, LayerwiseTrainer(net, "adam", {"learning_rate": 0.01}, layers={"*": 1}),
          steps=3, x=x, y=nd.array([0, 2]))
    moved = {n for n, v in weights(net).items() if not np.array_equal(v, start[n])}
    head = {p.name for p in blocks(net)[-1][1].collect_params().values()}
    assert moved <= {n for n in start if "_lora_" in n} | head  # (random deep nets give A
    assert {n for n in start if n.endswith("_lora_b")} | head <= moved  # tiny gradients)
    adapted = net(x).asnumpy()
    path = save_lora(net, str(tmp_path / "a.params"))
    fresh = get_model(name, classes=3, pretrained=str(tmp_path / "base.params"), lora=2)
    load_lora(fresh, path)
    assert np.array_equal(fresh(x).asnumpy(), adapted)
    merge_lora(net)
    assert np.allclose(net(x).asnumpy(), adapted, rtol=1e-4, atol=1e-5)


def test_fine_tune_trains_the_head_then_the_adapters_and_never_the_adapted_weights():
    net = conv_net()
    net(X)
    add_lora(net, rank=2)
    start = weights(net)
    data = gluon.data.DataLoader(gluon.data.ArrayDataset(X, Y), batch_size=2)
    fine_tune(net, data, epochs=1, freeze_epochs=1, base_lr=0.05, progress=False)
    moved = {n for n, v in weights(net).items() if not np.array_equal(v, start[n])}
    head = {"c_dense1_weight", "c_dense1_bias"}
    assert head | {n for n in start if n.endswith("_lora_b")} <= moved  # (B is 0 at first:
    assert moved <= head | {n for n in start if "_lora_" in n}          # A's first step is 0)


def test_states_files_resume_a_lora_run_bit_for_bit(tmp_path):
    def run(resume):
        net = conv_net()
        net(X)
        add_lora(net, rank=2)
        for adapter in lora_adapters(net).values():  # same adapters in both runs
            adapter.a.set_data(nd.ones(adapter.a.shape) * 0.1)
        trainer = LayerwiseTrainer(net, "adam", {"learning_rate": 0.05}, layers={"*": 1})
        train(net, trainer, steps=2)
        if resume:
            trainer.save_states(str(tmp_path / "s.states"))
            net.save_parameters(str(tmp_path / "s.params"))
            net.load_parameters(str(tmp_path / "s.params"))
            trainer = LayerwiseTrainer(net, "adam", {"learning_rate": 0.05}, layers={"*": 1})
            trainer.load_states(str(tmp_path / "s.states"))
        train(net, trainer, steps=2)
        return weights(net)

    plain, resumed = run(False), run(True)
    assert all(np.array_equal(plain[n], resumed[n]) for n in plain)


def test_cli_explain_with_lora_shows_adapters_and_the_lock(capsys):
    from gluon_finetune.cli import main
    assert main(["explain", "--model", "resnet18_v1", "--classes", "2", "--lora", "4",
                 "--lora-alpha", "8", "--lora-targets", "features.0", "--lora-targets", "-2",
                 "--layer-lr", "*=0.5"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "_conv0_weight_lora_a " in line)
    assert row.split()[1:3] == ["4x0", "0:features.0"]  # (the stem's input: not known yet)
    assert "3 weights are adapted by LoRA" in out  # the stem and the last unit's two convs


@pytest.mark.parametrize("flags,message", [
    (["--lora-alpha", "8"], "lora_alpha is for LoRA adapters: give --lora RANK too"),
    (["--lora", "2", "--lora-targets", "nowhere"], "no block path or parameter is named"),
])
def test_cli_lora_errors_are_one_line(capsys, flags, message):
    from gluon_finetune.cli import main
    assert main(["explain", "--model", "resnet18_v1", "--classes", "2", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_train_with_lora_moves_only_adapters_and_head(tmp_path, capsys):
    from image_folder import make_image_folder

    from gluon_finetune.cli import main
    images = make_image_folder(tmp_path / "images")
    source = mx.gluon.model_zoo.vision.resnet18_v1()
    source.initialize(mx.init.Xavier())
    source(nd.zeros((1, 3, 32, 32)))
    source.save_parameters(str(tmp_path / "resnet18_v1.params"))
    saved = tmp_path / "model.params"
    assert main(["train", str(images), "--model", "resnet18_v1", "--root", str(tmp_path),
                 "--image-size", "32", "--batch-size", "4", "--epochs", "1", "--lora", "2",
                 "--lr", "0.01", "--no-progress", "--save", str(saved)]) == 0
    trained = get_model("resnet18_v1", classes=2, lora=2)
    trained.load_parameters(str(saved))
    mine = dict(zip((p for p in trained.collect_params().keys() if "_lora_" not in p),
                    source.collect_params().values()))
    for name, param in trained.collect_params().items():
        if name in mine and "dense" not in name and "running" not in name:
            assert np.array_equal(param.data().asnumpy(), mine[name].data().asnumpy()), name
    assert any(a.b.data().asnumpy().any() for a in lora_adapters(trained).values())


@pytest.mark.parametrize("declared", [False, True])
def test_adapters_of_a_weight_a_block_owns_itself_join_its_block(vocab, declared):
    """BERT's encoder owns position_weight itself: a declared list that names it by its
    path, and the automatic list, put its adapters in the embeddings' block."""
    from gluon_finetune import automatic_blocks, block_names
    spec = automatic_blocks(bert(vocab)) if declared else None
    net = bert(vocab, blocks=spec)
    labels = [label for label, _ in block_names(net)]
    add_lora(net, targets="*position_weight", rank=2)
    listed = block_names(net)
    assert [label for label, _ in listed] == labels
    weight = net.bert.encoder.position_weight
    assert {weight.name + "_lora_a", weight.name + "_lora_b", weight.name} <= listed[0].names
