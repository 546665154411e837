"""The agent's git calls, hardened against the workspace they run in.

A run writes anything in its workspace, `.git/` included, and the agent then runs git there with its own
privileges. Git executes programs named by its configuration (core.fsmonitor, filter.*.clean,
diff.external, core.pager, include.path pulling in more of them) and by hook files, so a run could
make the agent's next `git add` or `git commit` run its code. Every agent git call therefore:

- reads no system or global config (GIT_CONFIG_NOSYSTEM, GIT_CONFIG_GLOBAL=/dev/null; the identity is
  given in the environment instead);
- runs no hook: core.hooksPath=/dev/null (nothing can be created under it), with fsmonitor, pager,
  editors, credential helpers and signing forced off, as GIT_CONFIG_COUNT settings, which win over any
  file;
- uses the git dir resolved when the workspace was opened (GIT_DIR, GIT_WORK_TREE), so a rewritten
  `.git` pointer file is not followed;
- and first checks the repository config (`config`, `config.worktree`) it will read: a template
  workspace's is restored to the exact text the agent wrote; the user's repository's (repo mode) is
  compared with what it was when the campaign opened it, and a change is refused (WorkspaceError), since
  it is the user's file to judge.

GitPython runs every git process through `Git.execute`, so a `Repo` whose command wrapper checks first
(GuardedRepo) covers its calls; `hardened_env()` is for git run directly (the brains' `git apply`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import git

from evolve.files import write_atomic

IDENTITY_ENV = {"GIT_AUTHOR_NAME": "evolve", "GIT_AUTHOR_EMAIL": "evolve@localhost",
                "GIT_COMMITTER_NAME": "evolve", "GIT_COMMITTER_EMAIL": "evolve@localhost"}
FORCED = {
    "core.hooksPath": "/dev/null", "core.fsmonitor": "false", "core.pager": "cat", "core.editor": "true",
    "sequence.editor": "true", "core.askPass": "true", "core.sshCommand": "false", "credential.helper": "",
    "commit.gpgSign": "false", "tag.gpgSign": "false", "gpg.program": "false", "core.attributesFile": "/dev/null",
    "core.untrackedCache": "false", "protocol.allow": "never",
}


def hardened_env() -> dict[str, str]:
    """Environment for a git process the agent runs: see the module docstring."""
    env = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0",
           "GIT_CONFIG_COUNT": str(len(FORCED)), **IDENTITY_ENV}
    for i, (key, value) in enumerate(FORCED.items()):
        env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
    return env


def template_config(name: str) -> str:
    """The whole `.git/config` of a template workspace: what `git init` writes, our identity, our mark."""
    return ("[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n"
            "[user]\n\tname = evolve\n\temail = evolve@localhost\n"
            f"[evolve]\n\tcampaign = {name}\n")


class GuardedGit(git.Git):
    """`git.Git` that calls `guard` before every git process it starts."""

    guard: Callable[[], None] | None = None

    def execute(self, command: Any, *args: Any, **kwargs: Any) -> Any:
        if self.guard is not None:
            self.guard()
        return super().execute(command, *args, **kwargs)


class GuardedRepo(git.Repo):
    GitCommandWrapperType = GuardedGit


def open_repo(path: Path | str, owned_by: str | None, refuse: type[Exception] = RuntimeError,
              pin: bool = True) -> GuardedRepo:
    """The repository at `path`, hardened and guarded. `owned_by`: the campaign whose template workspace it
    is (its config is restored), or None for the user's repository or worktree (a config change raises
    `refuse`). `pin`: give git the git dir and work tree resolved now (not for `git worktree add`, which
    sets up the new tree's own)."""
    repo = GuardedRepo(path)
    env = hardened_env()
    if pin:
        env["GIT_DIR"] = str(Path(repo.git_dir).resolve())
        if repo.working_tree_dir:
            env["GIT_WORK_TREE"] = str(Path(repo.working_tree_dir).resolve())
    repo.git.update_environment(**env)
    common = Path(repo.common_dir).resolve()
    files = [common / "config", Path(repo.git_dir).resolve() / "config.worktree"]
    if owned_by is not None:
        text = template_config(owned_by).encode()
        repo.git.guard = lambda: _restore(files[0], text)
        _restore(files[0], text)
    else:
        seen = {f: _read(f) for f in files}
        repo.git.guard = lambda: _refuse_changed(seen, refuse)
    return repo


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes() if not path.is_symlink() else b"<symlink>" + os.readlink(path).encode()
    except FileNotFoundError:
        return None


def _restore(path: Path, text: bytes) -> None:
    if _read(path) != text:  # replaced, not edited in place: a symlink planted there is not followed
        write_atomic(path, text.decode())


def _refuse_changed(seen: dict[Path, bytes | None], refuse: type[Exception]) -> None:
    for path, before in seen.items():
        if _read(path) != before:
            raise refuse(f"{path}: changed while the campaign ran (by a run, or by you); the agent runs "
                                   "no git with a config it did not see at start. Check the file, then "
                                   "`evolve campaign resume` the campaign")
