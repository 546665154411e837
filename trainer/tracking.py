"""MLflow logging for one training run, and a null tracker with the same methods.

Launched by a campaign, the run nests under the run named by EVOLVE_PARENT_RUN_ID (the round's) in that
run's experiment, under the name EVOLVE_RUN_NAME.

Metrics are buffered and flushed in batches: one SQLite write per step would cost more than a tiny
model's training step.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from evolve.records.mlflow_io import metric_batches, metric_items, param_batches, resolve_uri


class NullTracker:
    run_id: str | None = None

    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, step: int, metrics: dict[str, float]) -> None: ...
    def flush(self) -> None: ...
    def finish(self, status: str, tags: dict[str, str], artifacts: list[Path]) -> None: ...


class MlflowTracker(NullTracker):
    def __init__(self, uri: str, experiment: str, run_name: str, flush_every: int = 50):
        import logging

        import mlflow  # slow to import; only runs that track pay for it

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # keep stderr for errors only
        from mlflow.tracking import MlflowClient

        self.uri = resolve_uri(uri)
        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(self.uri)
        # a campaign names its runs (round-3/train under its round-3), so the UI can tell them apart
        tags = {"mlflow.runName": os.environ.get("EVOLVE_RUN_NAME") or run_name}
        parent = os.environ.get("EVOLVE_PARENT_RUN_ID")  # set by a campaign that launched us: its round's run
        if parent:
            # the UI nests runs only within one experiment, so a campaign's runs join the campaign's
            tags["mlflow.parentRunId"] = parent
            exp_id = self.client.get_run(parent).info.experiment_id
        else:
            exp = self.client.get_experiment_by_name(experiment)
            exp_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        self.run_id = self.client.create_run(exp_id, tags=tags).info.run_id
        self._buffer: list = []
        self._flush_every = flush_every
        self._metric_cls = mlflow.entities.Metric
        self._param_cls = mlflow.entities.Param

    def log_params(self, params: dict[str, Any]) -> None:
        for batch in param_batches(params, self._param_cls):
            self.client.log_batch(self.run_id, params=batch)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self._buffer += metric_items(metrics, step, self._metric_cls)
        if len(self._buffer) >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        for batch in metric_batches(self._buffer):
            self.client.log_batch(self.run_id, metrics=batch)
        self._buffer = []

    def finish(self, status: str, tags: dict[str, str], artifacts: list[Path]) -> None:
        self.flush()
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)
        for path in artifacts:
            if path.is_file():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, "FINISHED" if status == "succeeded" else "FAILED")


def make_tracker(enabled: bool, uri: str, experiment: str, run_name: str) -> NullTracker:
    return MlflowTracker(uri, experiment, run_name) if enabled else NullTracker()
