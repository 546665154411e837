"""Campaign tracking against a real sqlite MLflow store: one parent per campaign, one child per round."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from evolve.memory import Ledger, Memory, RoundRecord, criticise
from evolve.tracking import CampaignTracker, NullTracker, resolve_uri

SPEC = {"name": "demo", "launch": {"command": "python -m trainer.train"}, "budget": {"rounds": 3}}


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    # one store per module: creating a sqlite store runs MLflow's migrations (~2 s each)
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


@pytest.fixture
def exp(request) -> str:
    # an experiment per test, so tests sharing the store cannot see each other's runs
    return request.node.name


def make_record(n: int, verdict: str = "keep", objective: float | None = 0.5, kind: str = "healthy") -> RoundRecord:
    proposal = {"hypothesis": f"h{n}", "changes": {"rl": {"lr": 1e-4 * n}, "note": "x" * 7000}, "expected": "up"}
    status = "failed" if verdict == "crash" else "succeeded"
    return RoundRecord(round=n, parent=f"p{n}", commit=f"c{n}", proposal=proposal, status=status, kind=kind,
                       objective=objective, verdict=verdict,
                       criticism=criticise(proposal, status, kind, objective, None, verdict), wall_s=2.0 * n,
                       mlflow_run_id=f"train{n}")


def test_uri_defaults_to_env_then_local_sqlite(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert resolve_uri("") == "sqlite:///elsewhere.db" and resolve_uri("sqlite:///x.db") == "sqlite:///x.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert resolve_uri("") == "sqlite:///mlflow.db"


def test_resumed_campaign_reopens_its_parent_by_id(uri, exp):
    first = CampaignTracker(uri, exp, "demo")
    parent = first.start(SPEC)
    assert CampaignTracker(uri, exp, "demo").start(SPEC, run_id=parent) == parent  # the resume
    assert CampaignTracker(uri, exp, "demo").start(SPEC) != parent  # a new campaign of the same name: new tree
    run = MlflowClient(uri).get_run(parent)
    assert run.data.tags["evolve.campaign"] == "demo" and run.data.params["budget.rounds"] == "3"
    first.finish("succeeded")
    assert MlflowClient(uri).get_run(parent).info.status == "FINISHED"
    CampaignTracker(uri, exp, "demo").start(SPEC, run_id=parent)  # resuming a finished campaign reopens it
    assert MlflowClient(uri).get_run(parent).info.status == "RUNNING"


def test_log_round_writes_a_child_with_tags_params_metrics_and_artifacts(uri, exp, tmp_path):
    tracker = CampaignTracker(uri, exp, "demo")
    parent = tracker.start(SPEC)
    status = tmp_path / "status.json"
    status.write_text(json.dumps({"status": "succeeded", "failure": None, "summary": {}}))
    record = make_record(1, objective=0.91)
    child = tracker.log_round(record, "--- a\n+++ b\n", Memory.entry(record), status,
                              metrics={"eval/accuracy": 0.91, "train/loss": float("nan"), "bad": "text"})
    client = MlflowClient(uri)
    run = client.get_run(child)
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert tags["mlflow.parentRunId"] == parent
    assert (tags["evolve.round"], tags["evolve.commit"], tags["evolve.verdict"], tags["evolve.kind"]) == \
           ("1", "c1", "keep", "healthy")
    assert tags["evolve.train_run_id"] == "train1"
    assert params["rl.lr"] == "0.0001" and len(params["note"]) == 6000  # truncated to MLflow's limit
    assert metrics == {"objective": 0.91, "eval/accuracy": 0.91, "wall_s": 2.0}  # NaN and text are dropped
    assert run.info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(child)} == {"diff.patch", "memory.md", "status.json"}
    memory_md = client.download_artifacts(child, "memory.md", str(tmp_path))
    assert open(memory_md).read().startswith("## Round 1 — keep")


def test_log_round_is_idempotent_per_round(uri, exp):
    tracker = CampaignTracker(uri, exp, "demo")
    tracker.start(SPEC)
    record = make_record(1)
    child = tracker.log_round(record, "", Memory.entry(record), None)
    again = CampaignTracker(uri, exp, "demo")
    again.start(SPEC, run_id=tracker.parent_run_id)
    assert again.log_round(record, "", Memory.entry(record), None) == child
    assert again.child_rounds() == [1]


def test_a_half_written_child_is_replaced(uri, exp):
    tracker = CampaignTracker(uri, exp, "demo")
    parent = tracker.start(SPEC)
    client = MlflowClient(uri)
    torn = client.create_run(tracker.experiment_id, tags={"mlflow.parentRunId": parent, "evolve.role": "round",
                                                          "evolve.round": "1"}).info.run_id
    assert tracker.child_rounds() == []  # not complete, so not counted
    child = tracker.log_round(make_record(1), "", "", None)
    assert child != torn and client.get_run(torn).info.lifecycle_stage == "deleted"
    assert tracker.child_rounds() == [1]


def test_crashed_round_child_is_marked_failed(uri, exp):
    tracker = CampaignTracker(uri, exp, "demo")
    tracker.start(SPEC)
    child = tracker.log_round(make_record(1, "crash", None, "nan_loss"), "", "", None)
    run = MlflowClient(uri).get_run(child)
    assert run.info.status == "FAILED" and "objective" not in run.data.metrics


def test_log_round_before_start_is_an_error(uri, exp):
    with pytest.raises(RuntimeError, match="start"):
        CampaignTracker(uri, exp, "demo").log_round(make_record(1), "", "", None)


def test_null_tracker_has_the_same_interface_and_does_nothing():
    null = NullTracker()
    assert null.start(SPEC) == "" and null.log_round(make_record(1), "", "", None) == ""
    assert null.child_rounds() == [] and null.finish("failed") is None


def test_ledger_memory_and_mlflow_agree_after_a_resumed_campaign(uri, exp, tmp_path):
    ledger, memory = Ledger(tmp_path / "ledger.jsonl"), Memory(tmp_path / "memory.md")
    plan = [make_record(1), make_record(2, "revert", 0.4), make_record(3, "crash", None, "nan_loss")]

    def bookkeep(tracker: CampaignTracker, record: RoundRecord) -> None:
        tracker.log_round(record, f"diff {record.round}", Memory.entry(record), None,
                          metrics={"eval/accuracy": record.objective or 0.0})
        memory.append(record)
        ledger.append(record)

    tracker = CampaignTracker(uri, exp, "demo")
    tracker.start(SPEC)
    for record in plan[:2]:
        bookkeep(tracker, record)
    # crash after round 2's bookkeeping; the resumed campaign replays round 2, then runs round 3
    resumed = CampaignTracker(uri, exp, "demo")
    assert resumed.start(SPEC, run_id=tracker.parent_run_id) == tracker.parent_run_id
    for record in plan[ledger.last_round() - 1:]:
        bookkeep(resumed, record)
    resumed.finish("finished")
    assert [r.round for r in ledger.records()] == memory.rounds() == resumed.child_rounds() == [1, 2, 3]
    assert memory.summary().startswith("3 rounds: 1 keep, 1 revert, 1 crash.")
