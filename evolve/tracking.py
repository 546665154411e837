"""MLflow for campaigns: one parent run per campaign, one child run per round, and a null tracker.

The parent run carries the spec; each round's child carries the change as params, the objective and chosen
run metrics as metrics, the commit / verdict / kind / round as tags, and the diff, memory entry and
status.json as artifacts. The training run a round launches becomes a child of the parent too (the
trainer reads EVOLVE_PARENT_RUN_ID), so the UI shows a campaign as one tree.

Resuming must not fork that tree: `start` reopens the parent run whose id the campaign state kept, and
`log_round` returns the existing child of a round already logged. A child is only
"logged" once its last write (the `evolve.complete` tag) landed; a half-written one from a crash is
deleted and written again.

The trainer calls `mlflow.set_tracking_uri` (global state), so everything here goes through an
`MlflowClient` built with an explicit URI and never through the fluent API.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Any

from evolve.memory import RoundRecord, flatten

DEFAULT_URI = "sqlite:///mlflow.db"
# MLflow's limits: param keys 250 chars, param values 6000 chars, 100 params per batch
MAX_KEY, MAX_VALUE, PARAM_BATCH = 250, 6000, 100
_UNFINISHED = ("RUNNING", "SCHEDULED")
_END_STATUS = {"finished": "FINISHED", "succeeded": "FINISHED", "done": "FINISHED", "failed": "FAILED",
               "killed": "KILLED", "interrupted": "KILLED", "timeout": "FAILED"}


def resolve_uri(uri: str = "") -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def _key(k: str) -> str:
    # MLflow accepts letters, digits, _ - . / and space in keys; anything else would fail the whole batch
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", k)[:MAX_KEY]


def _quote(s: str) -> str:
    return s.replace("\\", "\\\\").replace("'", "\\'")


class NullTracker:
    """The same interface as CampaignTracker, doing nothing: campaigns without MLflow need no `if`s."""

    parent_run_id: str = ""

    def start(self, spec: dict[str, Any], run_id: str = "") -> str:
        return ""

    def log_round(self, record: RoundRecord, diff: str, memory_entry: str, status_json: Path | None = None,
                  metrics: dict[str, float] | None = None) -> str:
        return ""

    def child_rounds(self) -> list[int]:
        return []

    def finish(self, status: str = "finished") -> None: ...


class CampaignTracker(NullTracker):
    def __init__(self, uri: str = "", experiment: str = "evolve", campaign_name: str = "campaign"):
        from mlflow.entities import Metric, Param  # slow to import; only tracked campaigns pay for it
        from mlflow.tracking import MlflowClient

        # after the import, which configures mlflow's loggers: its INFO lines would drown the progress output
        logging.getLogger("mlflow").setLevel(logging.WARNING)

        self.uri = resolve_uri(uri)
        self.campaign = campaign_name
        self.client = MlflowClient(tracking_uri=self.uri)
        exp = self.client.get_experiment_by_name(experiment)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        self.parent_run_id = ""
        self._Metric, self._Param = Metric, Param

    # ------------------------------------------------------------------------------------ parent

    def start(self, spec: dict[str, Any], run_id: str = "") -> str:
        """The campaign's parent run: `run_id` when resuming (the id the campaign state kept), else a new one.

        Resume goes by id, not by a search on the name: a campaign deleted and started again under the
        same name must not inherit the old one's tree. A finished parent that is resumed is reopened.
        """
        if run_id:
            if self.client.get_run(run_id).info.status not in _UNFINISHED:
                self.client.update_run(run_id, status="RUNNING")
            self.parent_run_id = run_id
            return run_id
        tags = {"mlflow.runName": self.campaign, "evolve.campaign": self.campaign, "evolve.role": "campaign"}
        self.parent_run_id = self.client.create_run(self.experiment_id, tags=tags).info.run_id
        self._log_params(self.parent_run_id, flatten(spec))
        return self.parent_run_id

    def finish(self, status: str = "finished") -> None:
        if self.parent_run_id:
            end = _END_STATUS.get(status.lower(), status.upper())
            self.client.set_terminated(self.parent_run_id, end)

    # ------------------------------------------------------------------------------------ rounds

    def log_round(self, record: RoundRecord, diff: str, memory_entry: str, status_json: Path | None = None,
                  metrics: dict[str, float] | None = None) -> str:
        """The round's child run (created once per round). `metrics` are selected metrics of the training run."""
        if not self.parent_run_id:
            raise RuntimeError("CampaignTracker.log_round before start(): there is no parent run to attach to")
        for run in self._children(f" and tags.`evolve.round` = '{record.round}'"):
            if run.data.tags.get("evolve.complete") == "1":
                return run.info.run_id
            self.client.delete_run(run.info.run_id)  # torn by a crash; write it again from the record
        tags = {
            "mlflow.parentRunId": self.parent_run_id,
            "mlflow.runName": f"round-{record.round}",
            "evolve.campaign": self.campaign,
            "evolve.role": "round",
            "evolve.round": str(record.round),
            "evolve.commit": record.commit,
            "evolve.parent_commit": record.parent,
            "evolve.verdict": record.verdict,
            "evolve.kind": record.kind,
            "evolve.status": record.status,
        }
        if record.mlflow_run_id:
            tags["evolve.train_run_id"] = record.mlflow_run_id
        run_id = self.client.create_run(self.experiment_id, tags=tags).info.run_id
        self._log_params(run_id, flatten(record.proposal.get("changes") or {}))
        values = {"wall_s": record.wall_s, **(metrics or {})}
        if record.objective is not None:
            values["objective"] = record.objective
        self._log_metrics(run_id, values, step=record.round)
        self.client.log_text(run_id, diff, "diff.patch")
        self.client.log_text(run_id, memory_entry, "memory.md")
        if status_json is not None and Path(status_json).is_file():
            self.client.log_artifact(run_id, str(status_json))
        self.client.set_tag(run_id, "evolve.complete", "1")
        self.client.set_terminated(run_id, "FAILED" if record.verdict == "crash" else "FINISHED")
        return run_id

    def child_rounds(self) -> list[int]:
        """Rounds with a complete child run under the current parent, ascending."""
        if not self.parent_run_id:
            return []
        runs = self._children(" and tags.`evolve.complete` = '1'")
        return sorted(int(r.data.tags["evolve.round"]) for r in runs)

    # ------------------------------------------------------------------------------------ helpers

    def _children(self, extra: str = "") -> list:
        return self._search(f"tags.`mlflow.parentRunId` = '{self.parent_run_id}' "
                            f"and tags.`evolve.role` = 'round'{extra}")

    def _search(self, filter_string: str) -> list:
        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string=filter_string, max_results=1000,
                                           page_token=token)
            runs += list(page)
            token = page.token
            if not token:
                return runs

    def _log_params(self, run_id: str, params: dict[str, str]) -> None:
        items = [self._Param(_key(k), str(v)[:MAX_VALUE]) for k, v in params.items()]
        unique = list({p.key: p for p in items}.values())  # sanitising may map two keys to one
        for i in range(0, len(unique), PARAM_BATCH):
            self.client.log_batch(run_id, params=unique[i:i + PARAM_BATCH])

    def _log_metrics(self, run_id: str, metrics: dict[str, Any], step: int) -> None:
        now = int(time.time() * 1000)
        items = []
        for k, v in metrics.items():
            try:
                x = float(v)
            except (TypeError, ValueError):
                continue  # a string "metric" is a bug upstream, not a reason to lose the round's record
            if math.isfinite(x):
                items.append(self._Metric(_key(k), x, now, step))
        if items:
            self.client.log_batch(run_id, metrics=items)


def make_campaign_tracker(enabled: bool, uri: str, experiment: str, campaign_name: str) -> NullTracker:
    return CampaignTracker(uri, experiment, campaign_name) if enabled else NullTracker()
