"""Constrained decoding over a character vocabulary: which next characters keep an output valid.

The in-repo model emits one character per token, so a constraint is a character-level automaton: the
decoder asks which characters may come next, masks every other token id, and asks whether the output
may end here (only then may it sample <|eos|>). Pure Python, no model code.

* ChoiceConstraint(choices): the output is exactly one of the strings (a trie).
* JsonSchemaConstraint(schema): the output is compact JSON (no whitespace) that `json.loads` accepts
  and that validates against the schema, for the subset of JSON Schema that structured outputs use:
  type object / array / string / integer / number / boolean / null (or a list of types); properties,
  required, additionalProperties; items, minItems, maxItems; minLength, maxLength (at most 64
  characters by default, so generation ends); minimum / maximum / exclusive* on integers (at most 6
  digits unless a bound needs more); numbers have at most 6 integer and 4 fraction digits, no exponent
  and no bounds; enum and const (any JSON values); anyOf; allOf of one schema; local $ref into
  $defs/definitions, recursion included (what pydantic's model_json_schema() writes); {} is any JSON
  value. Annotations (title, description, default, ...) are ignored; any other keyword (pattern,
  format, oneOf, uniqueItems, ...) raises ValueError naming it.
  Objects with properties emit every declared property, in declared order, optional ones included:
  that is always valid and spares the model a choice per property. An object without properties is a
  map (keys of at most 16 characters, at most maxProperties entries, default 8); {"type": "object"} is
  thus any JSON object. Strings never contain '"', '\\' or control characters: no escape is ever needed.

Both compile to one small pushdown machine: a node per schema part with a small hashable local state,
and a Cursor holding the set of live stacks of (node, state) frames. It is a set because anyOf branches
and "this number may end here" are nondeterministic. Feeding a character advances the cursor; nothing is
re-parsed. Each cursor carries a character budget and allows only characters after which the output
can still be finished within it (every node knows the fewest characters that finish it), so generation
always terminates, and ends complete and valid when the budget covers the shortest output.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable

INF = math.inf
EMPTY: frozenset[str] = frozenset()
PRINTABLE = frozenset(chr(c) for c in range(32, 127))
STRING_CHARS = PRINTABLE - {'"', "\\"}  # string content that never needs an escape
DIGITS, QUOTE = frozenset("0123456789"), frozenset('"')
MAX_STRING, MAX_KEY, MAX_ITEMS, INT_DIGITS, NUMBER_DIGITS = 64, 16, 8, 6, (6, 4)
DEFAULT_BUDGET = 1 << 16
# Schemas come from HTTP requests: nesting deeper than this is refused (the compiler recurses per level, and
# no structured output needs it; OpenAI's own limit is 10 levels)
MAX_DEPTH = 32

_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment", "$schema", "$id",
                          "deprecated", "readOnly", "writeOnly"})
_KEYWORDS = frozenset({"type", "properties", "required", "additionalProperties", "items", "minItems",
                       "maxItems", "minProperties", "maxProperties", "enum", "const", "anyOf", "allOf",
                       "$ref", "$defs", "definitions", "minLength", "maxLength", "minimum", "maximum",
                       "exclusiveMinimum", "exclusiveMaximum"})
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")

Stack = tuple[tuple["_Node", Hashable], ...]


# ------------------------------------------------------------------------------------------ nodes

class _Node(ABC):
    """One part of a grammar, shared by all outputs; an output's position in it is a hashable state.
    `moves(st)` says what may happen next: (characters it reads, (child, state to resume at) when a
    child value must be generated first, whether it may end here)."""

    init: Hashable = ""
    min_len: float = INF  # fewest characters of a whole value; a fixpoint, as schemas may recurse

    @abstractmethod
    def moves(self, st) -> tuple[frozenset[str], tuple[_Node, Hashable] | None, bool]: ...

    def feed(self, st, ch: str) -> Hashable:
        return st + ch

    @abstractmethod
    def rest(self, st) -> float:
        """Fewest characters that finish this node from state `st`."""

    def compute_min(self) -> float:
        return self.rest(self.init)

    def children(self) -> list[_Node]:
        return []

    def options(self) -> list[_Node]:
        """The concrete nodes this one stands for (anyOf and $ref stand for others)."""
        return [self] if self.min_len < INF else []


class _Trie(_Node):
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


class _String(_Node):
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


class _Integer(_Node):
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


class _Number(_Node):
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


class _Seq(_Node):
    """Literal text and child values in order (an object with fixed properties, a map entry).
    State: (part index, offset into a literal part)."""

    init = (0, 0)

    def __init__(self, parts: list[str | _Node]):
        self.parts: list[str | _Node] = []
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
        return [p for p in self.parts if isinstance(p, _Node)]


class _Repeat(_Node):
    """open item (, item)* close with lo..hi items: arrays and maps. State: (phase, items so far),
    phase 0 before `open`, 1 just opened, 2 after a comma, 3 after an item, 4 closed."""

    init = (0, 0)

    def __init__(self, open_: str, close: str, item: _Node, lo: int, hi: int):
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


class _Alt(_Node):
    """anyOf, and the target of a $ref (filled in after creation, so references may recurse)."""

    def __init__(self, opts: list[_Node] | None = None):
        self.opts = list(opts or [])
        self._flat: list[_Node] | None = None

    # an _Alt never stands on a parser stack: _expand replaces it by its options, so it reads nothing itself
    def moves(self, st):
        raise AssertionError("an _Alt is expanded into its options, never parsed")

    def rest(self, st):
        raise AssertionError("an _Alt is expanded into its options, never parsed")

    def compute_min(self):
        return min((o.min_len for o in self.opts), default=INF)

    def children(self):
        return list(self.opts)

    def options(self):
        if self._flat is None:
            self._flat = list(dict.fromkeys(self._leaves(set())))
        return self._flat

    def _leaves(self, seen: set[int]) -> list[_Node]:
        if id(self) in seen:  # a $ref cycle that reads no character adds nothing
            return []
        seen.add(id(self))
        return [n for o in self.opts for n in (o._leaves(seen) if isinstance(o, _Alt) else o.options())]


# ------------------------------------------------------------------------------------------ cursor

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

    def __init__(self, root: _Node):
        self._root = _Seq([root])
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


def _settle(root: _Node) -> None:
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
        super().__init__(_Trie(choices))


class JsonSchemaConstraint(Constraint):
    """The output is compact JSON valid against `schema` (see the module docstring for the subset)."""

    def __init__(self, schema: dict):
        if not isinstance(schema, dict):
            raise ValueError("a JSON schema must be an object")
        super().__init__(_Compiler(schema).compile(schema, "#"))


# ------------------------------------------------------------------------------------------ compiler

class _Compiler:
    """Schema → nodes. Every malformed part is a one-line ValueError naming its path (`#/properties/a`), so a
    server can answer 400: a schema is request input, never a reason for a 500."""

    def __init__(self, root: dict):
        self.root, self.refs, self._any, self.depth = root, {}, None, 0

    def compile(self, s, path: str) -> _Node:
        if self.depth >= MAX_DEPTH:
            where = path if len(path) <= 60 else path[:57] + "..."
            raise ValueError(f"schema is nested more than {MAX_DEPTH} levels deep (at {where})")
        self.depth += 1
        try:
            return self._compile(s, path)
        finally:
            self.depth -= 1

    def _compile(self, s, path: str) -> _Node:
        if s is True:
            return self.any()
        if not isinstance(s, dict):
            raise ValueError(f"schema at {path} must be an object, got {_short(s)}")
        for key in s:
            if key not in _ANNOTATIONS and key not in _KEYWORDS:
                raise ValueError(f"unsupported JSON Schema keyword {key!r} at {path}")
        if "$ref" in s:
            return self.ref(s["$ref"])
        if "allOf" in s:
            if not isinstance(s["allOf"], list) or len(s["allOf"]) != 1 or not isinstance(s["allOf"][0], dict):
                raise ValueError(f"'allOf' with more than one schema is not supported at {path}")
            rest = {k: v for k, v in s.items() if k != "allOf"}
            return self.compile({**rest, **s["allOf"][0]}, f"{path}/allOf/0")
        if "enum" in s or "const" in s:
            values = [s["const"]] if "const" in s else s["enum"]
            if not isinstance(values, list) or not values:
                raise ValueError(f"'enum' at {path} must be a non-empty list")
            try:  # NaN and Infinity are not JSON, whatever Python's json module reads
                return _Trie(json.dumps(v, separators=(",", ":"), allow_nan=False) for v in values)
            except ValueError:
                raise ValueError(f"'enum'/'const' at {path} holds a non-finite number") from None
        if "anyOf" in s:
            if not isinstance(s["anyOf"], list) or not s["anyOf"]:
                raise ValueError(f"'anyOf' at {path} must be a non-empty list of schemas")
            return _Alt([self.compile(o, f"{path}/anyOf/{i}") for i, o in enumerate(s["anyOf"])])
        kind = s["type"] if "type" in s else self._implied_type(s, path)
        if isinstance(kind, list):
            return _Alt([self.compile({**s, "type": k}, path) for k in kind])
        if kind is None:
            return self.any()
        if kind not in ("object", "array", "string", "integer", "number", "boolean", "null"):
            raise ValueError(f"unsupported type {kind!r} at {path}")
        return getattr(self, f"_{kind}")(s, path)

    @staticmethod
    def _implied_type(s: dict, path: str) -> str | None:
        if {"properties", "additionalProperties", "required"} & s.keys():
            return "object"
        if {"items", "minItems", "maxItems"} & s.keys():
            return "array"
        if extra := next((k for k in s if k in _KEYWORDS and k not in ("$defs", "definitions")), None):
            raise ValueError(f"{extra!r} at {path} needs a 'type'")
        return None  # only annotations: any JSON value

    def ref(self, ref: str) -> _Node:
        if ref not in self.refs:
            self.refs[ref] = node = _Alt()
            node.opts = [self.compile(self._resolve(ref), ref)]
        return self.refs[ref]

    def _resolve(self, ref) -> dict:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise ValueError(f"unsupported $ref {_short(ref)}: only local references (#/...) are supported")
        target = self.root
        for part in [p.replace("~1", "/").replace("~0", "~") for p in ref[2:].split("/") if p]:
            if not isinstance(target, dict) or part not in target:
                raise ValueError(f"$ref {ref!r} does not resolve")
            target = target[part]
        return target

    def any(self) -> _Node:
        if self._any is None:
            self._any = node = _Alt()
            entry = _Seq([_String(0, MAX_KEY), ":", node])
            node.opts = [_String(0, MAX_STRING), _Number(), _Trie(["true", "false", "null"]),
                         _Repeat("[", "]", node, 0, MAX_ITEMS), _Repeat("{", "}", entry, 0, MAX_ITEMS)]
        return self._any

    def _object(self, s, path):
        props = s.get("properties", {})
        if not isinstance(props, dict):
            raise ValueError(f"'properties' at {path} must be an object (name → schema), got {_short(props)}")
        required = s.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise ValueError(f"'required' at {path} must be a list of property names, got {_short(required)}")
        missing = [r for r in required if r not in props]
        if missing:
            raise ValueError(f"'required' names {missing[0]!r}, which is not in 'properties', at {path}")
        lo, hi = _counts(s, "minProperties", "maxProperties", path, default_hi=max(MAX_ITEMS, len(props)))
        if props:
            if lo > len(props) or hi < len(props):
                raise ValueError(f"minProperties/maxProperties at {path} conflict with emitting every property")
            parts: list[str | _Node] = ["{"]
            for i, (key, sub) in enumerate(props.items()):
                parts += [("," if i else "") + json.dumps(key) + ":", self.compile(sub, f"{path}/properties/{key}")]
            return _Seq([*parts, "}"])
        extra = s.get("additionalProperties", True)
        if extra is False:
            return _Trie(["{}"])
        value = self.any() if extra is True or extra == {} else self.compile(extra, f"{path}/additionalProperties")
        return _Repeat("{", "}", _Seq([_String(0, MAX_KEY), ":", value]), lo, hi)

    def _array(self, s, path):
        lo, hi = _counts(s, "minItems", "maxItems", path)
        return _Repeat("[", "]", self.compile(s.get("items", {}), f"{path}/items"), lo, hi)

    def _string(self, s, path):
        lo, hi = _counts(s, "minLength", "maxLength", path, default_hi=MAX_STRING)
        return _String(lo, hi)

    def _integer(self, s, path):
        vals = {k: s[k] for k in _BOUNDS if k in s}
        if any(not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) for v in vals.values()):
            raise ValueError(f"integer bounds at {path} must be finite numbers")
        los = [math.ceil(vals["minimum"])] if "minimum" in vals else []
        los += [math.floor(vals["exclusiveMinimum"]) + 1] if "exclusiveMinimum" in vals else []
        his = [math.floor(vals["maximum"])] if "maximum" in vals else []
        his += [math.ceil(vals["exclusiveMaximum"]) - 1] if "exclusiveMaximum" in vals else []
        lo, hi = max(los, default=-INF), min(his, default=INF)
        if lo > hi:
            raise ValueError(f"integer range at {path} is empty")
        digits = max(INT_DIGITS, len(str(lo)) if lo > 0 else 0, len(str(-hi)) if hi < 0 else 0)
        return _Integer(lo, hi, digits)

    def _number(self, s, path):
        if bound := next((k for k in _BOUNDS if k in s), None):
            raise ValueError(f"unsupported JSON Schema keyword {bound!r} on a number at {path} (integers only)")
        return _Number()

    def _boolean(self, s, path):
        return _Trie(["true", "false"])

    def _null(self, s, path):
        return _Trie(["null"])


def _counts(s: dict, lo_key: str, hi_key: str, path: str, default_hi: int = MAX_ITEMS) -> tuple[int, int]:
    lo = s.get(lo_key, 0)
    hi = s.get(hi_key, max(lo, default_hi) if isinstance(lo, int) else default_hi)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (lo, hi)) or lo > hi:
        raise ValueError(f"{lo_key}/{hi_key} at {path} must be integers with {lo_key} <= {hi_key}")
    return lo, hi


def _short(value) -> str:
    """A request's value in an error message: enough to recognise it, never a page."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
