"""States files written by gluon-finetune 0.1.0 (the flat layout) load and continue bit for bit.

A states file is a pickle that names classes by import path (``gluon_finetune.optimizer``,
``.rates``, ``.schedules``); those paths stay as aliases. ``golden/make_golden.py`` wrote
the files; each case continues 3 steps and must end on the weights that run ended on.
"""
import os

import numpy as np
import pytest
from finetune_helpers import train_step
from golden.make_golden import cases, expected_arrays

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")


@pytest.mark.parametrize("name", sorted(cases()))
def test_old_states_file_continues_bit_for_bit(name):
    build_net, build_trainer = cases()[name]
    net = build_net(seed=2)  # other initial weights: everything must come from the files
    net.load_parameters(os.path.join(HERE, f"{name}.params"))
    trainer = build_trainer(net)
    trainer.load_states(os.path.join(HERE, f"{name}.states"))
    for step in range(4, 7):
        train_step(net, trainer, seed=step)
    expected = np.load(os.path.join(HERE, f"{name}.expected.npz"))
    got = expected_arrays(net)
    assert sorted(got) == sorted(expected.files)
    for key in expected.files:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=f"{name} {key}")
