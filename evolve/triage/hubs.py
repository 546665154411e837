"""Literal hubs: the scanner's literals grouped under shared substrings, its first filter (scan.py)."""

from __future__ import annotations

import functools
import heapq


@functools.cache
def hubs(literals: tuple[bytes, ...], size: int = 4, least: int = 3) -> dict[bytes, list[bytes]]:
    """Group literals under a shared substring, so a chunk without "rror" skips the two dozen
    literals that contain it with one search instead of two dozen (each search reads the whole chunk).
    Greedy: the substring of `size` bytes shared by the most ungrouped literals, while it covers `least`
    (ties: the greater substring). Counts only fall as literals are grouped, so a heap whose stale entries
    are re-pushed when they surface finds each maximum without recounting: ~5,000 literals in 0.17 s,
    where recounting them per group cost a second at every start of `evolve triage`."""
    grams = {lit: {lit[k:k + size] for k in range(len(lit) - size + 1)} for lit in literals}
    holders: dict[bytes, set[bytes]] = {}
    for lit, own in grams.items():
        for g in own:
            holders.setdefault(g, set()).add(lit)
    count = {g: len(h) for g, h in holders.items()}
    heap = [(-n, _descending(g), g) for g, n in count.items()]
    heapq.heapify(heap)
    left, groups = set(literals), {}
    while heap:
        n, _, g = heapq.heappop(heap)
        if -n != count[g]:  # grouped literals took some of its holders since this entry was pushed
            heapq.heappush(heap, (-count[g], _descending(g), g))
            continue
        if -n < least:
            break
        groups[g] = sorted(holders[g])
        for lit in groups[g]:
            left.discard(lit)
            for h in grams[lit]:
                count[h] -= 1
                holders[h].discard(lit)
    groups.update({lit: [lit] for lit in sorted(left)})
    return groups


def _descending(gram: bytes) -> bytes:
    """A key under which the greater of two same-length byte strings sorts first (heapq is a min-heap)."""
    return bytes(255 - b for b in gram)
