"""`evolve kaggle run COMP --budget 1h`: a campaign on a competition, as a spec the campaign runner starts.

The spec (workload `competition`, a solution template as the workspace, the budget as the campaign's wall
budget of run time, a per-run timeout, the objective `competition_cv` in the metric's direction) is written to
`<home>/kaggle/<name>.yaml` and started by evolve/campaign/runner.py like any other, so resume, the ledger,
MLflow and the memory file work unchanged: `evolve campaign resume NAME` continues it. Every input is checked
before anything is written; a start that fails before its campaign exists removes the spec again.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from evolve.competition.config import CompetitionError
from evolve.competition.cv import open_competition
from evolve.competition.layout import Competition
from evolve.competition.templates import TEMPLATES
from evolve.files import write_atomic

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
RUN_TIMEOUT_S = 600.0  # a run's wall limit unless --run-timeout says otherwise (never past the budget)


def parse_duration(text: str, what: str = "--budget") -> float:
    """'24h', '90m', '1h30m', '45s' or plain seconds → seconds; CompetitionError (one line) otherwise."""
    compact = text.strip().lower().replace(" ", "")
    parts = list(_PART.finditer(compact))
    if not compact or "".join(m[0] for m in parts) != compact:
        raise CompetitionError(f"{what} {text!r}: not a duration; write e.g. 24h, 90m, 1h30m or 3600 (seconds)")
    seconds = sum(float(m[1]) * _UNITS[m[2]] for m in parts)
    if seconds <= 0:
        raise CompetitionError(f"{what} {text!r}: must be longer than 0 s")
    return seconds


@dataclass
class RunRequest:
    competition: str
    budget: str
    brain: str = "rules"
    workspace: str = ""  # the folder the solution's workspace is made in (DIR/NAME); default ./workspaces
    name: str = ""  # default: the competition's id
    rounds: int = 100
    run_timeout: str = ""  # default: RUN_TIMEOUT_S, within the budget
    template: str = "sklearn"
    metric: str = ""  # for a competition without competition.yaml (MLE-bench's layout)
    threads: int = 0  # each run's thread budget (OMP/OpenBLAS/MKL, the solution's n_jobs); 0: the launch's own
    search: str = "tree"  # tree: draft DRAFTS solutions, debug the broken, improve the best · greedy: the best only
    drafts: int = 5


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def campaign_spec(req: RunRequest, comp: Competition, home: Path) -> tuple[str, dict[str, Any]]:
    """The campaign's name and spec (every path absolute), or CompetitionError for a bad request."""
    from evolve.brains.registry import BRAINS
    from evolve.campaign.search import SEARCHES
    from evolve.campaign.spec import name_problem

    budget = parse_duration(req.budget)
    timeout = min(parse_duration(req.run_timeout, "--run-timeout") if req.run_timeout else RUN_TIMEOUT_S, budget)
    name = req.name or comp.id
    if why := name_problem(name):
        raise CompetitionError(f"--name: {why}" if req.name else f"the competition's id {why}; pass --name NAME")
    if req.brain not in BRAINS.names():
        raise CompetitionError(f"--brain {req.brain!r}: not a brain; known: {', '.join(BRAINS.names())}")
    if req.template not in TEMPLATES:
        raise CompetitionError(f"--template {req.template!r}: not a solution template; known: {', '.join(TEMPLATES)}")
    if req.rounds < 1:
        raise CompetitionError(f"--rounds {req.rounds}: must be at least 1")
    if req.threads < 0:
        raise CompetitionError(f"threads {req.threads}: must be at least 1 (0: the launch environment's own)")
    if req.search not in SEARCHES.names():
        raise CompetitionError(f"--search {req.search!r}: not a search policy; known: {', '.join(SEARCHES.names())}")
    if req.drafts < 1:
        raise CompetitionError(f"--drafts {req.drafts}: must be at least 1 (the template as it is is the first)")
    root = Path(req.workspace).resolve() if req.workspace else Path.cwd() / "workspaces"
    metric, lower = comp.metric_name, comp.lower_is_better
    command = (f"python solution.py --data {shlex.quote(str(comp.public.resolve()))} --metric {metric} "
               '--out "$EVOLVE_RUN_DIR"')
    return name, {
        "name": name,
        "workload": {"kind": "competition", "options": {"competition": str(comp.root.resolve()), "metric": metric,
                                                        "template": req.template}},
        # the rules brain edits parameters; a model brain may also rewrite the solution itself
        "workspace": {"template": str(TEMPLATES[req.template].path),
                      "editable": ["solution.yaml", *(["solution.py"] if req.brain != "rules" else [])],
                      "root": str(root)},
        "launch": {"command": command, "timeout_s": timeout,
                   **({"env": dict.fromkeys(THREAD_VARS, str(req.threads))} if req.threads else {})},
        "objective": {"metric": metric, "mode": "min" if lower else "max", "source": "competition_cv",
                      "competition": str(comp.root.resolve())},
        "budget": {"rounds": req.rounds, "wall_s": budget},
        "brain": {"kind": req.brain},
        "search": {"kind": req.search, **({"options": {"drafts": req.drafts}} if req.search == "tree" else {})},
        "memory": str(home / "kaggle" / f"{name}.md"),
    }


def run(req: RunRequest, home: str | Path | None = None, verbose: bool = False) -> dict[str, Any]:
    """Write the spec and start the campaign (the runner's final state)."""
    from evolve.campaign import runner

    comp = open_competition(req.competition, req.metric)
    home_dir = runner.home_dir(home)
    name, spec = campaign_spec(req, comp, home_dir)
    paths = runner.campaign_paths(name, home_dir)
    spec_file = home_dir / "kaggle" / f"{name}.yaml"
    if paths.dir.exists() or spec_file.exists():
        raise CompetitionError(f"campaign {name!r} exists ({paths.dir}); continue it with `evolve campaign resume "
                               f"{name}`, or pass --name NEW")
    from evolve.workloads.competition import CompetitionOptions, CompetitionWorkload

    # the public data every round needs (training rows and labels, test ids), before anything is said or written
    CompetitionWorkload(CompetitionOptions(str(comp.root), comp.metric_name, template=req.template))
    for note in comp.notes:  # what was inferred about the competition, once the request is known to be good
        print(f"note: {note}", file=sys.stderr)
    made = [p for p in (home_dir, spec_file.parent) if not p.exists()]  # what a failed start removes again
    spec_file.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(spec_file, f"# evolve kaggle run {shlex.quote(req.competition)} --budget {req.budget}\n"
                 + yaml.safe_dump(spec, sort_keys=False))
    try:
        return runner.start(spec_file, home_dir, verbose)
    except BaseException:
        if not paths.spec.is_file():  # the campaign was never created: leave nothing behind
            spec_file.unlink(missing_ok=True)
            for folder in reversed(made):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
        raise
