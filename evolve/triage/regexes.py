"""A log signature and what the scanner knows of its regex before it reads a line.

The scanner (scan.py) must not run ~900 regexes on every line. For each regex it derives, from the parsed
regex itself: lowercase literals of which every matching line contains one (`required_literals`), whether
the regex treats every digit alike (`digit_blind`: then lines of one shape, digits zeroed, all match or all
do not), and for one that does not, a digit-blind relaxation matching a superset of its lines (`relax`).
These are superset tests, so no match is ever lost. The analysis of every shipped regex is in
playbooks/triage_index.json, so a process does not parse ~900 regexes to load the playbook.
"""

from __future__ import annotations

import functools
import re
import re._constants as C  # noqa: N812
import re._parser as sre_parse
from dataclasses import dataclass, field

Analysis = tuple[list[str] | None, bool, str | None]  # (literals, digit-blind, relaxed regex): see `analyse`


@dataclass
class Signature:
    """One log signature; `group` is whatever the caller uses to tally it (a kind, a framework).

    Its regex is compiled on first use: a log leaves most signatures' literals absent, so most are never
    tried. `analysis`, when the caller knows it already (playbooks/triage_index.json), skips the regex
    analysis too; without it the regex is compiled at once, so a bad one fails where it is loaded."""
    group: str
    regex: str
    weight: float
    analysis: Analysis | None = field(default=None, repr=False, compare=False)
    literals: list[bytes] | None = field(init=False, repr=False)  # one of them is in every matching line
    digit_blind: bool = field(init=False, repr=False)  # treats every digit alike: lines of one shape agree
    # for a regex that is not digit-blind, a digit-blind one matching a superset of its lines: tried once
    # a shape, it rules out whole shapes before the real regex is tried line by line
    relaxed_regex: str | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.analysis is None:
            _ = self.pattern
            self.analysis = analyse(self.regex)
        literals, self.digit_blind, self.relaxed_regex = self.analysis
        self.literals = None if literals is None else [lit.encode() for lit in literals]

    @functools.cached_property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(self.regex)

    @functools.cached_property
    def relaxed(self) -> re.Pattern[str] | None:
        return None if self.relaxed_regex is None else re.compile(self.relaxed_regex)


def analyse(regex: str) -> Analysis:
    """What the scanner needs to know of a regex to skip lines: its required literals (decoded), whether it
    is digit-blind, and the digit-blind relaxation of one that is not."""
    literals = required_literals(regex)
    blind = digit_blind(regex)
    return [lit.decode() for lit in literals] if literals else None, blind, None if blind else relax(regex)


# ---------------------------------------------------------------------------------- literals


def digit_blind(regex: str) -> bool:
    """True when the regex cannot tell one digit from another (no literal digit, no class holding some
    digits but not all, no backreference), so zeroing a line's digits cannot change whether it matches."""
    try:
        return _blind(_parsed(regex))
    except Exception:
        return False


@functools.lru_cache(maxsize=4096)
def _parsed(regex: str):
    """The parse tree, shared by the walkers below (parsing is most of a playbook's load time)."""
    return sre_parse.parse(regex)


_ALL_DIGITS = set(range(ord("0"), ord("9") + 1))
_QUANTIFIER = re.compile(r"\{\d*,?\d*\}")


def relax(regex: str) -> str | None:
    """A digit-blind regex that matches every line `regex` matches (a digit literal becomes \\d, a class
    gains 0-9 or loses its negated digits, a backreference becomes .*), or None when the rewrite is not
    certain (it must compile and be digit-blind). A negative lookaround is dropped: widened, it would forbid
    more, and the relaxation would skip lines the regex matches."""
    out, i, n = [], 0, len(regex)
    while i < n:
        c = regex[i]
        if regex.startswith(("(?!", "(?<!"), i):
            i = _group_end(regex, i)
        elif c == "\\":
            nxt = regex[i + 1:i + 2]
            out.append(".*" if nxt.isdigit() else regex[i:i + 2])
            i += 2
        elif c == "{" and (m := _QUANTIFIER.match(regex, i)):
            out.append(m.group())
            i = m.end()
        elif regex.startswith("(?P=", i):
            i = regex.index(")", i) + 1
            out.append(".*")
        elif c == "[":
            j = i + 1 + (regex[i + 1:i + 2] == "^")
            j += regex[j:j + 1] == "]"  # a leading ] is a member
            while j < n and regex[j] != "]":
                j += 2 if regex[j] == "\\" else 1
            body, negated = regex[i + 1 + (regex[i + 1:i + 2] == "^"):j], regex[i + 1:i + 2] == "^"
            if negated:
                body = re.sub(r"\d-\d|\d", "", body) or "\\n"  # [^5] is a superset of nothing: anything
                out.append(f"[^{body}]")
            else:
                out.append(f"[{body}0-9]" if re.search(r"\d", body) else f"[{body}]")
            i = j + 1
        elif c.isdigit():
            out.append("\\d")
            i += 1
        else:
            out.append(c)
            i += 1
    relaxed = "".join(out)
    try:
        re.compile(relaxed)
    except re.error:
        return None
    return relaxed if digit_blind(relaxed) else None


