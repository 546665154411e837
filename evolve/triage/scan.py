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

import bisect
import fnmatch
import io
import math
import operator
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from evolve.triage.hubs import hubs as _hubs
from evolve.triage.regexes import Signature
from evolve.triage.series import Series

CHUNK = 4 << 20  # bytes read at a time; memory is a few chunks, whatever the file size
MAX_LINE = 16 << 20  # a "line" longer than this is cut, so a newline-free file cannot grow the buffer
RING = 200  # recent lines kept
EXCERPT = 300  # characters of a line kept as evidence
HEAD_CHARS = 8 << 10  # characters of the start of the text kept, for the prose classifier
MAX_SERIES = 512  # metric keys tracked at most
# NaN and infinity count as values, as Python, numpy and C print them and as YAML does (.inf, .nan: RLlib's results)
_NUMBER = (rb"[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+|nan|NaN|NAN|inf|Inf|INF|Infinity"
           rb"|\.(?:nan|NaN|NAN|inf|Inf|INF))")
# a value may come wrapped the way numpy or torch print it: np.float64(nan), tensor(0.31, device='cuda:0')
_WRAPPED = rb"(?:np\.float(?:16|32|64)\(|tensor\(|\[)?"


def _number(text: bytes) -> float:
    """A value as _NUMBER matched it; YAML writes infinity and NaN as .inf and .nan, which float() refuses."""
    try:
        return float(text)
    except ValueError:
        return float(text.replace(b".", b"", 1))


@dataclass
class Hit:
    source: str
    line: int
    text: str
    groups: dict[str, str]


