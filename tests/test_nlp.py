"""GluonNLP BERT/RoBERTa classifiers: block list, layer decay, unfreezing, get_model, weights."""
import os

import mxnet as mx
import numpy as np
import pytest
from finetune_helpers import BERT_WORDS, SMALL_BERT, weights
from mxnet import autograd, gluon

if os.environ.get("CI"):  # `make test` installs GluonNLP: there it must be tested, not skipped
    import gluonnlp as nlp
else:
    nlp = pytest.importorskip("gluonnlp")

from gluon_finetune import LayerwiseTrainer, blocks, get_model, layer_decay, model_names
from gluon_finetune.structure.index import walk
from gluon_finetune.structure.listing import block_names

SMALL, WORDS = SMALL_BERT, BERT_WORDS


@pytest.fixture(scope="module")
def vocab():
    return nlp.vocab.BERTVocab(nlp.data.count_tokens(WORDS))


def bert(vocab, layers=12, **kwargs):
    return get_model("bert_12_768_12", classes=2, vocab=vocab, num_layers=layers,
                     **dict(SMALL, **kwargs))


def batch(vocab, n=4, length=6, seed=0):
    rng = np.random.RandomState(seed)
    tokens = mx.nd.array(rng.randint(5, len(vocab), size=(n, length)))
    return tokens, mx.nd.zeros((n, length)), mx.nd.array([length] * n), \
        mx.nd.array(rng.randint(0, 2, n))


def test_twelve_layer_bert_block_list(vocab):
    net = bert(vocab)
    labels = [label for label, _ in blocks(net)]
    assert labels[0] == ("bert.word_embed.0+bert.token_type_embed.0+bert.encoder.position_weight"
                         "+bert.encoder.layer_norm")
    assert labels[1:13] == [f"bert.encoder.transformer_cells.{i}" for i in range(12)]
    assert labels[13:] == ["bert.pooler", "classifier.1"]  # classifier.0 is its Dropout
    assert [b for _, b in blocks(net)[1:13]] == list(net.bert.encoder.transformer_cells)
    assert net.finetune_blocks == tuple(labels)
    names = [n for _, group in block_names(net) for n in group]
    assert sorted(names) == sorted(net.collect_params().keys())


def test_layer_decay_rises_strictly_from_the_embeddings_to_the_head(vocab):
    net = bert(vocab)
    rules = layer_decay(net, 1e-3, decay=0.8)
    rates = [rules[i]["learning_rate"] for i in range(len(rules))]
    assert len(rates) == 15 and all(a < b for a, b in zip(rates, rates[1:]))
    assert rates[-1] == 1e-3 and rates[0] == pytest.approx(1e-3 * 0.8 ** 14)
    trainer = LayerwiseTrainer(net, "adam", {"learning_rate": 1e-3}, layers=rules)
    cells = net.bert.encoder.transformer_cells
    assert cells[0].proj.weight.lr_mult == pytest.approx(0.8 ** 13)
    assert net.bert.encoder.position_weight.lr_mult == pytest.approx(0.8 ** 14)
    assert trainer.explain()[net.bert.pooler.weight.name]["lr"] == pytest.approx(1e-3 * 0.8)


def test_unfreeze_three_trains_exactly_the_last_three_blocks(vocab):
    net = bert(vocab, unfreeze=3)
    last = net.bert.encoder.transformer_cells[11], net.bert.pooler, net.classifier
    expected = {p.name for b in last for p in b.collect_params().values()}
    assert {n for n, p in net.collect_params().items() if p.grad_req != "null"} == expected
    tokens, types, length, _ = batch(vocab)
    net(tokens, types, length)  # deferred shapes
    before = weights(net)
    trainer = LayerwiseTrainer(net, "bertadam", {"learning_rate": 1e-2})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    for seed in range(3):
        tokens, types, length, y = batch(vocab, seed=seed)
        with autograd.record():
            loss = loss_fn(net(tokens, types, length), y)
        loss.backward()
        trainer.step(4)
    after = weights(net)
    for name, value in before.items():
        assert np.array_equal(value, after[name]) == (name not in expected), name


def test_stage_granularity_keeps_the_stack_whole(vocab):
    net = bert(vocab, layers=2, granularity="stage", unfreeze=2)
    assert [label for label, _ in blocks(net)][1:] == [
        "bert.encoder.transformer_cells", "bert.pooler", "classifier"]
    assert len(layer_decay(net, 0.1)) == 4


