"""`evolve kaggle grade|grade-all`: argument parsing and exit codes only.

    evolve kaggle grade COMP SUBMISSION [--json] [--metric NAME [--k K]]
    evolve kaggle grade-all RUNS.jsonl [--out REPORT.json]
    evolve kaggle prepare --suite dev OUT_DIR [--only ID ...]
    evolve kaggle run COMP --budget 1h [--brain rules] [--workspace DIR] [--name NAME] [--rounds N]
                      [--run-timeout 10m] [--search tree|greedy] [--drafts 5] [--metric NAME] [--home DIR]
                      [--verbose]
    evolve kaggle run-suite DIR --budget 10m [--parallel N] [--brain rules] [--rounds N] [--only ID ...]
                            [--search tree|greedy] [--drafts 5] [--home DIR] [--workspace DIR] [--out FILE]

Exit codes: 0 graded (grade: a valid submission) or prepared, 1 grade: an invalid submission (its problems
listed; `valid_submission: false` with --json), 2 bad input: a missing folder or file, an unknown metric, a
malformed competition.yaml, empty answers, a bad RUNS line, an OUT_DIR in use, scikit-learn or Pillow
missing for prepare (one line on stderr, nothing written). `run` exits as `evolve campaign start` does: 0 when
the campaign ends, 2 for bad input (nothing created), 130 when interrupted (resumable). `run-suite` exits 0 when
every competition has a valid submission, 1 when some have none (each row says why), 2 for bad input (nothing
written), 130 when interrupted (every campaign resumable: the same command with the same --home).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from evolve.competition.config import CompetitionError
from evolve.competition.metrics import METRICS
from evolve.competition.suite import SUITES

if TYPE_CHECKING:
    from evolve.competition.run import RunRequest

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
    _run_arguments(sub)
    _suite_arguments(sub)
    args = p.parse_args(argv)
    try:
        return {"grade": _grade, "grade-all": _grade_all, "prepare": _prepare, "run": _campaign,
                "run-suite": _suite}[args.action](args)
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


def _run_arguments(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="run a campaign on a competition within a budget (resume: evolve campaign "
                                   "resume NAME)")
    r.add_argument("competition", metavar="COMP", help="a competition folder (ours or MLE-bench's prepared one)")
    r.add_argument("--budget", required=True, help="the campaign's wall budget of run time: 24h, 90m, 1h30m, 3600")
    r.add_argument("--brain", default="rules", help="who plans the rounds (default: rules)")
    r.add_argument("--workspace", metavar="DIR", default="", help="the folder the solution's git workspace is made "
                                                                  "in, as DIR/NAME (default: ./workspaces)")
    r.add_argument("--name", default="", help="the campaign's name (default: the competition's id)")
    r.add_argument("--rounds", type=int, default=100, help="at most this many rounds (default: 100)")
    r.add_argument("--run-timeout", default="", help="one run's wall limit (default: 10m, within the budget)")
    r.add_argument("--template", default="sklearn", help="the solution template (default: sklearn)")
    r.add_argument("--metric", default="", help="the metric, for a competition without competition.yaml")
    r.add_argument("--search", default="tree", help="tree (default): draft solutions, debug the broken ones, "
                                                    "improve the best · greedy: always build on the best")
    r.add_argument("--drafts", type=int, default=5, help="tree: solutions drafted before any is improved "
                                                         "(default: 5, the template as it is among them)")
    r.add_argument("--home", help="where campaigns are kept (default: $EVOLVE_HOME, else ./.evolve)")
    r.add_argument("--verbose", "-v", action="store_true", help="also print each run's output")


def _campaign(args: argparse.Namespace) -> int:
    from evolve.campaign.cli import _guarded, sigterm_as_interrupt
    from evolve.competition.run import RunRequest, run

    req = RunRequest(args.competition, args.budget, args.brain, args.workspace, args.name, args.rounds,
                     args.run_timeout, args.template, args.metric, search=args.search, drafts=args.drafts)
    with sigterm_as_interrupt():
        return _guarded(lambda: run(req, args.home, args.verbose) and 0, resumable=True,
                        name=lambda: req.name or _competition_id(req))


def _suite_arguments(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("run-suite", help="a campaign on every competition of a prepared suite, each graded against "
                                         "its private answers at the end")
    s.add_argument("suite", metavar="DIR", help="a suite prepared by `evolve kaggle prepare --suite dev DIR`")
    s.add_argument("--budget", required=True, help="each campaign's wall budget of run time: 10m, 1h, 3600")
    s.add_argument("--parallel", type=int, default=1, help="campaigns at once, each run limited to cores // N "
                                                           "threads (default: 1)")
    s.add_argument("--brain", default="rules", help="who plans the rounds (default: rules)")
    s.add_argument("--rounds", type=int, default=100, help="at most this many rounds a campaign (default: 100)")
    s.add_argument("--run-timeout", default="", help="one run's wall limit (default: 10m, within the budget)")
    s.add_argument("--only", metavar="ID", action="append", default=[], help="only this competition (repeatable)")
    s.add_argument("--search", default="tree", help="as `kaggle run --search` (default: tree)")
    s.add_argument("--drafts", type=int, default=5, help="as `kaggle run --drafts` (default: 5)")
    s.add_argument("--workspace", metavar="DIR", default="", help="where the solutions' git workspaces are made "
                                                                  "(default: ./workspaces)")
    s.add_argument("--home", default="", help="where campaigns are kept (default: $EVOLVE_HOME, else ./.evolve); "
                                              "the same home again resumes the unfinished ones")
    s.add_argument("--out", metavar="RESULTS.json", default="", help="write the results here (must not exist)")


def _suite(args: argparse.Namespace) -> int:
    """0: every competition has a valid submission; 1: some have none (their rows say why); 130: interrupted."""
    from evolve.campaign.cli import sigterm_as_interrupt
    from evolve.competition.suite_run import SuiteRequest, format_table, run_suite

    req = SuiteRequest(args.suite, args.budget, args.parallel, args.brain, args.rounds, args.run_timeout,
                       args.workspace, args.home, args.out, args.only, args.search, args.drafts)
    try:
        with sigterm_as_interrupt():  # `kill` stops every campaign cleanly, like Ctrl-C
            results = run_suite(req, say=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        print("\ninterrupted; every campaign is saved: run the same command with the same --home to resume",
              file=sys.stderr)
        return 130
    print(format_table(results))
    if args.out:
        print(f"results: {args.out}")
    return 0 if all(row["valid"] for row in results["rows"]) else 1


def _competition_id(req: RunRequest) -> str:
    """The campaign's default name, for the resume hint after Ctrl-C ("" when the competition cannot be read)."""
    from evolve.competition.cv import open_competition

    try:
        return open_competition(req.competition, req.metric).id
    except CompetitionError:
        return ""


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
