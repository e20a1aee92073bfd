"""Installing a patch of Rasa or TensorFlow once per process, from whichever thread gets there first.

The gateway changes a few library functions (speedups.py, fast_load.py, kernel_cache.py). Each is
installed lazily, on the first model load, and loads run on several threads at once: `install_once`
makes an installer idempotent and thread-safe, so every call site may call it unconditionally.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable


def install_once(installer: Callable[[], None]) -> Callable[[], None]:
    """`installer` runs on the first call only; concurrent first calls wait for it to finish."""
    lock = threading.Lock()
    done = False

    @functools.wraps(installer)
    def install() -> None:
        nonlocal done
        with lock:
            if not done:
                installer()
                done = True

    return install
