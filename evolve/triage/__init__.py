"""Triage: turn a run directory, a log file, a pasted report or an MLflow run into a `Diagnosis`.

The knowledge is data: playbooks/triage.yaml (kinds, root causes, remedies, signatures, metric rules)
plus playbooks/triage.d/*.yaml (more signatures and rules, by concern), playbooks/triage_prose.json
(the prose classifier's weights) and playbooks/triage_arbiter.json (the arbiter's). This package reads and weighs it:

    vocabulary.py  the closed set of kinds, Evidence / Remedy / Diagnosis
    playbook.py    the strict loader (main file + fragments)
    scan.py        the streaming scanner: signatures and metric series over logs of any size, by line shape
    hubs.py        its first filter: the literals grouped under shared substrings
    prose.py       the lexical classifier for what no signature explains (trained by scripts/)
    weigh.py       evidence → kind: the run's verdict, else signatures + metric rules + words; root first
    arbiter.py     the learned last word between the hand weighing and the classifier (fitted by scripts/)
    targets.py     what can be triaged (run dir, file, stdin, text, mlflow:), each read as untrusted
    baseline.py    what is new in a failed run against the last healthy one
    corpus.py      the labelled corpus of real failure reports, split by thread
    report.py      the text output (and --explain)

Confidence of an inferred kind: with s_k the summed weights of kind k's distinct signatures, fired metric
rules and (when no hard signature fired) the classifier's probability × PROSE_WEIGHT,
    confidence = (1 - exp(-s1 / 2)) · s1 / (s1 + s2)
for the winner s1 and the runner-up s2; capped at PROSE_CAP when the words carry the decision, at
MAX_INFERRED otherwise (1.0 is a verdict the run wrote itself). Where the arbiter overrules that kind, its
probability is the confidence. `healthy` needs positive evidence; output
with a symptom that nothing explains is `unknown`. benchmarks/triage_accuracy.py prints the reliability
table that checks these numbers against the corpus.
"""



from evolve.triage.playbook import CONDITION, PLAYBOOK, Playbook, load_playbook
from evolve.triage.report import format_text
from evolve.triage.targets import MAX_JSON, RUN_FILES, triage, triage_text
from evolve.triage.vocabulary import (
                                      FOREIGN_KINDS,
                                      FRAMEWORKS,
                                      KINDS,
                                      TRAINER_KINDS,
                                      Diagnosis,
                                      Evidence,
                                      Remedy,
                                      TargetNotFound,
)

__all__ = ["CONDITION", "FOREIGN_KINDS", "FRAMEWORKS", "KINDS", "MAX_JSON", "PLAYBOOK", "RUN_FILES", "TRAINER_KINDS",
           "Diagnosis", "Evidence", "Playbook", "Remedy", "TargetNotFound", "format_text", "load_playbook", "triage",
           "triage_text"]
