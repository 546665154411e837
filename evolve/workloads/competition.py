"""A Kaggle-style competition as a workload: a solution template's solution.py, whose parameters live in
solution.yaml (checked by the template's typed schema, evolve/competition/templates.py), run on the
competition's public data.

The grader stays with the agent. The run is given public/ by path (`--data`), never the private answers: a spec
whose command or environment names the private folder is refused, and so is one that reads its objective from
anything but `competition_cv`, the CV the agent recomputes from the run's oof.csv against the public training
labels (evolve/competition/cv.py). After a run succeeds, its submission.csv is validated against the sample
submission's ids and columns (no answers needed); an invalid one makes the round a failure.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import evolve
from evolve.competition.answers import Answers
from evolve.competition.config import CompetitionError
from evolve.competition.cv import OOF, SUBMISSION, open_competition
from evolve.competition.labels import read_keyed, train_file, train_labels
from evolve.competition.templates import TEMPLATES, check_solution, facts
from evolve.competition.validate import validate
from evolve.workloads.base import Workload


@dataclass
class CompetitionOptions:
    competition: str  # the competition folder: COMP/{public,private} (ours) or COMP/prepared/... (MLE-bench's)
    metric: str = ""  # the metric, for a competition without competition.yaml (MLE-bench keeps it elsewhere)
    config: str = "solution.yaml"  # the solution's parameters, in the workspace
    template: str = "sklearn"  # a row of evolve/competition/templates.py's TEMPLATES: the schema of `config`


class CompetitionWorkload(Workload):
    name = "competition"
    playbook_files = ("competition.yaml",)

    def __init__(self, options: CompetitionOptions, launch_defaults: dict | None = None) -> None:
        if options.template not in TEMPLATES:
            raise ValueError(f"options.template: {options.template!r} is not a solution template; known: "
                             f"{', '.join(TEMPLATES)}")
        self.template = TEMPLATES[options.template]
        self.comp = open_competition(options.competition, options.metric)  # CompetitionError: one line
        self.config_file = options.config
        # what every round needs from the public data, checked before the first one: a campaign on a competition
        # with no training rows or no test ids could only fail every round (CompetitionError: one line)
        if not read_keyed(self.comp, train_file(self.comp), "training file").rows:
            raise CompetitionError(f"{train_file(self.comp)}: no rows; a solution needs training rows to learn from")
        train_labels(self.comp)  # and the labels in the submission's columns, which the agent's CV is scored on
        if not self._test_ids.ids:
            raise CompetitionError(f"{self._test_ids.path}: no rows; the submission needs the test ids")
        # taken before any run: what verify() holds each run's competition folder to
        self._fingerprint = fingerprint(self.comp.root, self.comp.private)
        super().__init__(launch_defaults)

    def defaults(self, tree: dict[str, Any]) -> dict[str, Any]:
        return {**dataclasses.asdict(self.template.schema()), **facts(self.comp)}

    def check(self, tree: dict[str, Any], where: Path | None) -> None:
        check_solution(self.template.schema, tree)

    def check_spec(self, spec: Any) -> None:
        objective, comp = spec.objective, self.comp
        if objective.source != "competition_cv":
            raise ValueError(f"objective.source: {objective.source!r}; a competition's objective is competition_cv, "
                             "the CV the agent recomputes from oof.csv, never a number the solution reports")
        if open_competition(objective.competition, objective.metric).root.resolve() != comp.root.resolve():
            raise ValueError(f"objective.competition: {objective.competition} is not the workload's competition "
                             f"{comp.root}")
        if objective.metric != comp.metric_name:
            raise ValueError(f"objective.metric: {objective.metric!r}; the competition's metric is "
                             f"{comp.metric_name!r}")
        mode = "min" if comp.lower_is_better else "max"
        if objective.mode != mode:
            raise ValueError(f"objective.mode: {objective.mode!r}; {comp.metric_name} is "
                             f"{'lower' if comp.lower_is_better else 'higher'} is better, so mode is {mode}")
        private = str(comp.private.resolve())
        for key, text in [("launch.command", spec.launch.command),
                          *((f"launch.env.{k}", str(v)) for k, v in spec.launch.env.items())]:
            if private in text or str(comp.private) in text:
                raise ValueError(f"{key}: names the competition's private folder {comp.private}; a solution gets "
                                 f"only the public data ({comp.public})")

    def hidden_paths(self) -> list[str]:
        return [str(self.comp.private.resolve())]  # the answers, even to a solution that knows where they lie

    def prepare_run(self, run_dir: Path, config: dict[str, Any], healthy: list[Path]) -> None:
        """With `blend: K`, the best 2K earlier solutions' oof.csv and submission.csv, copied to pool/round-N/
        (copies: a run may write its own run directory, never an earlier one's)."""
        k = config.get("blend") or 0
        if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
            return
        for source in healthy[:2 * k]:
            if all((source / name).is_file() and not (source / name).is_symlink() for name in (OOF, SUBMISSION)):
                member = Path(run_dir) / "pool" / source.name
                member.mkdir(parents=True, exist_ok=True)
                for name in (OOF, SUBMISSION):
                    shutil.copyfile(source / name, member / name)

    def read_only_paths(self) -> list[str]:
        """The competition (its public data, competition.yaml, leaderboard), the agent's own code (which
        recomputes the CV) and the Python it runs on: a solution that rewrote any of them could grade itself."""
        return [str(self.comp.root.resolve()), str(Path(evolve.__file__).resolve().parent), sys.prefix]

    def verify(self, run_dir: Path) -> list[str]:
        """A change to the competition's files first (where no namespace made them read-only), then a missing
        oof.csv (without it the agent has no CV to judge the run by), then the submission's problems against
        the test ids and columns (validate.py's lines, bounded)."""
        changed = [f"{path}: the run changed the competition's data (size or time differ from the campaign's "
                   "start); restore it from its source: no CV computed from it can be trusted"
                   for path in changed_files(self.comp.root, self.comp.private, self._fingerprint)]
        oof = Path(run_dir) / OOF
        # a link is refused: the agent reads outside the run's namespace, where a link to private/ would resolve
        linked = [f"{p}: a symbolic link; the solution must write the file itself" for p in
                  (oof, Path(run_dir) / SUBMISSION) if p.is_symlink()]
        if linked:
            return changed[:5] + linked
        missing = [] if oof.is_file() else [f"{oof}: no such file; the solution must write its out-of-fold "
                                            "predictions, which the agent scores as the run's CV"]
        return changed[:5] + missing + validate(self.comp, self._test_ids, Path(run_dir) / SUBMISSION).problems

    def outcome(self, run_dir: Path) -> str:
        path = Path(run_dir) / SUBMISSION
        return f"Best submission: {path}" if path.is_file() else ""

    @functools.cached_property
    def _test_ids(self) -> Answers:
        """The test ids, from the sample submission (else public/test.csv): all that validating a submission
        needs, so the answers are never read for it."""
        comp = self.comp
        source = comp.sample_submission or comp.public / "test.csv"
        table = read_keyed(comp, source, "sample submission")
        return Answers(source, [i.strip() for i in table.column(comp.id_column)], [])


def fingerprint(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """Every file under `root` but `skip` (the private answers, never shown to a run) → (size, mtime in ns): a
    stat a file, cheap enough for every round on a folder of images."""
    skip = skip.resolve()
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if (Path(folder) / d).resolve() != skip]
        for name in files:
            stat = (Path(folder) / name).stat()
            found[str(Path(folder) / name)] = (stat.st_size, stat.st_mtime_ns)
    return found


def changed_files(root: Path, skip: Path, before: dict[str, tuple[int, int]]) -> list[str]:
    """The files added, removed or changed under `root` (but `skip`) since `before` was taken, sorted."""
    after = fingerprint(root, skip)
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