class LogScan:
    """Feed it files (or metric records); read back `hits`, `series` and `ring`."""

    def __init__(self, signatures: list[Signature], metric_keys: list[str]):
        self.signatures = signatures
        self.hits: dict[int, Hit] = {}  # signature index -> first hit
        self.series: dict[str, Series] = {}
        self.series_source: dict[str, str] = {}
        self.ring: deque[tuple[str, int, str]] = deque(maxlen=RING)  # (source, line, text)
        self.lines = 0
        self.head = ""  # the first HEAD_CHARS characters
        self._csv: tuple[str, list[str | None]] | None = None  # (source, column -> metric key) of an open table
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
        # the same playbook builds the same groups: computed once a process, not once a triage
        self._hubs = _hubs(tuple(sorted({_shape(lit) for lit in set(self._filtered) | set(self._key_literals)})))
        # a literal without whitespace lies inside one whitespace-separated token: it is looked for among the
        # chunk's distinct tokens, a third the bytes of its distinct lines (a log repeats its words more)
        self._spaced = {lit for hub, lits in self._hubs.items() for lit in (hub, *lits)
                        if lit.translate(None, _WHITESPACE) != lit}
        self._metric_re = _PAIR if metric_keys else None
        self._wanted: dict[str, bool] = {}

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
        if len(self.head) < HEAD_CHARS:
            head = chunk[:HEAD_CHARS].decode("utf-8", "replace").translate(_HEAD_CONTROLS)
            self.head += head[:HEAD_CHARS - len(self.head)]
        base = self.lines
        # Lines that differ only in digits (steps, timestamps, values) share a shape, and a long log is a
        # few dozen shapes repeated. Literals are looked for among the distinct shapes; a digit-blind regex
        # is tried once a shape (all its lines match or none); a metric line's keys are parsed once a shape
        # (digits are zeroed one for one, so the values sit at the same offsets in every line of it).
        by_exact: dict[bytes, list[int]] = {}
        for n, shape in enumerate(chunk.translate(_ZERO_DIGITS).split(b"\n")):
            by_exact.setdefault(shape, []).append(n)
        shape_lines = list(by_exact.values())
        index = _ShapeIndex(b"\n".join(by_exact).lower())
        pending = [i for i in range(len(self.signatures)) if i not in self.hits]  # one hit per signature
        present = self._present(index.blob,
                                {lit for i in pending for lit in self.signatures[i].literals or []})
        live = [i for i in pending if self.signatures[i].literals is None
                or any(lit in present for lit in self.signatures[i].literals)]
        keys = [lit for lit in self._key_literals if lit in present] if self.log_metrics else []
        lines = chunk.split(b"\n") if live or keys else []
        for i in live:
            sig = self.signatures[i]
            lits = None if sig.literals is None else [lit for lit in sig.literals if lit in present]
            for n in _candidates(shape_lines, index, lines, lits, sig.digit_blind, sig.relaxed):
                text = lines[n].decode("utf-8", "replace")
                if m := sig.pattern.search(text):
                    groups = {k: v for k, v in m.groupdict().items() if v is not None}
                    self.hits[i] = Hit(source, base + n + 1, _printable(text.strip()[:EXCERPT]), groups)
                    break
        headers: list[int] = []  # lines that may start a table: shapes whose first line reads as a header
        found: dict[str, list[tuple[list[int], list[float]]]] = {}  # key -> runs of (line indices, values)
        if keys and self._metric_re is not None:
            for g in sorted(set().union(*(index.holding(_shape(k)) for k in keys))):
                ns = shape_lines[g]
                if _table_header(lines[ns[0]], self._wanted_key) is not None:
                    headers += ns
                for key, (ka, kb), (a, b) in self._spans(lines[ns[0]]):
                    if key is not None:  # values sit at the same offsets in every line of the shape
                        cut = operator.itemgetter(slice(a, b))  # map/itemgetter: the slicing runs in C
                        cells = list(map(cut, map(lines.__getitem__, ns)))
                        try:
                            values = list(map(float, cells))
                        except ValueError:  # a YAML .inf among them: the slow path only then
                            values = list(map(_number, cells))
                        found.setdefault(key, []).append((ns, values))
                        continue
                    for n in ns:  # a key with digits in it (eval_aime24_pass1): each line says which
                        if (named := self._wanted_key(lines[n][ka:kb].decode())) is not None:
                            found.setdefault(named, []).append(([n], [_number(lines[n][a:b])]))
            for key, runs in found.items():
                self.add_runs(key, runs, base, source)
        if self.log_metrics and (self._csv or headers or (base == 0 and _TB_HEADER.match(chunk))):
            self._tables(chunk.split(b"\n") if not lines else lines, base, source, sorted(headers))
        self.lines = base + chunk.count(b"\n")
        tail = chunk.rsplit(b"\n", RING + 1)[-RING - 1:]
        first = self.lines - len(tail) + 2  # the last piece after the final newline is empty
        for offset, raw in enumerate(tail[:-1]):
            self.ring.append((source, first + offset, _printable(raw.decode("utf-8", "replace")[:EXCERPT])))

    def _present(self, shapes: bytes, wanted: set[bytes]) -> set[bytes]:
        """Which wanted literals occur (digits zeroed); a hub's absence rules out all its literals at once."""
        wanted_shapes = {_shape(lit) for lit in wanted | set(self._key_literals)}
        tokens, spaced = b"\n".join(set(shapes.split())), self._spaced
        found: set[bytes] = set()
        for hub, lits in self._hubs.items():
            lits = [lit for lit in lits if lit in wanted_shapes]
            if lits and hub in (shapes if hub in spaced else tokens):
                # every literal of a hub holds it, so it can only sit on the lines that hold the hub: a few
                # lines to search instead of the whole blob once a literal
                near = _lines_holding(shapes, hub) if len(lits) > 2 else shapes
                words = b"\n".join(set(near.split())) if near is not shapes else tokens
                found.update(lit for lit in lits if lit == hub or lit in (near if lit in spaced else words))
        return {lit for lit in wanted | set(self._key_literals) if _shape(lit) in found}

    def _spans(self, line: bytes) -> list[tuple[str | None, tuple[int, int], tuple[int, int]]]:
        """The wanted `key: value` pairs of a line: (key, None when it has digits; key span; value span)."""
        spans = []
        for m in self._metric_re.finditer(line):
            raw = m.group("key").decode()
            if (key := self._wanted_key(raw)) is not None:
                fixed = None if any(c.isdigit() for c in raw) else key
                spans.append((fixed, m.span("key"), m.span("val")))
        return spans

    def _wanted_key(self, raw: str) -> str | None:
        if self.wants(raw):
            return raw
        # `actor loss: 0.3` is `loss` unless `actor loss` is wanted; `cross entropy` is not `entropy`
        first, _, last = raw.rpartition(" ")
        return last if first and first.lower() not in _NOT_A_QUALIFIER and self.wants(last) else None

    def _tables(self, lines: list[bytes], base: int, source: str, headers: list[int]) -> None:
        """Tables of metrics: a header naming wanted metrics, then rows of numbers, the cells split by commas
        (CSV exported from TensorBoard or W&B), tabs, `|` or runs of spaces (as trainers print a table). A
        table starts on a header line and may run on across chunks."""
        if self._csv is not None and self._csv[0] != source:
            self._csv = None
        n = 0
        if base == 0 and lines and _TB_HEADER.match(lines[0]):  # TensorBoard names the metric in the file name
            tag = _TB_TAG.search(source.replace("\\", "/").rsplit("/", 1)[-1])
            if tag and (key := next((k for k in _untagged(tag["tag"]) if self.wants(k)), None)):
                self._csv, n = (source, [None, None, key], b","), 1
        starts = iter(headers)
        while n < len(lines):
            if self._csv is None:
                n = next((c for c in starts if c >= n), None)
                if n is None:
                    return
                if (header := _table_header(lines[n], self._wanted_key)) is not None:
                    self._csv = (source, *header)
                n += 1
                continue
            _, columns, delimiter = self._csv
            row = _cells(lines[n], delimiter)
            if delimiter == b"|" and row and all(_RULE_CELL.fullmatch(c) for c in row):
                n += 1  # the |---|---| line under a markdown header
                continue
            if len(row) != len(columns) or not all(_CELL.fullmatch(c) for c in row):
                self._csv = None
                continue  # the line may start a new table
            for key, cell in zip(columns, row, strict=True):
                if key is not None and cell:
                    self.add_metric(key, _number(cell.strip(b'"')), base + n + 1, source)
            n += 1

    # ------------------------------------------------------------------------------ metrics

    def add_metric(self, key: str, value: float, line: int | None, source: str) -> None:
        if (series := self._series(key, source)) is not None:
            series.add(value, line)

    def add_runs(self, key: str, runs: list[tuple[list[int], list[float]]], base: int, source: str) -> None:
        """A chunk's values of one key, as runs (one per line shape, each in line order): what a long log's
        metric lines become."""
        if (series := self._series(key, source)) is not None:
            series.extend_runs(runs, base)

    def _series(self, key: str, source: str) -> Series | None:
        """The key's series, made on first sight; None once MAX_SERIES keys are tracked."""
        series = self.series.get(key)
        if series is None and len(self.series) < MAX_SERIES:
            series = self.series[key] = Series()
            self.series_source[key] = source
        return series

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

    def whole_in_head(self) -> bool:
        """Whether `head` holds every line scanned, uncut (a pasted report, a short log)."""
        return self.lines <= len(self.ring) and len(self.head) < HEAD_CHARS

    def wants(self, key: str) -> bool:
        if (known := self._wanted.get(key)) is None:
            known = self._wanted[key] = any(fnmatch.fnmatchcase(key, g) for g in self._key_globs)
        return known

    def all_series(self, globs: list[str], min_count: int) -> list[tuple[str, Series]]:
        """Every key matching one of the globs with enough values, in the rule's order."""
        keys = [k for g in globs for k in sorted(self.series) if fnmatch.fnmatchcase(k, g)
                and self.series[k].n + self.series[k].nonfinite >= min_count]
        return [(k, self.series[k]) for k in dict.fromkeys(keys)]

    def find_series(self, globs: list[str], min_count: int) -> tuple[str, Series] | None:
        """The first key (in the rule's order) with enough values; globs match in sorted key order."""
        for g in globs:
            for key in sorted(self.series):
                s = self.series[key]
                if fnmatch.fnmatchcase(key, g) and s.n + s.nonfinite >= min_count:
                    return key, s
        return None


