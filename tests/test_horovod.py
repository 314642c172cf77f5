"""Horovod: per-layer rules on real ``horovodrun -np 2`` jobs (Gloo, loopback), and refusals.

The jobs run ``hvd_worker.py``: the workers end bit-identical to each other and within
1e-6 of one process on the global batch (SGD with momentum and Adam; rules, a schedule,
a frozen block, a thaw mid-run, a states file written by rank 0 and loaded on every rank).
"""
import os
import shutil
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from finetune_helpers import bn_chain, four_blocks

from gluon_finetune import LayerwiseTrainer, lr_find
from gluon_finetune.errors import InvalidTypeError, InvalidValueError
from gluon_finetune.trainer.horovod import HorovodKVStore

hvd = pytest.importorskip("horovod.mxnet")  # make test installs it; see the Makefile
HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "hvd_worker.py")


def _env():
    root = os.path.dirname(HERE)
    path = os.pathsep.join([root, HERE, os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    bin_dir = os.path.dirname(sys.executable)  # horovodrun lives beside this python
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return env


def _horovodrun_command(script, *args):
    """Two workers of ``script`` on this machine (Gloo over loopback)."""
    runner = shutil.which("horovodrun", path=_env()["PATH"])
    return [runner, "-np", "2", "-H", "localhost:2", "--gloo", sys.executable, script, *args]


def _horovodrun(*args, timeout=180):
    return subprocess.run(_horovodrun_command(WORKER, *args), env=_env(), capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("hvd"))
    job = _horovodrun(out)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    single = subprocess.run([sys.executable, WORKER, out, "--single"], env=_env(),
                            capture_output=True, text=True, timeout=120)
    assert single.returncode == 0, single.stderr[-3000:]
    return out


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_workers_are_bit_identical_and_match_one_process(runs, optimizer):
    rank0, rank1, single = (np.load(os.path.join(runs, f"{run}_{optimizer}.npz"))
                            for run in ("rank0", "rank1", "single"))
    assert rank0.files == rank1.files == single.files
    for key in rank0.files:
        np.testing.assert_array_equal(rank0[key], rank1[key], err_msg=key)
        np.testing.assert_allclose(rank0[key], single[key], rtol=0, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_frozen_block_is_bit_identical_and_rank_zeros(runs, optimizer):
    rank1, single = (np.load(os.path.join(runs, f"{run}_{optimizer}.npz"))
                     for run in ("rank1", "single"))
    # rank 1 started from other weights: the broadcast gave it rank 0's, and they never moved
    np.testing.assert_array_equal(rank1["block0_initial"], single["block0_initial"])
    np.testing.assert_array_equal(rank1["block0_final"], rank1["block0_initial"])


def test_ranks_that_train_different_parameters_raise_instead_of_hanging():
    job = _horovodrun("--diverge", timeout=120)
    assert job.returncode != 0
    assert "the workers train different parameters" in job.stdout + job.stderr


def test_distributed_optimizer_is_refused_with_what_to_use():
    hvd.init()
    wrapped = hvd.DistributedOptimizer(mx.optimizer.SGD(learning_rate=0.1))
    with pytest.raises(InvalidTypeError, match="kvstore='horovod'"):
        LayerwiseTrainer(four_blocks(), wrapped)


def test_update_on_kvstore_is_refused():
    with pytest.raises(InvalidValueError, match="update_on_kvstore"):
        LayerwiseTrainer(four_blocks(), "sgd", kvstore="horovod", update_on_kvstore=True)


def test_several_contexts_in_one_process_are_refused():
    net = four_blocks()
    net.collect_params().reset_ctx([mx.cpu(0), mx.cpu(1)])
    with pytest.raises(InvalidValueError, match="one device per process"):
        LayerwiseTrainer(net, "sgd", kvstore="horovod")


@pytest.mark.parametrize("bn", ["stats", "train"])
def test_batchnorm_policies_that_update_statistics_warn(bn):
    with pytest.warns(UserWarning, match="not synchronised"):
        LayerwiseTrainer(bn_chain(), "sgd", kvstore="horovod", bn=bn, layers={0: 0})


def test_lr_find_is_refused_under_horovod():
    net = four_blocks()
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.1}, kvstore="horovod")
    data = [(mx.nd.ones((4, 4)), mx.nd.zeros(4))]
    with pytest.raises(InvalidValueError, match="horovod"):
        lr_find(net, trainer, data, mx.gluon.loss.SoftmaxCrossEntropyLoss())


def test_a_stock_gluon_trainer_takes_the_store():
    net = four_blocks()
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1},
                               kvstore=HorovodKVStore())
    x, y = mx.nd.ones((4, 4)), mx.nd.zeros(4)
    before = net[0].weight.data().asnumpy().copy()
    with mx.autograd.record():
        loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()(net(x), y)
    loss.backward()
    trainer.step(4)
    assert trainer._kvstore.type == "horovod" and not trainer._update_on_kvstore
    assert not np.array_equal(before, net[0].weight.data().asnumpy())
