"""Loading DIET/TED weights without tracing a training step: the bulk of a heavy model's load time.

Rasa 3.6's `RasaModel.load` builds an empty Keras model's variables by *training it* for one step on one
example (`model.fit`), then overwrites them with the archive's weights, then runs one prediction so the
first real turn does not trace the prediction graph. Tracing the training step (forward pass, gradients
and Adam's update, through autograph) is about three quarters of a DIET/TED bot's load (67 of 87 s of
`Agent.load` on the busy 2-core machine, docs/performance.md "Model swap under load"), and it is all Python
holding the GIL: under load it competes with every turn, and the swap took two minutes.

The weights do not need a training step to exist. Keras restores a TensorFlow-format checkpoint into an
unbuilt model *lazily*: each variable takes its saved value the moment it is created. So the faster load
reads the checkpoint first and then runs the same warm-up prediction Rasa runs anyway, which creates
(and so restores) every variable prediction uses. Variables only training creates (the optimizer's
slots, training-only heads) stay unread, which is harmless for a model that only predicts. Every
variable the prediction created must have been restored (`assert_existing_objects_matched`), so a
checkpoint that does not fit the model still refuses it, as before.

Fine-tuning (`finetune_mode`) and calls without a prediction example keep Rasa's own load: they need the
optimizer state or have no example to build the model with.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.agents.patches import install_once

logger = logging.getLogger(__name__)


@install_once
def install() -> None:
    """Replace `RasaModel.load` with the faster load for prediction (idempotent, thread-safe)."""
    from rasa.utils.tensorflow.models import RasaModel

    original = RasaModel.load.__func__  # type: ignore[attr-defined]

    def load(
        cls: Any,
        model_file_name: str,
        model_data_example: Any,
        predict_data_example: Any = None,
        finetune_mode: bool = False,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if finetune_mode or predict_data_example is None:
            return original(
                cls,
                model_file_name,
                model_data_example,
                predict_data_example,
                finetune_mode,
                *args,
                **kwargs,
            )
        return load_for_prediction(cls, model_file_name, predict_data_example, *args, **kwargs)

    RasaModel.load = classmethod(load)  # type: ignore[assignment]


def load_for_prediction(
    cls: Any, model_file_name: str, predict_data_example: Any, *args: Any, **kwargs: Any
) -> Any:
    """A `cls` model with the weights of `model_file_name`, built by one prediction (no training step)."""
    import tensorflow as tf
    from rasa.utils.tensorflow.constants import LEARNING_RATE, RUN_EAGERLY

    model = cls(*args, **kwargs)
    config = kwargs.get("config", {})
    # Compiling traces nothing; it sets what Keras and Rasa read later (run_eagerly, the optimizer).
    optimizer = tf.keras.optimizers.Adam(config.get(LEARNING_RATE, 0.001))
    model.compile(optimizer=optimizer, run_eagerly=config.get(RUN_EAGERLY))
    status = model.load_weights(model_file_name)  # deferred: restored as the prediction creates variables
    model.run_inference(predict_data_example)
    # Every variable prediction uses was restored; training-only ones (optimizer slots) may stay unread.
    status.assert_existing_objects_matched()
    status.expect_partial()
    return model
