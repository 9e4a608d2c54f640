"""A suite run as a Langfuse experiment: dataset items, one trace per unit of work, each metric as a score.

The Langfuse v5 SDK models an experiment as traces carrying experiment attributes (the same ones its
``run_experiment`` sets), optionally linked to dataset items. tierflow keeps its own runner (resumable,
concurrent, with a progress bar), so this module does per unit what ``run_experiment`` does per item: a
root span ``eval <suite>`` whose context the task's model calls or graph run nest under (through a
Langfuse callback handler the tasks pick up from :func:`tierflow.evals.tasks.item_callbacks`), then every metric
of the unit as a score on that trace, with the run name in the score's metadata.

Tracing never fails an eval: every Langfuse call here is guarded and only logged when it fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from tierflow.evals.datasets import EvalItem
from tierflow.evals.suite import Cell, Suite
from tierflow.evals.tasks import item_callbacks

log = logging.getLogger("tierflow.evals")
EXPERIMENT_ENVIRONMENT = "sdk-experiment"  # what Langfuse's run_experiment tags experiment traces with


def run_name_for(suite: Suite, now: datetime | None = None) -> str:
    """``<suite>-<UTC timestamp>``: the name one run of a suite has in Langfuse."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{suite.name}-{stamp}"


def _expected_output(item: EvalItem) -> Any:
    """What a dataset item shows as expected output: the gold part of ``expected``, without tool catalogues."""
    if "nestful" in item.expected:
        return {"calls": item.expected["nestful"].get("calls")}
    if "bfcl" in item.expected:
        return {"ground_truth": item.expected["bfcl"].get("ground_truth")}
    return item.expected or None


def _summary(output: Mapping[str, Any] | None) -> Any:
    """The part of a task output worth showing on the trace (answers and calls, not the per-call accounting)."""
    if not output:
        return None
    return {k: v for k, v in output.items() if k not in ("model_calls", "notes")}


class UnitTrace:
    """The trace of one (cell, item, repeat); :meth:`finish` puts the record on it and sends the scores."""

    def __init__(self, experiment: LangfuseExperiment, span: Any, cell: Cell, item: EvalItem, repeat: int) -> None:
        self.experiment, self.span, self.cell, self.item, self.repeat = experiment, span, cell, item, repeat

    @property
    def trace_id(self) -> str | None:
        return getattr(self.span, "trace_id", None)

    def finish(self, record: Mapping[str, Any]) -> None:
        """Record the unit's output and metrics on its trace; never raises."""
        experiment = self.experiment
        try:
            level = {"level": "ERROR", "status_message": str(record.get("error"))[:500]} if record.get("error") else {}
            self.span.update(output=_summary(record.get("output")),
                             metadata={"metrics": record.get("metrics"), "passed": record.get("passed"),
                                       "error": record.get("error"), "cell": self.cell.key}, **level)
        except Exception as exc:
            experiment._warn("updating the trace", exc)
        trace_id = self.trace_id
        if not trace_id:
            return
        meta = {"run_name": experiment.run_name, "experiment_id": experiment.experiment_id,
                "suite": experiment.suite.name, "cell": self.cell.key, "item": self.item.id, "repeat": self.repeat}
        scores: dict[str, float | bool] = dict(record.get("metrics") or {})
        scores["passed"] = bool(record.get("passed"))
        for name, value in scores.items():
            try:
                experiment.tracing.score(trace_id, name, value, observation_id=getattr(self.span, "id", None),
                                         metadata=meta, comment=record.get("error") or None)
                experiment.scores_sent += 1
            except Exception as exc:
                experiment._warn(f"score {name!r}", exc)


