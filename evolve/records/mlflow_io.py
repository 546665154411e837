"""What every writer to MLflow shares (the campaign's tracker and the in-repo trainer's): where the store is,
which keys MLflow accepts, and how params and metrics are cut into batches it takes.

Imports no MLflow itself: each caller passes MLflow's own `Param` / `Metric` classes, so a run that does
not track never pays for the import.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

DEFAULT_URI = "sqlite:///mlflow.db"
# MLflow's limits: keys 250 characters, param values 6000, 100 params and 1000 metrics a batch
MAX_KEY, MAX_VALUE, PARAM_BATCH, METRIC_BATCH = 250, 6000, 100, 1000


def resolve_uri(uri: str = "") -> str:
    """The store: the given URI, else $MLFLOW_TRACKING_URI, else ./mlflow.db."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def safe_key(key: str) -> str:
    """MLflow accepts letters, digits, _ - . / and space in keys; anything else would fail the whole batch."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", key)[:MAX_KEY]


def param_batches(params: dict[str, Any], param: Callable[[str, str], Any]) -> Iterator[list[Any]]:
    """Params as batches of MLflow `Param`s: keys made safe (two keys that become one keep the last value),
    values cut to MLflow's limit."""
    items = list({safe_key(k): param(safe_key(k), str(v)[:MAX_VALUE]) for k, v in params.items()}.values())
    for i in range(0, len(items), PARAM_BATCH):
        yield items[i:i + PARAM_BATCH]


def metric_items(metrics: dict[str, Any], step: int, metric: Callable[[str, float, int, int], Any],
                 now_ms: int | None = None) -> list[Any]:
    """Finite numeric metrics as MLflow `Metric`s; a string "metric" (a bug upstream) or a NaN is left out
    rather than failing the batch."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    items = []
    for k, v in metrics.items():
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(x):
            items.append(metric(safe_key(k), x, now, step))
    return items


def metric_batches(items: list[Any]) -> Iterator[list[Any]]:
    for i in range(0, len(items), METRIC_BATCH):
        yield items[i:i + METRIC_BATCH]
