"""`evolve campaign start|resume|status` and `evolve report`: argument parsing and exit codes only.

Exit codes: 0 done, 2 the user's input is wrong (one line on stderr, nothing created or changed),
130 interrupted (Ctrl-C or SIGTERM; the campaign is resumable).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def campaign_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="evolve campaign", description="Run the agent's round loop on a workspace.")
    p.add_argument("--home", help="where campaigns are kept (default: $EVOLVE_HOME, else ./.evolve)")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = sub.add_parser("start", help="create a campaign from a spec and run it")
    s.add_argument("spec", help="campaign spec YAML, e.g. playbooks/campaigns/quickstart.yaml")
    s.add_argument("--verbose", "-v", action="store_true", help="also print each run's output")
    s.add_argument("--name", help="the campaign's name, instead of the spec's (run one spec many times)")
    r = sub.add_parser("resume", help="continue a stopped or crashed campaign from its last checkpoint")
    r.add_argument("name")
    r.add_argument("--verbose", "-v", action="store_true", help="also print each run's output")
    st = sub.add_parser("status", help="one row per round: round, commit, change, status, kind, objective, verdict")
    st.add_argument("name")
    st.add_argument("--json", action="store_true", help="print the status as one JSON object")
    args = p.parse_args(argv)
    if args.action == "status":
        return _guarded(lambda: _print_status(args.name, args.home, args.json))
    from evolve.campaign import runner as campaign

    with sigterm_as_interrupt():
        if args.action == "start":
            return _guarded(lambda: campaign.start(args.spec, args.home, args.verbose, name=args.name) and 0,
                            resumable=True, name=lambda: args.name or _spec_name(args.spec))
        return _guarded(lambda: campaign.resume(args.name, args.home, args.verbose) and 0, resumable=True,
                        name=args.name)


def report_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="evolve report", description="Write a campaign's report.md and report.html: "
                                "its rounds, search tree and objective plot, and a competition's final medal.")
    p.add_argument("name")
    p.add_argument("--home", help="where campaigns are kept (default: $EVOLVE_HOME, else ./.evolve)")
    args = p.parse_args(argv)

    def run() -> int:
        from evolve.campaign.runner import report

        md, html = report(args.name, args.home)
        print(md.read_text())
        print(f"report: {md}\nreport: {html}")
        return 0

    return _guarded(run)


def _print_status(name: str, home: str | None, as_json: bool) -> int:
    from evolve.campaign.runner import format_status, status

    s = status(name, home)
    print(json.dumps(s, indent=2) if as_json else format_status(s))
    return 0


def _guarded(run, resumable: bool = False, name: str | Callable[[], str] = "") -> int:
    from evolve.campaign.nodes import EditError
    from evolve.campaign.preflight import PreflightError
    from evolve.campaign.runner import CampaignError
    from evolve.campaign.spec import SpecError
    from evolve.records.ledger import LedgerError
    from evolve.workspace.repo import WorkspaceError

    try:
        return run()
    except (SpecError, CampaignError, WorkspaceError, LedgerError, PreflightError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except EditError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if resumable:
            name = name() if callable(name) else name  # the spec is read again only now that it is needed
            hint = f"evolve campaign resume {name}" if name else "evolve campaign resume <name>"
            print(f"\ninterrupted; the campaign is saved: {hint}", file=sys.stderr)
        return 130


def _spec_name(path: str) -> str:
    try:
        import yaml

        from evolve.files import read_text

        return str(yaml.safe_load(read_text(path)).get("name", ""))
    except Exception:  # the real load reports what is wrong with the spec; this only words a hint
        return ""


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """`kill` stops the run cleanly, like Ctrl-C; the caller's own SIGTERM handler is back afterwards, so a
    command called in-process (a test, a notebook) leaves nothing behind."""
    before = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
