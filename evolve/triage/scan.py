"""Streaming evidence scanner: regex signatures and metric series over logs of any size, in bounded memory.

A training log can be gigabytes, and the line that matters is usually one line near the end. So the
scanner never holds the file: it reads fixed-size chunks of whole lines and keeps only
  - per signature, the first line that matched it (a signature counts once, however often it fires),
  - per metric key, a bounded `Series` summary (first/last values, min, max, count),
  - a ring of the last `RING` lines, for context and for remedies conditioned on the text.

Speed comes from not running ~100 regexes on every line: each signature gets lowercase literals of which
any matching line must contain one (derived from the regex itself). The literals are looked for among
the chunk's distinct line *shapes* (digits zeroed: a long log is mostly the same few lines with new
numbers), literals sharing a substring are skipped together when it is absent, and only lines holding a
literal are decoded and matched. These are superset tests, so no match is ever lost.
"""

from __future__ import annotations

import fnmatch
import math
import re
import re._constants as C  # noqa: N812
import re._parser as sre_parse
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

CHUNK = 4 << 20  # bytes read at a time; memory is a few chunks, whatever the file size
MAX_LINE = 16 << 20  # a "line" longer than this is cut, so a newline-free file cannot grow the buffer
RING = 200  # recent lines kept
EXCERPT = 300  # characters of a line kept as evidence
HEAD = 32  # values kept at each end of a metric series (for trends)
MAX_SERIES = 512  # metric keys tracked at most

_NUMBER = rb"[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+|nan|NaN|inf|Inf|-inf)"
_KEY_CHARS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./@-"


@dataclass
class Signature:
    """One compiled log signature; `group` is whatever the caller uses to tally it (a kind, a framework)."""
    group: str
    regex: str
    weight: float
    pattern: re.Pattern[str] = field(init=False, repr=False)
    literals: list[bytes] | None = field(init=False, repr=False)  # one of them is in every matching line

    def __post_init__(self) -> None:
        self.pattern = re.compile(self.regex)
        self.literals = required_literals(self.regex)


@dataclass
class Hit:
    source: str
    line: int
    text: str
    groups: dict[str, str]