# one `key: value` / `key=value` / `'key': value` pair; a key is a name (Megatron's have one inner space),
# whole: `kl` inside `actor/ppo_kl` is not `kl`. Which keys count is the rules' business (`wants`).
# Separators: `:` or `=` (most loggers), a table cell (`| kl | 0.51 |`, baselines/SB3), or plain spaces
# (`loss 10.77`, litgpt, nanoGPT).
_PAIR = re.compile(rb"(?<![\w./@-])(?P<key>[A-Za-z_][\w./@-]*(?: [A-Za-z_][\w./@-]*)?)['\"]?"
                   rb"(?:\s{0,2}[:=]\s{0,2}|\s*\|\s*|\s+)['\"]?"
                   + _WRAPPED + rb"(?P<val>" + _NUMBER + rb")(?!\w|\.\w)")  # a full stop may end it
_NOT_A_QUALIFIER = {"cross", "target", "binary", "max", "min", "init", "initial", "coef", "weight"}
_NOT_HEADER = re.compile(rb"[:={}\[\]]")
_CELL = re.compile(rb'"?(' + _NUMBER + rb')?"?')
_RULE_CELL = re.compile(rb":?-{3,}:?")
_GAP = re.compile(rb"\s{2,}|\t")
_COUNTERS = {b"step", b"steps", b"epoch", b"iter", b"iteration", b"it", b"global_step", b"time", b"batch", b"update"}
_NAME = re.compile(r"[A-Za-z_][\w./@ ()-]*")  # a column name: not a number, no sentence punctuation
_TB_HEADER = re.compile(rb"\s*Wall time,Step,Value\s*(\n|$)")
_TB_TAG = re.compile(r"^(?:.*tag-)?(?P<tag>.+?)\.csv$")  # run-<run>-tag-<tag>.csv, as TensorBoard downloads it
_WANDB_STAT = re.compile(r"__(MIN|MAX|min|max|step)$")


