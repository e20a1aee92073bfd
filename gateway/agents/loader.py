"""Loading a Rasa agent from a model archive: blocking work that always runs in a worker thread."""

from __future__ import annotations

import copy
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.agents.background import freeze_imports, run_in_background
from gateway.errors import ModelError

if TYPE_CHECKING:
    from rasa.core.agent import Agent
    from rasa.core.tracker_store import TrackerStore

    from gateway.agents.custom_actions import BotActions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """An agent ready to answer, with what we know about the archive it came from."""

    agent: Agent
    name: str
    path: Path
    sha256: str | None
    loaded_at: float  # wall-clock time, for humans
    load_seconds: float

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary (no agent)."""
        return {
            "model": self.name,
            "sha256": self.sha256,
            "loaded_at": self.loaded_at,
            "load_seconds": round(self.load_seconds, 3),
        }


@dataclass(frozen=True)
class ModelSummary:
    """What we remember of a model after its agent was released."""

    name: str
    sha256: str | None
    loaded_at: float


def summary(model: LoadedModel) -> ModelSummary:
    """`model` without its agent (so the agent can be garbage-collected)."""
    return ModelSummary(model.name, model.sha256, model.loaded_at)


def load_agent_blocking(
    path: Path,
    tracker_store: TrackerStore,
    graph_runner: str = "sequential",
    actions: BotActions | None = None,
    max_batch: int = 1,
    observe_batch: Callable[[str, int], None] | None = None,
) -> Agent:
    """Load `path` into a new Agent whose processor uses `tracker_store` directly.

    Rasa wraps tracker stores in FailSafeTrackerStore, which swallows errors and silently starts
    a fresh in-memory conversation; we unwrap it so an outage surfaces as TrackerStoreUnavailable.
    `graph_runner` "sequential" runs the model's graph without dask (graph_runner.py); "dask" keeps Rasa's.
    `actions` gives the model its custom-action endpoint and NLG endpoint (the bot's endpoints.yml).
    `max_batch` > 1 parses concurrent messages of a DIET model in batches (batched_nlu.py) and predicts
    their next actions with one TED call (batched_policies.py); `observe_batch(stage, size)` sees each.
    """
    from rasa.core.agent import Agent

    from gateway.agents import (
        action_guard,
        batched_nlu,
        batched_policies,
        direct_predict,
        fast_load,
        kernel_cache,
        sparse_speedups,
        speedups,
        stages,
        trusted_types,
    )

    speedups.install()
    sparse_speedups.install()
    direct_predict.install()
    trusted_types.install()
    fast_load.install()
    if not path.is_file():
        raise ModelError(f"model archive {path.name} does not exist")
    # A shallow copy shares the conversations but holds this model's domain, so loading a new model
    # never changes the domain (slots) under the model that is still answering.
    tracker_store = copy.copy(tracker_store)
    # Before the model: action code that fails to import refuses the model, naming its file and line.
    action_endpoint = actions.action_endpoint() if actions is not None else None
    generator = actions.nlg if actions is not None else None
    try:
        # kept(): constructing DIET/TED must not make the answering model re-optimise (kernel_cache.py).
        with kernel_cache.kept():
            agent = Agent.load(
                str(path), tracker_store=tracker_store, action_endpoint=action_endpoint, generator=generator
            )
    except Exception as exc:  # rasa/tarfile/pickle raise many types; all mean "unusable model"
        # The name and type only: Rasa's messages carry temporary paths, and this text reaches /readyz.
        logger.warning("model %s failed to load: %s: %s", path.name, type(exc).__name__, exc)
        raise ModelError(f"cannot load model {path.name}: {type(exc).__name__}") from exc
    if agent.processor is None or agent.domain is None:
        raise ModelError(f"model {path.name} has no dialogue model (NLU-only archives cannot answer)")
    tracker_store.domain = agent.domain
    agent.tracker_store = tracker_store
    agent.processor.tracker_store = tracker_store
    action_guard.guard(agent.processor)  # before stages: the yielding class wraps the guarded one
    if graph_runner == "sequential":
        from gateway.agents.graph_runner import SequentialGraphRunner

        agent.processor.graph_runner = SequentialGraphRunner.replacing(agent.processor.graph_runner)
    # After the runner is chosen: batches run the processor's runner.
    nlu = functools.partial(observe_batch, "nlu") if observe_batch else None
    policy = functools.partial(observe_batch, "policy") if observe_batch else None
    batched_nlu.batch_nlu(agent.processor, max_batch, nlu)
    batched_policies.batch_policies(agent.processor, max_batch, policy)
    stages.yield_between_stages(agent.processor)
    return agent


async def load_model(
    path: Path,
    tracker_store: TrackerStore,
    sha256: str | None = None,
    graph_runner: str = "sequential",
    actions: BotActions | None = None,
    max_batch: int = 1,
    observe_batch: Callable[[str, int], None] | None = None,
) -> LoadedModel:
    """Load an agent off the event loop, in a thread of lower priority than turns (background.py); time it."""
    started = time.perf_counter()
    agent = await run_in_background(
        lambda: load_agent_blocking(path, tracker_store, graph_runner, actions, max_batch, observe_batch),
        name=f"load-{path.name}",
        before=_start_tensorflow,
    )
    seconds = time.perf_counter() - started
    logger.info("loaded model %s in %.1fs", path.name, seconds)
    return LoadedModel(agent, path.name, path, sha256, time.time(), seconds)


def _start_tensorflow() -> None:
    """Create TensorFlow's process-wide thread pools at normal priority, before the loader is reniced.

    Threads inherit their creator's nice value; pools first created by a reniced loader would run every
    later turn's DIET/TED inference at the loader's low priority.
    """
    from tensorflow.python.eager import context

    context.ensure_initialized()
    # Rasa (and with it TensorFlow) imported before the first load freezes the imports for the collector.
    import rasa.core.agent  # noqa: F401

    freeze_imports()
