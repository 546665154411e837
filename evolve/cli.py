"""The `evolve` command line.

    evolve train --config CONFIG [--run-dir DIR] [--scaffold FILE] [--set key=value ...] [--resume]

Later subcommands (campaign, triage, report, serve, export) plug in here as they land.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="evolve", description="An autonomous ML engineer for RL training.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("train", help="train the embedded MoE model (SFT warm-up, then RL with CISPO)",
                   add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    if argv[0] == "train":
        from trainer.train import main as train_main  # torch loads only for commands that need it

        return train_main(argv[1:])
    parser.parse_args(argv[:1])  # prints "invalid choice" and exits 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
