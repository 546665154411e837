"""Any command as a workload: the spec's `launch.command` and an objective file, nothing else known.

Triage still reads its output and advises; an LLM brain edits its files; the rules brain has only the
launch fixes (a longer timeout, more memory, a retry: playbooks/workloads/launch.yaml), plus, when the
options name a YAML file of the run's parameters, moves and fixes a user's own playbook gives for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evolve.workloads.base import Workload


@dataclass
class CommandOptions:
    config: str = ""  # a YAML file in the workspace holding the run's parameters (optional)
    playbook: str = ""  # a workload playbook (moves, remedies) written in that file's keys (optional)


class Command(Workload):
    name = "command"
    config_file = ""
    playbook_files = ()

    def __init__(self, options: CommandOptions, launch_defaults: dict | None = None) -> None:
        self.config_file = options.config
        super().__init__(launch_defaults, (Path(options.playbook),) if options.playbook else None)
