"""MLflow for campaigns: one parent run per campaign, one child run per round, and a null tracker.

The parent run carries the spec; each round's child carries the change as params, the objective and chosen
run metrics as metrics, the commit / verdict / kind / round as tags, and the diff, memory entry and
status.json as artifacts. The training run a round launches nests under that round's child (launch makes
the child first and hands its id over as EVOLVE_PARENT_RUN_ID), so the UI shows a campaign as one tree:
campaign → round-3 → round-3/train.

Resuming must not fork that tree. `start` reopens the parent run whose id the campaign kept, or, when a
kill came before the id was kept, finds it by the campaign's uid tag (written down before the run was
made). `round_run` finds a round's child by its tags before making one, so a resumed launch or reflect
reuses it. A child is only "logged" once its last write (the `evolve.complete` tag) landed; a half-written
one from a crash is completed in place (never deleted: its training run hangs under it).

The trainer calls `mlflow.set_tracking_uri` (global state), so everything here goes through an
`MlflowClient` built with an explicit URI and never through the fluent API.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from evolve.records.ledger import RoundRecord
from evolve.records.lessons import flatten
from evolve.records.mlflow_io import metric_batches, metric_items, param_batches, resolve_uri

_UNFINISHED = ("RUNNING", "SCHEDULED")
_END_STATUS = {"finished": "FINISHED", "succeeded": "FINISHED", "done": "FINISHED", "failed": "FAILED",
               "killed": "KILLED", "interrupted": "KILLED", "timeout": "FAILED"}


def _quote(s: str) -> str:
    return s.replace("\\", "\\\\").replace("'", "\\'")


class NullTracker:
    """The same interface as CampaignTracker, doing nothing: campaigns without MLflow need no `if`s."""

    parent_run_id: str = ""

    def start(self, spec: dict[str, Any], run_id: str = "", uid: str = "") -> str:
        return ""

    def round_run(self, n: int) -> str:
        return ""

    def log_round(self, record: RoundRecord, diff: str, memory_entry: str, status_json: Path | None = None,
                  metrics: dict[str, float] | None = None) -> str:
        return ""

    def child_rounds(self) -> list[int]:
        return []

    def finish(self, status: str = "finished") -> None: ...


class CampaignTracker(NullTracker):
    def __init__(self, uri: str = "", experiment: str = "evolve", campaign_name: str = "campaign"):
        from mlflow.entities import Metric, Param, RunTag  # slow to import; only tracked campaigns pay for it
        from mlflow.tracking import MlflowClient

        # after the import, which configures mlflow's loggers: its INFO lines would drown the progress output
        logging.getLogger("mlflow").setLevel(logging.WARNING)

        self.uri = resolve_uri(uri)
        self.campaign = campaign_name
        self.client = MlflowClient(tracking_uri=self.uri)
        exp = self.client.get_experiment_by_name(experiment)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        self.parent_run_id = ""
        self._Metric, self._Param, self._RunTag = Metric, Param, RunTag

    # ------------------------------------------------------------------------------------ parent

    def start(self, spec: dict[str, Any], run_id: str = "", uid: str = "") -> str:
        """The campaign's parent run, made at most once per campaign.

        `run_id` is the id the campaign kept (a resume). Without one, `uid` (the campaign's own id, written
        down before this call) finds the parent of a start that was killed before it could keep the id; only
        when that finds nothing is a new parent made, tagged with `uid`. Never a search on the name: a
        campaign deleted and started again under the same name must not inherit the old one's tree.
        A killed campaign's parent is reopened; a FINISHED one stays finished (only the finish node sets
        that, and a finished campaign has nothing left to run).
        """
        if not run_id and uid:
            found = self._search(f"tags.`evolve.role` = 'campaign' and tags.`evolve.campaign_uid` = '{_quote(uid)}'")
            if found:
                run_id = min(found, key=lambda r: r.info.start_time).info.run_id
                self._log_params(run_id, flatten(spec))  # the kill may have come before they were logged
        if run_id:
            if self.client.get_run(run_id).info.status not in (*_UNFINISHED, "FINISHED"):
                self.client.update_run(run_id, status="RUNNING")
            self.parent_run_id = run_id
            return run_id
        tags = {"mlflow.runName": self.campaign, "evolve.campaign": self.campaign, "evolve.role": "campaign"}
        if uid:
            tags["evolve.campaign_uid"] = uid
        self.parent_run_id = self.client.create_run(self.experiment_id, tags=tags).info.run_id
        self._log_params(self.parent_run_id, flatten(spec))
        return self.parent_run_id

    def finish(self, status: str = "finished") -> None:
        if self.parent_run_id:
            end = _END_STATUS.get(status.lower(), status.upper())
            self.client.set_terminated(self.parent_run_id, end)

    # ------------------------------------------------------------------------------------ rounds

    def round_run(self, n: int) -> str:
        """Round n's child run, made once: launch makes it before the run starts (the training run nests
        under it) and `log_round` completes it. Found again by its tags, so a re-run node reuses it."""
        if not self.parent_run_id:
            raise RuntimeError("CampaignTracker.round_run before start(): there is no parent run to attach to")
        runs = self._children(f" and tags.`evolve.round` = '{n}'")
        if runs:  # a complete one first (from before children were made early), else the oldest
            return min(runs, key=lambda r: (r.data.tags.get("evolve.complete") != "1", r.info.start_time)).info.run_id
        tags = {"mlflow.parentRunId": self.parent_run_id, "mlflow.runName": f"round-{n}",
                "evolve.campaign": self.campaign, "evolve.role": "round", "evolve.round": str(n)}
        return self.client.create_run(self.experiment_id, tags=tags).info.run_id

    def log_round(self, record: RoundRecord, diff: str, memory_entry: str, status_json: Path | None = None,
                  metrics: dict[str, float] | None = None) -> str:
        """Complete the round's child run (the one launch made, or a new one). `metrics` are selected metrics
        of the training run. Every write can be repeated after a crash: tags and artifacts are overwritten,
        params are logged with the same values, metrics only once."""
        if not self.parent_run_id:
            raise RuntimeError("CampaignTracker.log_round before start(): there is no parent run to attach to")
        run_id = self.round_run(record.round)
        run = self.client.get_run(run_id)
        if run.data.tags.get("evolve.complete") == "1":
            return run_id
        tags = {
            "evolve.commit": record.commit,
            "evolve.parent_commit": record.parent,
            "evolve.verdict": record.verdict,
            "evolve.kind": record.kind,
            "evolve.status": record.status,
        }
        if record.mlflow_run_id:
            tags["evolve.train_run_id"] = record.mlflow_run_id
        self.client.log_batch(run_id, tags=[self._RunTag(k, v) for k, v in tags.items()])
        self._log_params(run_id, flatten(record.proposal.get("changes") or {}))
        values = {"wall_s": record.wall_s, **(metrics or {})}
        if record.objective is not None:
            values["objective"] = record.objective
        if not run.data.metrics:  # one batch, so either all of them landed or none did
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
        for batch in param_batches(params, self._Param):
            self.client.log_batch(run_id, params=batch)

    def _log_metrics(self, run_id: str, metrics: dict[str, Any], step: int) -> None:
        for batch in metric_batches(metric_items(metrics, step, self._Metric)):
            self.client.log_batch(run_id, metrics=batch)
