"""Running a loaded model's prediction graph in plain dependency order instead of through dask.

Rasa 3.6 runs every NLU parse and every policy prediction through `DaskGraphRunner`, which builds a dask
graph, orders it and schedules it with dask's synchronous scheduler on every call. For the handful of
nodes in a prediction graph that bookkeeping cost about a fifth of a light bot's turn (see
docs/performance.md). `SequentialGraphRunner` runs the very same `GraphNode` objects (same components,
hooks and execution context) in an order computed once per target list, with dask's data-passing rules:
a node receives `(name, output)` of each node it needs, an input placeholder receives `(name, value)`,
and a dependency nobody provided arrives as its bare name (GraphNode reports it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from rasa.engine.exceptions import GraphRunError
from rasa.engine.graph import ExecutionContext, GraphNode, GraphNodeHook, GraphSchema
from rasa.engine.runner.dask import DaskGraphRunner
from rasa.engine.runner.interface import GraphRunner
from rasa.engine.storage.storage import ModelStorage

logger = logging.getLogger(__name__)

# One step of a plan: node name, the node, the names of what it needs (in its declared order).
Step = tuple[str, GraphNode, tuple[str, ...]]


class SequentialGraphRunner(GraphRunner):  # type: ignore[misc]
    """A `GraphRunner` that calls the graph's nodes one after another in dependency order."""

    def __init__(
        self, graph_schema: GraphSchema, nodes: Mapping[str, GraphNode], execution_context: ExecutionContext
    ) -> None:
        self._graph_schema = graph_schema
        self._instantiated_nodes = dict(nodes)
        self._execution_context = execution_context
        self._plans: dict[tuple[str, ...], tuple[Step, ...]] = {}
        self._plans_lock = threading.Lock()

    @classmethod
    def create(
        cls,
        graph_schema: GraphSchema,
        model_storage: ModelStorage,
        execution_context: ExecutionContext,
        hooks: list[GraphNodeHook] | None = None,
    ) -> SequentialGraphRunner:
        """Instantiate the graph's nodes exactly as Rasa's DaskGraphRunner does."""
        nodes = DaskGraphRunner._instantiate_nodes(graph_schema, model_storage, execution_context, hooks)
        return cls(graph_schema, nodes, execution_context)

    @classmethod
    def replacing(cls, runner: GraphRunner) -> GraphRunner:
        """A sequential runner over `runner`'s already loaded nodes; `runner` itself if it is not dask's."""
        if type(runner) is not DaskGraphRunner:
            return runner
        try:
            return cls(runner._graph_schema, runner._instantiated_nodes, runner._execution_context)
        except AttributeError as exc:  # another Rasa release laid the runner out differently
            logger.warning("keeping Rasa's dask graph runner: %s", exc)
            return runner

    def run(
        self,
        inputs: dict[str, Any] | None = None,
        targets: list[str] | None = None,
        known: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Run the nodes `targets` need (all targets when None) and return `{target: output}`.

        `known` gives nodes' outputs computed elsewhere (a micro-batch, batched_policies.py): those nodes
        are not called.
        """
        run_targets = tuple(targets) if targets else tuple(self._graph_schema.target_names)
        plan = self._plan(run_targets)
        values: dict[str, Any] = {}
        for name, value in (inputs or {}).items():
            if isinstance(value, str) and any(value == step[0] for step in plan):
                raise GraphRunError(
                    f"Input value '{value}' clashes with a node name. Make sure that none of the input "
                    f"names passed to the `run` method are the same as node names in the graph schema."
                )
            values[name] = (name, value)
        try:
            for name, node, needs in plan:
                if known is not None and name in known:
                    values[name] = (name, known[name])
                    continue
                values[name] = node(*(values.get(need, need) for need in needs))
        except RuntimeError as exc:  # what DaskGraphRunner turns into GraphRunError, too
            raise GraphRunError("Error running runner.") from exc
        return dict(values[target] for target in run_targets)

    def _plan(self, targets: tuple[str, ...]) -> tuple[Step, ...]:
        plan = self._plans.get(targets)
        if plan is None:
            with self._plans_lock:
                plan = self._plans.get(targets) or self._order(targets)
                self._plans[targets] = plan
        return plan

    def _order(self, targets: tuple[str, ...]) -> tuple[Step, ...]:
        schema = self._graph_schema.minimal_graph_schema(list(targets))
        ordered: list[Step] = []
        state: dict[str, bool] = {}  # False while visiting (a cycle if met again), True when placed

        def visit(name: str) -> None:
            if name not in schema.nodes or state.get(name):
                return  # an input placeholder, or already placed
            if name in state:
                raise GraphRunError(f"the graph has a cycle through node '{name}'")
            state[name] = False
            needs = tuple(schema.nodes[name].needs.values())
            for need in needs:
                visit(need)
            state[name] = True
            ordered.append((name, self._instantiated_nodes[name], needs))

        for name in schema.nodes:  # schema order, so independent nodes keep the order they were declared in
            visit(name)
        return tuple(ordered)
