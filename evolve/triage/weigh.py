"""Weighing the evidence: signatures, metric rules and a run's own verdict become one `Diagnosis`."""

from __future__ import annotations

import math
import re
import string

from evolve.triage import prose
from evolve.triage.arbiter import Weighed
from evolve.triage.playbook import OPS, Playbook
from evolve.triage.scan import LogScan
from evolve.triage.shutdown import without_shutdown_noise
from evolve.triage.vocabulary import KINDS, Diagnosis, Evidence, Remedy

MAX_INFERRED = 0.99  # 1.0 is reserved for a verdict the run wrote itself
MAX_EVIDENCE = 5
GENERIC = ("crash", "healthy", "unknown")  # catch-alls: never rivals of a specific kind
# A specific kind needs this much evidence to beat a bare traceback; less (one weak signature, a shaky
# classifier guess) is listed but the run is called a crash (or unknown) rather than something it may not be.
DECIDES = 1.0
HARD = 3.0  # one hard signature: the classifier is not asked
PROSE_WEIGHT = 2.5  # the classifier's probability, as evidence: always below one hard signature
PROSE_MIN = 0.1  # a classifier guess below this probability is no evidence in a user's report (a question, a complaint)
PROSE_MIN_SYMPTOM = 0.4  # ... in machine output with a line that looks wrong: an unexplained error stays `unknown`
# (0.3, 0.35 and 0.4 name the same 628 of 833 fresh cases; 0.3 let a classifier rebuilt on more cases call a
# made-up `ERROR flux capacitor misaligned` disk_full at p 0.30)
PROSE_MIN_QUIET = 0.6  # ... and in output where nothing looks wrong
PROSE_MIN_WORDS = 5  # distinct words the classifier needs to read at all
PROSE_CAP = 0.7  # the most confidence words alone can give
# a user asking "is this normal?" about a run with no error in sight: the words may say healthy, but only when
# they are sure, no failure kind has any evidence and nothing printed an error (a false healthy is the worst miss)
PROSE_HEALTHY = 0.3
_ERROR_LINE = re.compile(r"(?i)\b(error|exception|traceback|fatal|killed|segfault|core dumped|abort(ed)?)\b|"
                         r"\bexit(ed)? (code|status|with)\s*[1-9-]")
# what a user says of a run that is not working; the words alone never call such a report healthy
_FAILING = re.compile(r"(?i)\b(fail\w*|crash\w*|hang(s|ing)?|hung|stuck|freez\w*|frozen|deadlock\w*|diverg\w*|"
                      r"explod\w*|collaps\w*|nan|inf|worse|worsen\w*|no longer|stops?|stopped|never|"
                      r"not (work|learn|converg|decreas|"
                      r"improv|mov|chang)\w*|(doesn'?t|does not|didn'?t|did not|won'?t) (work|learn|converg|decreas|"
                      r"improv|mov|chang)\w*)\b")
NO_EVIDENCE_CONFIDENCE = 0.25
# finish evidence that a worried user's own words do not overrule: more than one marker, or one strong one
WORRIED_FINISHED = 2.0
# a line of a user's words (a sentence that asks or doubts) rather than of machine output
_USERS_WORDS = re.compile(r"(?<=[^\W\d_])\?|？|(?i:\b(i|we|my|our)\b.*\b(expected|thought|wonder|not sure|unsure)\b)")
_MACHINE = re.compile(r"\w(Error|Exception|Warning)\b|Traceback|^\s*File \"|\[rank\d*\]|\b(exit|return) code\b|"
                      r"^\s*(\[?\d{4}-\d\d-\d\d|\d\d:\d\d:\d\d|INFO|WARN|ERROR|DEBUG)\b")
FINISHED = 1.0  # a finish marker (TRL's train_runtime, a trainer's summary): words alone do not overrule it
CRASH_ROOT = 2.0  # a crash signature this strong names the root when what follows is an `effect_of` kind


Found = dict[str, list[tuple[float, Evidence, dict]]]  # kind -> (weight, evidence, root-cause fields)


