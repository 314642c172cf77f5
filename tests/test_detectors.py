"""get_model(detector, classes=...): GluonCV's reset_class remakes every class-dependent
layer (issue 21, item 17). Built with pretrained_base=False: no weights are downloaded."""
import warnings

import mxnet as mx
import numpy as np
import pytest

from gluon_finetune import blocks, get_model


def test_center_net_resets_its_heatmap_not_its_box_size_head():
    # on main: the width/height head got 3 channels, the heatmap kept VOC's 20
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # GluonCV initialises its heads itself
        net = get_model("center_net_resnet18_v1b_voc", classes=3, pretrained_base=False)
    heatmap, wh, reg = (net.heads[i][2] for i in range(3))
    assert heatmap.weight.shape[0] == 3
    assert wh.weight.shape[0] == 2 and reg.weight.shape[0] == 2
    assert net.classes == ["class0", "class1", "class2"]
    ids, scores, boxes = net(mx.nd.random.uniform(shape=(1, 3, 64, 64)))
    found = ids.asnumpy()
    assert found.max() <= 2 and boxes.shape[-1] == 4


def test_faster_rcnn_resets_class_and_box_predictors_together():
    # on main: a 3-way class predictor beside an 80-class box predictor
    net = get_model("faster_rcnn_resnet50_v1b_coco", classes=["cat", "dog", "fox"],
                    pretrained_base=False, unfreeze=2)
    assert net.classes == ["cat", "dog", "fox"] and net.num_class == 3
    assert net.class_predictor.weight.shape[0] == 4  # background + 3
    assert net.box_predictor.weight.shape[0] == 12   # 4 per class
    trainable = {n for n, p in net.collect_params().items() if p.grad_req != "null"}
    assert trainable == {p.name for b in (net.box_predictor, net.class_predictor)
                         for p in b.collect_params().values()}
    assert [label for label, _ in blocks(net)][-1] == "class_predictor"


@pytest.mark.parametrize("name", ["yolo3_mobilenet0.25_voc", "ssd_512_mobilenet1.0_voc"])
def test_one_stage_detectors_reset_their_classes(name):
    # on main: refused ("cannot replace a head of type YOLOOutputV3 / ConvPredictor")
    net = get_model(name, classes=2, pretrained_base=False)
    assert net.classes == ["class0", "class1"]
    if name.startswith("yolo"):  # its num_class property is broken in GluonCV 0.10
        assert [out._classes for out in net.yolo_outputs] == [2, 2, 2]
    else:
        assert net.num_classes == 2
    size = 128 if name.startswith("yolo") else 512
    ids, scores, boxes = net(mx.nd.random.uniform(shape=(1, 3, size, size)))
    assert ids.asnumpy().max() <= 1


def test_a_detector_loads_its_own_fine_tuned_weights(tmp_path):
    net = get_model("center_net_resnet18_v1b_voc", classes=3, pretrained_base=False)
    net(mx.nd.zeros((1, 3, 64, 64)))  # deferred shapes
    path = str(tmp_path / "mine.params")
    net.save_parameters(path)
    again = get_model("center_net_resnet18_v1b_voc", classes=3, pretrained=path,
                      pretrained_base=False)
    for mine, loaded in zip(net.collect_params().values(), again.collect_params().values()):
        assert np.array_equal(mine.data().asnumpy(), loaded.data().asnumpy())


def test_zoo_weights_then_new_classes(tmp_path):
    zoo = get_model("center_net_resnet18_v1b_voc", pretrained_base=False)  # VOC's 20 classes
    zoo(mx.nd.zeros((1, 3, 64, 64)))
    path = str(tmp_path / "zoo.params")
    zoo.save_parameters(path)
    net = get_model("center_net_resnet18_v1b_voc", classes=2, pretrained=path,
                    pretrained_base=False)
    assert net.heads[0][2].weight.shape[0] == 2
    assert np.array_equal(net.heads[1][2].weight.data().asnumpy(),  # class-free heads load
                          zoo.heads[1][2].weight.data().asnumpy())


def test_class_names_are_for_detectors_only():
    with pytest.raises(TypeError, match=r"resnet18_v1 is not a detector: classes must be the "
                                        r"number of classes \(classes=2\)"):
        get_model("resnet18_v1", classes=["cat", "dog"])
    with pytest.raises(ValueError, match=r"classes lists \['cat'\] more than once"):
        get_model("yolo3_mobilenet0.25_voc", classes=["cat", "cat"], pretrained_base=False)
    with pytest.raises(TypeError, match="non-empty list of class names"):
        get_model("yolo3_mobilenet0.25_voc", classes=[], pretrained_base=False)


def test_a_model_with_no_replaceable_head_is_refused_saying_what_to_do():
    with pytest.raises(TypeError, match=r"cannot replace a head of type _FCNHead.*Build the "
                                        r"model without classes="):
        get_model("fcn_resnet50_voc", classes=3, pretrained_base=False)