def test_roberta_block_list(vocab):
    net = get_model("roberta_12_768_12", classes=3, vocab=vocab, num_layers=2, **SMALL)
    labels = [label for label, _ in blocks(net)]
    assert labels == ["roberta.word_embed.0+roberta.encoder.position_weight"
                      "+roberta.encoder.layer_norm", "roberta.encoder.transformer_cells.0",
                      "roberta.encoder.transformer_cells.1", "classifier.1", "classifier.3"]
    assert "bert_12_768_12" in model_names()


def test_pretrained_encoder_from_a_local_store(vocab, tmp_path):
    source = bert(vocab, layers=2)
    source(*batch(vocab)[:3])
    source.bert.save_parameters(str(tmp_path / "bert_12_768_12.params"))
    net = get_model("bert_12_768_12", classes=5, vocab=vocab, num_layers=2, pretrained=True,
                    root=str(tmp_path), **SMALL)
    mine, theirs = weights(net.bert), weights(source.bert)
    assert all(np.array_equal(mine[a], theirs[b]) for a, b in zip(mine, theirs))
    assert net.classifier[1].weight.shape == (5, 0)  # a new head, initialised on first use


def test_missing_pretrained_weights_error(vocab, tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        bert(vocab, layers=2, pretrained=True, root=str(tmp_path))
    message = str(err.value)
    assert "'bert_12_768_12' (GluonNLP)" in message
    assert str(tmp_path / "bert_12_768_12.params") in message and "pretrained=" in message


@pytest.mark.parametrize("kwargs,error,message", [
    ({"classes": None}, ValueError, "pass classes="),
    ({"vocab": None}, ValueError, "pass vocab="),
    ({"unfreeze": 16}, ValueError, "unfreeze=16 is out of range: the network has 15 blocks"),
    ({"classes": 0}, ValueError, "classes must be an int >= 1"),
    ({"classifier_dropout": -0.1}, ValueError, "classifier_dropout"),
])
def test_bad_arguments(vocab, kwargs, error, message):
    args = dict({"classes": 2, "vocab": vocab, "num_layers": 12}, **SMALL)
    args.update(kwargs)
    with pytest.raises(error, match=message):
        get_model("bert_12_768_12", **args)


def test_pretraining_model_traces_with_its_optional_inputs(vocab):
    # the decoder runs only given masked_positions; its output layer shares the word embedding
    model, _ = nlp.model.get_model("bert_12_768_12", dataset_name=None, vocab=vocab,
                                   pretrained=False, use_decoder=True, use_classifier=True,
                                   num_layers=2, hparam_allow_override=True, **SMALL)
    listed = block_names(model)
    assert [label for label, _ in listed] == [
        "word_embed.0+token_type_embed.0+encoder.position_weight+encoder.layer_norm",
        "encoder.transformer_cells.0", "encoder.transformer_cells.1", "pooler", "decoder.0",
        "classifier", "decoder.2", "decoder.3"]
    assert model.word_embed[0].weight.name in listed[0][1]
    assert listed[-1][1] == {model.decoder[3].bias.name}


def test_the_weight_decay_recipe_on_bert(vocab):
    """{**layer_decay, **no_weight_decay}: each block's rate, and no decay on exactly the
    biases and LayerNorm parameters (found by type), on a 12-layer BERT."""
    from gluon_finetune import no_weight_decay
    net = bert(vocab)
    decay = layer_decay(net, 1e-3, decay=0.8)
    trainer = LayerwiseTrainer(net, "bertadam", {"learning_rate": 1e-3, "wd": 0.01},
                               layers={**decay, **no_weight_decay(net)})
    table = trainer.explain()
    norms = {p.name for _, block in walk(net) if isinstance(block, gluon.nn.LayerNorm)
             for p in block.collect_params().values()}
    biases = {p.name for _, block in walk(net) for attr, p in block._reg_params.items()
              if attr.endswith("bias")}
    assert len(norms) == 2 * 25 and len(biases) > 12 * 6
    for i, (_, names) in enumerate(block_names(net)):
        for name in names:
            row = table[name]
            assert row["lr"] == pytest.approx(decay[i]["learning_rate"]), name
            assert row["wd_mult"] == (0.0 if name in norms | biases else 1.0), name
    tokens, types, length, y = batch(vocab)
    with autograd.record():
        loss = gluon.loss.SoftmaxCrossEntropyLoss()(net(tokens, types, length), y)
    loss.backward()
    trainer.step(4)
