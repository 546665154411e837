"""How a proposal's changes reach the workspace: YAML key sets and patches, checked before anything is written.

A brain returns data, never edits (evolve/brains/__init__.py). This applies it: every key set in memory
first, each edited file checked by the workload's validator, then each file written atomically, so a rejected
proposal leaves the workspace as it was. Paths are the workspace's own: one that resolves outside it is refused.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from evolve.files import write_atomic
from evolve.workspace import gitguard

if TYPE_CHECKING:
    from evolve.brains import Change

# file (relative to the workspace), its edited tree, its path -> raise ValueError naming the key (the workload's)
Validator = Callable[[str, dict[str, Any], Path], None]


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """tree["a"]["b"] = value for key "a.b", creating sections as needed."""
    *parents, leaf = key.split(".")
    for part in parents:
        node = tree.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"{key}: {part} is not a section")
        tree = node
    tree[leaf] = value


def apply_changes(workspace_dir: Path, changes: list[Change], validate: Validator | None = None) -> list[str]:
    """Apply key sets and patches to files in `workspace_dir`; return the changed paths (relative).

    All key sets are applied in memory and checked first (`validate`: the workload's check of each edited
    file), then each file is written atomically (temp file + rename), so a rejected proposal leaves the
    workspace untouched. A key set the check refuses is a ValueError whose one line names the key."""
    root = Path(workspace_dir).resolve()
    trees: dict[str, dict[str, Any]] = {}
    touched: dict[str, list[str]] = {}
    patches: list[Change] = []
    for c in changes:
        path = _inside(root, c.file)
        if c.patch:
            patches.append(c)
            continue
        if not c.key:
            raise ValueError(f"{c.file}: a change needs a key or a patch")
        if c.file not in trees:
            tree = yaml.safe_load(path.read_text()) if path.is_file() else {}
            trees[c.file] = tree if isinstance(tree, dict) else {}
        set_dotted(trees[c.file], c.key, c.value)
        touched.setdefault(c.file, []).append(f"{c.key}={c.value!r}")
    for name, tree in trees.items():
        try:
            if validate is not None:
                validate(name, tree, _inside(root, name))
        except ValueError as e:
            raise ValueError(f"{name}: {', '.join(touched[name])} rejected: {e}") from None
    for name, tree in trees.items():
        path = _inside(root, name)
        path.parent.mkdir(parents=True, exist_ok=True)  # .evolve/launch.yaml on its first fix
        write_atomic(path, yaml.safe_dump(tree, sort_keys=False))
    for c in patches:
        _apply_patch(root, c)
    return list(dict.fromkeys([*trees, *(c.file for c in patches)]))


def _inside(root: Path, name: str) -> Path:
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"{name}: outside the workspace")
    return path


def _apply_patch(root: Path, c: Change) -> None:
    if c.patch.startswith(("--- ", "diff ")):
        # git apply checks the whole diff before touching anything, and works outside a repository too
        # hardened: no system/global config, no hooks or fsmonitor (the tree may be a run's workspace)
        p = subprocess.run(["git", "apply", "--whitespace=nowarn", "-"], cwd=root, input=c.patch,
                           capture_output=True, text=True, env={**os.environ, **gitguard.hardened_env()})
        if p.returncode:
            first = (p.stderr.strip().splitlines() or ["git apply failed"])[0]
            raise ValueError(f"{c.file}: patch does not apply: {first}")
    else:
        write_atomic(_inside(root, c.file), c.patch)
