"""The round loop end to end: a real LangGraph graph with its SQLite checkpointer, real git workspaces, a real
MLflow store, and a real subprocess per round (tests/fixtures/fake_rl/train.py, a millisecond stand-in for
the trainer that writes the trainer's run directory and shows the same two stacked faults)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from evolve.campaign import runner as campaign
from evolve.campaign.spec import load_spec
from evolve.records.ledger import Ledger
from evolve.records.memory import Memory
from evolve.records.tracking import CampaignTracker
from evolve.workspace.repo import Workspace

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "tests" / "fixtures" / "fake_rl"


def write_spec(tmp_path: Path, name: str = "demo", rounds: int = 8, env: dict | None = None, **extra) -> Path:
    spec = {
        "name": name,
        "workspace": {"template": str(FAKE), "editable": ["config.yaml"], "root": str(tmp_path / "ws")},
        "launch": {"command": "python train.py", "timeout_s": 60, "env": env or {}},
        "objective": {"metric": "eval/accuracy"},
        "budget": {"rounds": rounds},
        "memory": str(tmp_path / "memory" / f"{name}.md"),
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    }
    for key, value in extra.items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def round_counts(tmp_path: Path, name: str = "demo") -> dict[str, list[int]]:
    """The rounds as each of the four records sees them: ledger, memory file, MLflow children, git tags.

    Every run directly under the campaign's parent must be a complete round child: a second child of one
    round, a torn one, or a training run hung from the parent fails here."""
    paths = campaign.campaign_paths(name, tmp_path / "home")
    spec = load_spec(paths.spec)
    tracker = CampaignTracker(spec.tracking.uri, spec.tracking.experiment, name)
    parent = tracker.start({}, run_id=json.loads(paths.meta.read_text())["mlflow_parent_run_id"])
    children = tracker.client.search_runs([tracker.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'")
    assert sorted(int(r.data.tags.get("evolve.round", -1)) for r in children) == tracker.child_rounds()  # complete
    with Workspace.open(spec) as ws:
        tags = [n for n in ws.rounds() if n > 0]  # round-0 is the starting point, not a round
    return {"ledger": [r.round for r in Ledger(paths.ledger).records()], "memory": Memory(spec.memory).rounds(),
            "mlflow": tracker.child_rounds(), "git": tags}


def cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evolve", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


# ---------------------------------------------------------------------------------------- the loop

def test_campaign_fixes_stacked_faults_then_improves_and_every_record_agrees(tmp_path):
    out = io.StringIO()
    final = campaign.start(write_spec(tmp_path), home=tmp_path / "home", stream=out)
    records = Ledger(campaign.campaign_paths("demo", tmp_path / "home").ledger).records()
    assert [(r.kind, r.verdict) for r in records[:3]] == [("router_collapse", "crash"), ("nan_loss", "crash"),
                                                          ("healthy", "keep")]
    # the fix for the first fault is carried into the fix for the second, not reverted away
    assert {c["key"] for c in records[2].proposal["changes"]} == {"model.router_bias_update_rate", "rl.adv_eps"}
    assert "removed router_collapse" in records[1].criticism["lesson"]
    assert round_counts(tmp_path) == {k: list(range(1, 9)) for k in ("ledger", "memory", "mlflow", "git")}
    kept = [r for r in records if r.verdict == "keep"]
    assert final["best_round"] == kept[-1].round and final["best_objective"] == max(r.objective for r in kept)
    assert final["stop"].startswith("round budget spent")
    # the workspace ends at the best round, clean
    with Workspace.open(load_spec(campaign.campaign_paths("demo", tmp_path / "home").spec)) as ws:
        assert ws.head() == ws.best() == ws.round_commit(final["best_round"]) and not ws.is_dirty()
    text = out.getvalue()
    assert "round 3/8 · model.router_bias_update_rate=0.001, rl.adv_eps… · succeeded healthy · objective" in text
    assert "ETA" in text
    assert (tmp_path / "home" / "campaigns" / "demo" / "report.html").is_file()


def test_status_lists_one_row_per_round_and_report_writes_both_files(tmp_path):
    campaign.start(write_spec(tmp_path, rounds=3), home=tmp_path / "home", stream=io.StringIO())
    result = cli("campaign", "--home", str(tmp_path / "home"), "status", "demo", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["state"] == "finished" and [row["round"] for row in status["rounds"]] == [1, 2, 3]
    assert set(status["rounds"][0]) == {"round", "commit", "change", "status", "kind", "objective", "verdict"}
    assert status["rounds"][0]["kind"] == "router_collapse" and status["rounds"][2]["verdict"] == "keep"
    text = cli("campaign", "--home", str(tmp_path / "home"), "status", "demo", cwd=tmp_path).stdout
    assert text.splitlines()[1].split() == ["round", "commit", "change", "status", "kind", "objective", "verdict"]
    report = cli("report", "demo", "--home", str(tmp_path / "home"), cwd=tmp_path)
    assert report.returncode == 0 and "report.html" in report.stdout
    assert "<svg" in (tmp_path / "home" / "campaigns" / "demo" / "report.html").read_text()


def test_a_campaign_with_tracking_off_makes_no_mlflow_store_and_keeps_every_other_record(tmp_path):
    out = io.StringIO()
    spec = write_spec(tmp_path, rounds=3, tracking={"enabled": False})
    final = campaign.start(spec, home=tmp_path / "home", stream=out)
    paths = campaign.campaign_paths("demo", tmp_path / "home")
    assert [r.round for r in Ledger(paths.ledger).records()] == [1, 2, 3] and final["best_round"] == 3
    assert "MLflow off" in out.getvalue() and (paths.dir / "report.html").is_file()
    assert not list(tmp_path.rglob("mlflow.db")) and not list(tmp_path.rglob("mlruns"))
    assert "mlflow_parent_run_id" not in json.loads(paths.meta.read_text())
    with pytest.raises(campaign.SpecError, match="objective.source: mlflow needs tracking"):
        campaign.start(write_spec(tmp_path, name="other", tracking={"enabled": False},
                                  objective={"source": "mlflow"}), home=tmp_path / "home")


def test_keep_checkpoints_best_leaves_checkpoints_only_in_the_best_rounds_run(tmp_path):
    spec = write_spec(tmp_path, rounds=6, launch={"keep_checkpoints": "best"})
    final = campaign.start(spec, home=tmp_path / "home", stream=io.StringIO())
    runs = campaign.campaign_paths("demo", tmp_path / "home").run_dir(1).parent
    with_checkpoints = sorted(int(p.parent.parent.name.split("-")[1]) for p in runs.glob("*/checkpoints/*.pt"))
    assert with_checkpoints == [final["best_round"]]
    assert all((runs / f"round-{n}" / "status.json").is_file() for n in range(1, 7))  # the rest is kept


@pytest.mark.slow
def test_a_100_round_campaign_runs_in_under_two_minutes(tmp_path):
    t0 = time.monotonic()
    final = campaign.start(write_spec(tmp_path, rounds=100), home=tmp_path / "home", stream=io.StringIO())
    elapsed = time.monotonic() - t0
    print(f"100 rounds in {elapsed:.1f}s ({elapsed / 100 * 1000:.0f} ms per round, a real subprocess each)")
    assert round_counts(tmp_path) == {k: list(range(1, 101)) for k in ("ledger", "memory", "mlflow", "git")}
    proposals = [json.dumps(r.proposal["changes"], sort_keys=True) for r in
                 Ledger(campaign.campaign_paths("demo", tmp_path / "home").ledger).records()[1:]]
    assert len(set(proposals)) == len(proposals)  # never the same change twice
    assert final["best_objective"] is not None and elapsed < 120


def test_repo_mode_campaign_works_on_a_branch_and_leaves_the_users_tree_alone(tmp_path):
    user = tmp_path / "project"
    subprocess.run(["cp", "-r", str(FAKE), str(user)], check=True)
    git = ["git", "-c", "user.name=u", "-c", "user.email=u@x"]
    subprocess.run(["git", "init", "-q", str(user)], check=True)
    subprocess.run([*git, "-C", str(user), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(user), "commit", "-qm", "mine"], check=True)
    before = subprocess.run(["git", "-C", str(user), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    spec = write_spec(tmp_path, rounds=3, workspace={"template": "", "repo": str(user)})
    campaign.start(spec, home=tmp_path / "home", stream=io.StringIO())
    after = subprocess.run(["git", "-C", str(user), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert before == after and (user / "config.yaml").read_text() == (FAKE / "config.yaml").read_text()
    assert round_counts(tmp_path)["git"] == [1, 2, 3]


# ---------------------------------------------------------------------------------------- crash safety

def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else "agent exited early"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _finish_by_resume(tmp_path: Path, rounds: int) -> None:
    result = cli("campaign", "--home", str(tmp_path / "home"), "resume", "demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    counts = round_counts(tmp_path)
    assert counts == {k: list(range(1, rounds + 1)) for k in counts}, counts  # none lost, none twice
    paths = campaign.campaign_paths("demo", tmp_path / "home")
    records = Ledger(paths.ledger).records()
    assert [r.kind for r in records[:3]] == ["router_collapse", "nan_loss", "healthy"]
    with Workspace.open(load_spec(paths.spec)) as ws:
        assert not ws.is_dirty() and ws.head() == ws.best()


def test_sigkill_during_a_run_then_resume_loses_and_duplicates_nothing(tmp_path):
    started = tmp_path / "started"
    started.mkdir()
    spec = write_spec(tmp_path, rounds=5, env={"FAKE_SLEEP_S": "1.5", "FAKE_STARTED_DIR": str(started)})
    agent = subprocess.Popen([sys.executable, "-m", "evolve", "campaign", "--home", str(tmp_path / "home"), "start",
                              str(spec)], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(started / "round-3", agent)
    agent.kill()  # SIGKILL: no cleanup; the run's process group outlives the agent
    agent.wait()
    run_dir = campaign.campaign_paths("demo", tmp_path / "home").run_dir(3)
    orphan = int((run_dir / "launch.pid").read_text())
    os.killpg(orphan, 0)  # still running
    _finish_by_resume(tmp_path, rounds=5)
    with pytest.raises(ProcessLookupError):
        os.killpg(orphan, 0)  # the resumed campaign ended the orphaned run before relaunching the round
    assert (run_dir.parent / "round-3.attempt-1" / "launch.log").is_file()  # its evidence is kept


EDIT_THEN_HANG = """
import sys, time
from pathlib import Path
import evolve.campaign.nodes as nodes

