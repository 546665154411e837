"""What the campaign graph carries from node to node, and what it is handed at run time.

`RoundState` is checkpointed to SQLite after every node, so it holds only ids, paths and numbers: the
round in progress, its commit and run directory, the verdict and the best round so far. Everything
bulky lives where people look for it -- diagnoses in the run directory, lessons in the memory file,
rounds in the ledger -- and nodes read it from there.

`Campaign` is the run-time context (LangGraph's `context_schema`): the live objects a node works with.
It is rebuilt from the campaign directory each time the process starts, never checkpointed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from evolve.campaign.search import Greedy, Search

if TYPE_CHECKING:
    from evolve.brains import Brain
    from evolve.campaign.progress import Progress
    from evolve.campaign.spec import CampaignSpec
    from evolve.records.ledger import Ledger
    from evolve.records.memory import Memory
    from evolve.records.tracking import NullTracker
    from evolve.triage import Playbook
    from evolve.workloads.base import Workload
    from evolve.workspace.repo import Workspace


class RoundState(TypedDict, total=False):
    round: int  # the round in progress, from 1; 0 before the first plan
    parent: str  # the commit the round builds on (the best round when planned, or the tree search's node)
    proposal: dict[str, Any]  # Proposal.to_dict(): a few key sets, or patches the brain wrote
    commit: str  # the round's own commit (tag evolve/<name>/round-<n>)
    run_dir: str
    status: str  # the run's status: succeeded | failed | timeout
    kind: str  # the diagnosis kind
    objective: float | None
    verdict: str  # keep | revert | crash
    best_round: int  # 0 = the starting point (nothing kept yet)
    best_objective: float | None
    stop: str  # why the campaign ended; empty while it runs


@dataclass
class CampaignPaths:
    """Where a campaign keeps its own files: `<home>/campaigns/<name>/`."""

    dir: Path

    @property
    def spec(self) -> Path:
        return self.dir / "spec.yaml"  # the spec as started, every path absolute: resume needs nothing else

    @property
    def meta(self) -> Path:
        return self.dir / "campaign.json"

    @property
    def checkpoints(self) -> Path:
        return self.dir / "checkpoints.sqlite"

    @property
    def ledger(self) -> Path:
        return self.dir / "ledger.jsonl"

    @property
    def lock(self) -> Path:
        return self.dir / "lock"

    def run_dir(self, n: int) -> Path:
        return self.dir / "runs" / f"round-{n}"


@dataclass
class Campaign:
    spec: CampaignSpec
    paths: CampaignPaths
    workspace: Workspace
    tracker: NullTracker
    brain: Brain
    workload: Workload
    ledger: Ledger
    memory: Memory
    playbook: Playbook
    progress: Progress
    tracking_uri: str
    parent_run_id: str  # the campaign's MLflow run; each round's run nests under it, and its training run under that
    search: Search = field(default_factory=Greedy)  # which round each edit is made on (evolve/campaign/search.py)
