"""The closed vocabulary of failure kinds, and what a diagnosis is made of."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

TRAINER_KINDS = ("nan_loss", "grad_explosion", "router_collapse", "entropy_collapse", "reward_collapse",
                 "host_oom", "cuda_oom", "config_error", "scaffold_error", "timeout", "crash")
FOREIGN_KINDS = ("dist_timeout", "kl_blowup", "reward_hacking", "logprob_mismatch", "shape_error",
                 "import_error", "data_error", "checkpoint_error", "disk_full")
# `unknown`: the output shows an error or a symptom that nothing explains; never `healthy` by default
KINDS = (*TRAINER_KINDS, *FOREIGN_KINDS, "healthy", "unknown")
FRAMEWORKS = ("evolve", "verl", "trl", "openrlhf", "ms-swift", "llama-factory", "megatron", "deepspeed", "vllm",
              "sglang", "ray", "transformers", "torch.distributed")


class TargetNotFound(Exception):
    """The thing to triage does not exist (no such path, no such MLflow run)."""


@dataclass
class Evidence:
    source: str
    line: int | None
    text: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.text}" if self.line is not None else f"{self.source}: {self.text}"


@dataclass
class Remedy:
    id: str
    text: str
    advice: dict[str, str] = field(default_factory=dict)  # framework -> the same fix in its own terms


@dataclass
class Diagnosis:
    kind: str
    confidence: float
    evidence: list[Evidence]
    root_cause: str
    remedies: list[Remedy]
    framework: str | None = None
    also: list[str] = field(default_factory=list)  # other kinds with evidence, most likely first (often effects)
    explain: list[str] = field(default_factory=list)  # which rules, metrics or words decided, strongest first
    diff: dict[str, Any] | None = None  # what is new against the last healthy run (campaigns, --baseline)
    candidates: list[str] = field(default_factory=list)  # the kinds worth a second opinion, `kind` first
    model: dict[str, Any] | None = None  # an LLM's pick among `candidates`, beside the rules' `kind`

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["evidence"] = [{**asdict(e), "excerpt": str(e)} for e in self.evidence]
        return d


