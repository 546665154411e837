"""The git workspace a campaign edits: every round is a commit, keep/revert is a ref move.

Git is the campaign's undo log. Each round's edit is committed and tagged, the best round so far is a
tag that moves, and a losing round is undone with a hard reset to it -- but its tag stays, so every
tried change remains reachable for the report and for `diff(n)`.

Two ways to get a working tree, both ending at `<root>/<name>` on a branch `evolve/<name>`:

- template: the template directory is copied there and becomes a fresh git repository that the campaign
  owns, marked by the local git config `evolve.campaign = <name>`. The copy is built in a temporary
  directory and renamed into place, so a crash never leaves a half-made workspace behind.
- repo: the user's existing repository. Its working tree is never touched: the campaign works in a
  separate `git worktree` on a new branch, and refuses to start from a tree with uncommitted changes
  (they would silently be left out of every round). Only refs are added to the user's repository.

Refs, all lightweight tags (`git tag -l 'evolve/<name>/*'` lists a campaign):
    refs/tags/evolve/<name>/round-<n>   the commit of round n (round-0 = the starting point); never moved
    refs/tags/evolve/<name>/best        the best round so far; moved by keep(n)

Every git process runs through evolve/workspace/gitguard.py: the runs write in this tree, `.git/` included, so no hook
and no program named in a config file the agent did not write ever runs (see there).

Opening an existing workspace of the same campaign resumes it; every method is safe to repeat after a
crash (commit_round(n) with an existing round-n tag returns that commit and does not commit again).
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import shutil
import tempfile
from pathlib import Path

import git
import yaml

from evolve.campaign.spec import CampaignSpec
from evolve.workloads.base import LAUNCH_FILE
from evolve.workspace import gitguard

# Commits take their identity from these, so the user's repository needs no config (and global is ignored).
_IDENTITY_ENV = gitguard.IDENTITY_ENV


class WorkspaceError(RuntimeError):
    """A user-facing workspace problem (one line)."""


class Workspace:
    def __init__(self, repo: git.Repo, spec: CampaignSpec) -> None:
        self.repo = repo
        self.spec = spec
        self.name = spec.name
        self.path = Path(repo.working_tree_dir)
        repo.git.update_environment(**_IDENTITY_ENV)

    # ------------------------------------------------------------------------------------ opening

    @classmethod
    def open(cls, spec: CampaignSpec) -> Workspace:
        """Create the campaign's working tree, or reopen it (resume) if this campaign already made it."""
        root = Path(spec.workspace.root)
        path = root / spec.name
        if spec.workspace.template:
            repo = _open_template(spec, path)
        else:
            repo = _open_worktree(spec, path)
        return cls(repo, spec)

    def close(self) -> None:
        self.repo.close()

    def discard(self, keep_tags: set[str] = frozenset()) -> None:
        """Undo the `open` of a new campaign whose start failed, and close: a template copy is deleted; a
        worktree is removed with its branch and the campaign's tags (but `keep_tags`, which were there
        before), so the user's repository is left as it was."""
        tags = {t.name for t in self.repo.tags if t.name.startswith(f"evolve/{self.name}/")} - set(keep_tags)
        self.close()
        if self.spec.workspace.template:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        with gitguard.open_repo(self.spec.workspace.repo, owned_by=None, refuse=WorkspaceError, pin=False) as user:
            user.git.worktree("remove", "--force", str(self.path))
            user.git.branch("-D", f"evolve/{self.name}")
            if tags:
                user.git.tag("-d", *sorted(tags))

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ state

    def head(self) -> str:
        return self.repo.head.commit.hexsha

    def is_dirty(self) -> bool:
        return self.repo.is_dirty(untracked_files=True)

    def changed_paths(self) -> list[str]:
        """Paths (relative, '/'-separated) that differ from HEAD: modified, deleted or untracked."""
        out = self.repo.git.status("--porcelain", "-z", "--untracked-files=all")
        entries = out.split("\0")
        paths, i = set(), 0
        while i < len(entries):
            entry = entries[i]
            i += 1
            if not entry:
                continue
            paths.add(entry[3:])
            if entry[0] in "RC":  # a staged rename/copy is followed by its source path
                paths.add(entries[i])
                i += 1
        return sorted(paths)

    def check_editable(self, paths: list[str] | tuple[str, ...]) -> None:
        """Raise WorkspaceError naming the first path the spec does not let the agent edit.

        Globs use fnmatch rules (`*` also crosses '/'), and a directory entry covers everything under it.
        """
        top = self.path.resolve()
        for p in paths:
            rel = _relative(p, self.path)
            # resolve() also follows symlinks, so `link/x` pointing out of the tree is caught here
            inside = rel is not None and (top / rel).resolve().is_relative_to(top)
            if not inside:
                raise WorkspaceError(f"{p}: outside the workspace {self.path}; only paths inside it may be edited")
            if rel == ".git" or rel.startswith(".git/"):
                raise WorkspaceError(f"{p}: git metadata is never editable")
            if rel == LAUNCH_FILE:
                continue  # the agent's own launch fixes (workloads/base.py): editable in every campaign
            if not any(_matches(rel, pat) for pat in self.spec.workspace.editable):
                raise WorkspaceError(f"{p}: not editable in campaign {self.name!r} "
                                     f"(workspace.editable: {', '.join(self.spec.workspace.editable)})")

    # ------------------------------------------------------------------------------------ rounds

    def commit_round(self, n: int, message: str) -> str:
        """Commit everything in the tree as round n and tag it; returns the commit sha.

        Every round gets a commit, even one that changed nothing, so round ids and commits stay one-to-one.
        If round n is already tagged (resume after a crash), the tree is put back at that commit instead.
        """
        if n < 0:
            raise WorkspaceError(f"round {n}: round numbers start at 0")
        done = self.round_commit(n)
        if done is not None:
            if self.head() != done or self.is_dirty():
                self._reset_hard(done)
            return done
        self.repo.git.add(A=True)
        # --no-verify: the user's hooks (linters, formatters) must not veto or rewrite an experiment;
        # --no-gpg-sign: a signing setup that needs a passphrase would hang an unattended campaign.
        self.repo.git.commit("--allow-empty", "--no-verify", "--no-gpg-sign", "-m", message)
        sha = self.head()
        self.repo.create_tag(_round_tag(self.name, n), ref=sha)
        return sha

    def keep(self, n: int) -> None:
        """Make round n the best so far."""
        sha = self._require_round(n)
        self.repo.create_tag(_best_tag(self.name), ref=sha, force=True)

    def revert(self) -> None:
        """Put the tree back at the best round: tracked files reset, untracked files removed.

        The branch moves back to best, but the reverted round's tag keeps its commit reachable.
        """
        self._reset_hard(self.best())

    def reset(self, sha: str) -> None:
        """Put the tree at commit `sha` (a round of the tree search's choosing), as revert() puts it at best."""
        if self.head() != sha or self.is_dirty():
            self._reset_hard(sha)

    def read_at(self, sha: str, path: str) -> str | None:
        """File `path` (relative to the workspace) as commit `sha` holds it; None when it holds no such file."""
        try:
            return self.repo.git.show(f"{sha}:./{path}")  # ./: relative to the tree, wherever the repo root is
        except git.GitCommandError:
            return None

    def best(self) -> str:
        ref = self._tag(_best_tag(self.name))
        if ref is None:
            raise WorkspaceError(f"{self.path}: tag {_best_tag(self.name)} is missing; the workspace is damaged")
        return ref

    def round_commit(self, n: int) -> str | None:
        return self._tag(_round_tag(self.name, n))

    def rounds(self) -> list[int]:
        pattern = re.compile(rf"evolve/{re.escape(self.name)}/round-(\d+)")
        found = (pattern.fullmatch(t.name) for t in self.repo.tags)
        return sorted(int(m.group(1)) for m in found if m)

    def diff(self, n: int) -> str:
        """Unified diff of round n against its parent commit (the round it was built on).

        Round 0 is the starting point, not a change, so its diff is empty.
        """
        sha = self._require_round(n)
        commit = self.repo.commit(sha)
        if n == 0 or not commit.parents:
            return ""
        return self.repo.git.diff(commit.parents[0].hexsha, sha, "--no-color", "--no-ext-diff")

    # ------------------------------------------------------------------------------------ helpers

    def _tag(self, name: str) -> str | None:
        try:
            return self.repo.commit(f"refs/tags/{name}").hexsha
        except (git.BadName, ValueError):
            return None

    def _require_round(self, n: int) -> str:
        sha = self.round_commit(n)
        if sha is None:
            raise WorkspaceError(f"round {n}: no such round in campaign {self.name!r} (rounds: {self.rounds()})")
        return sha

    def _reset_hard(self, sha: str) -> None:
        self.repo.head.reset(sha, index=True, working_tree=True)
        # -d: untracked directories too; ignored files (caches, build outputs) are left alone
        self.repo.git.clean("-f", "-d")


