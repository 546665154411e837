"""The optional model in triage (issue 11 §7): with `brain.options.triage`, the LLM brain chooses the root-cause
kind among triage's top candidates through a schema-constrained answer. A real HTTP server in a thread answers
OpenAI chat completions; the real openai client talks to it through `LLMBrain`. Any failure is None (the rules'
kind stands), never an exception."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from evolve.brains import prompts
from evolve.brains.llm import LLMBrain, LLMOptions
from evolve.brains.moe import MoEBrain
from evolve.brains.registry import make_brain
from evolve.brains.rules import RulesBrain
from evolve.campaign.spec import SpecError, load_spec
from evolve.triage.vocabulary import KINDS
from evolve.workloads import make_workload
from evolve.workloads.evolve_trainer import EvolveTrainer
from evolve.workspace.repo import Workspace
from tests.test_campaign import write_spec

DIAGNOSIS = {
    "kind": "nan_loss", "confidence": 0.62, "root_cause": "the loss became NaN",
    "evidence": [{"source": "stdout.log", "line": 41, "text": "grad_norm=1.2e9",
                  "excerpt": "stdout.log:41: grad_norm=1.2e9"},
                 {"source": "stdout.log", "line": 42, "text": "loss=nan", "excerpt": "stdout.log:42: loss=nan"}],
    "explain": ["rule nan_loss matched 'loss=nan'"], "also": ["grad_explosion"], "remedies": [],
}
CANDIDATES = ["nan_loss", "grad_explosion", "crash"]


class Server:
    """Answers each chat completion with the next scripted reply: ("json", obj) | ("status", code)."""

    def __init__(self, replies: list[tuple[str, object]]):
        self.replies, self.requests = list(replies), []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                server.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                kind, arg = server.replies.pop(0) if server.replies else ("status", 500)
                if kind == "status":
                    return self._send(arg, {"error": {"message": "scripted failure", "type": "server_error"}})
                self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": "scripted",
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": json.dumps(arg)}}],
                                 "usage": {"prompt_tokens": 90, "completion_tokens": 10, "total_tokens": 100}})

            def _send(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def serve():
    started: list[Server] = []

    def start(*replies):
        started.append(Server(list(replies)))
        return started[-1]

    yield start
    for s in started:
        s.httpd.shutdown()
        s.httpd.server_close()


def brain_for(tmp_path, url: str, triage: bool = True) -> LLMBrain:
    options = {"base_url": url, "model": "scripted", "timeout_s": 2.0, "max_retries": 0, "triage": triage}
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec = load_spec(write_spec(tmp_path, brain={"kind": "openai", "options": options}))
    ws = Workspace.open(spec)
    ws.close()
    return LLMBrain(LLMOptions(**spec.brain.options), ws, "eval/accuracy", RulesBrain(EvolveTrainer({})))


def test_the_model_picks_a_candidate_through_a_strict_schema(tmp_path, serve):
    server = serve(("json", {"kind": "grad_explosion", "reason": "grad_norm hit 1.2e9\nbefore the NaN"}))
    brain = brain_for(tmp_path, server.url)
    choice = brain.choose_kind(DIAGNOSIS, CANDIDATES)
    assert choice == {"kind": "grad_explosion", "reason": "grad_norm hit 1.2e9 before the NaN", "model": "scripted"}
    assert brain._side_tokens == 100  # charged to the next proposal
    (request,) = server.requests
    fmt = request["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "triage_kind"
    assert fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["properties"]["kind"]["enum"] == CANDIDATES
    assert schema["required"] == ["kind", "reason"] and schema["additionalProperties"] is False
    prompt = request["messages"][-1]["content"]
    assert "stdout.log:41: grad_norm=1.2e9" in prompt and "nan_loss (confidence 0.62)" in prompt
    assert prompts.KIND_MEANINGS["grad_explosion"] in prompt and "ROOT CAUSE" in prompt


def test_a_kind_outside_the_candidates_is_none(tmp_path, serve, caplog):
    server = serve(("json", {"kind": "host_oom", "reason": "made up"}))
    with caplog.at_level(logging.WARNING, logger="evolve.brains.llm"):
        assert brain_for(tmp_path, server.url).choose_kind(DIAGNOSIS, CANDIDATES) is None
    assert len(server.requests) == 1 and "not a candidate" in caplog.text


def test_invalid_json_is_none(tmp_path, serve):
    server = serve(("json", {"kind": "crash"}))  # no reason: fails validation
    assert brain_for(tmp_path, server.url).choose_kind(DIAGNOSIS, CANDIDATES) is None


def test_an_http_500_is_none(tmp_path, serve, caplog):
    server = serve(("status", 500))
    with caplog.at_level(logging.WARNING, logger="evolve.brains.llm"):
        assert brain_for(tmp_path, server.url).choose_kind(DIAGNOSIS, CANDIDATES) is None
    assert len(server.requests) == 1 and "keeping the rules' kind" in caplog.text


def test_off_or_too_few_candidates_makes_no_request(tmp_path, serve):
    server = serve(("json", {"kind": "crash", "reason": "r"}))
    assert brain_for(tmp_path / "off", server.url, triage=False).choose_kind(DIAGNOSIS, CANDIDATES) is None
    brain = brain_for(tmp_path / "on", server.url)
    assert brain.choose_kind(DIAGNOSIS, ["nan_loss"]) is None and brain.choose_kind(DIAGNOSIS, []) is None
    assert server.requests == []


def test_other_brains_have_no_opinion_and_every_kind_has_a_meaning():
    assert RulesBrain(EvolveTrainer({})).choose_kind(DIAGNOSIS, CANDIDATES) is None
    assert MoEBrain.choose_kind(None, DIAGNOSIS, CANDIDATES) is None  # type: ignore[arg-type]
    assert set(prompts.KIND_MEANINGS) == set(KINDS)


def test_the_spec_accepts_triage_and_types_it(tmp_path):
    for sub in "abc":
        (tmp_path / sub).mkdir()
    good = {"base_url": "http://127.0.0.1:1/v1", "model": "m", "triage": True}
    spec = load_spec(write_spec(tmp_path / "a", brain={"kind": "openai", "options": good}))
    make_brain(spec, make_workload(spec))  # validates the options
    bad = load_spec(write_spec(tmp_path / "b", brain={"kind": "openai", "options": {**good, "triage": "yes"}}))
    with pytest.raises(SpecError, match="brain.options.triage"):
        make_brain(bad, make_workload(bad))
    typo = load_spec(write_spec(tmp_path / "c", brain={"kind": "openai", "options": {**good, "triaje": True}}))
    with pytest.raises(SpecError, match="brain.options.triaje"):
        make_brain(typo, make_workload(typo))


def test_evolve_triage_with_a_model_shows_its_pick_beside_the_rules_kind(serve):
    """The CLI path: `evolve triage - --model-url URL --model M` against a real local server."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    report = ("[rank2]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
              "[rank0]: Watchdog caught collective operation timeout: WorkNCCL(SeqNum=9, OpType=ALLREDUCE) ran for "
              "600071 milliseconds before timing out.\n")
    server = serve(("json", {"kind": "dist_timeout", "reason": "the timeout came first on rank 0"}))
    proc = subprocess.run([sys.executable, "-m", "evolve", "triage", "-", "--json", "--model-url", server.url,
                           "--model", "scripted"], input=report, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["kind"] == "cuda_oom"  # the rules' answer stays
    assert d["model"] == {"kind": "dist_timeout", "reason": "the timeout came first on rank 0", "model": "scripted"}
    enum = server.requests[0]["response_format"]["json_schema"]["schema"]["properties"]["kind"]["enum"]
    assert enum == d["candidates"] and enum[:2] == ["cuda_oom", "dist_timeout"]
