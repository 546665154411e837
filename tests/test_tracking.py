"""Campaign tracking against a real sqlite MLflow store: one parent per campaign, one child per round, and the
round's training run under that child."""

from __future__ import annotations

import json

import pytest
from mlflow.entities import Param
from mlflow.tracking import MlflowClient

from evolve.records.ledger import Ledger, RoundRecord
from evolve.records.lessons import criticise
from evolve.records.memory import Memory
from evolve.records.mlflow_io import resolve_uri
from evolve.records.tracking import CampaignTracker, NullTracker
from trainer.tracking import MlflowTracker

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
    client = MlflowClient(uri)
    client.set_terminated(parent, "KILLED")
    CampaignTracker(uri, exp, "demo").start(SPEC, run_id=parent)  # resuming a killed campaign reopens it
    assert client.get_run(parent).info.status == "RUNNING"


def test_resuming_a_finished_campaign_leaves_its_parent_finished(uri, exp):
    # regression: the resume reopened it (RUNNING) before the graph found there was nothing left to run
    tracker = CampaignTracker(uri, exp, "demo")
    parent = tracker.start(SPEC)
    tracker.finish("finished")
    client = MlflowClient(uri)
    ended = client.get_run(parent).info
    assert CampaignTracker(uri, exp, "demo").start(SPEC, run_id=parent) == parent
    again = client.get_run(parent).info
    assert (again.status, again.end_time) == ("FINISHED", ended.end_time)


def test_a_parent_whose_id_was_never_kept_is_found_by_the_campaign_uid(uri, exp):
    # regression: a start killed between making the parent and writing campaign.json got a new parent per resume
    tracker, client = CampaignTracker(uri, exp, "demo"), MlflowClient(uri)
    # as the killed start left it: made and tagged (one call), its params not logged yet
    made = client.create_run(tracker.experiment_id, tags={"evolve.role": "campaign", "evolve.campaign_uid": "u1",
                                                          "evolve.campaign": "demo"}).info.run_id
    for _ in range(2):
        assert CampaignTracker(uri, exp, "demo").start(SPEC, uid="u1") == made
    assert client.get_run(made).data.params["budget.rounds"] == "3"
    other = CampaignTracker(uri, exp, "demo").start(SPEC, uid="u2")  # another campaign of the same name
    assert other != made
    parents = client.search_runs([client.get_experiment_by_name(exp).experiment_id], "tags.`evolve.role` = 'campaign'")
    assert sorted(r.data.tags["evolve.campaign_uid"] for r in parents) == ["u1", "u2"]


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


def test_a_half_written_child_is_completed_in_place(uri, exp):
    # not replaced: the round's training run hangs under it
    tracker = CampaignTracker(uri, exp, "demo")
    parent = tracker.start(SPEC)
    client = MlflowClient(uri)
    torn = client.create_run(tracker.experiment_id, tags={"mlflow.parentRunId": parent, "evolve.role": "round",
                                                          "evolve.round": "1"}).info.run_id
    record = make_record(1)
    client.log_batch(torn, params=[Param("rl.lr", "0.0001")])  # the crash came after the first params landed
    assert tracker.child_rounds() == []  # not complete, so not counted
    assert tracker.log_round(record, "", "", None, metrics={"eval/accuracy": 0.5}) == torn
    run = client.get_run(torn)
    assert run.info.status == "FINISHED" and run.data.tags["evolve.verdict"] == "keep"
    assert run.data.params["rl.lr"] == "0.0001" and run.data.metrics["objective"] == 0.5
    assert tracker.child_rounds() == [1]


def test_the_round_run_is_made_once_before_launch_and_the_training_run_nests_under_it(uri, exp, monkeypatch):
    tracker = CampaignTracker(uri, exp, "demo")
    parent = tracker.start(SPEC)
    round_run = tracker.round_run(3)
    resumed = CampaignTracker(uri, exp, "demo")
    resumed.start(SPEC, run_id=parent)
    assert resumed.round_run(3) == round_run  # a re-run launch reuses it
    # the launch hands it to the trainer, whose own tracker nests its run under it
    monkeypatch.setenv("EVOLVE_PARENT_RUN_ID", round_run)
    monkeypatch.setenv("EVOLVE_RUN_NAME", "round-3/train")
    train = MlflowTracker(uri, "ignored: a nested run joins its parent's experiment", "round-3")
    train.finish("succeeded", {}, [])
    record = make_record(3)
    record.mlflow_run_id = train.run_id
    assert resumed.log_round(record, "", "", None) == round_run  # reflect completes the same run
    client = MlflowClient(uri)
    trained = client.get_run(train.run_id)
    assert trained.data.tags["mlflow.parentRunId"] == round_run and trained.data.tags["mlflow.runName"] == \
           "round-3/train" and trained.info.experiment_id == tracker.experiment_id
    done = client.get_run(round_run).data.tags
    assert (done["mlflow.parentRunId"], done["mlflow.runName"], done["evolve.train_run_id"]) == \
           (parent, "round-3", train.run_id)
    assert resumed.child_rounds() == [3]  # the training run is no round of its own


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
    assert null.start(SPEC) == "" and null.log_round(make_record(1), "", "", None) == "" and null.round_run(1) == ""
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
