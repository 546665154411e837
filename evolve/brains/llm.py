"""The LLM brain (`brain.kind: openai`): any OpenAI-compatible endpoint plans the next change.

One planning call per round with a JSON-schema response format; the answer is validated with pydantic
and then *tried*: applied to a scratch copy of the workspace (patches must apply, YAML must parse,
Python must compile, a trainer config must still load) and checked against the ledger for repeats.
Anything wrong -- a transport error, a timeout, an HTTP 500, invalid JSON, a patch that does not apply --
gets one repair attempt (the error is sent back); if that fails too, the rules brain decides the round
and the proposal records why in `fallback`, so the ledger shows every fallback. Tokens are counted per
proposal (`tokens`) and summed from the ledger, so `budget.tokens` holds across resumes.

The API key is read from the environment variable the spec names, never from the spec itself; the
campaign process keeps it in evolve/launch/secrets.py's vault, never in its own initial environment, and runs
get only the launcher's allow-list.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pydantic
import yaml

from evolve.brains import Change, PlanContext, Proposal, change_key, prompts, tried_changes
from evolve.brains.rules import RulesBrain, plan_base
from evolve.launch import secrets
from evolve.records.lessons import one_line
from evolve.workspace.edits import apply_changes
from evolve.workspace.repo import Workspace, WorkspaceError

log = logging.getLogger(__name__)


@dataclass
class LLMOptions:
    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"  # a local server takes any key; "EMPTY" is sent when unset
    timeout_s: float = 60.0
    max_retries: int = 2  # the client's own retries (connection errors, 429, 5xx) before a call fails
    temperature: float = 0.2
    seed: int = 0
    max_prompt_chars: int = 12000
    explain: bool = False  # the model words the root cause in diagnosis.json
    criticise: bool = False  # the model words the lesson in the memory file
    triage: bool = False  # the model picks among triage's top candidate kinds (the rules' kind stays beside it)
    trace: bool = True  # trace calls to MLflow with mlflow.openai.autolog, where it works


class _Change(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    file: str
    key: str = ""
    value: str = ""
    patch: str = ""


class _Answer(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    id: str = pydantic.Field(min_length=1, max_length=80)
    hypothesis: str = pydantic.Field(min_length=1)
    expected: str = pydantic.Field(min_length=1)
    changes: list[_Change] = pydantic.Field(min_length=1, max_length=10)


class _KindAnswer(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    kind: str = pydantic.Field(min_length=1)
    reason: str


class Rejected(ValueError):
    """An answer that cannot become this round's edit (one line, sent back to the model to repair)."""


class Endpoint:
    """The OpenAI-compatible transport: one chat completion, optionally schema-constrained. What a brain
    and a bare `evolve triage --model-url` share."""

    def __init__(self, options: LLMOptions) -> None:
        self.options = options
        # from the vault: `campaign start` re-execs without credentials in its environment (evolve/launch/secrets.py)
        self.client = openai.OpenAI(base_url=options.base_url, api_key=secrets.get(options.api_key_env) or "EMPTY",
                                    timeout=options.timeout_s, max_retries=options.max_retries)

    def chat(self, messages: list[dict[str, str]], schema: dict[str, Any] | None = None,
             name: str = "proposal") -> tuple[str, int]:
        kwargs: dict[str, Any] = {}
        if schema is not None:
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": name, "schema": schema, "strict": True}}
        response = self.client.chat.completions.create(model=self.options.model, messages=messages,
                                                       temperature=self.options.temperature, seed=self.options.seed,
                                                       **kwargs)
        used = response.usage.total_tokens if response.usage else 0
        if not response.choices:
            raise Rejected("the response had no choices")
        return response.choices[0].message.content or "", used


def choose_kind(endpoint: Endpoint, diagnosis: dict[str, Any], candidates: list[str]
                ) -> tuple[dict[str, Any] | None, int]:
    """The model's pick of the root-cause kind among `candidates` (or None: the rules' kind stands), and the
    tokens it took. Never raises: a transport error, invalid JSON or a kind outside the candidates is a warning."""
    if len(candidates) < 2:
        return None, 0
    messages = prompts.choose_kind_messages(diagnosis, candidates, endpoint.options.max_prompt_chars)
    try:
        text, used = endpoint.chat(messages, schema=prompts.choose_kind_schema(candidates), name="triage_kind")
    except (openai.OpenAIError, Rejected) as e:
        log.warning("LLM brain: triage choice failed: %s; keeping the rules' kind", one_line(str(e), 300))
        return None, 0
    try:
        answer = _KindAnswer.model_validate_json(text)
    except pydantic.ValidationError as e:
        log.warning("LLM brain: invalid triage answer (%s); keeping the rules' kind",
                    one_line(e.errors()[0]["msg"], 200))
        return None, used
    if answer.kind not in candidates:
        log.warning("LLM brain: triage answer %r is not a candidate (%s); keeping the rules' kind",
                    one_line(answer.kind, 80), ", ".join(candidates))
        return None, used
    return {"kind": answer.kind, "reason": one_line(answer.reason, 300), "model": endpoint.options.model}, used