def campaign_tags(spec: CampaignSpec) -> set[str]:
    """The tags of campaign `spec.name` already in the user's repository (repo mode; empty otherwise)."""
    if not spec.workspace.repo:
        return set()
    try:
        with git.Repo(spec.workspace.repo) as user:  # refs read by GitPython itself: no git process runs
            return {t.name for t in user.tags if t.name.startswith(f"evolve/{spec.name}/")}
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return set()


def _round_tag(name: str, n: int) -> str:
    return f"evolve/{name}/round-{n}"


def _best_tag(name: str) -> str:
    return f"evolve/{name}/best"


def _relative(p: str | os.PathLike, top: Path) -> str | None:
    """`p` as a normalised '/'-separated path relative to `top`, or None if it points outside."""
    q = Path(p)
    if q.is_absolute():
        try:
            q = q.relative_to(top)
        except ValueError:
            try:
                q = q.resolve().relative_to(top.resolve())
            except ValueError:
                return None
    rel = posixpath.normpath(q.as_posix())
    if rel == "." or rel == ".." or rel.startswith("../"):
        return None
    return rel


def _matches(rel: str, pattern: str) -> bool:
    pattern = posixpath.normpath(pattern.strip())
    return fnmatch.fnmatchcase(rel, pattern) or rel.startswith(pattern.rstrip("/") + "/")


