"""The run-directory contract: what every training run leaves behind for people and for triage.

    config.yaml    the resolved config
    metrics.jsonl  one JSON object per line: step, phase, train/*, eval/*, moe/*, perf/* keys
    stdout.log     everything printed (tracebacks of crashes included)
    checkpoints/   sft.pt, final.pt, step-N.pt, latest.pt
    status.json    written last: {"status", "failure": {"kind", "step", "message"} | null, "summary"}
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import yaml


class Tee:
    """Duplicate a text stream into a log file, so stdout.log holds what the user saw."""

    def __init__(self, stream: TextIO, log: TextIO):
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.log.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()
        self.log.flush()

    def isatty(self) -> bool:
        return False


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoints = self.path / "checkpoints"
        self._metrics: TextIO | None = None
        self._log: TextIO | None = None

    @staticmethod
    def default_path() -> Path:
        return Path("runs") / time.strftime("%Y%m%d-%H%M%S")

    def write_config(self, config: dict[str, Any]) -> None:
        (self.path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def capture_stdout(self, append: bool = False) -> None:
        self._log = open(self.path / "stdout.log", "a" if append else "w", buffering=1)
        sys.stdout = Tee(sys.__stdout__, self._log)

    def log_metrics(self, record: dict[str, Any]) -> None:
        if self._metrics is None:
            self._metrics = open(self.path / "metrics.jsonl", "a", buffering=1)
        self._metrics.write(json.dumps({k: _jsonable(v) for k, v in record.items()}) + "\n")

    def write_status(self, status: str, failure: dict[str, Any] | None, summary: dict[str, Any]) -> None:
        body = {"status": status, "failure": failure, "summary": {k: _jsonable(v) for k, v in summary.items()}}
        tmp = self.path / "status.json.tmp"
        tmp.write_text(json.dumps(body, indent=2) + "\n")
        os.replace(tmp, self.path / "status.json")  # atomic: readers never see half a status

    def close(self) -> None:
        if self._metrics:
            self._metrics.close()
        if self._log:
            sys.stdout.flush()
            sys.stdout = sys.__stdout__
            self._log.close()


def _jsonable(v: Any) -> Any:
    # JSON has no NaN/Inf; a non-finite metric is exactly what triage must see, so keep it as a string
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    file = Path(path) / "metrics.jsonl"
    if not file.is_file():
        return []
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
