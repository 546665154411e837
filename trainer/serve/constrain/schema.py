"""JsonSchemaConstraint: the output is JSON valid against a schema, and the compiler from schema to grammar nodes.

The output is compact JSON (no whitespace) that `json.loads` accepts and that validates against the schema, for
the subset of JSON Schema that structured outputs use: type object / array / string / integer / number / boolean /
null (or a list of types); properties, required, additionalProperties; items, minItems, maxItems; minLength,
maxLength (at most 64 characters by default, so generation ends); minimum / maximum / exclusive* on integers (at
most 6 digits unless a bound needs more); numbers have at most 6 integer and 4 fraction digits, no exponent and no
bounds; enum and const (any JSON values); anyOf; allOf of one schema; local $ref into $defs/definitions, recursion
included (what pydantic's model_json_schema() writes); {} is any JSON value. Annotations (title, description,
default, ...) are ignored; any other keyword (pattern, format, oneOf, uniqueItems, ...) raises ValueError naming it.

Objects with properties emit every declared property, in declared order, optional ones included: that is always
valid and spares the model a choice per property. An object without properties is a map (keys of at most 16
characters, at most maxProperties entries, default 8); {"type": "object"} is thus any JSON object. Strings never
contain '"', '\\' or control characters: no escape is ever needed.
"""

from __future__ import annotations

import json
import math

from trainer.serve.constrain.cursor import Constraint
from trainer.serve.constrain.grammar import INF, Alt, Integer, Node, Number, Repeat, Seq, String, Trie

MAX_STRING, MAX_KEY, MAX_ITEMS, INT_DIGITS = 64, 16, 8, 6
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


class JsonSchemaConstraint(Constraint):
    """The output is compact JSON valid against `schema` (see the module docstring for the subset)."""

    def __init__(self, schema: dict):
        if not isinstance(schema, dict):
            raise ValueError("a JSON schema must be an object")
        super().__init__(_Compiler(schema).compile(schema, "#"))


class _Compiler:
    """Schema → nodes. Every malformed part is a one-line ValueError naming its path (`#/properties/a`), so a
    server can answer 400: a schema is request input, never a reason for a 500."""

    def __init__(self, root: dict):
        self.root, self.refs, self._any, self.depth = root, {}, None, 0

    def compile(self, s, path: str) -> Node:
        if self.depth >= MAX_DEPTH:
            where = path if len(path) <= 60 else path[:57] + "..."
            raise ValueError(f"schema is nested more than {MAX_DEPTH} levels deep (at {where})")
        self.depth += 1
        try:
            return self._compile(s, path)
        finally:
            self.depth -= 1

    def _compile(self, s, path: str) -> Node:
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
                return Trie(json.dumps(v, separators=(",", ":"), allow_nan=False) for v in values)
            except ValueError:
                raise ValueError(f"'enum'/'const' at {path} holds a non-finite number") from None
        if "anyOf" in s:
            if not isinstance(s["anyOf"], list) or not s["anyOf"]:
                raise ValueError(f"'anyOf' at {path} must be a non-empty list of schemas")
            return Alt([self.compile(o, f"{path}/anyOf/{i}") for i, o in enumerate(s["anyOf"])])
        kind = s["type"] if "type" in s else self._implied_type(s, path)
        if isinstance(kind, list):
            return Alt([self.compile({**s, "type": k}, path) for k in kind])
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

    def ref(self, ref: str) -> Node:
        if ref not in self.refs:
            self.refs[ref] = node = Alt()
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

    def any(self) -> Node:
        if self._any is None:
            self._any = node = Alt()
            entry = Seq([String(0, MAX_KEY), ":", node])
            node.opts = [String(0, MAX_STRING), Number(), Trie(["true", "false", "null"]),
                         Repeat("[", "]", node, 0, MAX_ITEMS), Repeat("{", "}", entry, 0, MAX_ITEMS)]
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
            parts: list[str | Node] = ["{"]
            for i, (key, sub) in enumerate(props.items()):
                parts += [("," if i else "") + json.dumps(key) + ":", self.compile(sub, f"{path}/properties/{key}")]
            return Seq([*parts, "}"])
        extra = s.get("additionalProperties", True)
        if extra is False:
            return Trie(["{}"])
        value = self.any() if extra is True or extra == {} else self.compile(extra, f"{path}/additionalProperties")
        return Repeat("{", "}", Seq([String(0, MAX_KEY), ":", value]), lo, hi)

    def _array(self, s, path):
        lo, hi = _counts(s, "minItems", "maxItems", path)
        return Repeat("[", "]", self.compile(s.get("items", {}), f"{path}/items"), lo, hi)

    def _string(self, s, path):
        lo, hi = _counts(s, "minLength", "maxLength", path, default_hi=MAX_STRING)
        return String(lo, hi)

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
        return Integer(lo, hi, digits)

    def _number(self, s, path):
        if bound := next((k for k in _BOUNDS if k in s), None):
            raise ValueError(f"unsupported JSON Schema keyword {bound!r} on a number at {path} (integers only)")
        return Number()

    def _boolean(self, s, path):
        return Trie(["true", "false"])

    def _null(self, s, path):
        return Trie(["null"])


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
