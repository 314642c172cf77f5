"""The shared argument checks: NumPy scalars accepted, bools refused, errors marked as input."""
import numpy as np
import pytest

from gluon_finetune.checks import (
    InputError,
    InvalidTypeError,
    InvalidValueError,
    MissingFileError,
    check_bool,
    check_int,
    check_positive_int,
    check_real,
    last_line,
)


@pytest.mark.parametrize("value", [3, np.int64(3), np.int32(3), np.uint8(3)])
def test_numpy_integers_are_ints(value):
    assert check_int("n", value, minimum=1) == 3 and type(check_int("n", value)) is int
    assert check_positive_int("n", value) == 3
    assert check_real("x", value) == 3.0


@pytest.mark.parametrize("value", [0.5, np.float32(0.5), np.float64(0.5)])
def test_numpy_floats_are_reals(value):
    assert check_real("x", value, positive=True) == 0.5


@pytest.mark.parametrize("value", [True, False, np.bool_(True)])
def test_bools_are_neither_ints_nor_reals(value):
    with pytest.raises(InvalidTypeError, match=r"n must be an int, got (bool|bool_) "):
        check_int("n", value)
    with pytest.raises(InvalidTypeError, match="x must be a finite number"):
        check_real("x", value)
    with pytest.raises(InvalidValueError, match="positive integer"):
        check_positive_int("n", value)


def test_failed_checks_are_input_errors_that_name_the_argument():
    with pytest.raises(InvalidValueError) as err:
        check_int("classes", 0, minimum=1)
    assert isinstance(err.value, (InputError, ValueError)) and err.value.argument == "classes"
    with pytest.raises(InvalidTypeError) as err:
        check_real("wd", "0.1")
    assert isinstance(err.value, TypeError) and err.value.argument == "wd"
    with pytest.raises(InvalidValueError, match="nan"):
        check_real("wd", float("nan"))
    with pytest.raises(InvalidTypeError, match="True or False"):
        check_bool("strict", 1)
    missing = MissingFileError("no such file 'x'", argument="pretrained")
    assert isinstance(missing, FileNotFoundError) and str(missing) == "no such file 'x'"


def test_last_line_drops_mxnets_stack_trace():
    err = RuntimeError("Traceback (most recent call last):\n  File \"io.cc\", line 146\n"
                       "MXNetError: Check failed: Decoding failed. Invalid image file.\n")
    assert last_line(err) == "Check failed: Decoding failed. Invalid image file."
    assert last_line(KeyError()) == "KeyError"


def test_one_helper_suggests_close_names():
    from gluon_finetune.checks import did_you_mean
    assert did_you_mean("l4", ["l1", "l2", "l3", "output"], n=1) == "Did you mean 'l3'?"
    assert did_you_mean("featurs", ["features", "feature", "output"]) == \
        "Did you mean 'features' or 'feature'?"
    assert did_you_mean("zzz", ["features"]) == ""
    assert did_you_mean("sgdd", ["sgd", "nag"], n=1, cutoff=0.6) == "Did you mean 'sgd'?"
