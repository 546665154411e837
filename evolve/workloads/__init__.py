"""Workloads: what the campaign loop knows of one kind of run (see base.py), one file per kind.

    evolve-trainer   the in-repo RL trainer (config.yaml of trainer sections)
    trl              a TRL GRPOTrainer script whose GRPOConfig fields live in a YAML section
    command          any command and an objective file; the rules brain only fixes how it is launched
    competition      a Kaggle-style competition: a solution template's solution.yaml, CV recomputed by the agent

A spec names one (`workload: trl`, or `workload: {kind: command, options: {config: params.yaml}}`); the
default is evolve-trainer, today's behaviour.
"""

from __future__ import annotations

from typing import Any

from evolve.registry import Registry
from evolve.workloads.base import LAUNCH_FILE, Workload

WORKLOADS: Registry[Workload] = Registry("workload.kind", "workload")


def _evolve_trainer(options: None, launch: dict[str, Any]) -> Workload:
    from evolve.workloads.evolve_trainer import EvolveTrainer  # torch-free, but trainer.config: only when used

    return EvolveTrainer(launch)


def _trl(options: Any, launch: dict[str, Any]) -> Workload:
    from evolve.workloads.trl import TRL

    return TRL(options, launch)


def _command(options: Any, launch: dict[str, Any]) -> Workload:
    from evolve.workloads.command import Command

    return Command(options, launch)


def _competition(options: Any, launch: dict[str, Any]) -> Workload:
    from evolve.workloads.competition import CompetitionWorkload

    return CompetitionWorkload(options, launch)


WORKLOADS.add("evolve-trainer", None, _evolve_trainer, "the in-repo RL trainer (config.yaml)")
WORKLOADS.add("trl", "evolve.workloads.trl:TRLOptions", _trl, "a TRL GRPOTrainer script configured by YAML")
WORKLOADS.add("command", "evolve.workloads.command:CommandOptions", _command, "any command plus an objective file")
WORKLOADS.add("competition", "evolve.workloads.competition:CompetitionOptions", _competition,
              "a Kaggle-style competition: a solution template, its CV recomputed by the agent")

__all__ = ["LAUNCH_FILE", "WORKLOADS", "Workload", "make_workload"]


# the framework triage names -> the workload whose keys say how its remedies are done
FRAMEWORK_WORKLOADS = {"evolve": "evolve-trainer", None: "evolve-trainer", "trl": "trl"}


def for_framework(framework: str | None) -> Workload | None:
    """A workload with its default options for the framework a diagnosis names (for `evolve triage`)."""
    kind = FRAMEWORK_WORKLOADS.get(framework)
    if kind is None:
        return None
    options = WORKLOADS.entry(kind).options
    return WORKLOADS.make(kind, options() if options else None, {})


def make_workload(spec: Any) -> Workload:
    """The spec's workload (SpecError naming the option when its options are wrong)."""
    from evolve.campaign.spec import SpecError, parse_section
    from evolve.registry import UnknownKind

    kind = spec.workload.kind
    try:
        options = WORKLOADS.options(kind, spec.workload.options, parse_section, "workload.options.")
    except UnknownKind as e:
        raise SpecError(str(e)) from None
    launch: dict[str, Any] = {"timeout_s": spec.launch.timeout_s, "retry": 0}
    if isinstance(spec.launch.max_memory_mb, int) and spec.launch.max_memory_mb > 0:
        launch["max_memory_mb"] = spec.launch.max_memory_mb  # `auto` is no number a fix could raise
    try:
        workload = WORKLOADS.make(kind, options, launch)
        workload.check_spec(spec)
    except ValueError as e:  # its playbook or what it needs of the spec, named by file and key
        raise SpecError(f"workload: {kind}: {' '.join(str(e).split())}") from None
    return workload