class LangfuseExperiment:
    """One suite run in Langfuse: call :meth:`unit` around each unit of work and :meth:`close` at the end.

    ``tracing`` is a :class:`tracing.Tracing`; ``dataset`` uploads the items to the Langfuse dataset
    ``tierflow-<suite>`` (upserted by a stable id per item) so runs of the same suite line up in its UI.
    """

    def __init__(self, tracing: Any, suite: Suite, items: list[EvalItem], *, run_name: str | None = None,
                 costs: Mapping[str, tuple[float, float]] | None = None, dataset: bool = True) -> None:
        self.tracing, self.suite, self.costs = tracing, suite, dict(costs or {})
        self.run_name = run_name or run_name_for(suite)
        self.experiment_id = uuid.uuid4().hex[:16]
        self.dataset_name = f"tierflow-{suite.name}"
        self.dataset_id: str | None = None
        self.item_ids = {item.id: str(uuid.uuid5(uuid.NAMESPACE_URL, f"tierflow:{self.dataset_name}:{item.id}"))
                         for item in items}
        self.traces = self.scores_sent = self.items_uploaded = 0
        self.failures: list[str] = []
        self.flushed: bool | None = None  # set by close()
        if dataset and getattr(tracing.config, "langfuse", False):
            self._upload(items)

    def _warn(self, what: str, exc: BaseException) -> None:
        message = f"{what}: {type(exc).__name__}: {exc}"
        if len(self.failures) < 20:
            self.failures.append(message)
        log.warning("langfuse experiment %s: %s", self.run_name, message)

    def _upload(self, items: list[EvalItem]) -> None:
        """Create the dataset and its items; the first failure stops the upload (the traces still go out)."""
        client = self.tracing.client
        try:
            dataset = client.create_dataset(name=self.dataset_name, description=self.suite.description or None,
                                            metadata={"suite": self.suite.name, "task": self.suite.task.kind})
            self.dataset_id = str(dataset.id)
            for item in items:
                client.create_dataset_item(dataset_name=self.dataset_name, id=self.item_ids[item.id],
                                           input=item.input, expected_output=_expected_output(item),
                                           metadata={"item": item.id, "line": item.line})
                self.items_uploaded += 1
        except Exception as exc:
            self._warn("dataset upload (traces and scores are sent without dataset links)", exc)
            if self.items_uploaded == 0:
                self.dataset_id = None

    def _experiment_attributes(self, cell: Cell, item: EvalItem, root_id: str) -> dict[str, Any]:
        linked = self.dataset_id is not None and self.items_uploaded == len(self.item_ids)
        item_id = self.item_ids[item.id] if linked else hashlib.sha256(
            f"{self.suite.name}:{item.id}".encode()).hexdigest()[:16]
        return {"experiment_id": self.experiment_id, "experiment_name": self.run_name,
                "experiment_metadata": json.dumps({"suite": self.suite.name, "run_name": self.run_name}),
                "experiment_dataset_id": self.dataset_id if linked else None, "experiment_item_id": item_id,
                "experiment_item_metadata": json.dumps({"item": item.id, "cell": cell.key}),
                "experiment_item_root_observation_id": root_id}

    @contextlib.contextmanager
    def unit(self, item: EvalItem, cell: Cell, repeat: int) -> Iterator[UnitTrace | None]:
        """The trace of one unit: the task runs inside it (its model calls nest under the root span)."""
        with contextlib.ExitStack() as stack:
            try:
                span = stack.enter_context(self.tracing.client.start_as_current_observation(
                    name=f"eval {self.suite.name}", as_type="span", input=item.input,
                    metadata={"suite": self.suite.name, "cell": cell.key, "item": item.id, "repeat": repeat,
                              "run_name": self.run_name}))
                stack.enter_context(self._propagation(cell, item, span))
                handler = self.tracing.handler(tags=["eval", f"suite:{self.suite.name}"], costs=self.costs)
                self.traces += 1
            except Exception as exc:
                self._warn("opening the trace", exc)
                stack.close()
                with item_callbacks(()):
                    yield None
                return
            with item_callbacks([handler]):
                yield UnitTrace(self, span, cell, item, repeat)

    def _propagation(self, cell: Cell, item: EvalItem, span: Any) -> contextlib.AbstractContextManager[Any]:
        """Trace name, session (= run name), tags and the experiment attributes, on the span and its children."""
        from langfuse._client.propagation import _propagate_attributes  # the SDK's own experiment propagation

        return _propagate_attributes(trace_name=f"eval {self.suite.name}", session_id=self.run_name,
                                     tags=["eval", f"suite:{self.suite.name}"], environment=EXPERIMENT_ENVIRONMENT,
                                     metadata={"run_name": self.run_name, "cell": cell.key},
                                     experiment=self._experiment_attributes(cell, item, span.id))  # type: ignore[arg-type]

    def close(self) -> bool:
        """Flush traces and scores within the tracing's bounded timeout (once); never raises."""
        if self.flushed is None:
            try:
                self.flushed = bool(self.tracing.close())
            except Exception as exc:
                self._warn("closing", exc)
                self.flushed = False
            if not self.flushed:
                self.failures.append("not everything was exported within tracing.flush_timeout_s")
        return self.flushed

    def summary(self) -> dict[str, Any]:
        """What went to Langfuse, for the report and the CLI."""
        return {"run_name": self.run_name, "experiment_id": self.experiment_id, "dataset": self.dataset_name
                if self.dataset_id else None, "dataset_items": self.items_uploaded, "traces": self.traces,
                "scores": self.scores_sent, "flushed": self.flushed, "failures": list(self.failures)}
