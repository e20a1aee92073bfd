"""Loading a DIET/TED model must not throw away the answering model's compiled TensorFlow functions.

Every `RasaModel` constructor calls `tf.keras.backend.clear_session()` and sets TensorFlow's global random
seed twice (`tf.random.set_seed`, `tf.keras.utils.set_random_seed`); each of those clears the eager
context's kernel cache (`TFE_ContextClearCaches`). That cache is process-wide: it holds the instantiated,
Grappler-optimised function of every model in the process, the one answering turns included. So each
model a load constructs (DIET, then TED) made the *next* call of every answering model re-optimise its
prediction graph (Grappler and the oneDNN layout pass, 0.4-0.5 s on this 2-core machine), with every
turn in flight waiting behind it: the two stalls of each heavy swap under load (docs/performance.md,
"Heavy swaps"; py-spy showed the serving threads inside `MetaOptimizer` and `IsMklOp` right after the
loader's constructor ran).

Clearing is for training: it resets kernels that hold random state and the graph-mode session of a
previous training run. A model loaded for prediction needs neither (its weights come from the archive;
prediction runs no random op), so while a gateway thread loads a model (`kept()`), the clears it
triggers are skipped. The global seed itself is still set, as Rasa asks; clears from other threads, or
outside a load, still happen.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from gateway.agents.patches import install_once

logger = logging.getLogger(__name__)

_loading = threading.local()
_skipped = 0  # clears skipped in this process (read by tests and the debug log)


@contextlib.contextmanager
def kept() -> Iterator[None]:
    """While the calling thread runs the block, TensorFlow's kernel cache survives what the block does."""
    install()
    depth = getattr(_loading, "depth", 0)
    _loading.depth = depth + 1
    try:
        yield
    finally:
        _loading.depth = depth


def skipped() -> int:
    """How many kernel-cache clears `kept()` blocks skipped in this process so far."""
    return _skipped


def _keeping() -> bool:
    return getattr(_loading, "depth", 0) > 0


@install_once
def install() -> None:
    """Route TensorFlow's kernel-cache clears through `_keeping()` (idempotent, thread-safe)."""
    # The Python side calls the C function through this module attribute at call time
    # (context.clear_kernel_cache, Context._set_global_seed, Context._clear_caches).
    from tensorflow.python import pywrap_tfe

    original: Callable[[Any], None] = pywrap_tfe.TFE_ContextClearCaches

    def clear_caches(handle: Any) -> None:
        global _skipped
        if _keeping():
            _skipped += 1
            logger.debug("kept TensorFlow's kernel cache during a model load (%d so far)", _skipped)
            return
        original(handle)

    pywrap_tfe.TFE_ContextClearCaches = clear_caches