def _untagged(tag: str) -> list[str]:
    """The metric keys a TensorBoard file tag may stand for: it writes `train/kl` as `train_kl`."""
    cuts = [i for i, c in enumerate(tag) if c == "_"]
    return [tag] + [tag[:i] + "/" + tag[i + 1:] for i in cuts]


def _cells(line: bytes, delimiter: bytes | None) -> list[bytes]:
    """A table line's cells (b"  ": two or more spaces; None: any whitespace); a `|` table's outer bars
    make no cells."""
    line = line.strip()
    if delimiter == b"|":
        line = line.strip(b"|")
    if delimiter == b"  ":
        return _GAP.split(line)
    return [c.strip() for c in line.split(delimiter)]


def _table_header(line: bytes, wanted) -> tuple[list[str | None], bytes | None] | None:
    """A header with at least two names and one wanted metric: (column -> key, None where not a metric we
    read; the delimiter). `wanted` names a column's key as a `key: value` line would (`Training Loss`
    is `loss`). W&B names a column `<run name> - <key>` (and adds `__MIN`/`__MAX` columns)."""
    if _NOT_HEADER.search(line):  # `key: value`, `key=value` or dict punctuation: a metric line, not a header
        return None
    stripped = line.strip()
    delimiter = next((d for d in (b",", b"\t", b"|") if d in stripped), b"  " if _GAP.search(stripped) else None)
    cells = _cells(line, delimiter)
    if len(cells) < 2 or len(cells) > 64:
        return None
    keys: list[str | None] = []
    for cell in cells:
        name = cell.strip(b'"').decode("utf-8", "replace").rsplit(" - ", 1)[-1].strip()
        if delimiter is not None and not name:
            keys.append(None)  # an unnamed column: a pandas index, a trailing comma
            continue
        if not _NAME.fullmatch(name):
            return None  # a number or a sentence: not a header
        keys.append(None if _WANDB_STAT.search(name) else wanted(name) or wanted(name.lower()))  # `Training Loss`
    if delimiter is None and 2 * sum(k is not None or c.lower() in _COUNTERS for k, c in zip(keys, cells)) < len(cells):
        return None  # words split by single spaces: a header of metrics and counters, not a sentence
    return (keys, delimiter) if any(keys) else None


