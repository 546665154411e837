"""A lexical classifier for what no signature or metric rule explains: a user's words, or odd log lines.

A linear model (multinomial logistic regression) over word unigrams and bigrams and character 3–5-grams
inside words, with sublinear term frequencies, L2-normalised. It is trained by scikit-learn on the dev
half of the corpus (`scripts/build_triage_classifier.py`) and shipped as a small JSON file of weights,
so triage itself needs neither scikit-learn nor numpy: scoring is a sparse dot product.

Digits become 0 and hex addresses 0x, so "step 2200" and "step 17" are the same words; the model learns
what a report *says*, not its numbers.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path

MODEL = Path(__file__).resolve().parents[2] / "playbooks" / "triage_prose.json"
MAX_CHARS = 20_000  # the classifier reads at most this much text (the head of a report, then its tail)
_WORD = re.compile(r"[a-z][a-z0-9_]*")
_HEX = re.compile(r"0x[0-9a-f]+")
_DIGITS = re.compile(r"\d+")
SCALE = 1000  # the shipped file's weights are integer thousandths (`pack`)


def words(text: str) -> list[str]:
    """The words the classifier reads: lowercase, digits as 0, hex addresses as 0x, at least 2 letters."""
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS // 2] + "\n" + text[-MAX_CHARS // 2:]
    low = _DIGITS.sub("0", _HEX.sub(" 0x ", text.lower()))
    return [w for w in _WORD.findall(low) if len(w) > 1]


def features(text: str) -> dict[str, float]:
    """Sparse, L2-normalised features of a text: w:word, b:word word, c:<3–5 characters of a word>."""
    tokens = words(text)
    counts: Counter[str] = Counter(f"w:{w}" for w in tokens)
    counts.update(f"b:{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False))
    for word, n in Counter(tokens).items():
        padded = f" {word} "
        for size in (3, 4, 5):
            for i in range(len(padded) - size + 1):
                counts[f"c:{padded[i:i + size]}"] += n
    weighted = {f: 1.0 + math.log(c) for f, c in counts.items()}
    norm = math.sqrt(sum(v * v for v in weighted.values())) or 1.0
    return {f: v / norm for f, v in weighted.items()}


@dataclass
class Model:
    classes: list[str]
    bias: list[float]
    weights: dict[str, list[list[float]]]  # feature -> [[class index, weight], ...] (sparse: most are ~0)

    def scores(self, x: dict[str, float]) -> list[float]:
        out = list(self.bias)
        for f, v in x.items():
            for k, wk in self.weights.get(f, ()):
                out[int(k)] += v * wk
        return out

    def predict(self, text: str) -> list[tuple[str, float]]:
        """(kind, probability), most likely first."""
        s = self.scores(features(text))
        top = max(s)
        exp = [math.exp(v - top) for v in s]
        total = sum(exp)
        return sorted(((c, e / total) for c, e in zip(self.classes, exp, strict=True)), key=lambda t: -t[1])

    def words_for(self, text: str, kind: str, n: int = 6) -> list[tuple[str, float]]:
        """The features that pushed the text towards `kind` the most: what `--explain` shows."""
        k = self.classes.index(kind)
        pushed = [(f, v * wk) for f, v in features(text).items() for j, wk in self.weights.get(f, ()) if j == k]
        best = sorted((t for t in pushed if t[1] > 0), key=lambda t: -t[1])
        shown: list[tuple[str, float]] = []
        for f, c in best:
            label = f[2:].strip()
            if f.startswith("c:") and any(label in s for s, _ in shown):
                continue  # a character gram inside a word already shown says nothing new
            shown.append((label, round(c, 3)))
            if len(shown) == n:
                break
        return shown


@cache
def load(path: Path = MODEL) -> Model | None:
    """The shipped weights, or None when there are none (triage then runs on rules alone)."""
    if not path.is_file():
        return None
    raw = json.loads(path.read_text())
    scale = raw["scale"]
    return Model(raw["classes"], raw["bias"],
                 {f: [[kv[i], kv[i + 1] / scale] for i in range(0, len(kv), 2)] for f, kv in raw["weights"].items()})


def pack(model: dict) -> dict:
    """`train`'s model as the shipped file stores it: each feature's weights as one flat list of class
    indices and integer thousandths (the precision `train` keeps), which makes the file a fifth smaller."""
    flat = {f: [x for k, v in kv for x in (k, round(v * SCALE))] for f, kv in model["weights"].items()}
    return {**model, "scale": SCALE, "weights": flat}


def train(texts: list[str], labels: list[str], c: float = 20.0, keep: float = 0.1) -> dict:
    """Fit the model with scikit-learn (a build-time dependency only) and return it as JSON-ready data.
    Weights smaller than `keep` are dropped: they change no decision (grouped 5-fold CV on the dev half:
    the same accuracy as keeping them all) and would make the file megabytes."""
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = DictVectorizer()
    x = vec.fit_transform([features(t) for t in texts])
    clf = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
    clf.fit(x, labels)
    names = vec.get_feature_names_out()
    weights = {}
    for j, name in enumerate(names):
        if kept := [[k, round(float(v), 3)] for k, v in enumerate(clf.coef_[:, j]) if abs(v) >= keep]:
            weights[str(name)] = kept
    return {"classes": [str(k) for k in clf.classes_], "bias": [round(float(b), 4) for b in clf.intercept_],
            "weights": weights}
