"""Search policies: which earlier round the next edit is made on, and in what phase.

The brain decides *what* to change; the policy decides *where*. Each policy yields candidate nodes, best
first; plan asks the brain for a proposal on each in turn and takes the first it has one for, so a node
with nothing left to try (no remedy, every move tried) passes the round to the next node instead of ending
the campaign. Both policies are functions of the ledger alone, so a resumed campaign plans the same node.

- **greedy** (the default): always the best round so far, else round 1 (the unchanged start). One
  candidate; the tree is a chain of kept rounds, and a round that loses is reverted.
- **tree** (AIDE's draft / improve / debug search over whole solutions): first `drafts` solutions are
  drafted from round 1, the template as it is (the brain makes each a different solution: another model
  family, another approach); then each broken leaf is debugged, newest first, while its branch has failed
  fewer than `debug_depth` times in a row; then the best round is improved, and after it the other healthy
  rounds from best to worst (a node whose moves are all tried hands on to the next); once no healthy round
  has a move left, each is tuned (the workload's perturbation of one number), best first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from evolve.campaign.spec import better
from evolve.records.ledger import RoundRecord
from evolve.records.tree import parent_rounds
from evolve.registry import Registry

if TYPE_CHECKING:
    from evolve.campaign.spec import CampaignSpec

PHASES = ("draft", "improve", "debug", "tune")


@dataclass(frozen=True)
class Node:
    round: int  # the round whose commit the edit is made on
    phase: str  # draft | improve | debug | tune; "" for greedy (the brain's own choice: fix if failing, else improve)


class Search(Protocol):
    def candidates(self, records: list[RoundRecord], best_round: int, mode: str) -> Iterator[Node]: ...


SEARCHES: Registry[Search] = Registry("search.kind", "search policy")


class Greedy:
    def candidates(self, records: list[RoundRecord], best_round: int, mode: str) -> Iterator[Node]:
        yield Node(best_round or 1, "")


@dataclass
class TreeOptions:
    drafts: int = 5  # solutions drafted from the start (round 1 counts as the first) before any is improved
    debug_depth: int = 3  # fixes tried in a row down one broken branch before it is given up

    def __post_init__(self) -> None:
        from evolve.campaign.spec import SpecError

        if self.drafts < 1:
            raise SpecError(f"search.options.drafts: {self.drafts}; must be at least 1 (round 1 is a draft)")
        if self.debug_depth < 0:
            raise SpecError(f"search.options.debug_depth: {self.debug_depth}; must be >= 0 (0: never debug)")


class Tree:
    def __init__(self, options: TreeOptions) -> None:
        self.options = options

    def candidates(self, records: list[RoundRecord], best_round: int, mode: str) -> Iterator[Node]:
        by_round = {r.round: r for r in records}
        parents = parent_rounds(records)
        drafted = sum(1 for r in records if r.round == 1 or r.proposal.get("phase") == "draft")
        if drafted < self.options.drafts:
            yield Node(1, "draft")
        has_child = set(parents.values())
        for r in sorted(records, key=lambda r: -r.round):  # newest broken leaf first
            if _failing(r) and r.round not in has_child and _failed_in_a_row(r.round, by_round, parents) \
                    <= self.options.debug_depth:
                yield Node(r.round, "debug")
        healthy = ranked_healthy(records, mode)
        for r in healthy:
            yield Node(r.round, "improve")
        for r in healthy:  # every move tried everywhere: nudge a number, best round first
            yield Node(r.round, "tune")


def ranked_healthy(records: list[RoundRecord], mode: str) -> list[RoundRecord]:
    """The rounds that succeeded with an objective, best first (ties: the earlier round)."""
    healthy = [r for r in records if not _failing(r)]
    ordered: list[RoundRecord] = []
    for r in sorted(healthy, key=lambda r: r.round):
        at = next((i for i, o in enumerate(ordered) if better(r.objective, o.objective, mode)), len(ordered))
        ordered.insert(at, r)
    return ordered


def _failing(r: RoundRecord) -> bool:
    return r.status != "succeeded" or r.objective is None or r.verdict == "crash"


def _failed_in_a_row(n: int, by_round: dict[int, RoundRecord], parents: dict[int, int | None]) -> int:
    """How many rounds in a row, from round n up its branch, have failed (n itself included)."""
    count = 0
    while n in by_round and _failing(by_round[n]):
        count += 1
        n = parents.get(n)
    return count


SEARCHES.add("greedy", None, lambda options: Greedy(), "build on the best round; revert what loses")
SEARCHES.add("tree", TreeOptions, Tree, "AIDE's search: draft solutions, debug broken leaves, improve the best")


def make_search(spec: CampaignSpec) -> Search:
    from evolve.campaign.spec import parse_section

    options = SEARCHES.options(spec.search.kind, spec.search.options, parse_section, "search.options.")
    return SEARCHES.make(spec.search.kind, options)
