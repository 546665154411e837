"""The brain kinds: one row each, an options dataclass and a factory (evolve/registry.py).

Every model brain falls back to the rules brain of the same workload, so a factory gets the workload
too. `make_brain` with no workspace only validates (before a campaign creates anything).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from evolve.registry import Registry

if TYPE_CHECKING:
    from evolve.brains import Brain
    from evolve.campaign.spec import CampaignSpec
    from evolve.workloads.base import Workload
    from evolve.workspace.repo import Workspace

BRAINS: Registry[Brain] = Registry("brain.kind", "brain")


@dataclass
class RulesOptions:
    seed: int = 0
    moves: str = ""  # a moves YAML file replacing the workload's moves (resolved against the spec's folder)

    def __post_init__(self) -> None:
        from evolve.campaign.spec import SpecError

        if self.moves and not Path(self.moves).is_file():
            raise SpecError(f"brain.options.moves: {self.moves}: no such file; give a moves YAML file like "
                            "playbooks/workloads/evolve-trainer.yaml")


def _rules(options: RulesOptions, workload: Workload, workspace: Workspace | None, spec: CampaignSpec) -> Brain:
    from evolve.brains.rules import RulesBrain
    from evolve.campaign.spec import SpecError

    try:
        return RulesBrain(workload, options.moves or None, seed=options.seed)
    except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError) as e:  # a moves file of any shape
        raise SpecError(f"brain.options.moves: {options.moves}: not a moves file ({type(e).__name__}: "
                        f"{' '.join(str(e).split())[:200]})") from None


def _openai(options: Any, workload: Workload, workspace: Workspace | None, spec: CampaignSpec) -> Brain:
    from evolve.brains.llm import LLMBrain
    from evolve.brains.rules import RulesBrain

    rules = RulesBrain(workload)
    if workspace is None:
        return rules
    return LLMBrain(options, workspace, spec.objective.metric, rules, spec.budget.tokens)


def _moe(options: Any, workload: Workload, workspace: Workspace | None, spec: CampaignSpec) -> Brain:
    from evolve.brains.moe import MoEBrain, check_checkpoint
    from evolve.brains.rules import RulesBrain

    if workspace is None:
        check_checkpoint(options.checkpoint)
        return RulesBrain(workload)
    return MoEBrain(options, RulesBrain(workload))


BRAINS.add("rules", RulesOptions, _rules, "playbook remedies, then a UCB1 bandit over the workload's moves")
BRAINS.add("openai", "evolve.brains.llm:LLMOptions", _openai, "an OpenAI-compatible model writes the edits")
BRAINS.add("moe", "evolve.brains.moe:MoEOptions", _moe, "the in-repo MoE model picks among the rules brain's")


def make_brain(spec: CampaignSpec, workload: Workload, workspace: Workspace | None = None) -> Brain:
    """The spec's brain (SpecError naming the option when its options are wrong)."""
    from evolve.campaign.spec import SpecError, parse_section
    from evolve.registry import UnknownKind

    kind = spec.brain.kind
    try:
        options = BRAINS.options(kind, spec.brain.options, parse_section, "brain.options.")
    except UnknownKind as e:
        raise SpecError(str(e)) from None
    return BRAINS.make(kind, options, workload, workspace, spec)
