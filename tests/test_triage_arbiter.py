"""The arbiter: the learned last word between the hand-weighed rules and the prose classifier. It ships
fitted to the code's features, it overrules the hand weighing only in the open (`why` names both), and its
guards hold whatever its weights: no healthy without a clean finish, no kind for an unknown it is unsure of."""

from __future__ import annotations

import json

import pytest

from evolve.triage import arbiter, load_playbook, triage, triage_text
from evolve.triage.arbiter import CANDIDATES, FEATURES, Arbiter, Weighed

BOOK = load_playbook()


def _weighed(said: str = "unknown", probs: dict | None = None, **kw) -> Weighed:
    zero = dict.fromkeys(CANDIDATES, 0.0)
    return Weighed(scores={**zero, **kw.pop("scores", {})}, rules=dict(zero), strongest=dict(zero),
                   probs=probs or {"crash": 1.0}, ranked=kw.pop("ranked", []), said=said, **kw)


def _trusting_the_words(weight: float = 5.0) -> Arbiter:
    """An arbiter that follows the classifier alone: what the guards must hold against."""
    theta = [0.0] * len(FEATURES)
    theta[FEATURES.index("log_p")] = weight
    return Arbiter(theta)


def test_the_shipped_arbiter_is_fitted_to_the_codes_features(tmp_path):
    assert BOOK.arbiter is not None and len(BOOK.arbiter.theta) == len(FEATURES)
    raw = json.loads(arbiter.MODEL.read_text())
    assert raw["features"] == list(FEATURES) and sum(raw["fitted_on"].values()) >= 600
    stale = tmp_path / "arbiter.json"
    stale.write_text(json.dumps({**raw, "features": raw["features"][:-1]}))
    with pytest.raises(ValueError, match=r"arbiter\.json: fitted on features .* rebuild it with "
                                         r"scripts/build_triage_arbiter\.py"):
        arbiter.load.__wrapped__(stale)


def test_it_never_calls_a_run_healthy_without_a_clean_finish():
    sure = {"healthy": 0.98, "crash": 0.02}
    judge = _trusting_the_words()
    assert judge.choose(_weighed("unknown", sure)).kind != "healthy"  # no finish marker
    for dirty in ({"error_symptom": True}, {"failing_symptom": True}, {"scores": {"crash": 1.0}}):
        assert judge.choose(_weighed("crash", sure, finished=True, **dirty)).kind != "healthy", dirty
    assert judge.choose(_weighed("crash", sure, finished=True)).kind == "healthy"
    unsure = {"healthy": 0.55, "crash": 0.45}  # below HEALTHY_P: it needs to be surer than the words
    assert _trusting_the_words(1.0).choose(_weighed("crash", unsure, finished=True)).kind == "crash"


def test_an_unknown_stays_unknown_unless_it_is_sure():
    assert arbiter.UNKNOWN_P >= 0.5
    split = {k: 1 / len(CANDIDATES) for k in CANDIDATES}
    assert _trusting_the_words().choose(_weighed("unknown", split, symptoms=1)).kind == "unknown"
    assert _trusting_the_words().choose(_weighed("unknown", {"disk_full": 0.97, "crash": 0.03},
                                                 symptoms=1)).kind == "disk_full"


class _GuessesScaffold:
    """A classifier stand-in: a guess too weak for the hand weighing (below PROSE_MIN_SYMPTOM)."""

    def predict(self, text):
        return [("scaffold_error", 0.25), ("crash", 0.05), ("healthy", 0.01)]

    def words_for(self, text, kind, n=6):
        return [("reward_fn", 0.3)]


def test_it_overrules_the_hand_weighing_in_the_open():
    book = load_playbook()
    book.words, book.arbiter = _GuessesScaffold(), None
    report = ("Traceback (most recent call last):\n  File \"train.py\", line 12, in <module>\n"
              "RuntimeError: flux capacitor misaligned on node 3\n")
    assert triage_text(report, book).kind == "crash"
    book.arbiter = _trusting_the_words()
    d = triage_text(report, book)
    assert d.kind == "scaffold_error"
    first = d.explain[0]
    assert first.startswith("scaffold_error: the arbiter (p=") and "over the hand weighing's crash" in first
    assert d.confidence <= 0.7  # only words back it: never as sure as a signature
    assert any(e.source == "classifier" and "scaffold_error" in e.text for e in d.evidence)


def test_the_run_s_own_verdict_and_text_too_short_to_read_are_not_its_to_judge(tmp_path):
    book = load_playbook()
    book.words, book.arbiter = _GuessesScaffold(), _trusting_the_words()
    assert triage_text("epoch 1\nepoch 2\n", book).kind == "unknown"  # too few words for any classifier
    run = tmp_path / "run"
    run.mkdir()
    (run / "status.json").write_text(json.dumps({"status": "failed", "summary": {}, "failure": {
        "kind": "cuda_oom", "step": 3, "message": "RuntimeError: the reward_fn returned 7 scores"}}))
    assert triage(str(run), book).kind == "cuda_oom"


def test_fitting_learns_which_evidence_to_trust():
    """Reports whose true kind is always the classifier's pick, while the hand weighing is wrong half the
    time: the fit must weigh the words above the hand weighing, and be deterministic."""
    cases = []
    for i in range(60):
        right, wrong = CANDIDATES[i % 7], CANDIDATES[7 + i % 5]
        probs = {right: 0.6, wrong: 0.3, "crash": 0.1}
        cases.append((_weighed(wrong if i % 2 else right, probs), right))
    model = arbiter.fit(cases, lam=1.0)
    assert model.theta[FEATURES.index("log_p")] > model.theta[FEATURES.index("hand")]
    assert sum(model.choose(w).kind == k for w, k in cases) == len(cases)
    assert arbiter.fit(cases, lam=1.0).theta == model.theta
