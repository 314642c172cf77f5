"""predict and evaluate on a run: the network's own numbers, the same in the CSV, the report
and the confusion matrix; and the errors of bad input."""
import csv
import json

import mxnet as mx
import numpy as np
import pytest
from finetune_helpers import tiny_convnet
from image_folder import make_class_folder, make_image_folder

from gluon_finetune.recipes.data import epoch_data
from gluon_finetune.runs import (
    RunFolder,
    evaluate_run,
    image_files,
    load_network,
    predict,
    preprocess,
    train_run,
    write_predictions,
)
from gluon_finetune.trainer import LayerwiseTrainer


def trained(images, out, classes=2):
    """(run folder, its network) after one epoch of a tiny convnet at 16x16."""
    net = tiny_convnet(classes=classes)
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1})
    train_run(net, trainer, epoch_data(images, image_size=16, batch_size=4), 1, out,
              progress=False)
    return RunFolder.open(out), net


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("inference") / "images")


@pytest.fixture(scope="module")
def run(images, tmp_path_factory):
    return trained(images, tmp_path_factory.mktemp("inference") / "run")


def softmax_by_batches(net, folder, files, batch_size):
    from gluon_finetune.recipes.augmentation import Preprocessing
    p = Preprocessing.from_dict(folder.record["preprocessing"])
    return np.concatenate([mx.nd.softmax(net(preprocess(files[i:i + batch_size], p)),
                                         axis=1).asnumpy()
                           for i in range(0, len(files), batch_size)])


def test_predict_gives_the_networks_softmax_and_the_csv_holds_it_exactly(images, run, tmp_path):
    folder, net = run
    rows = predict(folder, [str(images / "val")], top_k=2, batch_size=4, net=net)
    files = image_files(str(images / "val"))
    expected = softmax_by_batches(net, folder, files, 4)
    assert [r.path for r in rows] == files and len(files) == 6
    for row, p in zip(rows, expected):
        assert row.label == folder.classes[int(p.argmax())]
        assert np.float32(row.probability) == p.max()
        assert [np.float32(q) for _, q in row.top] == sorted(p, reverse=True)
    write_predictions(rows, str(tmp_path / "preds.csv"))
    with open(tmp_path / "preds.csv", newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["path", "class", "probability", "top1_class", "top1_probability",
                        "top2_class", "top2_probability"]
    for line, p in zip(table[1:], expected):
        assert np.float32(float(line[2])) == p.max() == np.float32(float(line[4]))


def test_evaluate_agrees_with_predict_and_its_confusion_matrix(images, run, tmp_path):
    folder, net = run
    report = evaluate_run(folder, str(images / "val"), out=str(tmp_path / "eval"), batch_size=4,
                          net=net)
    rows = predict(folder, [str(images / "val")], batch_size=4, net=net)
    truth = [folder.classes.index(r.path.split("/")[-2]) for r in rows]
    predicted = [folder.classes.index(r.label) for r in rows]
    matrix = np.zeros((2, 2), int)
    for t, p in zip(truth, predicted):
        matrix[t, p] += 1
    assert report["confusion_matrix"] == matrix.tolist()
    assert report["accuracy"] == np.mean(np.array(truth) == np.array(predicted))
    recall = matrix[0, 0] / matrix[0].sum()
    assert report["per_class"]["blue"]["recall"] == recall and "top5_accuracy" not in report
    with open(tmp_path / "eval" / "report.json") as f:
        assert json.load(f) == report
    assert (tmp_path / "eval" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"


def test_top5_with_more_than_five_classes(tmp_path):
    images = make_class_folder(tmp_path / "six")
    folder, net = trained(images, tmp_path / "run", classes=6)
    report = evaluate_run(folder, str(images), net=net, batch_size=32)
    p = softmax_by_batches(net, folder, image_files(str(images)), 32)
    labels = np.repeat(np.arange(6), 2)
    top5 = np.mean([label in np.argsort(-row)[:5] for label, row in zip(labels, p)])
    assert report["top5_accuracy"] == top5 and report["images"] == 12


def test_bad_input_is_one_clear_error(images, run, tmp_path):
    folder, net = run
    with pytest.raises(ValueError, match="--top-k 3 is more than the run's 2 classes"):
        predict(folder, [str(images / "val")], top_k=3, net=net)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image .*bad.png"):
        predict(folder, [str(bad)], net=net)
    with pytest.raises(FileNotFoundError, match="image .*missing.jpg' does not exist"):
        predict(folder, [str(tmp_path / "missing.jpg")], net=net)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        predict(folder, [str(tmp_path / "empty")], net=net)
    with pytest.raises(ValueError, match="class folders \\['train', 'val'\\] that the run does "
                                         "not have"):
        evaluate_run(folder, str(images), net=net)
    with pytest.raises(ValueError, match="records no zoo model"):
        load_network(folder)
    with pytest.raises(FileNotFoundError, match="parameters file .*nope.params' does not exist"):
        load_network(folder, str(tmp_path / "nope.params"))
