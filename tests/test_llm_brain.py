"""The LLM brain against a scripted OpenAI-compatible server: a real HTTP server in a thread, the real openai
client, a real campaign (LangGraph, git, MLflow, a subprocess per round). The server answers planning
requests (those with a response_format) from a script of faults and answers, and any other request
(root cause, lesson) with one sentence."""

from __future__ import annotations

import io
import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from evolve.brains import PlanContext
from evolve.brains.llm import LLMBrain, LLMOptions
from evolve.brains.rules import RulesBrain
from evolve.campaign import runner as campaign
from evolve.campaign.spec import load_spec
from evolve.records.ledger import Ledger
from evolve.records.memory import Memory
from evolve.workloads.evolve_trainer import EvolveTrainer
from evolve.workspace.repo import Workspace
from tests.test_campaign import write_spec

# well-formed, but its context is not in config.yaml
BAD_PATCH = "--- a/config.yaml\n+++ b/config.yaml\n@@ -1 +1 @@\n-nothing: here\n+something: else\n"


def answer(key: str, value: str, id_: str = "llm_move") -> dict:
    return {"id": id_, "hypothesis": "A scripted idea.", "expected": "eval/accuracy rises",
            "changes": [{"file": "config.yaml", "key": key, "value": value, "patch": ""}]}


class Script:
    """What the server does for each planning request, in order: ("json", obj) | ("text", str) |
    ("status", code) | ("sleep", seconds)."""

    def __init__(self, steps: list[tuple[str, object]]):
        self.steps = deque(steps)
        self.planning_requests: list[dict] = []
        self.other_requests = 0