def _lines_holding(blob: bytes, needle: bytes) -> bytes:
    """The lines of `blob` that contain `needle`, joined."""
    out, pos = [], blob.find(needle)
    while pos != -1:
        end = blob.find(b"\n", pos)
        end = len(blob) if end == -1 else end
        out.append(blob[blob.rfind(b"\n", 0, pos) + 1:end])
        pos = blob.find(needle, end)
    return b"\n".join(out)


class _ShapeIndex:
    """A chunk's distinct line shapes (lowercased, digits zeroed) as one blob: which shapes hold a literal
    is a few `find`s in C, not a test of every shape (a log with request ids has thousands of shapes)."""

    def __init__(self, blob: bytes):
        self.blob = blob
        self.starts = [0]
        pos = blob.find(b"\n")
        while pos != -1:
            self.starts.append(pos + 1)
            pos = blob.find(b"\n", pos + 1)
        self._memo: dict[bytes, list[int]] = {}

    def holding(self, literal: bytes) -> list[int]:
        """Indices of the shapes that contain `literal` (itself digit-zeroed), in order."""
        if (found := self._memo.get(literal)) is None:
            found, pos = [], self.blob.find(literal)
            while pos != -1:
                g = bisect.bisect_right(self.starts, pos) - 1
                found.append(g)
                nxt = self.starts[g + 1] if g + 1 < len(self.starts) else len(self.blob)
                pos = self.blob.find(literal, nxt)
            self._memo[literal] = found
        return found


def _candidates(groups: list[list[int]], index: _ShapeIndex, lines: list[bytes], literals: list[bytes] | None,
                blind: bool, relaxed: re.Pattern[str] | None) -> list[int]:
    """The lines a signature must be tried on, in order: those holding one of its literals (looked for in
    the shapes; a literal with digits is checked in the line itself), only the first of each shape when
    the regex is digit-blind, and only shapes its relaxed regex matches when it is not."""
    chosen = range(len(groups)) if literals is None else sorted(
        set().union(*(index.holding(_shape(lit)) for lit in literals)))
    found: list[int] = []
    for g in chosen:
        ns = groups[g]
        if blind:
            found.append(ns[0])
        elif relaxed is None or relaxed.search(lines[ns[0]].decode("utf-8", "replace")):
            found += ns
    found.sort()
    if literals is None or all(lit == _shape(lit) for lit in literals):  # no digits: the shape said it all
        return found
    return [n for n in found if any(lit in lines[n].lower() for lit in literals)]


_ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")
# control characters in a log (escape sequences included) must not reach the user's terminal as evidence
_CONTROLS = {c: "\ufffd" for c in [*range(0, 9), *range(10, 32), 127]} | {13: " "}  # CR: progress bars, CRLF
_HEAD_CONTROLS = _CONTROLS | {10: "\n"}  # the head is many lines: it keeps their breaks


def _printable(text: str) -> str:
    return text.translate(_CONTROLS)


_WHITESPACE = b" \t\n\r\x0b\x0c"  # what bytes.split() splits on


def _shape(text: bytes) -> bytes:
    return text.translate(_ZERO_DIGITS)


def _longest_plain(glob: str) -> str:
    return max(re.split(r"[*?\[\]]", glob), key=len)


def scan_path(scan: LogScan, path: Path, source: str | None = None) -> None:
    with open(path, "rb") as f:
        scan.scan(f, source or str(path))


def scan_text(scan: LogScan, text: str, source: str = "<text>") -> None:
    scan.scan(io.BytesIO(text.encode("utf-8", "replace")), source)