def _weigh(book: Playbook, scan: LogScan, why: list[tuple[float, str]]
           ) -> tuple[dict[str, float], Found, dict[str, float]]:
    """Score every kind: matched signatures (each once) plus fired metric rules; the latter also apart."""
    scores, from_rules = dict.fromkeys(KINDS, 0.0), dict.fromkeys(KINDS, 0.0)
    found: Found = {k: [] for k in KINDS}
    for i, hit in scan.hits.items():
        group, _, name = book.signatures[i].group.partition(":")
        if group == "kind":
            weight = book.signatures[i].weight
            scores[name] += weight
            short = hit.text if len(hit.text) <= 160 else hit.text[:160] + "…"  # root cause is one sentence
            found[name].append((weight, Evidence(hit.source, hit.line, hit.text),
                                {"match": short, "line": hit.line, **hit.groups}))
            where = f"{hit.source}:{hit.line}"
            why.append((weight, f"{name} +{weight:g}: signature /{book.signatures[i].regex}/ at {where}"))
    for kind, spec in book.kinds.items():
        for rule in spec.get("metric_rules", []):
            if fired := _rule(rule, scan):
                scores[kind] += rule["weight"]
                from_rules[kind] += rule["weight"]
                found[kind].append((rule["weight"], *fired))
                why.append((rule["weight"], f"{kind} +{rule['weight']:g}: metric rule: {fired[0].text}"))
    return scores, found, from_rules


def _rank(book: Playbook, scores: dict[str, float], found: Found) -> list[str]:
    """Specific kinds with evidence, root cause first: a kind that is an `effect_of` another kind with
    evidence (the NCCL timeout that follows an OOM on another rank) goes after it, whatever its score; then
    the higher score, then the earlier line (the earlier failure is the cause, the later a symptom)."""
    live = [k for k in KINDS if k not in GENERIC and scores[k] > 0]

    def effect(k: str) -> bool:
        causes, after = book.kinds[k].get("effect_of") or [], book.kinds[k].get("after") or []
        return any(c != k and scores[c] >= DECIDES and ("any" in causes or c in causes or
                                                        (c in after and _first_line(found[c]) < _first_line(found[k])))
                   for c in live)

    return sorted(live, key=lambda k: (effect(k), -scores[k], _first_line(found[k])))


def _effect_of_a_crash(book: Playbook, lead: str, found: Found, ranked: list[str]) -> bool:
    """A specific crash (a segfault, an illegal memory access: a signature that alone decides) before a kind
    that is an `effect_of` any failure, with no other cause in sight: the crash is the root."""
    if "any" not in (book.kinds[lead].get("effect_of") or []):
        return False
    crashed = [e.line for w, e, _ in found["crash"] if w >= CRASH_ROOT and e.line is not None]
    others = [k for k in ranked if k != lead and "any" not in (book.kinds[k].get("effect_of") or [])]
    # before the first timeout: a watchdog that times out aborts its own process (SIGABRT, core dumped)
    return bool(crashed) and not others and min(crashed) <= _first_line(found[lead])


