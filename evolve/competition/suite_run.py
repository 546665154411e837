"""`evolve kaggle run-suite DIR --budget 10m`: every competition of a prepared suite as its own campaign, each
graded against its private answers once its campaign ends.

Each competition gets `evolve kaggle run`'s campaign (run.py's spec, started and resumed by the campaign
runner) in a process of its own (`python -m evolve.competition.suite_run JOB`, its output appended to
`<home>/kaggle/<name>.log`), so a campaign that fails, or takes its process down, is one row and never the
suite. `--parallel N` runs N of them at once; each run then gets cores // N threads (OMP_NUM_THREADS,
OPENBLAS_NUM_THREADS, MKL_NUM_THREADS in the spec's launch env; the solution template's n_jobs reads
OMP_NUM_THREADS), and N = 1 gives the one run all the cores.

The grading is the agent's: here, in the suite's process, after the campaign's process has ended. The best
submission is the best round's (the campaign's checkpoint, as `evolve campaign status` reads it)
`runs/round-<n>/submission.csv`, the file the campaign's `Best submission:` line names. A competition with
no best round, or whose campaign exited with an error, is a row with valid=false and the reason.

Re-running with the same --home resumes: a campaign that exists is continued as `evolve campaign resume NAME`
would (a finished one is only graded again). One that was started for another competition, or with another
budget, is bad input: its spec holds what it was started with, and a resume cannot change that. Ctrl-C or
SIGTERM stops every running campaign as Ctrl-C stops one (saved, resumable) and writes no results; after a
kill -9 of the suite alone, its campaigns run on to their end, and a re-run meanwhile finds them locked (their
rows say "already running").
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from evolve.competition.config import CompetitionError
from evolve.competition.cv import SUBMISSION, open_competition
from evolve.competition.layout import Competition
from evolve.competition.run import RunRequest, campaign_spec, parse_duration

if TYPE_CHECKING:
    from evolve.campaign.state import CampaignPaths

POLL_S = 0.2
STOP_GRACE_S = 60.0  # how long a campaign gets to save itself after SIGTERM before it is killed (resumable anyway)


@dataclass
class SuiteRequest:
    suite: str  # a prepared suite: one competition folder each (`evolve kaggle prepare --suite dev DIR`)
    budget: str  # each campaign's wall budget of run time
    parallel: int = 1
    brain: str = "rules"
    rounds: int = 100
    run_timeout: str = ""
    workspace: str = ""  # where the solutions' workspaces are made (default ./workspaces)
    home: str = ""  # the campaign home (default $EVOLVE_HOME, else ./.evolve)
    out: str = ""  # RESULTS.json; never overwritten
    only: list[str] = field(default_factory=list)  # these competition ids only
    search: str = "tree"  # as `kaggle run --search`
    drafts: int = 5


@dataclass(frozen=True)
class Entry:
    comp: Competition
    request: RunRequest
    resume: bool = False  # a campaign of that name exists in the home
    finished: bool = False  # ... and has ended: it is only graded again
    threads: int = 0  # each run's threads, as its spec says (a resumed campaign keeps what it was started with)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def plan(req: SuiteRequest) -> tuple[list[Entry], Path, int]:
    """What the suite will run (its entries, the home, each run's threads); CompetitionError for bad input,
    found before anything is written."""
    from evolve.campaign import runner

    root = Path(req.suite)
    if not root.is_dir():
        raise CompetitionError(f"{root}: {'not a folder' if root.exists() else 'no such folder'}; pass a suite "
                               "prepared by `evolve kaggle prepare --suite dev DIR`")
    if (root / "public").is_dir() or (root / "prepared").is_dir():
        raise CompetitionError(f"{root}: is one competition, not a suite; run it with `evolve kaggle run {root}`, "
                               "or pass the folder that holds it")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise CompetitionError(f"{root}: holds no competition folders; prepare a suite with "
                               f"`evolve kaggle prepare --suite dev {root}`")
    budget = parse_duration(req.budget)
    if req.parallel < 1:
        raise CompetitionError(f"--parallel {req.parallel}: must be at least 1")
    if req.out and (Path(req.out).exists() or Path(req.out).is_symlink()):
        raise CompetitionError(f"--out {req.out}: already exists; pass a new path (results are never overwritten)")
    if req.out and not Path(req.out).resolve().parent.is_dir():
        raise CompetitionError(f"--out {req.out}: its folder does not exist; create it first")
    comps = []
    for folder in folders:
        try:
            comps.append(open_competition(folder))
        except CompetitionError as e:
            raise CompetitionError(f"{root}: not a suite of competitions: {e}") from None
    if unknown := sorted(set(req.only) - {c.id for c in comps}):
        raise CompetitionError(f"--only {unknown[0]!r}: no such competition in {root}; known: "
                               f"{', '.join(c.id for c in comps)}")
    comps = [c for c in comps if not req.only or c.id in req.only]
    home = runner.home_dir(req.home or None)
    if (home.exists() or home.is_symlink()) and not home.is_dir():
        raise CompetitionError(f"--home {home}: not a folder; the campaign home must be a directory")
    threads = max(1, cores() // req.parallel)
    entries, names = [], set()
    for comp in comps:
        run_req = RunRequest(str(comp.root.resolve()), req.budget, req.brain, req.workspace, "", req.rounds,
                             req.run_timeout, threads=threads, search=req.search, drafts=req.drafts)
        name, _ = campaign_spec(run_req, comp, home)  # the same checks `kaggle run` makes
        if name in names:
            raise CompetitionError(f"{comp.root}: a second competition with id {name!r}; give each its own id")
        names.add(name)
        paths = runner.campaign_paths(name, home)
        entries.append(_existing(paths, name, comp, budget, run_req) if paths.spec.is_file()
                       else Entry(comp, run_req, threads=threads))
    return entries, home, threads


def _existing(paths: CampaignPaths, name: str, comp: Competition, budget_s: float, run_req: RunRequest) -> Entry:
    """The entry of a campaign that exists: resumed, or only graded when it has finished; CompetitionError when
    it was started for another competition or with another budget."""
    from evolve.campaign.runner import CampaignError, read_checkpoint

    try:
        spec = yaml.safe_load(paths.spec.read_text())
        started_for = Path(spec["workload"]["options"]["competition"]).resolve()
        started_with = float(spec["budget"]["wall_s"])
        threads = str(spec["launch"].get("env", {}).get("OMP_NUM_THREADS", "0"))
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError):
        raise CompetitionError(f"{paths.spec}: campaign {name!r} exists but is not a competition campaign; pass "
                               "another --home") from None
    if started_for != comp.root.resolve():
        raise CompetitionError(f"{paths.spec}: campaign {name!r} was started for {started_for}, not {comp.root}; "
                               "pass another --home")
    if started_with != budget_s:
        raise CompetitionError(f"{paths.spec}: campaign {name!r} was started with a budget of {started_with:g} s, "
                               f"not {budget_s:g} s; resume it with that --budget, or pass another --home")
    try:
        snapshot = read_checkpoint(paths, name)
    except CampaignError:  # damaged: the resume says so, in the competition's row
        snapshot = None
    finished = bool(snapshot and snapshot.values and not snapshot.next)
    return Entry(comp, run_req, True, finished, int(threads) if threads.isdigit() else 0)


def run_suite(req: SuiteRequest, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) every competition's campaign, grade each best submission, and return the results
    (written to req.out when given). Ctrl-C stops the campaigns, each resumable, and propagates."""
    from evolve.competition.grade import aggregate, dumps
    from evolve.files import write_atomic

    entries, home, threads = plan(req)
    began = time.monotonic()
    if req.parallel > 1 and len(entries) > 1:
        _open_store()
    (home / "kaggle").mkdir(parents=True, exist_ok=True)
    say(f"suite {Path(req.suite)}: {len(entries)} competitions, budget {req.budget} each, {req.parallel} at once, "
        f"{threads} thread{'s' * (threads != 1)} a run · home {home}")
    pending, running, rows = collections.deque(enumerate(entries)), {}, {}
    try:
        while pending or running:
            while pending and len(running) < req.parallel:
                i, entry = pending.popleft()
                log = home / "kaggle" / f"{entry.comp.id}.log"
                if entry.finished:
                    rows[i] = _row(entry, home, 0, 0.0, log)
                    say(f"[{i + 1}/{len(entries)}] {entry.comp.id}: already finished; graded again")
                    continue
                running[i] = (_spawn(entry, home, log), time.monotonic(), log)
                kept = f", its own {entry.threads} thread(s) a run" if entry.resume and entry.threads != threads else ""
                say(f"[{i + 1}/{len(entries)}] {entry.comp.id}: {'resumed' if entry.resume else 'started'}{kept} "
                    f"(log {log})")
            time.sleep(POLL_S)
            for i, (proc, started, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[i]
                rows[i] = _row(entries[i], home, proc.returncode, time.monotonic() - started, log)
                row = rows[i][0]
                say(f"[{i + 1}/{len(entries)}] {row['competition']}: ended after {row['wall_s']:.0f} s, "
                    f"{row['rounds']} rounds · " + (f"private {row['private_score']:.5g}, medal {row['medal']}"
                                                    if row["valid"] else f"no valid submission: {row['reason']}"))
    except KeyboardInterrupt:
        _stop([proc for proc, _, _ in running.values()])
        raise
    ordered = [rows[i] for i in range(len(entries))]
    results = {"suite": str(Path(req.suite).resolve()), "budget": req.budget, "budget_s": parse_duration(req.budget),
               "parallel": req.parallel, "threads_per_run": threads, "cores": cores(), "brain": req.brain,
               "home": str(home), "wall_s": round(time.monotonic() - began, 1),
               "rows": [row for row, _ in ordered], **aggregate([report for _, report in ordered])}
    if req.out:
        write_atomic(Path(req.out), dumps(results) + "\n")
    return results


def _open_store() -> None:
    """Make the MLflow store and experiment once, before campaigns start side by side: two processes creating a
    new SQLite store's tables (or the same experiment) at once would fail one of them."""
    from evolve.campaign.runner import absolute_uri
    from evolve.records.mlflow_io import resolve_uri
    from evolve.records.tracking import CampaignTracker

    CampaignTracker(absolute_uri(resolve_uri()), "evolve", "suite")


def _spawn(entry: Entry, home: Path, log: Path) -> subprocess.Popen:
    """The campaign's own process. Variables a run may not have reach it through an inherited memfd, as
    `campaign start` hands them to its re-executed self (evolve/launch/secrets.py), never in its environment."""
    from evolve.launch import runenv, secrets

    withheld = {n: v for n, v in os.environ.items() if not runenv.allowed(n)}
    withheld.update({n: secrets.get(n) or "" for n in secrets.held()})
    env = {n: v for n, v in os.environ.items() if runenv.allowed(n) and n != secrets.FD_VAR}
    fds: tuple[int, ...] = ()
    if withheld:
        fds = (secrets._sealed(json.dumps(withheld).encode()),)
        env[secrets.FD_VAR] = str(fds[0])
    job = {"request": dataclasses.asdict(entry.request), "home": str(home), "resume": entry.resume}
    try:
        with open(log, "a") as out:
            out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {'resume' if entry.resume else 'start'}\n")
            out.flush()
            return subprocess.Popen([sys.executable, "-m", "evolve.competition.suite_run", json.dumps(job)],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    pass_fds=fds)
    finally:
        for fd in fds:
            os.close(fd)


def _stop(procs: list[subprocess.Popen]) -> None:
    """Each campaign stops as Ctrl-C stops it (SIGTERM becomes Ctrl-C there), saved and resumable."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()  # a kill -9 is what resume is built for
            proc.wait()


def _row(entry: Entry, home: Path, code: int, wall_s: float, log: Path) -> tuple[dict[str, Any], Any]:
    """The competition's row and its grade.py Report (the best round's submission against the answers)."""
    from evolve.campaign import runner
    from evolve.competition.grade import grade

    comp, name = entry.comp, entry.comp.id
    reason, best, best_cv, rounds = "", 0, None, 0
    try:
        status = runner.status(name, home)
        best, best_cv = status["best_round"], status["best_objective"]
        rounds = sum(r["status"] not in ("running", "interrupted") for r in status["rounds"])
        if not best:
            kinds = collections.Counter(r["kind"] or r["status"] for r in status["rounds"])
            reason = "no round succeeded" + (f" ({', '.join(f'{k} x{n}' for k, n in kinds.items())})" if kinds
                                              else "")
    except Exception as e:  # a campaign that never came to exist (a refused start): the log says why
        reason = f"no campaign: {' '.join(str(e).split())}"
    if code != 0:
        reason = f"the campaign exited {code}: {_last_error(log)}" + (f"; {reason}" if reason else "")
    submission = runner.campaign_paths(name, home).run_dir(best) / SUBMISSION if best else None
    report = grade(comp, submission or log.with_name(f"{name}.no-submission.csv"))
    if submission is None:
        report = dataclasses.replace(report, submission_path="", problems=[reason])
    elif not report.valid_submission:
        reason = f"round {best}'s submission: {report.problems[0] if report.problems else 'invalid'}"
    row = {"competition": comp.id, "metric": comp.metric_name, "lower_is_better": comp.lower_is_better,
           "rounds": rounds, "best_round": best, "best_cv": best_cv, "private_score": report.score,
           "valid": report.valid_submission, "medal": report.medal or "none", "above_median": report.above_median,
           "wall_s": round(wall_s, 1), "submission": str(submission) if submission else None, "reason": reason,
           "threads": entry.threads, "resumed": entry.resume, "exit_code": code, "log": str(log)}
    return row, report


def _last_error(log: Path) -> str:
    """The last `error:` line of the campaign's log, else its last line."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()[-200:] if line.strip()]
    except OSError:
        return "(no log)"
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["(empty log)"])[-1][:300]


