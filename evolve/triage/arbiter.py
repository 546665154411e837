"""The arbiter: a learned last word between the hand-weighed rules and the prose classifier.

The rules (signatures, metric rules, their weighing in weigh.py) and the classifier are each right on 70–75 %
of the reports they have never seen, but not on the same reports. The arbiter is a conditional logit over
the candidate kinds: each kind gets a score θ·φ(kind) from a few features of the evidence for it (its
signature and metric-rule weights, the classifier's probability, whether the hand weighing chose it, whether
a finish marker backs `healthy`...) and the softmax over kinds is its probability, which is also the
confidence of a kind it chooses.

It is fitted (scripts/build_triage_arbiter.py) on what the rules and the classifier said of *fresh* cases:
each corpus round judged by the rules as they stood before that round was learnt from (git history) and a
classifier trained without that round. That is how both meet a new report, where fitting on the dev half
they were built from would only teach it to trust them. Held out a round at a time it names 748 of 990
fresh cases against the hand weighing's 725 (`--report` prints the table); the gain is mostly in the older
rounds, whose rules were weaker: on the five latest (r12-r16) it is 98 against 95.

Two guards keep it honest, as the hand weighing is:
  - `healthy` needs positive evidence: the arbiter may call a run healthy only where the hand weighing did,
    or where a finish marker fired with no error, crash or failing word in sight and it is at least
    HEALTHY_P sure;
  - an `unknown` stays unknown unless the arbiter is at least UNKNOWN_P sure of a kind.
It is asked only where the hand weighing asked the classifier: not where one hard signature decided, not of
text too short to read, never over a run's own verdict.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from evolve.triage.vocabulary import KINDS

MODEL = Path(__file__).resolve().parents[2] / "playbooks" / "triage_arbiter.json"
HEALTHY_P = 0.6  # the least it must be sure of a healthy the hand weighing did not call
# `unknown` means nothing explains the lines that look wrong; a kind the arbiter is less sure of than this is
# no explanation (held out over rounds r4-r10, its picks over an unknown were right 5 in 9 at p >= 0.6, 12 in 28 at 0.3)
UNKNOWN_P = 0.6
CANDIDATES = tuple(k for k in KINDS if k != "unknown")  # no case is labelled unknown: it is the absence of a kind
HARD = 3.0  # weigh.HARD: one signature this strong decides on its own


@dataclass
class Weighed:
    """What the hand weighing saw of one report: the arbiter's input."""
    scores: dict[str, float]  # kind -> summed signature and metric-rule weights (no classifier)
    rules: dict[str, float]  # kind -> the metric rules' part of it
    strongest: dict[str, float]  # kind -> its strongest single signature or rule
    probs: dict[str, float]  # the classifier's probabilities
    ranked: list[str]  # specific kinds with evidence, root first (weigh._rank)
    said: str  # the hand weighing's kind
    symptoms: int = 0  # lines that look wrong
    error_symptom: bool = False  # one of them prints an error
    failing_symptom: bool = False  # one of them says the run fails (hangs, diverges, crashes)
    reported: bool = False  # a user's words: a question, a complaint
    finished: bool = False  # a finish marker fired (a healthy signature worth weigh.FINISHED)
    top: str = field(init=False)  # the classifier's first choice

    def __post_init__(self) -> None:
        self.top = max(self.probs, key=self.probs.get) if self.probs else ""


FEATURES = ("signature", "negative_signature", "metric_rule", "hard", "p", "log_p", "classifier_top", "lead",
            "ranked", "hand", "p_reported", "log_p_reported", "healthy_symptom", "healthy_error", "healthy_failing",
            "healthy_reported", "healthy_finish", "crash_beside_a_kind")


def features(w: Weighed, kind: str) -> list[float]:
    """φ(kind), in FEATURES order. Signature weights enter as log(1+s): the tenth signature of a kind adds
    less than the first. Features named healthy_* or crash_* are zero for every other kind."""
    signature = w.scores[kind] - w.rules[kind]
    p = w.probs.get(kind, 0.0)
    log_p = math.log(p + 1e-4)
    healthy, reported = float(kind == "healthy"), float(w.reported)
    return [math.log1p(max(signature, 0.0)), float(signature < 0), math.log1p(max(w.rules[kind], 0.0)),
            float(w.strongest[kind] >= HARD), p, log_p, float(kind == w.top),
            float(bool(w.ranked) and kind == w.ranked[0]), float(kind in w.ranked), float(kind == w.said),
            p * reported, log_p * reported,
            healthy * float(w.symptoms > 0), healthy * float(w.error_symptom), healthy * float(w.failing_symptom),
            healthy * reported, healthy * math.log1p(max(w.scores["healthy"], 0.0)),
            float(kind == "crash") * float(bool(w.ranked))]


