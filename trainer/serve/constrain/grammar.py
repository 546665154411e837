"""The grammar nodes a constraint compiles to: one small pushdown machine over characters.

A node per schema part (a trie of literal strings, a string, an integer, a number, a sequence, a repetition, an
alternative) with a small hashable local state; the node is shared by all outputs, an output's position in it is
the state. Every node knows the fewest characters that finish it from a state, which is what lets the cursor
(cursor.py) keep every output finishable within its budget.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable

INF = math.inf
EMPTY: frozenset[str] = frozenset()
PRINTABLE = frozenset(chr(c) for c in range(32, 127))
STRING_CHARS = PRINTABLE - {'"', "\\"}  # string content that never needs an escape
DIGITS, QUOTE = frozenset("0123456789"), frozenset('"')
NUMBER_DIGITS = (6, 4)  # a number's most integer and fraction digits


class Node(ABC):
    """One part of a grammar, shared by all outputs; an output's position in it is a hashable state.
    `moves(st)` says what may happen next: (characters it reads, (child, state to resume at) when a
    child value must be generated first, whether it may end here)."""

    init: Hashable = ""
    min_len: float = INF  # fewest characters of a whole value; a fixpoint, as schemas may recurse

    @abstractmethod
    def moves(self, st) -> tuple[frozenset[str], tuple[Node, Hashable] | None, bool]: ...

    def feed(self, st, ch: str) -> Hashable:
        return st + ch

    @abstractmethod
    def rest(self, st) -> float:
        """Fewest characters that finish this node from state `st`."""

    def compute_min(self) -> float:
        return self.rest(self.init)

    def children(self) -> list[Node]:
        return []

    def options(self) -> list[Node]:
        """The concrete nodes this one stands for (anyOf and $ref stand for others)."""
        return [self] if self.min_len < INF else []


class Trie(Node):
    """Exactly one of a set of strings: choices, enum/const values, true/false/null."""

    def __init__(self, words: Iterable[str]):
        self.words, self.best, nxt = set(words), {}, {}
        for w in self.words:
            for i in range(len(w) + 1):
                self.best[w[:i]] = min(self.best.get(w[:i], len(w)), len(w) - i)
                if i < len(w):
                    nxt.setdefault(w[:i], set()).add(w[i])
        self.next = {p: frozenset(cs) for p, cs in nxt.items()}

    def moves(self, st):
        return self.next.get(st, EMPTY), None, st in self.words

    def rest(self, st):
        return self.best.get(st, INF)


class String(Node):
    """A JSON string of lo..hi characters. State: -1 before the opening quote, -2 closed, else length."""

    init = -1

    def __init__(self, lo: int, hi: int):
        self.lo, self.hi = lo, hi

    def moves(self, k):
        if k < 0:
            return (QUOTE if k == -1 else EMPTY), None, k == -2
        return (STRING_CHARS if k < self.hi else EMPTY) | (QUOTE if k >= self.lo else EMPTY), None, False

    def feed(self, k, ch):
        return 0 if k == -1 else -2 if ch == '"' else k + 1

    def rest(self, k):
        return self.lo + 2 if k == -1 else 0 if k == -2 else max(0, self.lo - k) + 1


class Integer(Node):
    """-?(0|[1-9][0-9]*) with at most `digits` digits, within [lo, hi]. State: the text so far."""

    def __init__(self, lo: float, hi: float, digits: int):
        self.lo, self.hi, self.digits = lo, hi, digits
        self._memo: dict[str, tuple[int, ...]] = {}

    def _lengths(self, text: str) -> tuple[int, ...]:
        """How many more characters can complete `text` to an in-range integer (empty: none can)."""
        if text not in self._memo:
            neg = text.startswith("-")
            body = text[1:] if neg else text
            spans: list[tuple[int, int, int]] = []  # (more characters, smallest value, largest value)
            if not body:
                spans += [] if neg else [(1, 0, 0)]
                for n in range(1, self.digits + 1):
                    a, b = 10 ** (n - 1), 10 ** n - 1
                    spans += [(n, -b, -a)] if neg else [(n, a, b), (n + 1, -b, -a)]
            elif body == "0":
                spans += [] if neg else [(0, 0, 0)]
            elif body.isdigit() and body[0] != "0":
                p = int(body)
                for k in range(self.digits - len(body) + 1):
                    a, b = p * 10 ** k, (p + 1) * 10 ** k - 1
                    spans.append((k, -b, -a) if neg else (k, a, b))
            self._memo[text] = tuple(sorted({k for k, a, b in spans if max(a, self.lo) <= min(b, self.hi)}))
        return self._memo[text]

    def moves(self, text):
        cands = DIGITS | {"-"} if text == "" else DIGITS
        return frozenset(c for c in cands if self._lengths(text + c)), None, 0 in self._lengths(text)

    def rest(self, text):
        lengths = self._lengths(text)
        return lengths[0] if lengths else INF


class Number(Node):
    """-?(0|[1-9][0-9]*)(.[0-9]+)? with bounded digit counts and no exponent."""

    def moves(self, text):
        whole, dot, frac = (text[1:] if text.startswith("-") else text).partition(".")
        if dot:
            chars = DIGITS if len(frac) < NUMBER_DIGITS[1] else EMPTY
        elif not whole:
            chars = DIGITS if text else DIGITS | {"-"}
        else:
            chars = (DIGITS if whole != "0" and len(whole) < NUMBER_DIGITS[0] else EMPTY) | {"."}
        return chars, None, text[-1:] in DIGITS

    def rest(self, text):
        return 0 if text[-1:] in DIGITS else 1


class Seq(Node):
    """Literal text and child values in order (an object with fixed properties, a map entry).
    State: (part index, offset into a literal part)."""

    init = (0, 0)

    def __init__(self, parts: list[str | Node]):
        self.parts: list[str | Node] = []
        for p in parts:
            if isinstance(p, str) and self.parts and isinstance(self.parts[-1], str):
                self.parts[-1] += p
            elif p != "":
                self.parts.append(p)

    def moves(self, st):
        i, off = st
        part = self.parts[i] if i < len(self.parts) else None
        if isinstance(part, str):
            return frozenset(part[off]), None, False
        return EMPTY, (part, (i + 1, 0)) if part else None, part is None

    def feed(self, st, ch):
        i, off = st
        return (i + 1, 0) if off + 1 == len(self.parts[i]) else (i, off + 1)

    def rest(self, st):
        return sum(len(p) if isinstance(p, str) else p.min_len for p in self.parts[st[0]:]) - st[1]

    def children(self):
        return [p for p in self.parts if isinstance(p, Node)]


class Repeat(Node):
    """open item (, item)* close with lo..hi items: arrays and maps. State: (phase, items so far),
    phase 0 before `open`, 1 just opened, 2 after a comma, 3 after an item, 4 closed."""

    init = (0, 0)

    def __init__(self, open_: str, close: str, item: Node, lo: int, hi: int):
        self.open, self.close, self.item, self.lo, self.hi = open_, close, item, lo, hi

    def moves(self, st):
        phase, n = st
        if phase == 0:
            return frozenset(self.open), None, False
        if phase == 1:
            return frozenset(self.close if self.lo == 0 else ""), (self.item, (3, 1)) if self.hi else None, False
        if phase == 2:
            return EMPTY, (self.item, (3, n + 1)), False
        if phase == 3:
            return frozenset(("," if n < self.hi else "") + (self.close if n >= self.lo else "")), None, False
        return EMPTY, None, True

    def feed(self, st, ch):
        return (1, 0) if st[0] == 0 else (2, st[1]) if ch == "," else (4, st[1])

    def rest(self, st):
        phase, n = st
        m = self.item.min_len
        if phase in (0, 1):
            return (phase == 0) + (1 if self.lo == 0 else self.lo * (m + 1))
        if phase == 2:
            return max(1, self.lo - n) * (m + 1)
        return 0 if phase == 4 else max(0, self.lo - n) * (m + 1) + 1

    def children(self):
        return [self.item]


class Alt(Node):
    """anyOf, and the target of a $ref (filled in after creation, so references may recurse)."""

    def __init__(self, opts: list[Node] | None = None):
        self.opts = list(opts or [])
        self._flat: list[Node] | None = None

    # an Alt never stands on a parser stack: the cursor (_expand) replaces it by its options, so it reads nothing
    def moves(self, st):
        raise AssertionError("an Alt is expanded into its options, never parsed")

    def rest(self, st):
        raise AssertionError("an Alt is expanded into its options, never parsed")

    def compute_min(self):
        return min((o.min_len for o in self.opts), default=INF)

    def children(self):
        return list(self.opts)

    def options(self):
        if self._flat is None:
            self._flat = list(dict.fromkeys(self._leaves(set())))
        return self._flat

    def _leaves(self, seen: set[int]) -> list[Node]:
        if id(self) in seen:  # a $ref cycle that reads no character adds nothing
            return []
        seen.add(id(self))
        return [n for o in self.opts for n in (o._leaves(seen) if isinstance(o, Alt) else o.options())]