def format_table(results: dict[str, Any]) -> str:
    """The table `run-suite` prints at the end, then one line per competition without a valid submission."""
    cols = ("competition", "metric", "rounds", "best CV", "private", "valid", "medal", "> median", "wall")
    table = [[r["competition"], r["metric"] + (" ↓" if r["lower_is_better"] else " ↑"), str(r["rounds"]),
              _num(r["best_cv"]), _num(r["private_score"]), "yes" if r["valid"] else "no", r["medal"],
              "yes" if r["above_median"] else "no", f"{r['wall_s']:.0f} s"] for r in results["rows"]]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)).rstrip() for t in table]
    lines += [f"{r['competition']}: {r['reason']}" for r in results["rows"] if r["reason"]]
    n = len(results["rows"])
    lines.append(f"{results['total_valid_submissions']}/{n} valid, {results['total_medals']}/{n} medals "
                 f"({results['total_gold_medals']} gold, {results['total_silver_medals']} silver, "
                 f"{results['total_bronze_medals']} bronze), {results['total_above_median']}/{n} above median; "
                 f"{results['wall_s']:.0f} s")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.5g}"


def _worker(argv: list[str]) -> int:
    """One competition's campaign, in its own process: `kaggle run`'s start, or `campaign resume`."""
    from evolve.launch.secrets import reexec_without_secrets

    reexec_without_secrets()  # receives what the suite handed on (a run must never see it in our environ)
    from evolve.campaign import runner
    from evolve.campaign.cli import _guarded, _interrupt
    from evolve.competition.run import run

    job = json.loads(argv[0])
    req = RunRequest(**job["request"])
    name = open_competition(req.competition).id
    signal.signal(signal.SIGTERM, _interrupt)  # the suite's stop: Ctrl-C, so the campaign saves itself

    def drive() -> int:
        try:
            runner.resume(name, job["home"]) if job["resume"] else run(req, job["home"])
        except CompetitionError as e:
            print("error: " + " ".join(str(e).split()), file=sys.stderr)
            return 2
        return 0

    return _guarded(drive, resumable=True, name=name)


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