@dataclass
class Series:
    """A bounded summary of one metric's values: enough for last/max/min/mean rules and for trends."""
    n: int = 0
    head: list[float] = field(default_factory=list)
    tail: deque = field(default_factory=lambda: deque(maxlen=HEAD))
    total: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    max_line: int | None = None
    min_line: int | None = None
    last: float = math.nan
    last_line: int | None = None
    nonfinite: int = 0
    nonfinite_line: int | None = None

    def add(self, value: float, line: int | None) -> None:
        self.last, self.last_line = value, line
        if not math.isfinite(value):
            self.nonfinite += 1
            if self.nonfinite_line is None:
                self.nonfinite_line = line
            return
        self.n += 1
        self.total += value
        if len(self.head) < HEAD:
            self.head.append(value)
        self.tail.append(value)
        if value > self.max:
            self.max, self.max_line = value, line
        if value < self.min:
            self.min, self.min_line = value, line

    def early_late(self) -> tuple[float, float]:
        """Mean of the first and of the last stretch of finite values (halves of a short series)."""
        m = max(1, min(HEAD, self.n // 2))
        return sum(self.head[:m]) / m, sum(list(self.tail)[-m:]) / m


class LogScan:
    """Feed it files (or metric records); read back `hits`, `series` and `ring`."""

    def __init__(self, signatures: list[Signature], metric_keys: list[str]):
        self.signatures = signatures
        self.hits: dict[int, Hit] = {}  # signature index -> first hit
        self.series: dict[str, Series] = {}
        self.series_source: dict[str, str] = {}
        self.ring: deque[tuple[str, int, str]] = deque(maxlen=RING)  # (source, line, text)
        self.lines = 0
        # metrics are read from log lines only when the run has no metrics file: two copies of one series
        # would interleave and fake trends
        self.log_metrics = True
        self._filtered: dict[bytes, list[int]] = {}  # literal -> signatures it gates
        self._always: list[int] = []  # signatures without a usable literal: checked on every candidate chunk
        for i, sig in enumerate(signatures):
            for lit in sig.literals or []:
                self._filtered.setdefault(lit, []).append(i)
            if sig.literals is None:
                self._always.append(i)
        self._key_globs = metric_keys
        self._key_literals = sorted({_longest_plain(k).lower().encode() for k in metric_keys} - {b""})
        self._hubs = _hubs(sorted({_shape(lit) for lit in set(self._filtered) | set(self._key_literals)}))
        alternatives = sorted({_glob_to_regex(k) for k in metric_keys}, key=len, reverse=True)
        pair = rb")['\"]?\s{0,2}[:=]\s{0,2}['\"]?(?P<val>" + _NUMBER + rb")(?![\w.])"
        self._metric_re = re.compile(rb"(?P<key>" + b"|".join(alternatives) + pair) if alternatives else None

    # ------------------------------------------------------------------------------ logs

    def scan(self, stream: IO[bytes], source: str) -> None:
        """Scan a binary stream chunk by chunk; line numbers are 1-based and continue across chunks."""
        carry = b""
        while True:
            block = stream.read(CHUNK)
            if not block:
                break
            data = carry + block
            cut = data.rfind(b"\n") + 1
            if cut == 0 and len(data) < MAX_LINE:
                carry = data
                continue
            if cut == 0:
                cut = len(data)  # a monstrous line: treat what we have as one line
            self._chunk(data[:cut], source)
            carry = data[cut:]
        if carry:
            self._chunk(carry + b"\n", source)

    def _chunk(self, chunk: bytes, source: str) -> None:
        low = chunk.lower()  # same length and line breaks as chunk, so line indices carry over
        base = self.lines
        low_lines = low.split(b"\n")
        # Lines that differ only in digits (steps, timestamps, values) share a shape. Literals are looked
        # for among the distinct shapes — a few hundred in a long log, not tens of thousands of lines.
        by_shape: dict[bytes, list[int]] = {}
        for n, shape in enumerate(low.translate(_ZERO_DIGITS).split(b"\n")):
            by_shape.setdefault(shape, []).append(n)
        pending = [i for i in range(len(self.signatures)) if i not in self.hits]  # one hit per signature
        present = self._present(b"\n".join(by_shape),
                                {lit for i in pending for lit in self.signatures[i].literals or []})
        live = [i for i in pending if self.signatures[i].literals is None
                or any(lit in present for lit in self.signatures[i].literals)]
        keys = [lit for lit in self._key_literals if lit in present] if self.log_metrics else []
        lines = chunk.split(b"\n") if live or keys else []
        for i in live:
            sig = self.signatures[i]
            lits = None if sig.literals is None else [lit for lit in sig.literals if lit in present]
            for n in _lines_containing(by_shape, low_lines, lits):
                text = lines[n].decode("utf-8", "replace")
                if m := sig.pattern.search(text):
                    groups = {k: v for k, v in m.groupdict().items() if v is not None}
                    self.hits[i] = Hit(source, base + n + 1, _printable(text.strip()[:EXCERPT]), groups)
                    break
        if keys and self._metric_re is not None:
            for n in _lines_containing(by_shape, low_lines, keys):
                self._metrics_in(lines[n], base + n + 1, source)
        self.lines = base + chunk.count(b"\n")
        tail = chunk.rsplit(b"\n", RING + 1)[-RING - 1:]
        first = self.lines - len(tail) + 2  # the last piece after the final newline is empty
        for offset, raw in enumerate(tail[:-1]):
            self.ring.append((source, first + offset, _printable(raw.decode("utf-8", "replace")[:EXCERPT])))

    def _present(self, shapes: bytes, wanted: set[bytes]) -> set[bytes]:
        """Which wanted literals occur (digits zeroed); a hub's absence rules out all its literals at once."""
        wanted_shapes = {_shape(lit) for lit in wanted | set(self._key_literals)}
        found: set[bytes] = set()
        for hub, lits in self._hubs.items():
            lits = [lit for lit in lits if lit in wanted_shapes]
            if lits and hub in shapes:
                found.update(lit for lit in lits if lit == hub or lit in shapes)
        return {lit for lit in wanted | set(self._key_literals) if _shape(lit) in found}

    def _metrics_in(self, line: bytes, number: int, source: str) -> None:
        for m in self._metric_re.finditer(line):
            start = m.start()
            if start and line[start - 1] in _KEY_CHARS:
                continue  # `kl` inside `actor/ppo_kl` is another key
            self.add_metric(m.group("key").decode(), float(m.group("val")), number, source)

    # ------------------------------------------------------------------------------ metrics

    def add_metric(self, key: str, value: float, line: int | None, source: str) -> None:
        series = self.series.get(key)
        if series is None:
            if len(self.series) >= MAX_SERIES:
                return
            series = self.series[key] = Series()
            self.series_source[key] = source
        series.add(value, line)

    def add_record(self, record: dict, line: int | None, source: str) -> None:
        """One metrics.jsonl record; NaN/Inf arrive as strings (JSON has none), and must count."""
        for key, value in record.items():
            if isinstance(value, bool) or not self.wants(key):
                continue
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    continue
            if isinstance(value, (int, float)):
                try:
                    number = float(value)
                except OverflowError:  # a JSON integer beyond any float: run output is untrusted
                    number = math.inf if value > 0 else -math.inf
                self.add_metric(key, number, line, source)

    def wants(self, key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, g) for g in self._key_globs)

    def find_series(self, globs: list[str], min_count: int) -> tuple[str, Series] | None:
        """The first key (in the rule's order) with enough values; globs match in sorted key order."""
        for g in globs:
            for key in sorted(self.series):
                s = self.series[key]
                if fnmatch.fnmatchcase(key, g) and s.n + s.nonfinite >= min_count:
                    return key, s
        return None


def _lines_containing(by_shape: dict[bytes, list[int]], low_lines: list[bytes],
                      literals: list[bytes] | None) -> list[int]:
    """Indices of the lines holding one of the literals, in order: shapes narrow the search, then the
    line itself is checked (zeroed digits can make a shape match where the line does not)."""
    if literals is None:
        return list(range(len(low_lines)))
    shaped = [_shape(lit) for lit in literals]
    found = sorted(n for shape, ns in by_shape.items() if any(x in shape for x in shaped) for n in ns)
    return [n for n in found if any(lit in low_lines[n] for lit in literals)]


_ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")
# control characters in a log (escape sequences included) must not reach the user's terminal as evidence
_CONTROLS = {c: "\ufffd" for c in [*range(0, 9), *range(10, 32), 127]} | {13: " "}  # CR: progress bars, CRLF


def _printable(text: str) -> str:
    return text.translate(_CONTROLS)


def _shape(text: bytes) -> bytes:
    return text.translate(_ZERO_DIGITS)


def _hubs(literals: list[bytes], size: int = 4, least: int = 3) -> dict[bytes, list[bytes]]:
    """Group literals under a shared substring, so a chunk without "rror" skips the two dozen
    literals that contain it with one search instead of two dozen (each search reads the whole chunk).
    Greedy: the substring of `size` bytes shared by the most ungrouped literals, while it covers `least`."""
    grams = {lit: {lit[k:k + size] for k in range(len(lit) - size + 1)} for lit in literals}
    left, groups = set(literals), {}
    while left:
        count = Counter(g for lit in left for g in grams[lit])
        best = max(count.items(), key=lambda kv: (kv[1], kv[0]), default=None)
        if best is None or best[1] < least:
            break
        groups[best[0]] = sorted(lit for lit in left if best[0] in grams[lit])
        left -= set(groups[best[0]])
    groups.update({lit: [lit] for lit in sorted(left)})
    return groups


# ---------------------------------------------------------------------------------- literals


def required_literals(regex: str) -> list[bytes] | None:
    """Lowercase strings of which every match of `regex` contains at least one; None if none is usable.

    Walks the parsed regex. A stretch made only of literals and small alternations (`(GRPO|PPO)Trainer`)
    is expanded into the finite set of strings it can match ({grpotrainer, ppotrainer}); a group's or a
    repeat's (min >= 1) requirement is required; an alternation requires one of its branches'. The set
    whose shortest string is longest wins: a longer literal is rarer, so fewer lines get matched.
    """
    try:
        best = _best(sre_parse.parse(regex))
    except Exception:  # the parser is CPython-internal; without it a signature is simply never prefiltered
        return None
    if not best or min(len(s) for s in best) < 2:
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
    return max(options, key=lambda o: min(len(s) for s in o), default=None)


def _longest_plain(glob: str) -> str:
    return max(re.split(r"[*?\[\]]", glob), key=len)


def _glob_to_regex(glob: str) -> bytes:
    parts = [re.escape(p) for p in glob.split("*")]
    return "[\\w./@-]*".join(parts).encode()


def scan_path(scan: LogScan, path: Path, source: str | None = None) -> None:
    with open(path, "rb") as f:
        scan.scan(f, source or str(path))
