"""MXNet's private attributes are touched in gluon_finetune/_compat.py and, apart from it,
only by the trainer's own overrides of gluon.Trainer: at most 6 modules in all.

The walk counts ``x._name`` where ``x`` is not ``self``/``cls``/``super()``
(what a class does with its own attributes, or what an override asks of its
base, is its own business), and ``getattr``/``setattr``/``hasattr``/``delattr``
with a literal ``"_name"``.
"""
import ast
from collections import Counter
from pathlib import Path

import mxnet as mx
import pytest
from mxnet.gluon import nn

from gluon_finetune import _compat

PACKAGE = Path(__file__).resolve().parents[1] / "gluon_finetune"
ALLOWED = {"_compat.py", "trainer/layerwise.py", "trainer/distributed.py", "trainer/states.py",
           "trainer/horovod.py"}
MOST_MODULES = 6
NOT_PRIVATE = {"_replace", "_asdict", "_fields", "_make"}  # namedtuple's public API
STDLIB = {("os", "_exit")}  # documented: leave a forked process without cleanup


def _own(node) -> bool:
    """``self``, ``cls`` or ``super()``."""
    if isinstance(node, ast.Name):
        return node.id in ("self", "cls")
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
        and node.func.id == "super"


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in NOT_PRIVATE


def private_accesses(tree) -> Counter:
    """Private attribute name -> how often ``tree`` touches it on an object not its own."""
    found = Counter()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) and not _own(node.value):
            base = node.value.id if isinstance(node.value, ast.Name) else None
            if (base, node.attr) not in STDLIB:
                found[node.attr] += 1
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ("getattr", "setattr", "hasattr", "delattr") and \
                len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and \
                isinstance(node.args[1].value, str) and _private(node.args[1].value) and \
                not _own(node.args[0]):
            found[node.args[1].value] += 1
    return found


def touching_modules(package: Path):
    """Module (relative path) -> its private accesses, for modules with any."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        found = private_accesses(ast.parse(path.read_text(), str(path)))
        if found:
            out[path.relative_to(package).as_posix()] = found
    return out


def test_private_attributes_are_touched_only_in_compat_and_the_trainer_overrides():
    touching = touching_modules(PACKAGE)
    outside = {module: dict(found) for module, found in touching.items()
               if module not in ALLOWED}
    assert not outside, ("read MXNet's private attributes through gluon_finetune/_compat.py: "
                         f"{outside}")
    assert len(touching) <= MOST_MODULES, sorted(touching)


@pytest.mark.parametrize("source, expected", [
    ("block._children", {"_children": 1}),
    ("getattr(block, '_kwargs', None)", {"_kwargs": 1}),
    ("trainer._optimizer._get_lrs([0])", {"_optimizer": 1, "_get_lrs": 1}),
    ("self._params", {}),
    ("super()._update(True)", {}),
    ("rate._replace(lr_mult=1)", {}),
    ("os._exit(0)", {}),
    ("p.__class__", {}),
])
def test_the_walk_counts_private_access_on_other_objects(source, expected):
    assert dict(private_accesses(ast.parse(source))) == expected


def test_the_walk_finds_a_module_that_reaches_in(tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "x.py").write_text("def f(net):\n    return net._children\n")
    assert touching_modules(tmp_path) == {"recipes/x.py": Counter({"_children": 1})}


# ----------------------------------------------------------------- what _compat reads

def test_blocks_children_own_params_and_batchnorm_switch():
    net = nn.HybridSequential()
    net.add(nn.Dense(2, in_units=3), nn.BatchNorm(in_channels=2))
    dense, bn = _compat.children(net).values()
    assert list(_compat.own_params(dense)) == ["weight", "bias"]
    assert _compat.has_global_stats(bn) and not _compat.has_global_stats(dense)
    assert _compat.operator_flags(net) is None
    assert isinstance(bn, _compat.batchnorm_base(nn))
    _compat.set_global_stats(bn, True)
    assert _compat.uses_global_stats(bn) is True
    replacement = nn.Dense(4, in_units=3)
    _compat.set_child(net, "0", replacement)
    assert net[0] is replacement and _compat.dense_flatten(replacement) is True


def test_parameters_data_and_deferred_init():
    layer = nn.Dense(2)
    layer.initialize()
    weight = layer.weight
    assert not _compat.is_initialized(weight) and _compat.deferred_init(weight)
    made = []
    _compat.after_init(weight, lambda p: made.append(p.data().shape))
    layer(mx.nd.ones((1, 3)))
    assert made == [(2, 3)] and _compat.is_initialized(weight)
    assert _compat.deferred_init(weight) is None and _compat.storage_type(weight) == "default"


def test_trainer_settings_before_and_after_the_first_step():
    layer = nn.Dense(2, in_units=2)
    layer.initialize()
    trainer = mx.gluon.Trainer(layer.collect_params(), "sgd", {"learning_rate": 0.1},
                               kvstore="device", update_on_kvstore=False)
    assert _compat.kvstore_in_use(trainer) == "device" == _compat.requested_kvstore(trainer)
    assert _compat.updates_on_kvstore(trainer) is False
    assert len(_compat.trainer_params(trainer)) == 2
    assert _compat.trainer_contexts(trainer) == [mx.cpu()] and _compat.grad_scale(trainer) == 1.0


def test_optimizer_update_counts():
    opt = mx.optimizer.SGD(learning_rate=0.5)
    _compat.count_update(opt, [0, 1])
    counts, current = _compat.update_counts(opt)
    assert current == {0: 1, 1: 1} and counts[0] is current
    assert _compat.stock_lrs(opt, [0, 1]) == [0.5, 0.5]
    assert _compat.same_update(mx.optimizer.SGD, mx.optimizer.SGD)

    class OwnUpdate(mx.optimizer.SGD):
        def _update_impl(self, *args, **kwargs):
            return super()._update_impl(*args, **kwargs)
    assert _compat.same_update(mx.optimizer.ccSGD, mx.optimizer.SGD)
    assert not _compat.same_update(OwnUpdate, mx.optimizer.SGD)
