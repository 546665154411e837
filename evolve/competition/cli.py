"""`evolve kaggle grade|grade-all`: argument parsing and exit codes only.

    evolve kaggle grade COMP SUBMISSION [--json] [--metric NAME [--k K]]
    evolve kaggle grade-all RUNS.jsonl [--out REPORT.json]
    evolve kaggle prepare --suite dev OUT_DIR [--only ID ...]

Exit codes: 0 graded (grade: a valid submission) or prepared, 1 grade: an invalid submission (its problems
listed; `valid_submission: false` with --json), 2 bad input: a missing folder or file, an unknown metric, a
malformed competition.yaml, empty answers, a bad RUNS line, an OUT_DIR in use, scikit-learn or Pillow
missing for prepare (one line on stderr, nothing written).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from evolve.competition.config import CompetitionError
from evolve.competition.metrics import METRICS
from evolve.competition.suite import SUITES

RUN_KEYS = {"competition", "submission", "metric", "k"}


def kaggle_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="evolve kaggle", description="Kaggle-style competitions: grade submissions "
                                "with MLE-bench's metrics and medals, and prepare a suite of competitions, offline.")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    g = sub.add_parser("grade", help="grade one submission: score, validity, medal, above median")
    g.add_argument("competition", metavar="COMP", help="a competition folder: COMP/public + COMP/private (ours) or "
                                                       "COMP/prepared/{public,private} (MLE-bench's)")
    g.add_argument("submission", metavar="SUBMISSION", help="the submission CSV")
    g.add_argument("--json", action="store_true", help="print MLE-bench's competition report as JSON")
    g.add_argument("--metric", choices=list(METRICS), help="the metric, for a competition without competition.yaml")
    g.add_argument("--k", type=int, help="k for --metric map@k")
    a = sub.add_parser("grade-all", help="grade many runs and write the aggregate report")
    a.add_argument("runs", metavar="RUNS.jsonl", help='one run a line: {"competition": DIR, "submission": CSV} '
                                                      '(optional "metric", "k"); paths relative to the file')
    a.add_argument("--out", metavar="FILE", help="write the aggregate report (JSON) here; it must not exist yet")
    r = sub.add_parser("prepare", help="write a suite of offline competitions (data that ships with scikit-learn)")
    r.add_argument("--suite", required=True, choices=list(SUITES), help="the suite: dev (8 competitions)")
    r.add_argument("out", metavar="OUT_DIR", help="a new (or empty) folder; one competition folder each")
    r.add_argument("--only", metavar="ID", action="append", help="only this competition (repeatable)")
    args = p.parse_args(argv)
    try:
        return {"grade": _grade, "grade-all": _grade_all, "prepare": _prepare}[args.action](args)
    except CompetitionError as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2


def _grade(args: argparse.Namespace) -> int:
    from evolve.competition.grade import dumps, format_report, grade
    from evolve.competition.layout import find_competition

    comp = find_competition(args.competition, args.metric, args.k)
    submission = Path(args.submission)
    if not submission.exists():
        raise CompetitionError(f"{submission}: no such submission file")
    report = grade(comp, submission)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    print(dumps(report.to_dict()) if args.json else format_report(report, comp.metric_name))
    return 0 if report.valid_submission else 1


def _grade_all(args: argparse.Namespace) -> int:
    from evolve.competition.grade import aggregate, dumps, grade
    from evolve.competition.layout import find_competition
    from evolve.files import FileFormatError, read_text, write_atomic

    runs_path = Path(args.runs)
    out = Path(args.out) if args.out else None
    if out is not None and out.exists():
        raise CompetitionError(f"--out {out}: already exists; pass a new path (a report is never overwritten)")
    try:
        text = read_text(runs_path)
    except FileNotFoundError:
        raise CompetitionError(f"{runs_path}: no such file") from None
    except (FileFormatError, OSError) as e:
        raise CompetitionError(f"{runs_path}: cannot read it ({e})") from None
    runs = [_run(runs_path, n, line) for n, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith("#")]
    if not runs:
        raise CompetitionError(f"{runs_path}: no runs; write one JSON object a line")
    reports, noted = [], set()
    for n, run in runs:
        try:
            comp = find_competition(run["competition"], run.get("metric"), run.get("k"))
            reports.append(grade(comp, run["submission"]))
        except CompetitionError as e:
            raise CompetitionError(f"{runs_path}: line {n}: {e}") from None
        for note in reports[-1].notes:
            if (comp.root, note) not in noted:  # once a competition, however many runs it has
                noted.add((comp.root, note))
                print(f"note: {comp.id}: {note}", file=sys.stderr)
    summary = aggregate(reports)
    if out is not None:
        write_atomic(out, dumps(summary) + "\n")
    print(dumps({k: v for k, v in summary.items() if k not in ("competition_reports", "per_competition")}))
    if out is not None:
        print(f"report: {out}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from evolve.competition.suite.prepare import prepare

    prepare(args.suite, Path(args.out), args.only)
    return 0


def _run(path: Path, n: int, line: str) -> tuple[int, dict]:
    """Line `n` of RUNS as (n, run) with its paths resolved against the file's folder."""
    try:
        run = json.loads(line)
    except json.JSONDecodeError as e:
        raise CompetitionError(f"{path}: line {n}: not JSON ({e.msg})") from None
    if not isinstance(run, dict):
        raise CompetitionError(f"{path}: line {n}: expected an object like "
                               '{"competition": "comps/titanic", "submission": "runs/1/submission.csv"}')
    for key in run:
        if key not in RUN_KEYS:
            raise CompetitionError(f"{path}: line {n}: unknown key {key!r} (known: {', '.join(sorted(RUN_KEYS))})")
    for key in ("competition", "submission"):
        if not isinstance(run.get(key), str) or not run[key]:
            raise CompetitionError(f"{path}: line {n}: {key!r}: required, a path")
    if run.get("metric") is not None and not isinstance(run["metric"], str):
        raise CompetitionError(f"{path}: line {n}: 'metric': expected a name ({', '.join(METRICS)})")
    if run.get("k") is not None and (not isinstance(run["k"], int) or isinstance(run["k"], bool)):
        raise CompetitionError(f"{path}: line {n}: 'k': expected a whole number")
    base = path.parent
    return n, {**run, "competition": str(base / run["competition"]), "submission": str(base / run["submission"])}
