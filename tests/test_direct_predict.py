"""Calling DIET's and TED's traced prediction directly (gateway/agents/direct_predict.py) converts inputs and
outputs exactly as `tf.function` and Keras do; answers are compared end to end in test_sparse_speedups.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gateway.agents import direct_predict


def _specs(*shapes_and_dtypes: tuple[list[int | None], Any]) -> direct_predict.Specs:
    import tensorflow as tf

    return tuple((tf.as_dtype(dtype), len(shape), shape[-1]) for shape, dtype in shapes_and_dtypes)


def test_arrays_become_the_tensors_tf_function_would_pass() -> None:
    import tensorflow as tf

    specs = _specs(([None, None, 7], np.float32), ([None], np.int64), ([None, 3], np.float32))
    batch = (
        np.arange(2 * 4 * 7, dtype=np.float32).reshape(2, 4, 7),
        np.array([3, 1], dtype=np.int64),
        np.arange(6, dtype=np.float64).reshape(2, 3) / 7,  # float64 array, float32 input: converted
    )
    tensors = direct_predict._converted(batch, specs)
    assert tensors is not None
    for ours, value, (dtype, _, _) in zip(tensors, batch, specs, strict=True):
        theirs = tf.convert_to_tensor(value, dtype_hint=dtype)
        assert ours.dtype == theirs.dtype == dtype
        assert ours.shape == theirs.shape
        assert np.array_equal(ours.numpy(), theirs.numpy())


@pytest.mark.parametrize(
    "batch",
    [
        (np.zeros((1, 2, 7), np.float32),),  # one input short
        (np.zeros((1, 7), np.float32), np.zeros(1, np.int64)),  # wrong rank
        (np.zeros((1, 2, 6), np.float32), np.zeros(1, np.int64)),  # wrong last dimension
        (np.zeros((1, 2, 7), np.float32), np.array(["a"])),  # not convertible to the dtype
        (np.zeros((1, 2, 7), np.float32), [1]),  # not an array
    ],
)
def test_a_batch_that_does_not_fit_the_signature_goes_to_rasas_path(batch: tuple[Any, ...]) -> None:
    specs = _specs(([None, None, 7], np.float32), ([None], np.int64))
    assert direct_predict._converted(batch, specs) is None


def test_outputs_become_what_keras_makes_of_them() -> None:
    import tensorflow as tf
    from keras.utils.tf_utils import sync_to_numpy_or_python_type

    outputs = {
        "i_scores": tf.constant([[0.25, 0.75]]),
        "scalar": tf.constant(3),
        "diagnostic_data": {"attention": tf.zeros((1, 2, 2)), "empty": []},
        "pair": (tf.constant([1.5]), "text"),
        "listed": [tf.constant(2.5), np.float32(1.0), np.array([1, 2])],
    }
    ours, theirs = direct_predict._to_numpy(outputs), sync_to_numpy_or_python_type(outputs)
    assert list(ours) == list(theirs)

    def same(a: Any, b: Any) -> None:
        assert type(a) is type(b)
        if isinstance(a, dict):
            assert list(a) == list(b)
            for key in a:
                same(a[key], b[key])
        elif isinstance(a, (list, tuple)):
            assert len(a) == len(b)
            for x, y in zip(a, b, strict=True):
                same(x, y)
        elif isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b)
        else:
            assert a == b

    same(ours, theirs)
