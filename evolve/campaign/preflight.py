"""Everything `evolve campaign start` checks before it creates anything, and the undo of a start that failed.

A start creates five kinds of thing: the campaign home and folder, the workspace (a directory, or a
worktree with a branch and tags in the user's repository), the memory file's folder, and the MLflow
store. Each is checked here first, with a one-line `PreflightError` naming the key and saying how to fix
it: a folder that would have to be made under a file or on a read-only filesystem, a memory file that is
a directory or is not text, a tracking URI whose scheme MLflow does not know, whose SQLite folder is
missing or whose server does not answer within a few seconds.

What can still fail after the checks (the MLflow server goes away, a disk fills) is undone by `Undo`,
which removes exactly what this start made, so a failed start leaves nothing behind: no campaign folder,
no workspace, no branch, no database file that was not there before.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from evolve.files import FileFormatError, read_text

HTTP_TIMEOUT_S = 5.0  # an MLflow server answers in milliseconds; a dead or firewalled one must not stall a start
SQLITE_MAGIC = b"SQLite format 3\x00"


class PreflightError(ValueError):
    """Something a campaign start needs is not usable (one line: the key, the path, the fix)."""


# ---------------------------------------------------------------------------------------- folders and files

def check_creatable_dir(path: Path, key: str, target: Path | None = None) -> None:
    """`path` is a directory, or one can be made there: every existing ancestor is a directory, and the
    nearest one accepts a new entry (tried, since permissions, read-only mounts and /proc all say no in
    different ways; the probe is removed and the folder's mtime put back). `target` is what the messages
    name (a file to be made in `path`), `path` itself by default."""
    target = target or path
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise PreflightError(f"{key}: {target} exists and is not a directory; remove it or choose another path"
                                 if target == path else f"{key}: {target} cannot be created: {path} is a file, "
                                 "not a directory")
        _probe(path, key, target)
        return
    ancestor = path.parent
    while not (ancestor.exists() or ancestor.is_symlink()):
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        what = "a link to nothing" if ancestor.is_symlink() and not ancestor.exists() else "a file, not a directory"
        raise PreflightError(f"{key}: {target} cannot be created: {ancestor} is {what}")
    _probe(ancestor, key, target)


def _probe(folder: Path, key: str, target: Path) -> None:
    try:
        before = folder.stat()
        probe = tempfile.mkdtemp(prefix=".evolve-preflight.", dir=folder)
    except OSError as e:
        raise PreflightError(f"{key}: {target} cannot be created in {folder} ({e.strerror or e}); choose a folder "
                             "you can write to") from None
    os.rmdir(probe)
    with contextlib.suppress(OSError):
        os.utime(folder, ns=(before.st_atime_ns, before.st_mtime_ns))


def check_writable_file(path: Path, key: str, text: bool = True) -> None:
    """`path` is a regular file (readable text when `text`), or can be created."""
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise PreflightError(f"{key}: {path} is not a regular file (a directory?); give a file path")
        if text:
            try:
                read_text(path, limit=1 << 30)
            except (OSError, FileFormatError) as e:
                raise PreflightError(f"{key}: {e}") from None
        return
    check_creatable_dir(path.parent, key, target=path)


# ---------------------------------------------------------------------------------------- tracking

def check_tracking_uri(uri: str) -> None:
    """The MLflow store at `uri` can be opened, checked without creating it. Schemes MLflow reaches through a
    plugin or a database driver are left to MLflow (they need credentials this check does not have)."""
    scheme = uri_scheme(uri)
    check = _URI_CHECKS.get(scheme)
    if check is not None:
        if why := check(uri):
            raise PreflightError(f"tracking.uri: {uri!r} {why}")
        return
    if scheme not in _OPENED_BY_MLFLOW | _plugin_schemes():
        raise PreflightError(f"tracking.uri: {uri!r} has a scheme MLflow cannot open ({scheme!r}); use "
                             "sqlite:///path/to/mlflow.db, http(s)://host:port or a directory")


def uri_scheme(uri: str) -> str:
    """The tracking store kind of `uri` as MLflow picks it: the scheme without a `+driver`, `databricks`
    for the bare word, "" for a plain path (MLflow's file store)."""
    if uri in _OPENED_BY_MLFLOW:
        return uri
    scheme = urllib.parse.urlparse(uri).scheme.split("+")[0].lower()
    return "" if len(scheme) == 1 else scheme  # a Windows drive letter is a path


def _sqlite(uri: str) -> str:
    rest = uri.split(":", 1)[1].split("?", 1)[0]
    if rest in ("//", "///", "///:memory:"):
        return "is an in-memory database, which forgets the campaign when the agent exits; give a file"
    if not rest.startswith("///"):
        return "is not a SQLite file URI; write sqlite:///relative.db or sqlite:////absolute/path.db"
    name = rest[3:]
    path = Path(name)
    if path.exists() or path.is_symlink():
        if not path.is_file():
            return f"names {path}, which is not a file"
        try:
            with open(path, "rb") as f:
                head = f.read(len(SQLITE_MAGIC))
        except OSError as e:
            return f"names {path}, which cannot be read ({e.strerror or e})"
        if head and head != SQLITE_MAGIC:
            return f"names {path}, which is not a SQLite database; point it at a new file or an MLflow database"
        return _mlflow_tables(path) if head else ""
    if not path.parent.is_dir():
        if path.parent.exists():
            return f"is under {path.parent}, which is not a directory"
        return f"is in a folder that does not exist ({path.parent}); create it first, or choose another path"
    try:
        check_creatable_dir(path.parent, "tracking.uri", target=path)
    except PreflightError as e:
        return str(e).removeprefix("tracking.uri: ")
    return ""


def _mlflow_tables(path: Path) -> str:
    """"" when the SQLite database at `path` is MLflow's or still empty: MLflow would otherwise add its
    tables to someone else's database, or fail half-way through migrating it."""
    wal = path.with_name(path.name + "-wal").exists()  # without one, `immutable` reads and makes no -shm file
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro" + ("" if wal else "&immutable=1"), uri=True)
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.Error as e:
        return f"names {path}, which cannot be read as a SQLite database ({e})"
    if tables and not {"alembic_version", "experiments", "runs"} <= tables:
        return (f"names {path}, a SQLite database that is not MLflow's (tables: {', '.join(sorted(tables)[:5])}); "
                "point it at a new file or an MLflow database")
    return ""


def _http(uri: str) -> str:
    parsed = urllib.parse.urlparse(uri)
    try:
        if not parsed.hostname or (parsed.port is not None and not 0 < parsed.port < 65536):
            raise ValueError
    except ValueError:
        return "has no valid host:port; e.g. http://127.0.0.1:5000"
    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S):  # noqa: S310 (http(s) only, checked above)
            return ""
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return f"answered 404 at {url}: not an MLflow tracking server"
        return ""  # it answers: authentication and the rest are MLflow's to negotiate
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        return f"cannot be reached within {HTTP_TIMEOUT_S:.0f} s ({reason}); start the server or fix the URI"


def _directory(uri: str) -> str:
    parsed = urllib.parse.urlparse(uri)
    path = Path(urllib.parse.unquote(parsed.path) if parsed.scheme else uri)
    try:
        check_creatable_dir(path, "tracking.uri")
    except PreflightError as e:
        return str(e).removeprefix("tracking.uri: ")
    return ""


_URI_CHECKS: dict[str, Callable[[str], str]] = {"sqlite": _sqlite, "http": _http, "https": _http,
                                                "file": _directory, "": _directory}
_OPENED_BY_MLFLOW = {"postgresql", "mysql", "mssql", "databricks", "databricks-uc", "uc"}


def _plugin_schemes() -> set[str]:
    return {ep.name for ep in entry_points(group="mlflow.tracking_store")}


def store_files(uri: str) -> list[Path]:
    """The local files or folders the MLflow store at `uri` would create (what an undo may remove)."""
    scheme = uri_scheme(uri)
    if scheme == "sqlite" and uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
        name = Path(uri[len("sqlite:///"):].split("?", 1)[0])
        return [name, *(name.with_name(name.name + s) for s in ("-journal", "-wal", "-shm"))]
    if scheme in ("", "file"):
        return [Path(urllib.parse.unquote(urllib.parse.urlparse(uri).path) if scheme == "file" else uri)]
    return []


# ---------------------------------------------------------------------------------------- undo

class Undo:
    """What a start made, removed again if it fails. Only what this start made: a path is registered once
    it is known to be ours, and the folders above it only while empty (another start may share them)."""

    def __init__(self) -> None:
        self._steps: list[Callable[[], None]] = []

    def parents(self, path: Path) -> None:
        """On undo, remove the folders above `path` that do not exist yet, while they are empty."""
        missing, p = [], Path(path).parent
        while not (p.exists() or p.is_symlink()):
            missing.append(p)
            p = p.parent

        def rmdirs() -> None:
            for folder in missing:  # deepest first
                try:
                    folder.rmdir()
                except OSError:
                    return  # not empty (or not there): someone else's now
        self._steps.append(rmdirs)

    def remove(self, path: Path) -> None:
        """On undo, remove `path` (a file or a whole tree): call it only for a path this start made."""
        self._steps.append(lambda: _remove(Path(path)))

    def call(self, step: Callable[[], None]) -> None:
        self._steps.append(step)

    def run(self) -> None:
        for step in reversed(self._steps):
            with contextlib.suppress(Exception):  # undo as much as can be undone; the first error is the story
                step()
        self._steps.clear()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
