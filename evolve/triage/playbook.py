"""playbooks/triage.yaml, read strictly: a typo in the knowledge fails loudly instead of never matching."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from evolve.strict import check_keys
from evolve.triage import arbiter, prose
from evolve.triage.arbiter import Arbiter
from evolve.triage.prose import Model
from evolve.triage.regexes import Signature
from evolve.triage.scan import LogScan
from evolve.triage.vocabulary import FRAMEWORKS, KINDS

PLAYBOOK = Path(__file__).resolve().parents[2] / "playbooks" / "triage.yaml"
# the scanner's analysis of every shipped regex (scripts/build_triage_index.py): loading skips ~1 s of regex
# parsing a process; a regex not in it (an edited playbook) is analysed and compiled as it loads
INDEX = PLAYBOOK.with_name("triage_index.json")
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, where PyYAML has it: 10x faster


@dataclass
class Playbook:
    kinds: dict[str, dict[str, Any]]
    frameworks: dict[str, dict[str, Any]]
    signatures: list[Signature]  # group is "kind:<kind>", "framework:<name>" or "symptom"
    metric_keys: list[str]
    words: Model | None = None  # the prose classifier (evolve/triage/prose.py), when its weights ship
    # the learned last word between rules and words (evolve/triage/arbiter.py); anything with its `choose`
    arbiter: Arbiter | None = None

    def scanner(self) -> LogScan:
        return LogScan(self.signatures, self.metric_keys)


_KIND_KEYS = {"signatures", "metric_rules", "root_cause", "remedies", "effect_of", "after"}
_RULE_KEYS = {"keys", "agg", "op", "value", "weight", "min_count", "rising", "falling", "min_change", "unless"}
_UNLESS_KEYS = {"keys", "agg", "op", "value", "min_count"}
_REMEDY_KEYS = {"id", "text", "advice", "when"}  # what a remedy sets is the workload's (playbooks/workloads/)
OPS = {">": float.__gt__, "<": float.__lt__, ">=": float.__ge__, "<=": float.__le__}
_AGGS = ("last", "max", "min", "mean", "range")  # range: max - min, how far a series moved
# series ops beyond comparisons: any NaN/Inf; late mean ≥ value × early mean (grows) or ≤ early / value (shrinks);
# every value within `value` of every other (constant: a reward that never moves gives no learning signal)
TRENDS = ("nonfinite", "grows", "shrinks", "constant")
# `<op> <value>` over a config value: moves' `when` and remedies' `requires` (evaluated by the rules brain)
CONDITION = re.compile(r"^\s*(<=|>=|==|!=|<|>)\s*(.+?)\s*$")


def load_playbook(path: str | Path | None = None) -> Playbook:
    """Read and strictly validate the playbook: an unknown kind, key, framework or a bad regex is a
    ValueError naming it, so a typo in the knowledge fails loudly instead of silently never matching."""
    path = Path(path) if path else PLAYBOOK
    raw = yaml.load(path.read_text(), Loader=SAFE_LOADER) or {}
    known = _index()

    def _signature(group: str, regex: str, weight: float, where: str) -> Signature:
        try:
            return Signature(group, regex, weight, known.get(regex) if isinstance(regex, str) else None)
        except (re.error, TypeError) as e:
            raise ValueError(f"{where}: bad regex {regex!r}: {e}") from None

    check_keys(raw, {"frameworks", "kinds", "symptoms"}, str(path))
    frameworks, kinds = raw.get("frameworks") or {}, raw.get("kinds") or {}
    check_keys(frameworks, set(FRAMEWORKS), "frameworks")
    check_keys(kinds, set(KINDS), "kinds")
    if missing := [k for k in KINDS if k not in kinds]:
        raise ValueError(f"kinds: missing {missing} (the vocabulary is closed: every kind needs an entry)")
    for fragment in sorted(path.with_suffix(".d").glob("*.yaml")):
        _merge(fragment, raw, kinds)
    sigs: list[Signature] = [_signature("symptom", r, 0.0, "symptoms") for r in raw.get("symptoms") or []]
    for name, fw in frameworks.items():
        check_keys(fw, {"tier", "signatures"}, f"frameworks.{name}")
        sigs += [_signature(f"framework:{name}", r, 1.0, f"frameworks.{name}") for r in fw.get("signatures", [])]
    metric_keys: list[str] = []
    for kind, spec in kinds.items():
        where = f"kinds.{kind}"
        check_keys(spec, _KIND_KEYS, where)
        for s in spec.get("signatures", []):
            check_keys(s, {"regex", "weight"}, f"{where}.signatures")
            if "regex" not in s or not isinstance(s.get("weight"), (int, float)):
                raise ValueError(f"{where}.signatures: each signature needs a regex and a numeric weight")
            sigs.append(_signature(f"kind:{kind}", s["regex"], float(s["weight"]), f"{where}.signatures"))
        for rule in spec.get("metric_rules", []):
            metric_keys += _check_rule(rule, f"{where}.metric_rules")
        causes = spec.get("effect_of") or []
        if not isinstance(causes, list) or any(c != "any" and c not in KINDS for c in causes):
            raise ValueError(f"{where}.effect_of: expected a list of kinds (or [any]), got {causes!r}")
        after = spec.get("after") or []
        if not isinstance(after, list) or any(c not in KINDS for c in after):
            raise ValueError(f"{where}.after: expected a list of kinds, got {after!r}")
        if isinstance(spec.get("root_cause"), str):
            spec["root_cause"] = [spec["root_cause"]]
        if not spec.get("root_cause"):
            raise ValueError(f"{where}.root_cause: required")
        for r in spec.get("remedies") or []:
            check_keys(r, _REMEDY_KEYS, f"{where}.remedies")
            check_keys(r.get("advice") or {}, set(FRAMEWORKS), f"{where}.remedies.{r.get('id')}.advice")
            if not r.get("id") or not r.get("text"):
                raise ValueError(f"{where}.remedies: each remedy needs an id and a text")
    return Playbook(kinds, frameworks, sigs, sorted(set(metric_keys)), prose.load(), arbiter.load())


def _merge(fragment: Path, raw: dict, kinds: dict) -> None:
    """A fragment (playbooks/triage.d/*.yaml) adds signatures and metric rules to kinds, and symptoms; the
    kinds, their root causes and remedies stay in the main file, so knowledge can grow by concern."""
    extra = yaml.load(fragment.read_text(), Loader=SAFE_LOADER) or {}
    check_keys(extra, {"kinds", "symptoms"}, str(fragment))
    check_keys(extra.get("kinds") or {}, set(KINDS), f"{fragment.name}: kinds")
    raw["symptoms"] = (raw.get("symptoms") or []) + (extra.get("symptoms") or [])
    for kind, spec in (extra.get("kinds") or {}).items():
        check_keys(spec, {"signatures", "metric_rules"}, f"{fragment.name}: kinds.{kind}")
        for key in ("signatures", "metric_rules"):
            kinds[kind][key] = (kinds[kind].get(key) or []) + (spec.get(key) or [])


def _check_rule(rule: Any, where: str) -> list[str]:
    """Validate one metric rule (and its `unless` guards); return every metric key it reads."""
    check_keys(rule, _RULE_KEYS, where)
    if "weight" not in rule or not ("keys" in rule) ^ ("rising" in rule and "falling" in rule):
        raise ValueError(f"{where}: each rule needs a weight and either keys or rising+falling")
    _numbers(rule, ("value", "weight", "min_change", "min_count"), where)
    if "rising" not in rule and rule.get("op") not in (*OPS, *TRENDS):
        raise ValueError(f"{where}.op: {rule.get('op')!r} is not one of {[*OPS, *TRENDS]}")
    if rule.get("agg", "last") not in _AGGS:
        raise ValueError(f"{where}.agg: {rule['agg']!r} is not last, max, min or mean")
    read = rule.get("keys", []) + rule.get("rising", []) + rule.get("falling", [])
    guards = rule.get("unless", [])
    for guard in guards if isinstance(guards, list) else [guards]:
        # a guard names what a healthy run of this shape also shows (a high reward): then the rule is quiet
        check_keys(guard, _UNLESS_KEYS, f"{where}.unless")
        if not isinstance(guard.get("keys"), list) or not guard["keys"] or guard.get("op") not in OPS \
                or "value" not in guard:
            raise ValueError(f"{where}.unless: each guard needs keys (a list), op (one of {list(OPS)}) and a value, "
                             f"e.g. {{keys: [train/reward], agg: last, op: '>=', value: 0.5}}")
        _numbers(guard, ("value", "min_count"), f"{where}.unless")
        if guard.get("agg", "last") not in _AGGS:
            raise ValueError(f"{where}.unless.agg: {guard['agg']!r} is not last, max, min or mean")
        read += guard["keys"]
    return read


def _numbers(mapping: dict, names: tuple[str, ...], where: str) -> None:
    for key in names:  # YAML 1.1 reads 1.0e4 (no sign) as a string
        if key in mapping and (not isinstance(mapping[key], (int, float)) or isinstance(mapping[key], bool)):
            raise ValueError(f"{where}.{key}: {mapping[key]!r} is not a number (write 1.0e+4)")




def _index() -> dict[str, tuple]:
    """regex -> (literals, digit-blind, relaxed regex); empty when the index is absent or unreadable (then
    every regex is analysed as it loads: slower, never wrong)."""
    try:
        raw = json.loads(INDEX.read_text())
    except (OSError, ValueError):
        return {}
    return {r: tuple(a) for r, a in raw.items()} if isinstance(raw, dict) else {}


def regexes(book: Playbook) -> list[str]:
    """Every distinct regex of a loaded playbook, in load order: what the index covers."""
    return list(dict.fromkeys(s.regex for s in book.signatures))