def allowed(w: Weighed, kind: str) -> bool:
    """`healthy` only with positive evidence: the hand weighing's own call, or a finish marker with no error,
    no crash, no word of a failing run and no metric rule of a failure in sight (a false healthy is the worst
    miss; a finish marker says the process ended, the metrics say how the run went)."""
    return kind != "healthy" or w.said == "healthy" or \
        (w.finished and not w.error_symptom and not w.failing_symptom and w.scores["crash"] <= 0
         and not any(v > 0 for k, v in w.rules.items() if k != "healthy"))


@dataclass
class Choice:
    kind: str
    p: float
    probs: dict[str, float]


@dataclass
class Arbiter:
    theta: list[float]  # one weight a feature, the same for every kind

    def probabilities(self, w: Weighed) -> dict[str, float]:
        """The softmax over the kinds `allowed` for this report."""
        kinds = [k for k in CANDIDATES if allowed(w, k)]
        u = [sum(t * f for t, f in zip(self.theta, features(w, k), strict=True)) for k in kinds]
        top = max(u)
        e = [math.exp(v - top) for v in u]
        total = sum(e)
        return {k: v / total for k, v in zip(kinds, e, strict=True)}

    def choose(self, w: Weighed) -> Choice:
        """The most probable kind, under the two guards of the module's docstring."""
        probs = self.probabilities(w)
        for kind in sorted(probs, key=lambda k: -probs[k]):
            if kind == "healthy" and w.said != "healthy" and probs[kind] < HEALTHY_P:
                continue  # not sure enough to call healthy a run the hand weighing did not
            if w.said == "unknown" and probs[kind] < UNKNOWN_P:
                return Choice("unknown", probs[kind], probs)
            return Choice(kind, probs[kind], probs)
        return Choice(w.said, 0.0, probs)


@cache
def load(path: Path = MODEL) -> Arbiter | None:
    """The shipped arbiter, or None when there is none (the hand weighing then has the last word)."""
    if not path.is_file():
        return None
    raw = json.loads(path.read_text())
    if raw.get("features") != list(FEATURES):
        raise ValueError(f"{path}: fitted on features {raw.get('features')}, the code has {list(FEATURES)}; "
                         f"rebuild it with scripts/build_triage_arbiter.py")
    return Arbiter(raw["theta"])


def fit(cases: list[tuple[Weighed, str]], lam: float = 3.0) -> Arbiter:
    """Maximum likelihood with an L2 penalty `lam` on θ (numpy and scipy: build time only).

    No per-kind bias: a bias would learn how often each kind occurs in the fresh rounds, which follows what
    their writers were asked for (one round was told to look for healthy runs, another for timeouts), not
    what users report. Held out a round at a time, biases add 2 of 681 cases: not worth a prior that would
    not carry over to reports of another mix.
    A case whose true kind is not `allowed` (a healthy run with no finish marker) teaches nothing: left out."""
    import numpy as np
    from scipy.optimize import minimize

    cases = [(w, k) for w, k in cases if allowed(w, k)]
    x_nkf = np.array([[features(w, k) for k in CANDIDATES] for w, _ in cases])
    mask_nk = np.array([[0.0 if allowed(w, k) else -1e9 for k in CANDIDATES] for w, _ in cases])
    y_n = np.array([CANDIDATES.index(k) for _, k in cases])
    rows = np.arange(len(cases))

    def loss(theta_f):
        u_nk = x_nkf @ theta_f + mask_nk
        u_nk = u_nk - u_nk.max(1, keepdims=True)
        lse_n = np.log(np.exp(u_nk).sum(1))
        p_nk = np.exp(u_nk - lse_n[:, None])
        p_nk[rows, y_n] -= 1  # d(nll)/du
        value = (lse_n - u_nk[rows, y_n]).sum() + lam * (theta_f @ theta_f) / 2
        return value, np.einsum("nk,nkf->f", p_nk, x_nkf) + lam * theta_f

    theta_f = minimize(loss, np.zeros(x_nkf.shape[2]), jac=True, method="L-BFGS-B").x
    return Arbiter([round(float(t), 5) for t in theta_f])
