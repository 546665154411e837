"""Running a constraint: a Cursor over the grammar (grammar.py), the Constraint interface, ChoiceConstraint.

A Cursor holds the set of live stacks of (node, state) frames. It is a set because anyOf branches and "this number
may end here" are nondeterministic. Feeding a character advances the cursor; nothing is re-parsed. Each cursor
carries a character budget and allows only characters after which the output can still be finished within it
(every node knows the fewest characters that finish it), so generation always terminates, and ends complete and
valid when the budget covers the shortest output.
"""

from __future__ import annotations

from collections.abc import Hashable

from trainer.serve.constrain.grammar import INF, Node, Seq, Trie

Stack = tuple[tuple[Node, Hashable], ...]
DEFAULT_BUDGET = 1 << 16


def _expand(stack: Stack) -> list[Stack]:
    """The stacks `stack` stands for whose top frame reads a character; () means finished."""
    if not stack:
        return [()]
    node, st = stack[-1]
    chars, called, final = node.moves(st)
    out = [stack] if chars else []
    if called:
        child, resume = called
        base = stack[:-1] + ((node, resume),)
        for opt in child.options():
            out += _expand(base + ((opt, opt.init),))
    if final:
        out += _expand(stack[:-1])
    return out


def _rest(stack: Stack) -> float:
    return sum(node.rest(st) for node, st in stack)


class Cursor:
    """Where an output stands: its live parser stacks and the characters left in its budget.
    Immutable; `advance` returns the next cursor, so backtracking is just keeping the old one."""

    __slots__ = ("_stacks", "budget", "_next")

    def __init__(self, stacks: frozenset[Stack], budget: int):
        self._stacks, self.budget = stacks, budget
        self._next: dict[str, list[Stack]] | None = None

    @property
    def complete(self) -> bool:
        """The output so far is a whole valid value: the decoder may end here."""
        return () in self._stacks

    @property
    def allowed(self) -> frozenset[str]:
        """Characters that keep the output completable within the remaining budget."""
        return frozenset(self._successors())

    def _successors(self) -> dict[str, list[Stack]]:
        if self._next is None:
            self._next = {}
            for stack in self._stacks:
                if not stack:
                    continue
                node, st = stack[-1]
                by_state: dict[Hashable, list[str]] = {}  # string characters share one successor
                for ch in node.moves(st)[0]:
                    by_state.setdefault(node.feed(st, ch), []).append(ch)
                for st2, chs in by_state.items():
                    live = [s for s in _expand(stack[:-1] + ((node, st2),)) if _rest(s) <= self.budget - 1]
                    for ch in chs if live else ():
                        self._next.setdefault(ch, []).extend(live)
        return self._next

    def advance(self, ch: str) -> Cursor:
        live = self._successors().get(ch)
        if not live:
            raise ValueError(f"character {ch!r} is not allowed here")
        return Cursor(frozenset(live), self.budget - 1)


class Constraint:
    """Common interface: `start(max_chars)` for the decoder, `allowed(prefix)` / `is_complete(prefix)`
    for callers holding only text (incremental when each prefix extends the previous one)."""

    def __init__(self, root: Node):
        self._root = Seq([root])
        _settle(self._root)
        if self._root.min_len == INF:
            raise ValueError("the schema admits no finite value")
        self._last: tuple[str, Cursor] | None = None

    @property
    def min_chars(self) -> int:
        return int(self._root.min_len)

    def start(self, max_chars: int | None = None) -> Cursor:
        budget = DEFAULT_BUDGET if max_chars is None else max_chars
        if self.min_chars > budget:
            raise ValueError(f"the shortest valid output has {self.min_chars} characters; only {budget} allowed")
        stacks = [s for s in _expand(((self._root, (0, 0)),)) if _rest(s) <= budget]
        return Cursor(frozenset(stacks), budget)

    def cursor(self, prefix: str) -> Cursor:
        done, cur = self._last if self._last and prefix.startswith(self._last[0]) else ("", self.start())
        for ch in prefix[len(done):]:
            cur = cur.advance(ch)
        self._last = (prefix, cur)
        return cur

    def allowed(self, prefix: str) -> set[str]:
        return set(self.cursor(prefix).allowed)

    def is_complete(self, prefix: str) -> bool:
        return self.cursor(prefix).complete


def _settle(root: Node) -> None:
    """Fixpoint of every node's min_len (schemas may refer to themselves through $ref)."""
    nodes, todo = {}, [root]
    while todo:
        node = todo.pop()
        if id(node) not in nodes:
            nodes[id(node)] = node
            todo += node.children()
    changed = True
    while changed:
        changed = False
        for node in nodes.values():
            if (v := node.compute_min()) < node.min_len:
                node.min_len, changed = v, True


class ChoiceConstraint(Constraint):
    """The output is exactly one of `choices`."""

    def __init__(self, choices: list[str]):
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
            raise ValueError("choice needs a non-empty list of strings")
        super().__init__(Trie(choices))