def make_handler(script: Script):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if "response_format" not in body:
                script.other_requests += 1
                return self._reply(200, "The scripted model says the cause is the config.")
            script.planning_requests.append(body)
            kind, arg = script.steps.popleft() if script.steps else ("status", 500)
            if kind == "sleep":
                time.sleep(arg)
                return self._reply(200, json.dumps(answer("rl.lr", "0.0003")))
            if kind == "status":
                return self._send(arg, {"error": {"message": "scripted failure", "type": "server_error"}})
            return self._reply(200, json.dumps(arg) if kind == "json" else arg)

        def _reply(self, code, content):
            self._send(code, {"id": "x", "object": "chat.completion", "created": 0, "model": "scripted",
                              "choices": [{"index": 0, "finish_reason": "stop",
                                           "message": {"role": "assistant", "content": content}}],
                              "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}})

        def _send(self, code, obj):
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and left

    return Handler


@pytest.fixture
def server():
    servers = []

    def start(steps):
        script = Script(steps)
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(script))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return script, f"http://127.0.0.1:{httpd.server_address[1]}/v1"

    yield start
    for httpd in servers:
        httpd.shutdown()


def llm_options(base_url: str, **extra) -> dict:
    return {"base_url": base_url, "model": "scripted", "timeout_s": 1.0, "max_retries": 0, **extra}


@pytest.fixture
def autolog_off():
    yield
    import mlflow

    mlflow.openai.autolog(disable=True)  # the campaign turned tracing on process-wide; later tests need it off


def test_five_round_campaign_survives_every_injected_fault_and_records_each_fallback(tmp_path, server, autolog_off):
    script, url = server([
        ("text", "this is not json {"), ("text", '{"id": "half"'),  # round 2: invalid JSON, twice
        ("json", {"id": "p", "hypothesis": "h", "expected": "e",  # round 3: a patch that does not apply...
                  "changes": [{"file": "config.yaml", "key": "", "value": "", "patch": BAD_PATCH}]}),
        ("status", 500),  # ...then an HTTP 500
        ("sleep", 3.0), ("sleep", 3.0),  # round 4: two timeouts (the client waits 1 s)
        ("status", 500), ("status", 500),  # round 5: HTTP 500 twice
    ])
    spec = write_spec(tmp_path, rounds=5, brain={"kind": "openai",
                                                 "options": llm_options(url, explain=True, criticise=True)})
    final = campaign.start(spec, home=tmp_path / "home", stream=io.StringIO())
    paths = campaign.campaign_paths("demo", tmp_path / "home")
    records = Ledger(paths.ledger).records()
    assert [r.round for r in records] == [1, 2, 3, 4, 5] and final["stop"].startswith("round budget spent")
    fallbacks = [r.proposal["fallback"] for r in records[1:]]
    assert "invalid JSON answer" in fallbacks[0]
    assert "patch does not apply" in fallbacks[1] and "InternalServerError" in fallbacks[1]
    assert "APITimeoutError" in fallbacks[2]
    assert fallbacks[3].count("InternalServerError") == 2
    assert all(r.proposal["source"].startswith("rules/") for r in records[1:])  # the rules brain decided
    # and decided well: the stacked faults are still fixed in rounds 2 and 3
    assert [r.kind for r in records[:3]] == ["router_collapse", "nan_loss", "healthy"]
    assert len(script.planning_requests) == 8  # each failure got exactly one repair attempt
    repair = script.planning_requests[1]["messages"][-1]["content"]
    assert repair.startswith("That answer was rejected: invalid JSON answer")
    # two planning answers, plus round 1's root cause and lesson sentences
    assert records[1].proposal["tokens"] == 2 * 120 + 2 * 120
    # the model worded the root cause and the lessons (explain/criticise), the playbook's text kept beside it
    diagnosis = json.loads((paths.run_dir(1) / "diagnosis.json").read_text())
    assert diagnosis["root_cause"].startswith("The scripted model") and "router" in diagnosis["root_cause_playbook"]
    assert all(s["lesson"].startswith("The scripted model") for s in Memory(load_spec(paths.spec).memory).sections())
    # every call that got an answer was traced to MLflow (mlflow.openai.autolog with the installed openai)
    import mlflow

    mlflow.flush_trace_async_logging()
    client = mlflow.MlflowClient(load_spec(paths.spec).tracking.uri)
    experiment = client.get_experiment_by_name("evolve").experiment_id
    assert len(client.search_traces(locations=[experiment], max_results=100)) >= script.other_requests


def brain_for(tmp_path: Path, url: str, token_budget: int = 0) -> tuple[LLMBrain, Workspace]:
    spec = load_spec(write_spec(tmp_path, brain={"kind": "openai", "options": llm_options(url)}))
    ws = Workspace.open(spec)
    rules = RulesBrain(EvolveTrainer({}))
    return LLMBrain(LLMOptions(**spec.brain.options), ws, "eval/accuracy", rules, token_budget), ws


def context(ws: Workspace, history=()) -> PlanContext:
    config = yaml.safe_load((ws.path / "config.yaml").read_text())
    return PlanContext(diagnosis={"kind": "healthy", "remedies": []}, history=list(history), config=config,
                       memory_summary="2 rounds: 1 keep.", round=3)


def test_a_valid_answer_after_one_repair_becomes_the_proposal(tmp_path, server):
    script, url = server([("json", answer("rl.nope", "1")), ("json", answer("rl.lr", "2.0e-4"))])
    brain, ws = brain_for(tmp_path, url)
    with ws:
        proposal = brain.propose(context(ws))
    assert proposal.source == "openai/scripted" and proposal.fallback == ""
    assert [(c.file, c.key, c.value) for c in proposal.changes] == [("config.yaml", "rl.lr", 2.0e-4)]
    assert proposal.tokens == 240
    # the first answer named a key the trainer does not have: rejected by the dry run, and said so
    assert "rl.nope" in script.planning_requests[1]["messages"][-1]["content"]
    first = script.planning_requests[0]
    assert first["response_format"]["type"] == "json_schema" and first["model"] == "scripted"
    prompt = first["messages"][1]["content"]
    assert "## Editable files" in prompt and "router_bias_update_rate" in prompt  # config.yaml is shown
    assert len(prompt) <= 12000 + 500


def test_a_repeated_change_or_a_non_editable_file_is_rejected(tmp_path, server):
    repeat = answer("rl.lr", "0.0002")
    history = [{"round": 2, "proposal": {"id": "x", "changes": [{"file": "config.yaml", "key": "rl.lr",
                                                                  "value": 0.0002, "patch": ""}]},
                "verdict": "keep", "objective": 0.9, "kind": "healthy"}]
    outside = {**answer("x", "1"), "changes": [{"file": "train.py", "key": "", "value": "", "patch": "print(1)\n"}]}
    script, url = server([("json", repeat), ("json", outside)])
    brain, ws = brain_for(tmp_path, url)
    with ws:
        proposal = brain.propose(context(ws, history))
        assert "already tried" in proposal.fallback and "not editable" in proposal.fallback
        assert not ws.is_dirty()  # the dry runs never touched the workspace


def test_the_token_budget_stops_model_calls(tmp_path, server):
    script, url = server([])
    brain, ws = brain_for(tmp_path, url, token_budget=100)
    spent = [{"round": 2, "proposal": {"id": "x", "changes": [], "tokens": 150}, "verdict": "keep",
              "objective": 0.9, "kind": "healthy"}]
    with ws:
        proposal = brain.propose(context(ws, spent))
    assert proposal.fallback == "token budget spent (150 of 100)" and script.planning_requests == []
