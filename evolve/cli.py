"""The `evolve` command line.

    evolve train --config CONFIG [--run-dir DIR] [--scaffold FILE] [--set key=value ...] [--resume]
    evolve triage TARGET [--json] [--explain] [--baseline HEALTHY] [--model-url URL --model NAME]
                                       TARGET: a run directory, a log file, - (stdin), or mlflow:<run_id>
    evolve campaign start SPEC [--verbose]
    evolve campaign resume NAME [--verbose]
    evolve campaign status NAME [--json]
    evolve report NAME
    evolve export CHECKPOINT OUT_DIR   a Hugging Face MiniMaxM2ForCausalLM directory (transformers, vLLM)
    evolve serve CHECKPOINT [--port P] [--engine builtin|vllm]   an OpenAI-compatible server for the model
    evolve kaggle grade COMP SUBMISSION [--json]    evolve kaggle grade-all RUNS.jsonl [--out FILE]
    evolve kaggle prepare --suite dev OUT_DIR        the dev suite: 8 competitions from scikit-learn's bundled data
    evolve kaggle run COMP --budget 1h [--brain rules] [--workspace DIR] [--name NAME]   a campaign on a competition

CHECKPOINT is a checkpoint file or a run directory (meaning its latest checkpoint).

User errors (a bad spec, an unknown campaign, a dirty tree, a missing checkpoint) print one line and
exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (handler "module:function", help). Handlers are imported when their command runs: torch loads only
# for the commands that need it, and the trainer is reached only through its workload and the serving code.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("evolve.workloads.evolve_trainer:train_command",
              "train the embedded MoE model (SFT warm-up, then RL with CISPO)"),
    "triage": ("evolve.cli:triage_main", "diagnose a run directory, a log file or mlflow:<run_id>"),
    "campaign": ("evolve.campaign.cli:campaign_main", "start, resume or show a campaign (the agent's round loop)"),
    "report": ("evolve.campaign.cli:report_main", "write a campaign's report (markdown + HTML with a plot)"),
    "export": ("trainer.serve.cli:export_command", "export a checkpoint as a Hugging Face MiniMaxM2 model directory"),
    "serve": ("trainer.serve.cli:serve_main", "serve a checkpoint on an OpenAI-compatible HTTP API"),
    "kaggle": ("evolve.competition.cli:kaggle_main",
               "Kaggle-style competitions: grade, prepare a suite, run a campaign"),
}


def main(argv: list[str] | None = None) -> int:
    if argv is None and _launches_runs(sys.argv[1:]):
        from evolve.launch.secrets import reexec_without_secrets  # stdlib only: before anything heavy is imported

        reexec_without_secrets()  # the process that launches runs must never have held the secrets in its env
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="evolve", description="An autonomous ML engineer for RL training.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        sub.add_parser(name, help=summary, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        parser.parse_args(argv[:1])  # prints "invalid choice" and exits 2
        return 2
    module, _, function = COMMANDS[argv[0]][0].partition(":")
    return getattr(importlib.import_module(module), function)(argv[1:])


def _launches_runs(argv: list[str]) -> bool:
    """`evolve campaign [options] start|resume ...` and `evolve kaggle run|run-suite ...`: the commands whose process
    launches model-written code."""
    if argv[:1] == ["kaggle"]:
        return bool(set(argv[1:2]) & {"run", "run-suite"})
    return bool(argv) and argv[0] == "campaign" and any(a in ("start", "resume") for a in argv[1:])


def triage_main(argv: list[str]) -> int:
    """`evolve triage`: read-only, and it never imports torch, so it is quick on any machine."""
    import json
    from pathlib import Path

    from evolve.triage import RUN_FILES, TargetNotFound, format_text, triage
    from evolve.workloads import for_framework

    p = argparse.ArgumentParser(prog="evolve triage", description="Diagnose a failed (or suspect) training run.")
    p.add_argument("target", help="a run directory, a log file, - (a report pasted on stdin), or mlflow:<run_id> "
                                  "(uses $MLFLOW_TRACKING_URI)")
    p.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    p.add_argument("--explain", action="store_true", help="show which signatures, metric rules or words decided")
    p.add_argument("--baseline", metavar="HEALTHY", help="a healthy run directory or log of the same workload: "
                                                         "say which lines and metrics are new")
    p.add_argument("--model-url", metavar="URL", help="an OpenAI-compatible endpoint; the model picks the root "
                                                      "kind among the rules' top candidates (shown beside them)")
    p.add_argument("--model", metavar="NAME", help="the model to ask (with --model-url)")
    p.add_argument("--api-key-env", metavar="VAR", default="OPENAI_API_KEY",
                   help="the environment variable holding the endpoint's key (default OPENAI_API_KEY)")
    args = p.parse_args(argv)
    if bool(args.model_url) != bool(args.model):
        print("error: --model-url and --model go together (e.g. --model-url http://localhost:8000/v1 --model m)",
              file=sys.stderr)
        return 2
    target = Path(args.target)
    try:
        for name, path in (("target", target), ("--baseline", Path(args.baseline or "-"))):
            if name == "--baseline" and not args.baseline:
                continue
            # a typo'd parent folder would otherwise be diagnosed for want of evidence
            if str(path) != "-" and not str(path).startswith("mlflow:") and path.is_dir() and not any(
                    (path / n).exists() for n in RUN_FILES):
                raise TargetNotFound(f"{path}: not a run directory (it has none of {', '.join(RUN_FILES)}); "
                                     f"pass a run directory or a log file as the {name}")
            if name == "--baseline" and not path.exists():
                raise TargetNotFound(f"--baseline {path}: no such file or directory")
        if args.baseline and (args.target == "-" or args.target.startswith("mlflow:")):
            raise ValueError("--baseline compares files: give the target as a run directory or a log file")
        diagnosis = triage(args.target, baseline=args.baseline)
    except (TargetNotFound, ValueError, OSError) as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)  # one line, whatever the cause said
        return 2
    if args.model_url:
        from evolve.brains.llm import Endpoint, LLMOptions, choose_kind

        endpoint = Endpoint(LLMOptions(args.model_url, args.model, args.api_key_env, triage=True, trace=False))
        diagnosis.model, _ = choose_kind(endpoint, diagnosis.to_dict(), diagnosis.candidates)
    if args.json:
        print(json.dumps(diagnosis.to_dict(), indent=2))
    else:
        workload = for_framework(diagnosis.framework)  # says how each remedy is done in its keys
        how = (lambda kind, r: workload.how_to(kind, r.id)) if workload else None
        print(format_text(diagnosis, args.explain, how))
    return 0


if __name__ == "__main__":
    sys.exit(main())