def diagnose(book: Playbook, scan: LogScan, verdict: str | None, facts: dict | None = None,
             verdict_evidence: Evidence | None = None, framework: str | None = None,
             malformed: list[Evidence] = ()) -> Diagnosis:
    """Pick the kind, then gather its evidence, root cause and remedies. In order:
      - the run's own verdict (status.json, MLflow tags, the launcher's timeout), unless it says healthy
        and its metrics disagree;
      - a specific kind with enough evidence (signatures, metric rules and, when no hard signature fired,
        the prose classifier's probability);
      - `crash` for a bare traceback, or for output the trainer could not have written (`malformed`);
      - `healthy` only on positive evidence (a clean finish marker) and with no symptom in sight;
      - else `unknown`, with the lines that look wrong as evidence: never a false `healthy`."""
    facts, why = facts or {}, []
    finished_at: dict[str, int] = {}
    finish = _finish_lines(book, scan)
    for source, line in finish:
        finished_at[source] = min(line, finished_at.get(source, line))
    if (quiet := without_shutdown_noise(scan, finished_at)) is not scan:
        why.append((0.0, "a shutdown traceback after the finish marker (a closed pipe in process plumbing, "
                         "a cancelled thread): ignored"))
        scan = quiet
    scores, found, from_rules = _weigh(book, scan, why)
    if verdict == "healthy":  # a run that says it succeeded can still be sick in its metrics (reward hacking)
        scores = {k: from_rules[k] for k in KINDS}
    ranked = _rank(book, scores, found)
    # the evidence before any words: what the arbiter reads
    before_words = {"scores": dict(scores), "rules": from_rules, "ranked": list(ranked),
                    "strongest": {k: max([w for w, _, _ in v] + [0.0]) for k, v in found.items()}}
    guesses, words, text = [], book.words, ""
    reported = readable = False  # a user's words (a question, a complaint), and enough of them to read
    symptoms = _symptoms(book, scan, finish)
    # words explain what looks wrong or what a user reports; over output in which nothing looks wrong they
    # must be far surer (a plain `step 10 loss 0.5` is no failure), and they never outvote output the
    # trainer could not have written
    if words is not None and verdict is None and not malformed and (not ranked or scores[ranked[0]] < HARD):
        text = classifier_text(scan)
        guesses = words.predict(text)
        top, p = guesses[0]
        reported = bool(_REPORT.search(text))
        readable = len(set(prose.words(text))) >= PROSE_MIN_WORDS
        least = PROSE_MIN if reported else PROSE_MIN_SYMPTOM if symptoms else PROSE_MIN_QUIET
        if not readable:
            least = 1.01  # a CSV header or a bare number line: too few words to say anything
        if top not in GENERIC and p >= least:
            scores[top] += PROSE_WEIGHT * p
            shown = ", ".join(w for w, _ in words.words_for(text, top))
            said = Evidence("classifier", None, f"the words say {top} (p={p:.2f}): {shown}")
            found[top].append((PROSE_WEIGHT * p, said, {}))
            why.append((PROSE_WEIGHT * p, f"{top} +{PROSE_WEIGHT * p:.2f}: classifier p={p:.2f}, words: {shown}"))
            ranked = _rank(book, scores, found)
        why.append((0.0, "classifier: " + ", ".join(f"{k} {q:.2f}" for k, q in guesses[:3])))
    # a user's report only: over bare output (`epoch 1`, `epoch 2`) the words are no evidence of health
    said_healthy = bool(guesses) and guesses[0][0] == "healthy" and guesses[0][1] >= PROSE_HEALTHY and not ranked \
        and reported and readable \
        and not any(_ERROR_LINE.search(e.text) or _FAILING.search(e.text) for e in symptoms) \
        and scores["crash"] == 0 and scores["healthy"] >= 0
    lead = ranked[0] if ranked else None
    if lead and _effect_of_a_crash(book, lead, found, [k for k in ranked if scores[k] >= DECIDES]):
        lead = None  # the rank that crashed is the cause; the watchdog timeouts on the others followed it
    if lead and scores["healthy"] >= FINISHED and not symptoms \
            and all(e.source == "classifier" for _, e, _ in found[lead]):
        lead = None  # a clean finish with nothing wrong in sight: words alone do not overrule it
    if verdict in KINDS and not (verdict == "healthy" and lead):
        kind, confidence = verdict, 1.0
        why.insert(0, (math.inf, f"{kind}: the run's own verdict ({verdict_evidence or 'status'})"))
    elif lead and (scores[lead] >= DECIDES or scores[lead] > scores["crash"]):
        s1 = scores[lead]
        s2 = max([scores[k] for k in ranked[1:]] + [0.0])
        confidence = (1 - math.exp(-s1 / 2)) * s1 / (s1 + s2)
        from_words = sum(w for w, e, _ in found[lead] if e.source == "classifier")
        if from_words and s1 - from_words < DECIDES:  # mostly words: never as sure as a signature
            confidence = min(confidence, PROSE_CAP)
        kind, confidence = lead, min(MAX_INFERRED, confidence)
    elif scores["crash"] > 0 or malformed:
        kind = "crash"
        s1 = scores["crash"]
        confidence = min(MAX_INFERRED, (1 - math.exp(-s1 / 2)) * s1 / (s1 + (scores[lead] if lead else 0.0))) \
            if s1 else 0.5
    elif scores["healthy"] > 0 and not symptoms:
        kind, confidence = "healthy", min(MAX_INFERRED, 1 - math.exp(-scores["healthy"] / 2))
    elif _worried_but_finished(scores, ranked, symptoms, guesses):
        kind, confidence = "healthy", min(PROSE_CAP, 1 - math.exp(-scores["healthy"] / 2))
        why.append((0.0, "healthy: finish markers, and the only symptom words are the user's own"))
    elif said_healthy:
        kind, confidence = "healthy", min(PROSE_CAP, guesses[0][1])
        shown = ", ".join(w for w, _ in words.words_for(text, "healthy"))
        found["healthy"].append((0.0, Evidence("classifier", None, f"the words say healthy "
                                                                   f"(p={guesses[0][1]:.2f}): {shown}"), {}))
        why.append((0.0, f"healthy: classifier p={guesses[0][1]:.2f} and no error in sight, words: {shown}"))
    else:
        kind, confidence = "unknown", NO_EVIDENCE_CONFIDENCE
        why.append((0.0, "unknown: " + ("no signature, metric rule or word explains the lines that look wrong"
                                        if symptoms else "no evidence of a failure, and none of a clean finish")))
    # the arbiter weighs what the hand weighing weighed with words: where one hard signature decided, the words
    # were not asked and it is not either (held out, its 13 changes there were right 5 times, wrong 6); nor over
    # text too short to read (a CSV header, `epoch 1`), where the classifier says nothing
    if book.arbiter is not None and guesses and readable:
        weighed = Weighed(**before_words, probs=dict(guesses), said=kind, symptoms=len(symptoms),
                          error_symptom=any(_ERROR_LINE.search(e.text) for e in symptoms),
                          failing_symptom=any(_FAILING.search(e.text) for e in symptoms),
                          reported=reported, finished=bool(finish))
        kind, confidence = _arbitrate(book, weighed, confidence, found, why, text)
    items = sorted(found[kind], key=lambda t: (-t[0], t[1].line if t[1].line is not None else math.inf))
    evidence = ([verdict_evidence] if verdict_evidence else []) + list(malformed)
    for _, e, _ in items:  # two signatures on one line are one piece of evidence
        if not any((e.source, e.line, e.text) == (o.source, o.line, o.text) for o in evidence):
            evidence.append(e)
    if kind == "unknown":
        evidence += symptoms
    if not items and kind in GENERIC and not symptoms:  # nothing specific: the last lines are the best we have
        evidence += [Evidence(src, n, t) for src, n, t in list(scan.ring)[-3:] if t.strip()]
    fields = {**{k: v for _, _, g in reversed(items) for k, v in g.items()}, **facts}
    for sig in book.signatures:  # the verdict's own message can name the key, the hook, the step...
        if sig.group == f"kind:{kind}" and (m := sig.pattern.search(str(facts.get("message", "")))):
            fields.update({k: v for k, v in m.groupdict().items() if v is not None and k not in fields})
    context = " ".join([str(facts.get("message", ""))] + [e.text for e in evidence] + [t for _, _, t in scan.ring])
    also = [k for k in ranked if k != kind and scores[k] >= DECIDES]
    candidates = [kind] + [k for k in [*ranked, *(g for g, q in guesses if q >= 0.1)] if k != kind]
    return Diagnosis(kind, round(confidence, 2), evidence[:MAX_EVIDENCE],
                     _root_cause(book.kinds[kind]["root_cause"], fields, kind, evidence),
                     remedies(book.kinds[kind].get("remedies") or [], context),
                     framework or _framework(book, scan), also,
                     [line for _, line in sorted(why, key=lambda t: -t[0])],
                     candidates=list(dict.fromkeys(candidates))[:4])


