"""Triage: turn a run directory, a log file or an MLflow run into a `Diagnosis` (kind, evidence, remedies).

The knowledge lives in playbooks/triage.yaml (signatures → kinds → remedies); this module only weighs
evidence. A run directory's `status.json` is the trainer's own verdict and is taken as authoritative;
logs and metrics then supply the evidence and the numbers for the root cause. Logs of other
frameworks have no verdict, so their kind is the best-scoring one.

Confidence (for kinds inferred from evidence, not read from a verdict):
    s_k = Σ weights of the distinct signatures of kind k that matched + Σ weights of its fired metric rules
    confidence = (1 - exp(-s1 / 2)) · s1 / (s1 + s2)
where s1 is the winner's score and s2 the runner-up's. The first factor saturates with the amount of
evidence (one weight-3 signature → 0.78, two → 0.95); the second shares the belief out when another kind
has evidence too. The catch-alls (`crash`: a bare traceback; `healthy`) are not rivals of a specific
kind — every CUDA OOM also prints a traceback — so they only count as runner-up to each other. A status.json
verdict has confidence 1.0 and inferred kinds are capped at MAX_INFERRED; a log with no signature at all
is `healthy` at NO_EVIDENCE_CONFIDENCE.
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