class LLMBrain:
    source = "openai"

    def __init__(self, options: LLMOptions, workspace: Workspace, metric: str, rules: RulesBrain,
                 token_budget: int = 0) -> None:
        self.options, self.workspace, self.metric, self.rules = options, workspace, metric, rules
        self.token_budget = token_budget
        self.endpoint = Endpoint(options)
        self._side_tokens = 0  # explain/lesson calls, charged to the next proposal

    # ------------------------------------------------------------------------------------ planning

    def propose(self, ctx: PlanContext) -> Proposal:
        spent = sum(int((h.get("proposal") or {}).get("tokens", 0)) for h in ctx.history)
        if self.token_budget and spent >= self.token_budget:
            return self._fallback(ctx, f"token budget spent ({spent} of {self.token_budget})", 0)
        files = prompts.read_files(self.workspace.path, self.workspace.spec.workspace.editable)
        messages = prompts.plan_messages(ctx, files, self.metric, self.options.max_prompt_chars)
        tokens, errors = self._side_tokens, []
        self._side_tokens = 0
        for _ in range(2):  # the answer, then one repair
            try:
                text, used = self._chat(messages, schema=prompts.PROPOSAL_SCHEMA)
            except openai.OpenAIError as e:
                errors.append(one_line(f"{type(e).__name__}: {e}"))
                continue
            tokens += used
            try:
                proposal = self._check(text, ctx)
            except Rejected as e:
                errors.append(str(e))
                messages = messages + prompts.repair_message(text, str(e))
                continue
            proposal.tokens = tokens
            return proposal
        return self._fallback(ctx, " | then: ".join(errors), tokens)

    def _check(self, text: str, ctx: PlanContext) -> Proposal:
        try:
            answer = _Answer.model_validate_json(text)
        except pydantic.ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "answer"
            raise Rejected(f"invalid JSON answer at {where}: {first['msg']}") from None
        changes = [Change(c.file, c.key, _yaml_value(c.value) if c.key else None, c.patch) for c in answer.changes]
        if change_key(changes) in tried_changes(ctx):
            raise Rejected("this exact change was already tried (see the history); propose a different one")
        self._dry_run(changes)
        # what the change is meant to remove: the failing base's kind (stacked faults), else the last run's
        kind = plan_base(ctx).diagnosis.get("kind") if ctx.parent and ctx.parent.failing else \
            (ctx.diagnosis or {}).get("kind")
        return Proposal(answer.id, answer.hypothesis, changes, answer.expected, f"{self.source}/{self.options.model}",
                        target=kind if kind not in (None, "healthy") else "")

    def _dry_run(self, changes: list[Change]) -> None:
        """Apply to a scratch copy of the tree: the real workspace only ever sees edits that work."""
        try:
            self.workspace.check_editable([c.file for c in changes])
        except WorkspaceError as e:
            raise Rejected(str(e)) from None
        with tempfile.TemporaryDirectory(prefix="evolve-dry-run.") as tmp:
            scratch = Path(tmp) / "tree"
            shutil.copytree(self.workspace.path, scratch, symlinks=True, ignore=shutil.ignore_patterns(".git"))
            try:
                for name in apply_changes(scratch, changes, self.rules.workload.validate):
                    _parses(scratch / name, name)
            except ValueError as e:
                raise Rejected(one_line(str(e))) from None

    def _fallback(self, ctx: PlanContext, reason: str, tokens: int) -> Proposal:
        log.warning("LLM brain fell back to the rules brain: %s", reason)
        proposal = self.rules.propose(ctx)
        proposal.fallback, proposal.tokens = one_line(reason, 500), tokens
        return proposal

    # ------------------------------------------------------------------------------------ wording

    def explain(self, diagnosis: dict[str, Any]) -> str | None:
        if not self.options.explain:
            return None
        return self._sentence(prompts.explain_messages(diagnosis, self.options.max_prompt_chars))

    def lesson(self, criticism: dict[str, str]) -> str | None:
        if not self.options.criticise:
            return None
        return self._sentence(prompts.lesson_messages(criticism))

    def choose_kind(self, diagnosis: dict[str, Any], candidates: list[str]) -> dict[str, Any] | None:
        """The model's pick among the rules' candidates, when `options.triage` asks for one."""
        if not self.options.triage:
            return None
        pick, used = choose_kind(self.endpoint, diagnosis, candidates)
        self._side_tokens += used
        return pick

    def close(self) -> None:
        self.endpoint.client.close()  # its HTTP connection pool

    def _sentence(self, messages: list[dict[str, str]]) -> str | None:
        try:
            text, used = self._chat(messages)
        except openai.OpenAIError as e:
            log.warning("LLM brain: %s; keeping the playbook's wording", one_line(str(e)))
            return None
        self._side_tokens += used
        return one_line(text, 400) or None

    def _chat(self, messages: list[dict[str, str]], schema: dict[str, Any] | None = None,
              name: str = "proposal") -> tuple[str, int]:
        return self.endpoint.chat(messages, schema, name)


def enable_tracing(uri: str, experiment: str) -> str:
    """Trace the brain's OpenAI calls to MLflow. Returns "" when on, else why not (one line)."""
    try:
        import mlflow

        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(experiment)
        mlflow.openai.autolog()
    except Exception as e:  # an optional integration: its failure must never stop a campaign
        return one_line(f"{type(e).__name__}: {e}")
    return ""


def _yaml_value(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text  # a plain string the model did not quote


def _parses(path: Path, name: str) -> None:
    if not path.is_file():
        return
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            yaml.safe_load(text)
        elif path.suffix == ".py":
            compile(text, name, "exec")
        elif path.suffix == ".json":
            json.loads(text)
    except (yaml.YAMLError, SyntaxError, ValueError) as e:
        raise Rejected(f"{name} no longer parses after the change: {one_line(str(e), 200)}") from None