# the marks of a user's report rather than a program's output: a question, a complaint, a negation
# a question is a word then `?` (a tqdm bar's `[00:00<?, ?it/s]` is none), or the full-width `？`
_REPORT = re.compile(r"(?<=[^\W\d_])\?(?!\w)|？|"
                     r"(?i:\b(issue|problem|bug|help|why|how (do|can|to)|any (idea|hint)s?|does ?n[o']t|can ?n[o']t|"
                     r"won'?t|is ?n[o']t|are ?n[o']t|did ?n[o']t|never|no longer|keeps?|suddenly|"
                     r"instead of|expected|should)\b)")


def _arbitrate(book: Playbook, weighed: Weighed, confidence: float, found: Found, why: list[tuple[float, str]],
               text: str) -> tuple[str, float]:
    """The arbiter's kind and confidence where it overrules the hand weighing's (`weighed.said`), which
    then stays in `why`. Its probability is the confidence: capped at PROSE_CAP when only words back the kind."""
    choice = book.arbiter.choose(weighed)
    kind = choice.kind
    if kind == weighed.said:
        return kind, confidence
    why.insert(0, (math.inf, f"{kind}: the arbiter (p={choice.p:.2f}) over the hand weighing's {weighed.said} "
                             f"(p={choice.probs.get(weighed.said, 0.0):.2f})"))
    on_words = sum(w for w, e, _ in found[kind] if e.source != "classifier") < DECIDES
    if not found[kind]:  # the words are its evidence
        shown = ", ".join(w for w, _ in book.words.words_for(text, kind))
        said = f"the words say {kind} (p={weighed.probs.get(kind, 0.0):.2f}): {shown}"
        found[kind].append((0.0, Evidence("classifier", None, said), {}))
    return kind, min(PROSE_CAP if on_words else MAX_INFERRED, choice.p)


