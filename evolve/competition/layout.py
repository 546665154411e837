"""Finding a competition on disk, in MLE-bench's prepared layout or in our flat one, and what it asks for.

    MLE-bench:  COMP/prepared/public/{description.md, train*, test*, sample_submission.csv}
                COMP/prepared/private/test.csv          (answers; some competitions name it answers.csv)
    ours:       COMP/public/...   COMP/private/answers.csv
    both:       COMP/competition.yaml (optional: evolve/competition/config.py)   COMP/leaderboard.csv (optional)

MLE-bench keeps a competition's metric in its own registry, not beside the data, so without a
competition.yaml the metric comes from `--metric`; the id and the columns are then inferred (the folder's
name; sample_submission.csv's first column is the id, the others the targets) and every inference is a note
the CLI prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from evolve.competition.config import CompetitionConfig, CompetitionError, Medals, read_config
from evolve.competition.metrics import METRICS, Metric
from evolve.competition.table import TableError, read_header

ANSWERS = ("answers.csv", "test.csv")  # our name, then MLE-bench's usual one (52 of its 86 competitions)
SAMPLES = ("sample_submission.csv", "sampleSubmission.csv")  # MLE-bench uses both spellings


@dataclass(frozen=True)
class Competition:
    id: str
    root: Path
    layout: str  # "mle-bench" or "flat"
    public: Path
    private: Path
    answers: Path
    sample_submission: Path | None
    leaderboard: Path | None
    metric_name: str
    id_column: str
    target_columns: list[str]
    lower_is_better: bool
    k: int | None = None
    medals: Medals | None = None  # thresholds given in competition.yaml instead of a leaderboard
    notes: list[str] = field(default_factory=list)  # what was inferred, for the user to check

    @property
    def metric(self) -> Metric:
        return METRICS[self.metric_name]


def find_competition(path: str | Path, metric: str | None = None, k: int | None = None) -> Competition:
    """The competition in `path` (COMP, or MLE-bench's COMP/prepared); CompetitionError, one line, when it
    is not one, lacks answers, has no metric, or its files disagree. `metric`/`k` stand in for a missing
    competition.yaml."""
    path = Path(path)
    if not path.is_dir():
        raise CompetitionError(f"{path}: no such competition folder")
    if path.name == "prepared" and (path / "public").is_dir():
        path = path.parent
    if (path / "prepared").is_dir():
        layout, base = "mle-bench", path / "prepared"
    elif (path / "public").is_dir() or (path / "private").is_dir():
        layout, base = "flat", path
    else:
        raise CompetitionError(f"{path}: not a competition folder: expected public/ and private/ (evolve's form) "
                               "or prepared/public/ and prepared/private/ (MLE-bench's)")
    public, private = base / "public", base / "private"
    for folder in (public, private):
        if not folder.is_dir():
            raise CompetitionError(f"{folder}: missing; a competition has public/ (data, sample submission) and "
                                   "private/ (the answers)")
    notes: list[str] = []
    config = _config(path, metric, k)
    sample = _pick(public, config.sample_submission, SAMPLES, "sample_submission") or \
        _pick(private, "", SAMPLES, "sample_submission")  # five MLE-bench competitions keep it in private/
    answers = _pick(private, config.answers, ANSWERS, "answers")
    if answers is None:
        raise CompetitionError(f"{private}: no answers file ({' or '.join(ANSWERS)}); put the test labels there or "
                               "name the file with `answers:` in competition.yaml")
    if answers.suffix.lower() != ".csv":
        raise CompetitionError(f"{answers}: answers must be a CSV file")
    id_column, targets = _columns(config, sample, notes)
    leaderboard = path / "leaderboard.csv" if (path / "leaderboard.csv").is_file() else None
    if leaderboard and config.medals:
        raise CompetitionError(f"{path}: both leaderboard.csv and `medals:` in competition.yaml give the medal "
                               "thresholds; keep one")
    comp_id = config.id or path.name
    if not config.id:
        notes.append(f"id {comp_id!r} is the folder's name")
    lower = METRICS[config.metric].lower_is_better if config.lower_is_better is None else config.lower_is_better
    return Competition(comp_id, path, layout, public, private, answers, sample, leaderboard, config.metric,
                       id_column, targets, lower, config.k, config.thresholds, notes)


def _config(root: Path, metric: str | None, k: int | None) -> CompetitionConfig:
    path = root / "competition.yaml"
    if path.is_file():
        if metric is not None or k is not None:
            raise CompetitionError(f"--metric/--k: {path} already says the metric; edit it there instead")
        return read_config(path)
    if metric is None:
        raise CompetitionError(f"{root}: no competition.yaml, so no metric: write {path} with `metric: NAME` or "
                               f"pass --metric NAME (known: {', '.join(METRICS)})")
    try:
        return CompetitionConfig(metric=metric, k=k)
    except CompetitionError as e:
        raise CompetitionError(f"--{e}") from None


def _pick(folder: Path, named: str, defaults: tuple[str, ...], key: str) -> Path | None:
    if named:
        if not (folder / named).is_file():
            raise CompetitionError(f"{folder / named}: no such file (competition.yaml's `{key}:`)")
        return folder / named
    found = [folder / name for name in defaults if (folder / name).is_file()]
    if len(found) > 1:
        raise CompetitionError(f"{folder}: both {found[0].name} and {found[1].name}; say which with `{key}:` in "
                               "competition.yaml")
    return found[0] if found else None


def _columns(config: CompetitionConfig, sample: Path | None, notes: list[str]) -> tuple[str, list[str]]:
    """The id column and the target columns: competition.yaml's, else the sample submission's header."""
    if config.id_column and config.target_columns:
        header = _header(sample) if sample else None
        if header is not None and header != [config.id_column, *config.target_columns]:
            raise CompetitionError(f"{sample}: columns {header} differ from competition.yaml's id_column and "
                                   f"target_columns {[config.id_column, *config.target_columns]}; make them agree")
        return config.id_column, list(config.target_columns)
    if sample is None:
        raise CompetitionError("no sample_submission.csv to read the columns from: give id_column and "
                               "target_columns in competition.yaml")
    header = _header(sample)
    id_column = config.id_column or header[0]
    if id_column not in header:
        raise CompetitionError(f"{sample}: no column {id_column!r} (competition.yaml's id_column)")
    targets = list(config.target_columns) or [c for c in header if c != id_column]
    if not targets:
        raise CompetitionError(f"{sample}: only the id column {id_column!r}; a submission needs a target column")
    if not config.id_column:
        notes.append(f"id column {id_column!r} is the first column of {sample.name}")
    if not config.target_columns:
        notes.append(f"target columns {targets} are the other columns of {sample.name}")
    return id_column, targets


def _header(path: Path) -> list[str]:
    try:
        return read_header(path, "sample submission")
    except TableError as e:
        raise CompetitionError(str(e)) from None
