import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from evolve.campaign.spec import CampaignSpec, load_spec
from evolve.workspace.repo import Workspace, WorkspaceError


def git(cwd: Path, *args: str) -> str:
    """The real git CLI, independent of the code under test."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "user", "GIT_AUTHOR_EMAIL": "user@example.com",
           "GIT_COMMITTER_NAME": "user", "GIT_COMMITTER_EMAIL": "user@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def make_spec(tmp_path: Path, name: str = "demo", editable: tuple[str, ...] = ("config.yaml", "src/*.py"),
              **workspace: str) -> CampaignSpec:
    doc = {"name": name, "workspace": {"editable": list(editable), **workspace},
           "launch": {"command": "python train.py"}, "objective": {"metric": "eval/accuracy"}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_spec(path)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch):
    # the default workspace root is ./workspaces where evolve runs: here, the test's own directory
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def template(tmp_path: Path) -> Path:
    tpl = tmp_path / "tpl"
    (tpl / "src").mkdir(parents=True)
    (tpl / "__pycache__").mkdir()
    (tpl / "config.yaml").write_text("lr: 1\n")
    (tpl / "src" / "model.py").write_text("WIDTH = 8\n")
    (tpl / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0")
    return tpl


@pytest.fixture
def ws(tmp_path: Path, template: Path):
    with Workspace.open(make_spec(tmp_path, template="tpl")) as w:
        yield w


@pytest.fixture
def user_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "config.yaml").write_text("lr: 1\n")
    (repo / ".gitignore").write_text("*.log\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "user's work")
    return repo


def user_state(repo: Path) -> tuple[str, ...]:
    return (git(repo, "status", "--porcelain", "--untracked-files=all"), git(repo, "rev-parse", "HEAD"),
            git(repo, "branch", "--show-current"), git(repo, "branch", "--list"), git(repo, "tag", "--list"),
            (repo / "config.yaml").read_text())


# ---------------------------------------------------------------------------------------- template mode

def test_template_becomes_a_new_repo_marked_as_ours_with_round_0_and_best(tmp_path, ws):
    assert ws.path == tmp_path / "workspaces" / "demo"
    assert (ws.path / "config.yaml").read_text() == "lr: 1\n"
    assert (ws.path / "src" / "model.py").read_text() == "WIDTH = 8\n"
    assert not (ws.path / "__pycache__").exists()  # bytecode is not part of the campaign
    assert git(ws.path, "config", "--local", "evolve.campaign").strip() == "demo"
    assert git(ws.path, "branch", "--show-current").strip() == "evolve/demo"
    assert git(ws.path, "ls-files").split() == ["config.yaml", "src/model.py"]
    assert "start campaign demo from template" in git(ws.path, "log", "-1", "--format=%s")
    assert ws.rounds() == [0]
    assert ws.round_commit(0) == ws.best() == ws.head()
    assert git(ws.path, "rev-parse", "refs/tags/evolve/demo/round-0").strip() == ws.head()
    assert not ws.is_dirty()
    assert not list((tmp_path / "workspaces").glob(".demo.*"))  # the temporary build directory is gone


def test_reopening_an_owned_workspace_resumes_it_unchanged(tmp_path, template):
    spec = make_spec(tmp_path, template="tpl")
    with Workspace.open(spec) as first:
        (first.path / "config.yaml").write_text("lr: 2\n")
        sha = first.commit_round(1, "lr 2")
    with Workspace.open(spec) as again:
        assert again.head() == sha
        assert again.rounds() == [0, 1]
        assert (again.path / "config.yaml").read_text() == "lr: 2\n"
        assert git(again.path, "rev-list", "--count", "HEAD").strip() == "2"


@pytest.mark.parametrize("kind", ["plain directory", "someone else's repo"])
def test_existing_directory_that_is_not_ours_is_refused_and_left_alone(tmp_path, template, kind):
    target = tmp_path / "workspaces" / "demo"
    target.mkdir(parents=True)
    (target / "notes.txt").write_text("mine\n")
    if kind == "someone else's repo":
        git(target, "init", "-q")
    with pytest.raises(WorkspaceError, match="not the workspace of campaign 'demo'; choose another campaign name "
                                             "or remove the directory") as e:
        Workspace.open(make_spec(tmp_path, template="tpl"))
    assert "\n" not in str(e.value)
    assert (target / "notes.txt").read_text() == "mine\n"
    assert sorted(p.name for p in target.iterdir()) == (["notes.txt"] if kind == "plain directory"
                                                        else [".git", "notes.txt"])


def test_another_campaigns_workspace_is_refused(tmp_path, template):
    Workspace.open(make_spec(tmp_path, "first", template="tpl")).close()
    (tmp_path / "workspaces" / "first").rename(tmp_path / "workspaces" / "second")
    with pytest.raises(WorkspaceError, match="not the workspace of campaign 'second'"):
        Workspace.open(make_spec(tmp_path, "second", template="tpl"))


def test_missing_template_is_an_error(tmp_path):
    with pytest.raises(WorkspaceError, match="tpl: workspace.template is not a directory"):
        Workspace.open(make_spec(tmp_path, template="tpl"))
    assert not (tmp_path / "workspaces" / "demo").exists()


# ---------------------------------------------------------------------------------------- repo mode

def test_repo_mode_refuses_a_dirty_user_repo_and_leaves_it_untouched(tmp_path, user_repo):
    (user_repo / "config.yaml").write_text("lr: 3  # half-done edit\n")
    (user_repo / "new.py").write_text("x = 1\n")
    before = user_state(user_repo)
    with pytest.raises(WorkspaceError, match="refusing a dirty tree it does not own") as e:
        Workspace.open(make_spec(tmp_path, repo="project"))
    assert "\n" not in str(e.value)
    assert user_state(user_repo) == before
    assert (user_repo / "new.py").read_text() == "x = 1\n"
    assert git(user_repo, "worktree", "list").count("\n") == 1
    assert not (tmp_path / "workspaces" / "demo").exists()


def test_repo_mode_ignores_ignored_files_when_checking_for_a_dirty_tree(tmp_path, user_repo):
    (user_repo / "train.log").write_text("noise\n")
    with Workspace.open(make_spec(tmp_path, repo="project")) as w:
        assert w.rounds() == [0]


def test_repo_mode_works_in_a_worktree_on_a_campaign_branch_and_never_touches_the_users_tree(tmp_path, user_repo):
    user_head = git(user_repo, "rev-parse", "HEAD").strip()
    with Workspace.open(make_spec(tmp_path, repo="project")) as w:
        assert w.path == tmp_path / "workspaces" / "demo"
        assert git(w.path, "branch", "--show-current").strip() == "evolve/demo"
        assert w.head() == w.best() == w.round_commit(0) == user_head  # the campaign starts at the user's HEAD
        (w.path / "config.yaml").write_text("lr: 2\n")
        sha = w.commit_round(1, "lr 2")
        assert git(w.path, "log", "-1", "--format=%an").strip() == "evolve"
    assert git(user_repo, "branch", "--show-current").strip() == "main"
    assert git(user_repo, "rev-parse", "HEAD").strip() == user_head
    assert (user_repo / "config.yaml").read_text() == "lr: 1\n"
    assert git(user_repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert git(user_repo, "rev-parse", "evolve/demo").strip() == sha  # the branch and tags live in their repo
    assert git(user_repo, "tag", "--list").split() == ["evolve/demo/best", "evolve/demo/round-0",
                                                       "evolve/demo/round-1"]
    with Workspace.open(make_spec(tmp_path, repo="project")) as again:  # resume
        assert again.head() == sha and again.rounds() == [0, 1]


def test_repo_mode_resumes_on_its_branch_when_the_worktree_directory_was_deleted(tmp_path, user_repo):
    spec = make_spec(tmp_path, repo="project")
    with Workspace.open(spec) as w:
        (w.path / "config.yaml").write_text("lr: 2\n")
        sha = w.commit_round(1, "lr 2")
    shutil.rmtree(tmp_path / "workspaces" / "demo")
    with Workspace.open(spec) as again:
        assert again.head() == sha and again.rounds() == [0, 1]
        assert (again.path / "config.yaml").read_text() == "lr: 2\n"
    assert git(user_repo, "branch", "--show-current").strip() == "main"


def test_repo_mode_campaign_worktrees_inside_the_repo_do_not_make_it_dirty(tmp_path, user_repo):
    Workspace.open(make_spec(tmp_path, "one", repo="project", root="project/campaigns")).close()
    with Workspace.open(make_spec(tmp_path, "two", repo="project", root="project/campaigns")) as w:
        assert w.path == user_repo / "campaigns" / "two"
        assert git(w.path, "branch", "--show-current").strip() == "evolve/two"


def test_repo_mode_refuses_an_existing_directory_that_is_not_its_worktree(tmp_path, user_repo):
    (tmp_path / "workspaces" / "demo").mkdir(parents=True)
    with pytest.raises(WorkspaceError, match="not the worktree of campaign 'demo'"):
        Workspace.open(make_spec(tmp_path, repo="project"))
    assert git(user_repo, "branch", "--list").split() == ["*", "main"]


def test_repo_mode_reports_a_branch_checked_out_elsewhere_in_one_line(tmp_path, user_repo):
    git(user_repo, "checkout", "-q", "-b", "evolve/demo")
    needle = "git worktree evolve/demo failed: fatal: 'evolve/demo' is already checked out at '[^']*'$"
    with pytest.raises(WorkspaceError, match=needle) as e:
        Workspace.open(make_spec(tmp_path, repo="project"))
    assert "\n" not in str(e.value)


def test_repo_mode_needs_a_git_repository(tmp_path):
    (tmp_path / "project").mkdir()
    with pytest.raises(WorkspaceError, match="project: workspace.repo is not a git repository"):
        Workspace.open(make_spec(tmp_path, repo="project"))


# ---------------------------------------------------------------------------------------- rounds

def test_commit_round_commits_and_tags_every_round_even_an_empty_one(ws):
    (ws.path / "config.yaml").write_text("lr: 2\n")
    (ws.path / "src" / "extra.py").write_text("y = 2\n")
    assert ws.is_dirty() and ws.changed_paths() == ["config.yaml", "src/extra.py"]
    first = ws.commit_round(1, "round 1: lr 2")
    assert not ws.is_dirty() and ws.changed_paths() == []
    second = ws.commit_round(2, "round 2: nothing")
    assert first != second and ws.head() == second
    assert ws.rounds() == [0, 1, 2]
    assert ws.round_commit(1) == first and ws.round_commit(2) == second and ws.round_commit(3) is None
    assert git(ws.path, "show", "evolve/demo/round-1:src/extra.py") == "y = 2\n"
    assert git(ws.path, "log", "-1", "--format=%s", "evolve/demo/round-1").strip() == "round 1: lr 2"


def test_commit_round_is_idempotent_on_resume(ws):
    (ws.path / "config.yaml").write_text("lr: 2\n")
    sha = ws.commit_round(1, "round 1")
    # a resumed loop re-applies the edit (or half of it) and commits the same round again
    (ws.path / "config.yaml").write_text("lr: 2.5\n")
    (ws.path / "stray.txt").write_text("x\n")
    assert ws.commit_round(1, "round 1 again") == sha
    assert ws.head() == sha and not ws.is_dirty()
    assert (ws.path / "config.yaml").read_text() == "lr: 2\n"
    assert git(ws.path, "rev-list", "--count", "HEAD").strip() == "2"
    assert ws.rounds() == [0, 1]


def test_keep_moves_best_to_the_round(ws):
    (ws.path / "config.yaml").write_text("lr: 2\n")
    sha = ws.commit_round(1, "round 1")
    start = ws.best()
    assert start == ws.round_commit(0) != sha
    ws.keep(1)
    assert ws.best() == sha
    assert git(ws.path, "rev-parse", "refs/tags/evolve/demo/best").strip() == sha
    with pytest.raises(WorkspaceError, match="round 7: no such round"):
        ws.keep(7)


def test_revert_restores_best_and_removes_untracked_files_but_the_round_stays_reachable(ws):
    (ws.path / "config.yaml").write_text("lr: 2\n")
    ws.commit_round(1, "round 1")
    ws.keep(1)
    (ws.path / "config.yaml").write_text("lr: 100\n")
    (ws.path / "src" / "added.py").write_text("z = 3\n")
    losing = ws.commit_round(2, "round 2: lr 100")
    (ws.path / "src" / "scratch").mkdir()
    (ws.path / "src" / "scratch" / "tmp.py").write_text("junk\n")  # left behind by the run, never committed
    ws.revert()
    assert ws.head() == ws.best() == ws.round_commit(1)
    assert (ws.path / "config.yaml").read_text() == "lr: 2\n"
    assert not (ws.path / "src" / "added.py").exists()
    assert not (ws.path / "src" / "scratch").exists()
    assert not ws.is_dirty()
    assert ws.round_commit(2) == losing and ws.rounds() == [0, 1, 2]
    assert git(ws.path, "show", "evolve/demo/round-2:config.yaml") == "lr: 100\n"
    # the next round builds on best, not on the reverted one
    (ws.path / "config.yaml").write_text("lr: 3\n")
    ws.commit_round(3, "round 3")
    assert "+lr: 3" in ws.diff(3) and "-lr: 2" in ws.diff(3)


def test_diff_shows_the_rounds_change_against_its_parent(ws):
    (ws.path / "src" / "model.py").write_text("WIDTH = 16\n")
    ws.commit_round(1, "wider")
    diff = ws.diff(1)
    assert "diff --git a/src/model.py b/src/model.py" in diff
    assert "-WIDTH = 8" in diff and "+WIDTH = 16" in diff
    assert "config.yaml" not in diff
    assert ws.diff(0) == ""
    with pytest.raises(WorkspaceError, match="round 5: no such round"):
        ws.diff(5)


def test_changed_paths_lists_modified_deleted_and_untracked_files(ws):
    (ws.path / "config.yaml").unlink()
    (ws.path / "src" / "model.py").write_text("WIDTH = 9\n")
    (ws.path / "src" / "deep").mkdir()
    (ws.path / "src" / "deep" / "new.py").write_text("n = 1\n")
    assert ws.changed_paths() == ["config.yaml", "src/deep/new.py", "src/model.py"]


# ---------------------------------------------------------------------------------------- editable

@pytest.mark.parametrize("path", ["config.yaml", "./config.yaml", "src/model.py", "src/new.py", "data/raw/x.csv",
                                  "data"])
def test_check_editable_accepts_listed_paths_globs_and_directories(tmp_path, template, path):
    spec = make_spec(tmp_path, template="tpl", editable=("config.yaml", "src/*.py", "data/"))
    with Workspace.open(spec) as w:
        w.check_editable([path])
        w.check_editable([str(w.path / path)])  # absolute paths inside the tree are fine too


@pytest.mark.parametrize("path, needle", [
    ("scaffold.py", "scaffold.py: not editable in campaign 'demo' (workspace.editable: config.yaml, src/*.py)"),
    ("../x", "../x: outside the workspace"),
    ("src/../../demo.yaml", "src/../../demo.yaml: outside the workspace"),
    ("/etc/passwd", "/etc/passwd: outside the workspace"),
    (".", ".: outside the workspace"),
    (".git/config", ".git/config: git metadata is never editable"),
])
def test_check_editable_rejects_the_first_path_outside_the_editable_set(ws, path, needle):
    with pytest.raises(WorkspaceError) as e:
        ws.check_editable(["config.yaml", path, "also-bad.txt"])
    assert needle in str(e.value)


def test_check_editable_rejects_a_symlink_that_escapes_the_tree(tmp_path, template):
    spec = make_spec(tmp_path, template="tpl", editable=("*",))
    with Workspace.open(spec) as w:
        (w.path / "out").symlink_to(tmp_path)
        with pytest.raises(WorkspaceError, match="out/demo.yaml: outside the workspace"):
            w.check_editable(["out/demo.yaml"])
        with pytest.raises(WorkspaceError, match="git metadata is never editable"):
            w.check_editable([".git/HEAD"])  # even a catch-all glob does not open .git
        w.check_editable(["anything/at/all.txt"])


# ---------------------------------------------------------------------------------------- git hardening

def test_a_planted_hook_and_config_run_nothing_and_the_template_config_is_restored(tmp_path, ws):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.sh"
    evil.write_text(f"#!/bin/sh\ntouch {marker}\n")
    evil.chmod(0o755)
    for hook in ("pre-commit", "post-commit", "reference-transaction"):
        (ws.path / ".git" / "hooks" / hook).write_text(evil.read_text())
        (ws.path / ".git" / "hooks" / hook).chmod(0o755)
    with open(ws.path / ".git" / "config", "a") as f:
        f.write(f"[core]\n\tfsmonitor = {evil}\n\thooksPath = .git/hooks\n[filter \"x\"]\n\tclean = {evil}\n")
    (ws.path / ".gitattributes").write_text("* filter=x\n")
    (ws.path / "config.yaml").write_text("lr: 2\n")
    ws.commit_round(1, "round 1")
    assert ws.changed_paths() == [] and ws.diff(1)
    assert not marker.exists()
    assert "fsmonitor" not in (ws.path / ".git" / "config").read_text()


def test_a_changed_user_repo_config_is_refused_not_used(tmp_path, user_repo):
    with Workspace.open(make_spec(tmp_path, repo=str(user_repo), root=str(tmp_path / "ws"))) as w:
        git(user_repo, "config", "core.fsmonitor", str(tmp_path / "evil.sh"))
        with pytest.raises(WorkspaceError, match="changed while the campaign ran"):
            w.commit_round(1, "round 1")
