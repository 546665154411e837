"""Small file primitives the agent relies on: an atomic write, and reads of files that launched code wrote.

A campaign can be killed at any instant, and what it left on disk is what resume trusts. So every file
the agent writes (workspace edits, run markers, campaign metadata, reports) is written beside its
target, synced, and renamed over it: a reader or a resume sees the old file or the new one, never half.

What a run leaves in its directory is untrusted input: `read_text` and `load_json_object` refuse a FIFO, a
device, a huge file or bytes that are not UTF-8 with one line naming the file, so the caller can make it
that round's failure; `read_json` is the forgiving read of files the agent wrote itself.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO


def write_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp makes the file private; keep the mode a replaced file had (an edited script stays
    # executable), else the usual 644
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


MAX_READ_BYTES = 16 << 20  # a results or status file is a few KB; more is not one a run meant to write


class FileFormatError(ValueError):
    """A file that is there but is not what it should be (one line naming the file and what is wrong)."""


def open_regular(path: str | Path) -> BinaryIO:
    """`path` opened for binary reading if it is a regular file. FileNotFoundError when it is missing;
    FileFormatError when it is a directory, a FIFO or a device.

    Run directories are written by launched code, so a file there may be a FIFO (an open would wait for a
    writer forever) or a link to /dev/zero (a read would never end): it is opened without blocking and
    checked before a byte is read."""
    path = Path(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise FileFormatError(f"{path}: {'is a directory' if stat.S_ISDIR(mode) else 'not a regular file'}, "
                                  "expected a file")
        return os.fdopen(os.dup(fd), "rb")
    finally:
        os.close(fd)


def read_text(path: str | Path, limit: int = MAX_READ_BYTES) -> str:
    """The UTF-8 text of a regular file (see `open_regular`); FileFormatError when it is larger than `limit`
    bytes or not UTF-8."""
    with open_regular(path) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FileFormatError(f"{path}: larger than {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise FileFormatError(f"{path}: line {line}: not UTF-8 text (byte {e.object[e.start]:#04x})") from None


def decode_line(raw: bytes, path: str | Path, number: int) -> str:
    """One line of a streamed file as text; FileFormatError naming the file and line when it is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FileFormatError(f"{path}: line {number}: not UTF-8 text (byte {e.object[e.start]:#04x})") from None


def load_json_object(path: str | Path) -> dict[str, Any]:
    """The JSON object in `path`, {} when the file is missing; FileFormatError (one line naming the file)
    when it is unreadable, not JSON, or JSON but not an object."""
    path = Path(path)
    try:
        text = read_text(path)
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise FileFormatError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise FileFormatError(f"{path}: not valid JSON ({e.msg}, line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise FileFormatError(f"{path}: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise FileFormatError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_json(path: str | Path) -> dict[str, Any]:
    """The JSON object in `path`; {} when it is missing, unreadable or not an object (a run that died early)."""
    try:
        return load_json_object(path)
    except (OSError, ValueError):
        return {}
