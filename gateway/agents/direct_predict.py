"""DIET's and TED's traced prediction called directly, without `tf.function`'s per-call dispatch.

Rasa wraps `predict_step` in a `tf.function` with a fixed input signature and calls it once per NLU parse
and per policy prediction. With the gateway's other costs gone, that call's Python dispatch was the
largest item of a DIET/TED turn (py-spy, one worker, c=8: 17% of the turn's samples, as much as the
TensorFlow kernels themselves): it binds and canonicalises the arguments, converts each array while
checking it against the signature, derives a type for the whole call and looks the traced function up
by it. With a fixed signature the answer is always the same traced function, so it is looked up once
per model (`get_concrete_function`) and called with the arrays made tensors by the constructor that
`tf.function`'s conversion ends in.
A batch that does not fit the signature (count, rank, last dimension or dtype) goes through Rasa's own
path, which raises its error. Outputs become numpy values exactly as Keras' `sync_to_numpy_or_python_type`
makes them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from gateway.agents.patches import install_once

logger = logging.getLogger(__name__)

_STATE = "_gateway_direct_predict"

# Per input of the signature: dtype, rank, last dimension (None when free).
Specs = tuple[tuple[Any, int, int | None], ...]

# Rasa's own `_rasa_predict`, as found when this was installed.
RASA: dict[str, Callable[..., Any]] = {}


class _Counts:
    direct = 0


def direct_calls() -> int:
    """Predictions that called the traced function directly since the process started."""
    return _Counts.direct


@install_once
def install() -> None:
    """Replace `RasaModel._rasa_predict` (idempotent, thread-safe)."""
    from rasa.shared.constants import DIAGNOSTIC_DATA
    from rasa.utils.tensorflow.models import RasaModel

    RASA["rasa_predict"] = original = RasaModel._rasa_predict

    def _rasa_predict(self: Any, batch_in: Any) -> Any:
        step = self._tf_predict_step
        if step is None or self._run_eagerly or not self.prepared_for_prediction:
            return original(self, batch_in)  # first call (traces), eager mode or not yet prepared
        state = self.__dict__.get(_STATE)
        if state is None or state[0] is not step:
            state = (step, *_signature(step))
            self.__dict__[_STATE] = state  # not setattr: Keras would track it as a layer attribute
        _, concrete, specs = state
        tensors = _converted(batch_in, specs)
        if tensors is None:
            return original(self, batch_in)
        self._training = False
        outputs = _to_numpy(concrete._call_flat(tensors, concrete.captured_inputs))
        _Counts.direct += 1
        if DIAGNOSTIC_DATA in outputs:
            outputs[DIAGNOSTIC_DATA] = self._empty_lists_to_none_in_dict(outputs[DIAGNOSTIC_DATA])
        return outputs

    RasaModel._rasa_predict = _rasa_predict
    logger.debug("installed the direct call of traced predictions")


def _signature(step: Any) -> tuple[Any, Specs]:
    """The traced function for the step's fixed signature; per input: dtype, rank, last dimension."""
    (element_spec,) = step.input_signature  # Rasa's _dynamic_signature: [list of TensorSpec]
    specs = tuple((spec.dtype, spec.shape.rank, spec.shape.as_list()[-1]) for spec in element_spec)
    return step.get_concrete_function(), specs


@functools.cache
def _tensorflow() -> tuple[Any, Any, Any, Any]:
    """TensorFlow's eager context module, EagerTensor, Tensor and Keras' output walk (imported once)."""
    from keras.utils.tf_utils import sync_to_numpy_or_python_type
    from tensorflow.python.eager import context
    from tensorflow.python.framework.ops import EagerTensor, Tensor

    return context, EagerTensor, Tensor, sync_to_numpy_or_python_type


def _converted(batch_in: Any, specs: Specs) -> list[Any] | None:
    """The batch's arrays as tensors of the signature's dtypes; None when it does not fit the signature.

    `tf.function` converts an array with `convert_to_tensor(array, dtype_hint=spec.dtype)`, which for an
    array ends in `EagerTensor(array, device, dtype)` after a conversion-registry lookup and four calls;
    the same constructor is called here. Where it refuses (another dtype), Rasa's own path decides.
    """
    context, eager_tensor, _, _ = _tensorflow()
    if len(batch_in) != len(specs):
        return None
    ctx = context.context()
    ctx.ensure_initialized()
    device = ctx.device_name
    tensors = []
    for value, (dtype, rank, last) in zip(batch_in, specs, strict=True):
        if not isinstance(value, np.ndarray) or value.ndim != rank:
            return None
        if last is not None and value.shape[-1] != last:
            return None
        try:
            tensor = eager_tensor(value, device, dtype.as_datatype_enum)
        except (TypeError, ValueError):
            return None
        if tensor.dtype != dtype:
            return None
        tensors.append(tensor)
    return tensors


def _to_numpy(value: Any) -> Any:
    """Keras' `sync_to_numpy_or_python_type`: tensors to numpy, scalars to Python, same structure."""
    _, _, tensor_type, keras_walk = _tensorflow()
    kind = type(value)
    if kind is dict:
        return {key: _to_numpy(item) for key, item in value.items()}
    if kind is list or kind is tuple:
        return kind(_to_numpy(item) for item in value)
    if isinstance(value, tensor_type):
        value = value.numpy()
    elif not isinstance(value, (np.ndarray, np.generic)):
        return keras_walk(value)  # any other structure: Keras' own walk
    return value.item() if np.ndim(value) == 0 else value