def classifier_text(scan: LogScan) -> str:
    """What the classifier reads: the whole text when the head holds it, else the head and the last lines.
    The head, not the ring: the ring's lines are cut to an excerpt, and a user's report is often one long
    paragraph a line, of which the classifier (trained on whole texts) would read only the start."""
    if scan.whole_in_head():
        return scan.head
    return scan.head + "\n" + "\n".join(t for _, _, t in scan.ring)


def _worried_but_finished(scores: dict[str, float], ranked: list[str], symptoms: list[Evidence],
                          guesses: list[tuple[str, float]]) -> bool:
    """A user who asks "did something crash?" under a log with two finish markers and no failure signature: the
    symptom words are the question's, not the run's. Needs the classifier to read the words as healthy too."""
    return scores["healthy"] >= WORRIED_FINISHED and not ranked and scores["crash"] == 0 \
        and bool(guesses) and guesses[0][0] == "healthy" and guesses[0][1] >= PROSE_HEALTHY \
        and all(_USERS_WORDS.search(e.text) and not _MACHINE.search(e.text) for e in symptoms)


def _finish_lines(book: Playbook, scan: LogScan) -> set[tuple[str, int]]:
    """(source, line) of every finish marker: a healthy signature worth at least FINISHED."""
    return {(h.source, h.line) for i, h in scan.hits.items()
            if book.signatures[i].group == "kind:healthy" and book.signatures[i].weight >= FINISHED}


def _symptoms(book: Playbook, scan: LogScan, finish: set[tuple[str, int]]) -> list[Evidence]:
    """Lines that look wrong (an error, a symptom word): the first of each symptom pattern and any among
    the last lines, in line order; the evidence of an `unknown`."""
    seen = {(h.source, h.line): Evidence(h.source, h.line, h.text) for i, h in scan.hits.items()
            if book.signatures[i].group == "symptom"}
    # a finish marker's own words (`Trainer.fit` stopped: `max_epochs=60` reached) are no symptom
    patterns = [s.pattern for s in book.signatures if s.group == "symptom"]
    for key in finish:
        seen.pop(key, None)
    for src, n, text in scan.ring:
        if (src, n) not in seen and (src, n) not in finish and any(p.search(text) for p in patterns):
            seen[(src, n)] = Evidence(src, n, text)
    return sorted(seen.values(), key=lambda e: (e.source, e.line or 0))[:MAX_EVIDENCE]


def _first_line(found: list[tuple[float, Evidence, dict]]) -> int:
    """Earliest line of a kind's evidence: at equal scores the earlier failure is the cause, the later a symptom."""
    lines = [e.line for w, e, _ in found if e.line is not None and w > 0]  # a negative signature is no failure
    return min(lines) if lines else 1 << 62


def _rule(rule: dict, scan: LogScan) -> tuple[Evidence, dict] | None:
    """Evaluate one metric rule; on firing return its evidence and the fields it offers root_cause.
    A rule whose `unless` guard holds stays quiet: low entropy in a policy that also scores is convergence,
    not collapse."""
    fired = _fires(rule, scan)
    if fired is None or any(_holds(g, scan) for g in _guards(rule)):
        return None
    return fired


