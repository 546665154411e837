"""The campaign's search tree, rebuilt from the ledger: which round each round's edit was made on.

A proposal that names its parent round (`"parent": N`, the tree search's draft / improve / debug) says it
outright. Older ledgers, and the greedy search's proposals (`"parent": 0` or none: "the best round of the
time"), say it only by commit: RoundRecord.parent is the commit the edit was made on, and the parent round is
the earliest earlier round whose commit that is. A commit that is no earlier round's is the start (round 1's
parent, and every round built while nothing was kept). A parent is always an earlier round, so the tree has no
cycle whatever a ledger holds, and every round is in it exactly once.
"""

from __future__ import annotations

from collections import defaultdict

from evolve.records.ledger import RoundRecord

START = None  # the parent "round" of the rounds built on the workspace as it started


def _named_parent(r: RoundRecord) -> int | None:
    named = r.proposal.get("parent")
    return named if isinstance(named, int) and not isinstance(named, bool) and named >= 1 else None


def parent_rounds(records: list[RoundRecord]) -> dict[int, int | None]:
    """Each round's parent round (START for the start)."""
    out: dict[int, int | None] = {}
    by_commit: dict[str, int] = {}
    for r in sorted(records, key=lambda r: r.round):
        named = _named_parent(r)
        # a named round that is not an earlier recorded one cannot be the parent: trust the commit instead
        out[r.round] = named if named is not None and named in out else by_commit.get(r.parent, START)
        if r.commit:
            by_commit.setdefault(r.commit, r.round)  # a round that changed nothing shares its parent's commit
    return out


def walk(records: list[RoundRecord]) -> list[tuple[int, RoundRecord]]:
    """Every round as (depth, record), depth first with each round's children in round order; depth 0 for the
    rounds built on the start. Iterative: an improve chain of a thousand rounds is no recursion limit."""
    parents = parent_rounds(records)
    children: dict[int | None, list[RoundRecord]] = defaultdict(list)
    for r in sorted(records, key=lambda r: r.round):
        children[parents[r.round]].append(r)
    out: list[tuple[int, RoundRecord]] = []
    stack = [(0, r) for r in reversed(children[START])]
    while stack:
        depth, r = stack.pop()
        out.append((depth, r))
        stack.extend((depth + 1, c) for c in reversed(children.pop(r.round, [])))
    return out


def phase(r: RoundRecord) -> str:
    """The tree search's phase of the round (draft / improve / debug), "" when its proposal names none."""
    value = r.proposal.get("phase")
    return value if isinstance(value, str) else ""


def nested_ul(items: list[tuple[int, str]], css_class: str = "tree") -> str:
    """Nested HTML lists of (depth, inner HTML) in walk() order: each item one level at most below the last."""
    if not items:
        return ""
    out, open_depth = [], -1
    for depth, text in items:
        if depth > open_depth:
            out.append(f'<ul class="{css_class}">\n<li>' if open_depth < 0 else "\n<ul>\n<li>")
        else:
            out.append("</li>\n" + "</ul>\n</li>\n" * (open_depth - depth) + "<li>")
        out.append(text)
        open_depth = depth
    out.append("</li>\n" + "</ul>\n</li>\n" * open_depth + "</ul>")
    return "".join(out)
