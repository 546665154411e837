"""The labelled triage corpus: failure reports modelled on public issue threads, split by thread.

tests/fixtures/triage_corpus/{dev,test}/*.yaml, one case a file:

    url: https://github.com/<owner>/<repo>/issues/<n>   the thread the case is modelled on
    framework: verl                                      what produced it
    kind: cuda_oom                                       the root cause, from the closed vocabulary
    also: [dist_timeout]                                 optional: kinds that followed from it
    form: log | prose | mixed                            machine output, a user's words, or both
    text: |                                              the report

A thread's cases all sit in one half, chosen by a hash of its URL, so no thread is seen by both the
rules and classifier (dev) and the measurement (test). `place` puts new cases where they belong.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from evolve.triage.vocabulary import KINDS

CORPUS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "triage_corpus"
SPLITS = ("dev", "test")
FORMS = ("log", "prose", "mixed")
_KEYS = {"url", "framework", "kind", "also", "form", "text"}
_THREAD = re.compile(r"^https://github\.com/[\w.-]+/[\w.-]+/(issues|pull|discussions)/\d+$")


@dataclass
class Case:
    name: str
    url: str
    framework: str
    kind: str
    form: str
    text: str
    also: list[str] = field(default_factory=list)
    split: str = ""


def split_of(url: str) -> str:
    """dev or test, fixed by the thread: the same URL always lands in the same half."""
    return SPLITS[hashlib.sha256(url.encode()).digest()[0] % 2]


def read_case(path: Path) -> Case:
    """One case file, strictly: an unknown key, a kind outside the vocabulary or a URL that is not an
    issue thread is a ValueError naming the file."""
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping")
    if unknown := set(raw) - _KEYS:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)} (allowed: {', '.join(sorted(_KEYS))})")
    if missing := {"url", "framework", "kind", "form", "text"} - set(raw):
        raise ValueError(f"{path}: missing {sorted(missing)}")
    url = str(raw["url"]).strip().split("#")[0]
    if not _THREAD.match(url):
        raise ValueError(f"{path}: url {url!r} is not a GitHub issue, pull request or discussion")
    also = raw.get("also") or []
    for kind in [raw["kind"], *also]:
        if kind not in KINDS or kind == "unknown":
            raise ValueError(f"{path}: kind {kind!r} is not in the vocabulary")
    if raw["form"] not in FORMS:
        raise ValueError(f"{path}: form {raw['form']!r} is not one of {FORMS}")
    if not str(raw["text"]).strip():
        raise ValueError(f"{path}: empty text")
    return Case(path.stem, url, str(raw["framework"]), raw["kind"], raw["form"], str(raw["text"]),
                [a for a in also if a != raw["kind"]], path.parent.name)


def load(split: str | None = None, root: Path = CORPUS) -> list[Case]:
    """The cases of one half (or both), in file-name order."""
    halves = [split] if split else list(SPLITS)
    return [read_case(p) for half in halves for p in sorted((root / half).glob("*.yaml"))]


def place(files: list[Path], root: Path = CORPUS) -> dict[str, int]:
    """Move new case files into the half their thread belongs to; returns how many went where."""
    moved = dict.fromkeys(SPLITS, 0)
    for path in files:
        case = read_case(path)
        half = split_of(case.url)
        (root / half).mkdir(parents=True, exist_ok=True)
        target = root / half / path.name
        if target.exists():
            raise ValueError(f"{target}: exists; rename {path} first")
        path.rename(target)
        moved[half] += 1
    return moved