apply = nodes.apply_changes
def apply_then_hang(workspace_dir, changes, validate=None):
    changed = apply(workspace_dir, changes, validate)
    if any(c.key == "rl.adv_eps" for c in changes):  # round 3: the edit is on disk, not yet committed
        Path(sys.argv[1]).touch()
        time.sleep(300)
    return changed
nodes.apply_changes = apply_then_hang
from evolve.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_sigkill_during_the_edit_step_then_resume_loses_and_duplicates_nothing(tmp_path):
    spec = write_spec(tmp_path, rounds=5)
    marker = tmp_path / "editing"
    agent = subprocess.Popen([sys.executable, "-c", EDIT_THEN_HANG, str(marker), "campaign", "--home",
                              str(tmp_path / "home"), "start", str(spec)], cwd=tmp_path,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    _wait_for(marker, agent)
    agent.send_signal(signal.SIGKILL)
    agent.wait()
    paths = campaign.campaign_paths("demo", tmp_path / "home")
    with Workspace.open(load_spec(paths.spec)) as ws:
        assert ws.is_dirty() and ws.round_commit(3) is None  # killed between applying and committing
    _finish_by_resume(tmp_path, rounds=5)


# ---------------------------------------------------------------------------------------- bad input

def _snapshot(root: Path) -> list[tuple[str, float]]:
    # .git is left out: `git status` may refresh the index's stat cache, which changes no one's data
    return sorted((str(p.relative_to(root)), p.stat().st_mtime) for p in root.rglob("*") if ".git" not in p.parts)


@pytest.mark.parametrize("edit, needle", [
    (lambda s: s.replace("name: demo", "name: demo\nbogus: 1"), "bogus: unknown key"),
    (lambda s: s + "brain: {kind: genius}\n", "brain.kind: 'genius' is not a brain; known: rules, openai, moe"),
    (lambda s: s + "brain: {kind: openai}\n", "brain.options.base_url: required"),
    (lambda s: s + "brain: {kind: openai, options: {base_url: x, model: m, temprature: 1}}\n",
     "brain.options.temprature: unknown key"),
    (lambda s: s + "brain: {kind: rules, options: {temperature: 1}}\n", "brain.options.temperature: unknown"),
    (lambda s: s.replace(str(FAKE), "/nonexistent/template"), "/nonexistent/template: workspace.template"),
    (lambda s: s.replace("budget:\n  rounds: 8", "budget:\n  rounds: many"), "budget.rounds: expected int"),
    (lambda s: s + "launch: [oops\n", "is not valid YAML"),
])
def test_bad_spec_exits_2_with_one_line_and_creates_nothing(tmp_path, edit, needle):
    spec = write_spec(tmp_path)
    spec.write_text(edit(spec.read_text()))
    before = _snapshot(tmp_path)
    result = cli("campaign", "--home", str(tmp_path / "home"), "start", str(spec), cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and needle in result.stderr and "Traceback" not in result.stderr
    assert _snapshot(tmp_path) == before


def test_dirty_user_tree_and_unknown_campaign_and_taken_names_exit_2_and_touch_nothing(tmp_path):
    user = tmp_path / "project"
    user.mkdir()
    subprocess.run(["git", "init", "-q", str(user)], check=True)
    (user / "config.yaml").write_text("rl: {lr: 0.001}\n")
    subprocess.run(["git", "-c", "user.name=u", "-c", "user.email=u@x", "-C", str(user), "add", "-A"], check=True)
    subprocess.run(["git", "-c", "user.name=u", "-c", "user.email=u@x", "-C", str(user), "commit", "-qm", "x"],
                   check=True)
    (user / "config.yaml").write_text("rl: {lr: 0.002}\n")  # uncommitted work of the user's
    spec = write_spec(tmp_path, workspace={"template": "", "repo": str(user)})
    before = _snapshot(tmp_path)
    result = cli("campaign", "--home", str(tmp_path / "home"), "start", str(spec), cwd=tmp_path)
    assert result.returncode == 2 and "refusing a dirty tree" in result.stderr and result.stderr.count("\n") == 1
    assert _snapshot(tmp_path) == before and (user / "config.yaml").read_text() == "rl: {lr: 0.002}\n"
    branches = subprocess.run(["git", "-C", str(user), "branch"], capture_output=True, text=True).stdout
    assert "evolve/" not in branches

    result = cli("campaign", "--home", str(tmp_path / "home"), "resume", "nosuch", cwd=tmp_path)
    assert result.returncode == 2 and "no campaign named 'nosuch'" in result.stderr
    result = cli("campaign", "--home", str(tmp_path / "home"), "status", "nosuch", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1

    memory = tmp_path / "memory" / "demo.md"
    memory.parent.mkdir()
    memory.write_text("# Memory\n\n## Round 1 — keep\n\n- **lesson:** someone else's\n")
    result = cli("campaign", "--home", str(tmp_path / "home"), "start", str(write_spec(tmp_path)), cwd=tmp_path)
    assert result.returncode == 2 and "memory file already has rounds" in result.stderr
    assert "someone else's" in memory.read_text() and not (tmp_path / "home").exists()


def test_starting_a_campaign_that_exists_is_refused(tmp_path):
    spec = write_spec(tmp_path, rounds=1)
    campaign.start(spec, home=tmp_path / "home", stream=io.StringIO())
    result = cli("campaign", "--home", str(tmp_path / "home"), "start", str(spec), cwd=tmp_path)
    assert result.returncode == 2 and "already exists; resume it with" in result.stderr
    assert Ledger(campaign.campaign_paths("demo", tmp_path / "home").ledger).last_round() == 1


def test_resuming_a_campaign_whose_workspace_was_deleted_is_refused(tmp_path):
    campaign.start(write_spec(tmp_path, rounds=1), home=tmp_path / "home", stream=io.StringIO())
    subprocess.run(["rm", "-rf", str(tmp_path / "ws" / "demo")], check=True)
    result = cli("campaign", "--home", str(tmp_path / "home"), "resume", "demo", cwd=tmp_path)
    assert result.returncode == 2 and "workspace of campaign 'demo' is missing" in result.stderr
    assert not (tmp_path / "ws" / "demo").exists()


# ---------------------------------------------------------------------------------------- MLflow records

KILL_AT = """
import os, signal, sys
import evolve.campaign.runner as campaign
import evolve.records.tracking as tracking

def killed_after_start(*args, **kwargs):  # the parent run is made; campaign.json does not have its id yet
    start(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

def killed_before_meta(path, *args, **kwargs):  # spec.yaml is written, campaign.json is not
    if path.name == "campaign.json":
        os.kill(os.getpid(), signal.SIGKILL)
    return write_atomic(path, *args, **kwargs)
if sys.argv[1] == "after":
    start, tracking.CampaignTracker.start = tracking.CampaignTracker.start, killed_after_start
else:
    write_atomic, campaign.write_atomic = campaign.write_atomic, killed_before_meta
from evolve.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _mlflow(tmp_path: Path, name: str = "demo"):
    from mlflow.tracking import MlflowClient

    spec = load_spec(campaign.campaign_paths(name, tmp_path / "home").spec)
    client = MlflowClient(spec.tracking.uri)
    return client, client.get_experiment_by_name(spec.tracking.experiment).experiment_id


@pytest.mark.parametrize("moment", ["before", "after"])
def test_a_start_killed_before_campaign_json_kept_the_parent_gets_one_parent_however_often_resumed(tmp_path,
                                                                                                   moment):
    # regression: every resume of such a campaign made a new MLflow parent run
    spec = write_spec(tmp_path, rounds=2)
    agent = subprocess.run([sys.executable, "-c", KILL_AT, moment, "campaign", "--home", str(tmp_path / "home"),
                            "start", str(spec)], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                           capture_output=True, text=True, timeout=120)
    assert agent.returncode == -signal.SIGKILL, agent.stderr
    paths = campaign.campaign_paths("demo", tmp_path / "home")
    assert paths.spec.is_file() and not json.loads(paths.meta.read_text() if paths.meta.exists() else "{}").get(
        "mlflow_parent_run_id")
    for _ in range(3):  # the first resume runs the campaign, the later ones find it finished
        campaign.resume("demo", home=tmp_path / "home", stream=io.StringIO())
    client, experiment = _mlflow(tmp_path)
    parents = client.search_runs([experiment], "tags.`evolve.role` = 'campaign'")
    assert [r.info.run_id for r in parents] == [json.loads(paths.meta.read_text())["mlflow_parent_run_id"]]
    assert parents[0].info.status == "FINISHED" and parents[0].data.params["budget.rounds"] == "2"
    assert round_counts(tmp_path) == {k: [1, 2] for k in ("ledger", "memory", "mlflow", "git")}


def test_resuming_a_finished_campaign_leaves_its_mlflow_parent_finished(tmp_path):
    # regression: resume reopened the parent (RUNNING) before the graph found the campaign finished
    campaign.start(write_spec(tmp_path, rounds=1), home=tmp_path / "home", stream=io.StringIO())
    client, _ = _mlflow(tmp_path)
    parent = json.loads(campaign.campaign_paths("demo", tmp_path / "home").meta.read_text())["mlflow_parent_run_id"]
    ended = client.get_run(parent).info
    out = io.StringIO()
    campaign.resume("demo", home=tmp_path / "home", stream=out)
    assert "already finished" in out.getvalue()
    again = client.get_run(parent).info
    assert (ended.status, again.status, again.end_time) == ("FINISHED", "FINISHED", ended.end_time)


def test_mlflow_shows_campaign_then_round_then_training_run_also_across_a_killed_run(tmp_path):
    # regression: the training run was a sibling of its round's run, under the parent, with the same name
    started = tmp_path / "started"
    started.mkdir()
    spec = write_spec(tmp_path, rounds=3, env={"FAKE_MLFLOW": "1", "FAKE_SLEEP_S": "1", "FAKE_STARTED_DIR":
                                               str(started)})
    agent = subprocess.Popen([sys.executable, "-m", "evolve", "campaign", "--home", str(tmp_path / "home"), "start",
                              str(spec)], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(started / "round-2", agent)  # round 2's training run exists in MLflow; the agent dies mid-run
    agent.kill()
    agent.wait()
    campaign.resume("demo", home=tmp_path / "home", stream=io.StringIO())
    client, experiment = _mlflow(tmp_path)
    (parent,) = client.search_runs([experiment], "tags.`evolve.role` = 'campaign'")

    def under(run_id: str) -> list:
        return sorted(client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{run_id}'"),
                      key=lambda r: r.info.start_time)

    rounds = under(parent.info.run_id)
    assert [r.data.tags["mlflow.runName"] for r in rounds] == ["round-1", "round-2", "round-3"]
    assert {r.data.tags["evolve.role"] for r in rounds} == {"round"}  # nothing else hangs from the parent
    for n, round_run in enumerate(rounds, 1):
        trains = under(round_run.info.run_id)
        assert {t.data.tags["mlflow.runName"] for t in trains} == {f"round-{n}/train"}
        assert round_run.data.tags["evolve.train_run_id"] == trains[-1].info.run_id  # the attempt that finished
        assert trains[-1].info.status == ("FINISHED" if n == 3 else "FAILED")
        # round 2 was launched twice and kept one round run: the killed attempt's training run is under it too
        assert len(trains) == (2 if n == 2 else 1)
        assert round_run.info.status == ("FINISHED" if n == 3 else "FAILED")
    assert round_counts(tmp_path) == {k: [1, 2, 3] for k in ("ledger", "memory", "mlflow", "git")}


# ---------------------------------------------------------------------------------------- bad input: start, run output

class _RefusingMlflow(BaseHTTPRequestHandler):
    """Answers the preflight's probe like an MLflow server, then refuses every real call (HTTP 400)."""

    def _answer(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (the http.server interface)
        if "/experiments/search" in self.path:
            self._answer(200, {"experiments": []})
        else:
            self._answer(400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "this server refuses"})

    do_POST = do_GET

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def refusing_mlflow():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RefusingMlflow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("mode", ["template", "repo"])
def test_a_start_that_fails_after_the_preflight_leaves_nothing_behind(tmp_path, refusing_mlflow, mode):
    # regression: after an unusable tracking.uri the workspace and the campaign folder were left, `resume`
    # repeated the traceback and `start` said "already exists"
    user = tmp_path / "project"
    if mode == "repo":
        subprocess.run(["git", "init", "-q", str(user)], check=True)
        (user / "config.yaml").write_text("rl: {lr: 0.001}\n")
        for args in (["add", "-A"], ["commit", "-qm", "x"], ["tag", "evolve/demo/old", "HEAD"]):
            subprocess.run(["git", "-c", "user.name=u", "-c", "user.email=u@x", "-C", str(user), *args], check=True)
    spec = write_spec(tmp_path, workspace={"template": "", "repo": str(user)} if mode == "repo" else {},
                      tracking={"uri": refusing_mlflow})
    before = _snapshot(tmp_path)
    result = cli("campaign", "--home", str(tmp_path / "home"), "start", str(spec), cwd=tmp_path)
    assert result.returncode == 2 and "the MLflow store cannot be used" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert _snapshot(tmp_path) == before and not (tmp_path / "home").exists() and not (tmp_path / "ws").exists()
    if mode == "repo":  # no branch, no worktree, and only the tag the user had
        git = ["git", "-C", str(user)]
        assert subprocess.run([*git, "branch", "--list", "evolve/*"], capture_output=True, text=True).stdout == ""
        assert len(subprocess.run([*git, "worktree", "list"], capture_output=True, text=True).stdout.splitlines()) == 1
        assert subprocess.run([*git, "tag", "-l"], capture_output=True, text=True).stdout.split() == ["evolve/demo/old"]
    # and the same spec starts once the store works: nothing of the failed start is in the way
    fixed = write_spec(tmp_path, rounds=1, workspace={"template": "", "repo": str(user)} if mode == "repo" else {})
    assert campaign.start(fixed, home=tmp_path / "home", stream=io.StringIO())["stop"]


GARBAGE = """\
import json, os, sys
from pathlib import Path

run = Path(os.environ["EVOLVE_RUN_DIR"])
kind = os.environ["GARBAGE"].split(",")[int(os.environ["EVOLVE_ROUND"]) - 1]
good = {"status": "succeeded", "failure": None, "summary": {"eval_accuracy": 0.5}}
files = {
    "status-a-list": ("status.json", b"[1, 2]"),
    "status-truncated": ("status.json", b'{"status": "succ'),
    "status-failure-a-string": ("status.json", json.dumps({**good, "status": "failed", "failure": "oops"}).encode()),
    "status-summary-a-list": ("status.json", json.dumps({**good, "summary": ["eval_accuracy"]}).encode()),
    "status-a-number": ("status.json", json.dumps({**good, "status": 7}).encode()),
    "status-not-utf8": ("status.json", b'{"status": "succeeded\\xff"}'),
    "metrics-not-utf8": ("metrics.jsonl", b'{"eval/accuracy": 0.5}\\n\\xff\\xfe\\n'),
    "result-not-utf8": ("result.txt", b"eval/accuracy: 0.\\xff\\n"),
}
if kind == "good":  # a healthy first round, so later rounds have a best to build on
    (run / "status.json").write_text(json.dumps(good))
    (run / "metrics.jsonl").write_text(json.dumps({"eval/accuracy": 0.5}) + "\\n")
    (run / "result.txt").write_text("eval/accuracy: 0.5\\n")
elif kind in files:
    name, data = files[kind]
    if name != "status.json":
        (run / "status.json").write_text(json.dumps(good))
    (run / name).write_bytes(data)
elif kind == "status-a-fifo":
    os.mkfifo(run / "status.json")
elif kind == "status-dev-zero":
    os.symlink("/dev/zero", run / "status.json")
elif kind == "metrics-a-fifo":
    (run / "status.json").write_text(json.dumps(good))
    os.mkfifo(run / "metrics.jsonl")
elif kind == "result-a-directory":
    (run / "status.json").write_text(json.dumps(good))
    (run / "result.txt").mkdir()
sys.exit(0)
"""


@pytest.mark.parametrize("source, kinds, needles", [
    ("status", ["status-a-list", "status-truncated", "status-failure-a-string", "status-summary-a-list",
                "status-a-number", "status-not-utf8", "status-a-fifo", "status-dev-zero"],
     ["status.json: expected a JSON object, got list", "status.json: not valid JSON",
      'status.json: failure must be an object, got "oops"', "status.json: summary must be an object",
      "status.json: status must be a string, got 7", "status.json: line 1: not UTF-8",
      "status.json: not a regular file", "status.json: not a regular file"]),
    ("metrics", ["metrics-not-utf8", "metrics-a-fifo"], ["metrics.jsonl: line 2: not UTF-8", "metrics.jsonl"]),
    ("file", ["result-not-utf8", "result-a-directory"],
     ["result.txt: line 1: not UTF-8", "result.txt: is a directory"]),
])
def test_garbage_run_output_is_that_rounds_crash_and_the_campaign_goes_on(tmp_path, source, kinds, needles):
    # regression: a malformed status.json or bad bytes in metrics.jsonl crashed triage, and resume hit it again
    template = tmp_path / "template"
    template.mkdir()
    (template / "config.yaml").write_text((FAKE / "config.yaml").read_text())
    (template / "garbage.py").write_text(GARBAGE)
    objective = {"metric": "eval/accuracy", "source": source, **({"path": "result.txt"} if source == "file" else {})}
    spec = write_spec(tmp_path, rounds=1 + len(kinds), env={"GARBAGE": ",".join(["good", *kinds])},
                      workspace={"template": str(template)}, launch={"command": "python garbage.py"},
                      objective=objective)
    final = campaign.start(spec, home=tmp_path / "home", stream=io.StringIO())
    assert final["stop"].startswith("round budget spent") and final["best_round"] == 1
    paths = campaign.campaign_paths("demo", tmp_path / "home")
    records = Ledger(paths.ledger).records()
    assert [(r.status, r.kind, r.verdict) for r in records] == [("succeeded", "healthy", "keep")] + [
        ("failed", "crash", "crash")] * len(kinds)
    for n, needle in enumerate(needles, 2):
        diagnosis = json.loads((paths.run_dir(n) / "diagnosis.json").read_text())
        assert diagnosis["kind"] == "crash" and needle in diagnosis["evidence"][0]["text"], (n, diagnosis)
    # every command that reads the campaign back gets past those rounds
    out = io.StringIO()
    campaign.resume("demo", home=tmp_path / "home", stream=out)
    assert "already finished" in out.getvalue()
    assert cli("campaign", "--home", str(tmp_path / "home"), "status", "demo", cwd=tmp_path).returncode == 0
    assert cli("report", "demo", "--home", str(tmp_path / "home"), cwd=tmp_path).returncode == 0


# ---------------------------------------------------------------------------------------- decisions (issue 10)

STUBBORN = """\
# a trainer stand-in for the decision tests: its router collapses whatever the config says (FAIL=always), or
# only while the balancer's rate is negative, after which it succeeds with a warning triage will raise
import json, os, sys
from pathlib import Path
import yaml

config = yaml.safe_load(Path("config.yaml").read_text())
run = Path(os.environ["EVOLVE_RUN_DIR"])
run.mkdir(parents=True, exist_ok=True)
if os.environ["FAIL"] == "always" or config["model"]["router_bias_update_rate"] < 0:
    failure = {"kind": "router_collapse", "step": 30, "message": "the busiest expert took 99% of tokens (step 30)"}
    (run / "status.json").write_text(json.dumps({"status": "failed", "failure": failure, "summary": {}}))
    sys.exit(1)
# reward rises while eval falls (0.99 -> 0.93): triage calls it reward_hacking, the run's guards did not
records = [{"step": s, "phase": "rl", "train/reward": 0.3 + 0.05 * s, "train/entropy": 0.5} for s in range(12)]
records += [{"step": s, "phase": "rl", "eval/accuracy": 0.99 - 0.01 * s} for s in range(0, 12, 2)]
(run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in records))
(run / "status.json").write_text(json.dumps({"status": "succeeded", "failure": None,
                                             "summary": {"eval_accuracy": 0.94}}))
"""


def _stubborn_spec(tmp_path: Path, fail: str, rounds: int) -> Path:
    template = tmp_path / "template"
    template.mkdir()
    (template / "config.yaml").write_text("model: {router_bias_update_rate: -0.05}\nrl: {lr: 1.0e-4}\n")
    (template / "train.py").write_text(STUBBORN)
    return write_spec(tmp_path, rounds=rounds, env={"FAIL": fail}, workspace={"template": str(template)})


def test_a_start_no_remedy_fixes_ends_the_campaign_honestly_and_never_applies_a_move(tmp_path):
    """Regression (issue 10): with nothing kept, rounds 4 and 5 applied rl.lr moves to the broken start (each
    failed again with router_collapse), and the final line said no round beat the starting point."""
    out = io.StringIO()
    final = campaign.start(_stubborn_spec(tmp_path, "always", rounds=6), home=tmp_path / "home", stream=out)
    records = Ledger(campaign.campaign_paths("demo", tmp_path / "home").ledger).records()
    assert [(r.round, r.proposal["id"], r.kind, r.verdict) for r in records] == [
        (1, "baseline", "router_collapse", "crash"), (2, "router_bias_rate", "router_collapse", "crash")]
    assert final["stop"] == "no untried remedy for router_collapse and no healthy round to improve"
    assert final["best_round"] == 0 and final["best_objective"] is None
    text = out.getvalue()
    assert "round 3/6 · not started · no untried remedy for router_collapse" in text
    assert ("Best: none: no round produced a healthy objective; the tree is at the baseline" in text
            and "beat the starting point" not in text)
    with Workspace.open(load_spec(campaign.campaign_paths("demo", tmp_path / "home").spec)) as ws:
        assert ws.head() == ws.best() and not ws.is_dirty()
    lessons = [s["lesson"] for s in Memory(tmp_path / "memory" / "demo.md").sections()]
    assert not any("noise margin" in lesson or "best" in lesson for lesson in lessons)
    # resuming the ended campaign ends it the same way, without another round
    out = io.StringIO()
    campaign.resume("demo", home=tmp_path / "home", stream=out)
    assert "already finished: no untried remedy for router_collapse" in out.getvalue()


def test_a_succeeded_round_with_a_triage_warning_is_kept_and_the_tree_ends_there(tmp_path):
    """Regression (issue 10): the round that fixed the faults succeeded by the trainer's own guards, triage
    raised a warning on it, the round was reverted, and the campaign ended at its broken start."""
    final = campaign.start(_stubborn_spec(tmp_path, "while-negative", rounds=3), home=tmp_path / "home",
                           stream=io.StringIO())
    paths = campaign.campaign_paths("demo", tmp_path / "home")
    records = Ledger(paths.ledger).records()
    assert [(r.kind, r.verdict) for r in records[:2]] == [("router_collapse", "crash"), ("reward_hacking", "keep")]
    assert final["best_round"] == 2 and final["best_objective"] == 0.94
    assert "recorded, not a veto" in records[1].criticism["lesson"] and "first objective" in records[1].criticism[
        "lesson"]
    # the warned parent is healthy: its remedies come first, and moves may follow
    assert records[2].proposal["source"] == "rules/remedy" and records[2].proposal["target"] == "reward_hacking"
    with Workspace.open(load_spec(paths.spec)) as ws:
        assert ws.head() == ws.best() == ws.round_commit(2) and not ws.is_dirty()


DIVERGES = """\
import json, os, sys
from pathlib import Path

run = Path(os.environ["EVOLVE_RUN_DIR"])
n = int(os.environ["EVOLVE_ROUND"])
for i in range(30):
    print(f"[INFO] loading shard {i % 8} of 8 from /data/part-{i:04d}.parquet")
if n == 1:
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": i, "train/loss": 1 - i / 20}) + "\\n"
                                               for i in range(10)))
    (run / "status.json").write_text(json.dumps({"status": "succeeded", "failure": None,
                                                 "summary": {"eval_accuracy": 0.5}}))
    sys.exit(0)
print("WARN store heartbeat from rank 3 missing for 30 s")
(run / "metrics.jsonl").write_text("".join(json.dumps({"step": i, "train/loss": 1 - i / 20}) + "\\n"
                                           for i in range(4)) + json.dumps({"step": 4, "train/loss": "NaN"}) + "\\n")
(run / "status.json").write_text(json.dumps({"status": "failed", "failure": {"kind": "crash", "step": 4,
                                             "message": "worker exited"}, "summary": {}}))
sys.exit(1)
"""


def test_a_failed_round_is_compared_with_the_last_healthy_round(tmp_path):
    template = tmp_path / "template"
    template.mkdir()
    (template / "config.yaml").write_text((FAKE / "config.yaml").read_text())
    (template / "diverges.py").write_text(DIVERGES)
    spec = write_spec(tmp_path, rounds=2, workspace={"template": str(template)},
                      launch={"command": "python diverges.py"}, objective={"metric": "eval/accuracy"})
    campaign.start(spec, home=tmp_path / "home", stream=io.StringIO())
    paths = campaign.campaign_paths("demo", tmp_path / "home")
    healthy = json.loads((paths.run_dir(1) / "diagnosis.json").read_text())
    failed = json.loads((paths.run_dir(2) / "diagnosis.json").read_text())
    assert healthy["diff"] is None  # a healthy run is not diffed
    assert failed["diff"]["baseline"] == str(paths.run_dir(1))
    texts = [e["text"] for e in failed["diff"]["new_lines"]]
    assert any("heartbeat from rank 3" in t for t in texts) and not any("loading shard" in t for t in texts)
    assert any(m.startswith("train/loss") and "non-finite" in m for m in failed["diff"]["metrics"])
