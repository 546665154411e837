"""The MoE brain (`brain.kind: moe`): the in-repo model, served by our own server, picks the next change.

The model is small and trained on arithmetic, so it is not asked to write edits. It chooses: the rules
brain lists the proposals that apply now (untried remedies for the diagnosed kind, else improvement moves
in bandit order), and the model picks one id under choice-constrained decoding, so every answer is a valid
pick by construction. This is the mission's loop in miniature -- the model being trained takes part in
planning its own training -- and the server is the same one `evolve serve` runs, started on the
spec's checkpoint when the first plan needs it and stopped when the campaign process ends.

Any failure (the server does not start, a request fails) falls back to the rules brain's first choice,
with the reason in the proposal's `fallback`.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from evolve.brains import PlanContext, Proposal
from evolve.brains.rules import RulesBrain
from evolve.launch import runenv

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class MoEOptions:
    checkpoint: str  # a checkpoint file, or a run directory (its latest checkpoint)
    candidates: int = 6  # how many of the rules brain's proposals the model chooses among
    temperature: float = 0.0  # 0: the model's greedy pick
    seed: int = 0
    startup_timeout_s: float = 120.0


def check_checkpoint(checkpoint: str) -> None:
    """Before a campaign creates anything: the model's checkpoint must be one `evolve serve` can load
    (SpecError naming the option). The brain serves the in-repo model, so it asks the trainer."""
    from evolve.campaign.spec import SpecError
    from trainer.checkpoint import resolve_checkpoint
    from trainer.config import ConfigError

    try:
        resolve_checkpoint(checkpoint)
    except ConfigError as e:
        raise SpecError(f"brain.options.checkpoint: {e}") from None


class MoEBrain:
    source = "moe"

    def __init__(self, options: MoEOptions, rules: RulesBrain) -> None:
        self.options, self.rules = options, rules
        self._server: subprocess.Popen | None = None
        self._client: openai.OpenAI | None = None

    def propose(self, ctx: PlanContext) -> Proposal:
        candidates = list(itertools.islice(self.rules.candidates(ctx), max(1, self.options.candidates)))
        if len(candidates) <= 1:  # none: the parent fails with no remedy left, and rules says so (NoRemedyLeft)
            return candidates[0] if candidates else self.rules.propose(ctx)
        try:
            chosen, tokens = self._choose(ctx, candidates)
        except (OSError, RuntimeError, openai.OpenAIError) as e:
            log.warning("MoE brain fell back to the rules brain: %s", e)
            first = candidates[0]
            first.fallback = " ".join(f"{type(e).__name__}: {e}".split())[:500]
            return first
        chosen.source, chosen.tokens = f"{self.source}/{chosen.source}", tokens
        return chosen

    def explain(self, diagnosis: dict[str, Any]) -> str | None:
        return None

    def lesson(self, criticism: dict[str, str]) -> str | None:
        return None

    def choose_kind(self, diagnosis: dict[str, Any], candidates: list[str]) -> dict[str, Any] | None:
        return None  # the MoE brain picks among proposals, not kinds

    def close(self) -> None:
        if self._server is not None and self._server.poll() is None:
            os.killpg(self._server.pid, signal.SIGTERM)
            try:
                self._server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._server.pid, signal.SIGKILL)
                self._server.wait()
        self._server = None

    # ------------------------------------------------------------------------------------ the pick

    def _choose(self, ctx: PlanContext, candidates: list[Proposal]) -> tuple[Proposal, int]:
        client = self._ensure_server()
        kind = (ctx.diagnosis or {}).get("kind") or "none"
        if ctx.parent is not None and ctx.parent.failing:  # the candidates are then remedies only
            kind += f" (the base, round {ctx.parent.round}, fails: {ctx.parent.kind})"
        # the model reads printable ASCII only, and its context is short: ids and the start of each idea
        listing = "\n".join(f"{p.id}: {_ascii(p.hypothesis)[:80]}" for p in candidates)
        messages = [{"role": "system", "content": "Pick the next experiment. Answer with its id only."},
                    {"role": "user", "content": f"last run: {kind}\noptions:\n{listing}"}]
        response = client.chat.completions.create(
            model="evolve-moe", messages=messages, temperature=self.options.temperature, seed=self.options.seed,
            max_tokens=64, extra_body={"structured_outputs": {"choice": [p.id for p in candidates]}})
        answer = (response.choices[0].message.content or "").strip()
        by_id = {p.id: p for p in candidates}
        if answer not in by_id:
            raise RuntimeError(f"the server answered {answer!r}, not one of the choices")
        return by_id[answer], response.usage.total_tokens if response.usage else 0

    def _ensure_server(self) -> openai.OpenAI:
        if self._client is not None and self._server is not None and self._server.poll() is None:
            return self._client
        port = _free_port()
        # the allow-list only: a launched run can read this server's /proc/<pid>/environ (same uid)
        env = runenv.run_env(os.environ, {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
                             home=os.environ.get("HOME", "/"))
        self._server = subprocess.Popen(
            [sys.executable, "-m", "evolve", "serve", self.options.checkpoint, "--port", str(port),
             "--model-name", "evolve-moe"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True)  # its own group: close() ends it and anything it started
        deadline = time.monotonic() + self.options.startup_timeout_s
        while time.monotonic() < deadline:
            if self._server.poll() is not None:
                why = (self._server.stderr.read() or b"").decode(errors="replace").strip().splitlines()
                self._server = None
                raise RuntimeError(f"the model server exited: {why[-1] if why else 'no message'}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            self.close()
            raise RuntimeError(f"the model server did not answer within {self.options.startup_timeout_s:.0f}s")
        self._client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="EMPTY", max_retries=1,
                                     timeout=60)
        return self._client


def _ascii(text: str) -> str:
    text = text.replace("→", "->").replace("…", "...").replace("—", "-")
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