def _group_end(regex: str, start: int) -> int:
    """The index just past the group that opens at `start` (escapes and character classes skipped)."""
    depth, i, n = 0, start, len(regex)
    while i < n:
        c = regex[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            i += 1 + (regex[i + 1:i + 2] == "^")
            i += regex[i:i + 1] == "]"
            while i < n and regex[i] != "]":
                i += 2 if regex[i] == "\\" else 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def _blind(seq) -> bool:
    for op, av in seq:
        if op in (C.LITERAL, C.NOT_LITERAL) and chr(av).isdigit():
            return False
        if op in (C.GROUPREF, C.GROUPREF_EXISTS):
            return False
        if op is C.IN:
            covered: set[int] = set()
            for item_op, item in av:
                if item_op is C.LITERAL and chr(item).isdigit():
                    covered.add(item)
                elif item_op is C.RANGE:
                    covered |= _ALL_DIGITS & set(range(item[0], item[1] + 1))
                elif item_op is C.CATEGORY and item in (C.CATEGORY_DIGIT, C.CATEGORY_NOT_DIGIT):
                    covered |= _ALL_DIGITS if item is C.CATEGORY_DIGIT else set()
            if covered and covered != _ALL_DIGITS:
                return False
        subs = []
        if op is C.SUBPATTERN:
            subs = [av[3]]
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
            subs = [av[2]]
        elif op is C.BRANCH:
            subs = list(av[1])
        elif op in (C.ASSERT, C.ASSERT_NOT):
            subs = [av[1]]
        elif op is C.ATOMIC_GROUP:
            subs = [av]
        if not all(_blind(sub) for sub in subs):
            return False
    return True


def required_literals(regex: str) -> list[bytes] | None:
    """Lowercase strings of which every match of `regex` contains at least one; None if none is usable.

    Walks the parsed regex. A stretch made only of literals and small alternations (`(GRPO|PPO)Trainer`)
    is expanded into the finite set of strings it can match ({grpotrainer, ppotrainer}); a group's or a
    repeat's (min >= 1) requirement is required; an alternation requires one of its branches'. The set
    whose shortest string is longest (in UTF-8 bytes) wins: a longer literal is rarer, so fewer lines get matched.
    """
    try:
        best = _best(_parsed(regex))
    except Exception:  # the parser is CPython-internal; without it a signature is simply never prefiltered
        return None
    if not best or _shortest(best) < 2:
        return None
    return sorted({s.encode().lower() for s in best})  # ASCII-only lowering, as bytes.lower()


_MAX_SET = 16  # strings a finite stretch may expand to before it is cut


def _finite(op, av) -> set[str] | None:
    """The exact set of strings one regex item matches, if it is small and finite."""
    if op is C.LITERAL:
        return {chr(av)}
    if op is C.SUBPATTERN:
        return _finite_seq(av[3])
    if op is C.BRANCH:
        subs = [_finite_seq(b) for b in av[1]]
        return None if any(x is None for x in subs) else set().union(*subs)
    if op in (C.MAX_REPEAT, C.MIN_REPEAT) and (av[0], av[1]) == (0, 1):
        sub = _finite_seq(av[2])
        return None if sub is None else sub | {""}
    return None


def _finite_seq(seq) -> set[str] | None:
    out = {""}
    for op, av in seq:
        opts = _finite(op, av)
        if opts is None or len(out) * len(opts) > _MAX_SET:
            return None
        out = {a + b for a in out for b in opts}
    return out


def _best(seq) -> list[str] | None:
    options: list[list[str]] = []
    run = {""}
    for op, av in seq:
        opts = _finite(op, av)
        if opts is not None and len(run) * len(opts) <= _MAX_SET:
            run = {a + b for a in run for b in opts}
            continue
        options.append(sorted(run))
        run = {""}
        if opts is not None:  # finite but too many combinations: start a new stretch with it
            run = opts
            continue
        if op is C.SUBPATTERN:
            sub = _best(av[3])
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT) and av[0] >= 1:
            sub = _best(av[2])
        elif op is C.BRANCH:
            subs = [_best(b) for b in av[1]]
            sub = None if any(not s for s in subs) else [x for s in subs for x in s]
        else:
            sub = None
        if sub:
            options.append(sub)
    options.append(sorted(run))
    return max(options, key=_shortest, default=None)


def _shortest(strings: list[str] | set[str]) -> int:
    """The shortest string's length in UTF-8 bytes, what the scanner searches: one CJK character (3 bytes,
    rare in a log) is a usable literal, where counted as one character it left its regex unfiltered."""
    return min(len(s.encode()) for s in strings)
