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
import time
from pathlib import Path

import pytest
import yaml

from evolve import campaign
from evolve.memory import Ledger, Memory
from evolve.spec import load_spec
from evolve.tracking import CampaignTracker
from evolve.workspace import Workspace

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
    """The rounds as each of the four records sees them: ledger, memory file, MLflow children, git tags."""
    paths = campaign.campaign_paths(name, tmp_path / "home")
    spec = load_spec(paths.spec)
    tracker = CampaignTracker(spec.tracking.uri, spec.tracking.experiment, name)
    tracker.start({}, run_id=json.loads(paths.meta.read_text())["mlflow_parent_run_id"])
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


def test_keep_checkpoints_best_leaves_checkpoints_only_in_the_best_rounds_run(tmp_path):
    spec = write_spec(tmp_path, rounds=6, launch={"keep_checkpoints": "best"})
    final = campaign.start(spec, home=tmp_path / "home", stream=io.StringIO())
    runs = campaign.campaign_paths("demo", tmp_path / "home").run_dir(1).parent
    with_checkpoints = sorted(int(p.parent.parent.name.split("-")[1]) for p in runs.glob("*/checkpoints/*.pt"))
    assert with_checkpoints == [final["best_round"]]
    assert all((runs / f"round-{n}" / "status.json").is_file() for n in range(1, 7))  # the rest is kept


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
import evolve.nodes as nodes

apply = nodes.apply_changes
def apply_then_hang(workspace_dir, changes):
    changed = apply(workspace_dir, changes)
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
    (lambda s: s + "brain: {kind: genius}\n", "brain.kind: must be one of rules, openai, moe"),
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