def _fires(rule: dict, scan: LogScan) -> tuple[Evidence, dict] | None:
    need = rule.get("min_count", 2)
    if "rising" in rule:
        # the strongest rise and the strongest fall: one of several eval sets falling is enough
        # a spread (a reward's std, its variance) is not a level: a narrowing std is no quality that fell
        ups, downs = ([(k, v) for k, v in scan.all_series(rule[side], need) if not _SPREAD.search(k)]
                      for side in ("rising", "falling"))
        if not ups or not downs:
            return None
        uk, us = max(ups, key=lambda t: _change(t[1]))
        dk, ds = max(downs, key=lambda t: -_change(t[1]))
        (u0, u1), (d0, d1) = us.early_late(), ds.early_late()
        delta = rule.get("min_change", 0.0)
        if u1 - u0 < delta or d0 - d1 < delta:
            return None
        rise, fall = f"{uk} rose {u0:.3g} → {u1:.3g}", f"{dk} fell {d0:.3g} → {d1:.3g}"
        ev = Evidence(scan.series_source[dk], ds.last_line, f"{rise} while {fall}")
        return ev, {"rise": rise, "fall": fall, "key": uk, "value": f"{u1:.3g}", "line": ds.last_line}
    if rule["op"] == "nonfinite":
        found = scan.find_series(rule["keys"], need)
        if not found or not found[1].nonfinite:
            return None
        key, s = found
        return (Evidence(scan.series_source[key], s.nonfinite_line, f"{key} is non-finite ({s.nonfinite} values)"),
                {"key": key, "value": "nan", "line": s.nonfinite_line})
    if rule["op"] in ("grows", "shrinks"):
        found = scan.find_series(rule["keys"], max(need, 4))
        if not found:
            return None
        key, s = found
        early, late = s.early_late()
        factor = float(rule["value"])
        grew = rule["op"] == "grows" and late > 0 and late >= factor * max(early, 1e-12)
        shrank = rule["op"] == "shrinks" and early > 0 and late * factor <= early
        if not (grew or shrank):
            return None
        ratio = late / early if early else math.inf
        text = f"{key} {'grew' if grew else 'fell'} {early:.3g} → {late:.3g} (×{ratio:.3g})"
        return Evidence(scan.series_source[key], s.last_line, text), {"key": key, "value": f"{late:.4g}",
                                                                      "line": s.last_line}
    if rule["op"] == "constant":
        found = scan.find_series(rule["keys"], max(need, 3))
        if not found or found[1].nonfinite or found[1].max - found[1].min > float(rule["value"]):
            return None
        key, s = found
        text = f"{key} stayed at {s.last:.4g} (all {s.n} values within {float(rule['value']):g})"
        return Evidence(scan.series_source[key], s.last_line, text), {"key": key, "value": f"{s.last:.4g}",
                                                                      "line": s.last_line}
    compared = _compare(rule, scan, need)
    if compared is None:
        return None
    key, agg, value, line, n = compared
    text = f"{key} {agg} = {value:.4g} {rule['op']} {rule['value']:g} (over {n} values)"
    return Evidence(scan.series_source[key], line, text), {"key": key, "value": f"{value:.4g}", "line": line}


_SPREAD = re.compile(r"(?i)(^|[/_.\- ])(std|stdev|stddev|var|variance)([/_.\- ]|$)")


def _change(s) -> float:
    early, late = s.early_late()
    return late - early


def _guards(rule: dict) -> list[dict]:
    guards = rule.get("unless") or []
    return guards if isinstance(guards, list) else [guards]


def _holds(guard: dict, scan: LogScan) -> bool:
    return _compare(guard, scan, guard.get("min_count", 1)) is not None


def _compare(cond: dict, scan: LogScan, need: int) -> tuple[str, str, float, int | None, int] | None:
    """`agg(first series of cond's keys) op value`: (key, agg, value, line, count) when it holds, else None."""
    found = scan.find_series(cond["keys"], need)
    if not found or not found[1].n:
        return None
    key, s = found
    agg = cond.get("agg", "last")
    value, line = {"last": (s.last, s.last_line), "max": (s.max, s.max_line), "min": (s.min, s.min_line),
                   "mean": (s.total / s.n, s.last_line), "range": (s.max - s.min, s.max_line)}[agg]
    if not math.isfinite(value) or not OPS[cond["op"]](float(value), float(cond["value"])):
        return None
    return key, agg, value, line, s.n


def _root_cause(templates: list[str], fields: dict, kind: str, evidence: list[Evidence]) -> str:
    """The first template whose fields are all known: a sentence with a real number beats a vague one."""
    for template in templates:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f}
        if names <= fields.keys():
            return template.format(**fields)
    return f"{kind}: {evidence[0].text}" if evidence else kind


def remedies(specs: list[dict], context: str) -> list[Remedy]:
    """Ranked as written, except that a remedy whose `when` matches the evidence jumps to the front and a
    remedy whose `when` does not match is left out."""
    chosen = [s for s in specs if s.get("when") and re.search(s["when"], context)]
    chosen += [s for s in specs if not s.get("when")]
    return [Remedy(s["id"], s["text"], dict(s.get("advice") or {})) for s in chosen]


def _framework(book: Playbook, scan: LogScan) -> str | None:
    """The framework the user configures: the lowest tier with any hit, then the most distinct hits."""
    counts: dict[str, int] = {}
    for i in scan.hits:
        group, _, name = book.signatures[i].group.partition(":")
        if group == "framework":
            counts[name] = counts.get(name, 0) + 1
    if not counts:
        return None
    return min(counts, key=lambda n: (book.frameworks[n].get("tier", 9), -counts[n]))