# ---------------------------------------------------------------------------------------- template mode

def _open_template(spec: CampaignSpec, path: Path) -> git.Repo:
    name, template = spec.name, Path(spec.workspace.template)
    if path.exists():
        repo = _owned_repo(path, name)
        if repo is None:
            raise WorkspaceError(f"{path}: exists and is not the workspace of campaign {name!r}; "
                                 "choose another campaign name or remove the directory")
        return repo
    if not template.is_dir():
        raise WorkspaceError(f"{template}: workspace.template is not a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=path.parent))
    try:
        copy_template(template, tmp)
        repo = git.Repo.init(tmp, initial_branch=f"evolve/{name}")
        # the whole config, identity and the ownership mark that resume checks; restored before every git call
        (Path(repo.git_dir) / "config").write_text(gitguard.template_config(name))
        repo.close()
        repo = gitguard.open_repo(tmp, owned_by=name, refuse=WorkspaceError)
        # the trainer's own bytecode would otherwise be committed into every round
        (Path(repo.git_dir) / "info").mkdir(exist_ok=True)
        (Path(repo.git_dir) / "info" / "exclude").write_text("__pycache__/\n*.pyc\n")
        repo.git.add(A=True)
        repo.git.commit("--allow-empty", "--no-verify", "--no-gpg-sign", "-m",
                        f"evolve: start campaign {name} from template {template}")
        repo.create_tag(_round_tag(name, 0), ref=repo.head.commit)
        repo.create_tag(_best_tag(name), ref=repo.head.commit)
        repo.close()
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return gitguard.open_repo(path, owned_by=name, refuse=WorkspaceError)


TEMPLATE_MARK = ".evolve-template.yaml"  # `extends: ../other`: that template first, then this one's files over it


def copy_template(template: Path, dest: Path, depth: int = 0) -> None:
    """Copy a template into `dest`. A template that `extends` another (a broken variant of a working one)
    holds only the files that differ: the base is copied first and these files over it."""
    mark = template / TEMPLATE_MARK
    if mark.is_file():
        raw = yaml.safe_load(mark.read_text()) or {}
        if not isinstance(raw, dict) or set(raw) != {"extends"} or not isinstance(raw["extends"], str):
            raise WorkspaceError(f"{mark}: expected one key, `extends: <template directory>`, got {raw!r}")
        base = (template / raw["extends"]).resolve()
        if depth >= 4 or not base.is_dir():
            raise WorkspaceError(f"{mark}: extends {raw['extends']!r}: " +
                                 ("templates extend too deeply (a cycle?)" if depth >= 4 else "not a directory"))
        copy_template(base, dest, depth + 1)
    shutil.copytree(template, dest, dirs_exist_ok=True, symlinks=True,
                    ignore=shutil.ignore_patterns(".git", "__pycache__", TEMPLATE_MARK))


def _owned_repo(path: Path, name: str) -> git.Repo | None:
    """The repository at `path` if campaign `name` made it (its own .git, carrying the mark)."""
    if not (path / ".git").is_dir():
        return None
    repo = git.Repo(path)  # read by GitPython itself: no git process, nothing from the config runs
    with repo.config_reader("repository") as cfg:
        mark = cfg.get_value("evolve", "campaign", default="")
    repo.close()
    if mark != name:
        return None
    return gitguard.open_repo(path, owned_by=name, refuse=WorkspaceError)


# ---------------------------------------------------------------------------------------- repo mode

def _open_worktree(spec: CampaignSpec, path: Path) -> git.Repo:
    name, branch = spec.name, f"evolve/{spec.name}"
    try:
        user = gitguard.open_repo(spec.workspace.repo, owned_by=None, refuse=WorkspaceError, pin=False)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise WorkspaceError(f"{spec.workspace.repo}: workspace.repo is not a git repository") from None
    try:
        if user.bare:
            raise WorkspaceError(f"{spec.workspace.repo}: workspace.repo is a bare repository; give a checkout")
        if path.exists():
            if _worktrees(user).get(path.resolve()) != f"refs/heads/{branch}":
                raise WorkspaceError(f"{path}: exists and is not the worktree of campaign {name!r}; "
                                     "choose another campaign name or remove the directory")
            return gitguard.open_repo(path, owned_by=None, refuse=WorkspaceError)  # resume
        if branch in user.heads:
            add = ["add", str(path), branch]  # resume a campaign whose worktree directory was removed
        else:
            _refuse_dirty(user)  # only a new branch starts from the user's tree
            if not user.head.is_valid():
                raise WorkspaceError(f"{spec.workspace.repo}: workspace.repo has no commits yet; commit one first")
            add = ["add", str(path), "-b", branch]
        user.git.worktree("prune")  # forget worktrees whose directories were deleted
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            user.git.worktree(*add)
        except git.GitCommandError as e:  # e.g. the branch is checked out elsewhere
            # GitPython wraps git's message as "\n  stderr: '<message>'"
            why = (e.stderr or "").strip().removeprefix("stderr: '").removesuffix("'").splitlines()
            raise WorkspaceError(f"{path}: git worktree {' '.join(add[2:])} failed: "
                                 f"{why[-1] if why else e.status}") from None
        repo = gitguard.open_repo(path, owned_by=None, refuse=WorkspaceError)
        for tag in (_round_tag(name, 0), _best_tag(name)):
            if tag not in repo.tags:
                repo.create_tag(tag, ref=repo.head.commit)
        return repo
    finally:
        user.close()


def _refuse_dirty(user: git.Repo) -> None:
    # The campaign branches from HEAD; uncommitted work would be left out of every round without a word.
    top = Path(user.working_tree_dir).resolve()
    args = ["--porcelain", "--untracked-files=normal", "--", "."]
    for tree in _worktrees(user):
        if tree != top and tree.is_relative_to(top):
            # campaign worktrees under a root inside this repo are ours, not the user's changes
            args.append(f":(exclude){tree.relative_to(top).as_posix()}")
    lines = user.git.status(*args).splitlines()
    if lines:
        raise WorkspaceError(f"{top}: refusing a dirty tree it does not own ({len(lines)} uncommitted or untracked "
                             f"path(s), e.g. {lines[0][3:]}); commit or stash them, then start again")


def _worktrees(user: git.Repo) -> dict[Path, str | None]:
    """Every worktree of `user` (the main one included) and the branch checked out there."""
    trees: dict[Path, str | None] = {}
    tree = None
    for line in user.git.worktree("list", "--porcelain").splitlines():
        if line.startswith("worktree "):
            tree = Path(line[len("worktree "):]).resolve()
            trees[tree] = None
        elif line.startswith("branch ") and tree is not None:
            trees[tree] = line[len("branch "):]
    return trees
