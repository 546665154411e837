"""trainer/serve/constrain/ (constrained decoding) and trainer/serve/ (the OpenAI-compatible server).

The server runs in a real subprocess on a tiny untrained checkpoint and is driven with the official
`openai` client. An untrained model samples near-uniform characters, which is the hardest case for
constrained decoding: only the masks stand between it and invalid JSON.
"""

from __future__ import annotations

import enum
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Annotated, Literal

import openai
import pytest
import torch
from pydantic import BaseModel, Field

from trainer.serve.constrain import ChoiceConstraint, JsonSchemaConstraint

ROOT = Path(__file__).resolve().parents[1]
CHOICES = ["keep", "revert", "crash"]


class Verdict(enum.StrEnum):
    keep = "keep"
    revert = "revert"
    crash = "crash"


class Item(BaseModel):
    name: str = Field(max_length=6)
    score: int = Field(ge=-5, le=120)


class Decision(BaseModel):
    verdict: Verdict
    steps: int
    ok: bool
    tags: list[Annotated[str, Field(max_length=5)]] = Field(max_length=3)
    item: Item


class Tree(BaseModel):
    label: Literal["a", "b"]
    weight: float | None = None
    kids: list[Tree] = Field(max_length=2)


class Loose(BaseModel):
    counts: dict[str, int] = Field(max_length=2)
    anything: object = None
    pair: list[bool] = Field(min_length=2, max_length=2)
    const: Literal["x"] = "x"


# ------------------------------------------------------------------------------------------ constrain

def walk(constraint, rng: random.Random, budget: int, stop_p: float = 0.1) -> str:
    """A random path through the allowed sets, ending only where the constraint says it may."""
    cursor, text = constraint.start(budget), ""
    while True:
        allowed = sorted(cursor.allowed)
        if cursor.complete and (not allowed or rng.random() < stop_p):
            return text
        assert allowed, f"stuck after {text!r}"
        ch = rng.choice(allowed)
        cursor, text = cursor.advance(ch), text + ch


@pytest.mark.parametrize("model", [Decision, Item, Tree, Loose])
def test_random_walks_through_a_schema_always_end_valid(model):
    constraint = JsonSchemaConstraint(model.model_json_schema())
    rng = random.Random(0)
    for i in range(150):
        budget = [constraint.min_chars, constraint.min_chars + 3, 120, 600][i % 4]
        text = walk(constraint, rng, budget)
        assert len(text) <= budget
        json.loads(text)
        model.model_validate_json(text)


def test_json_object_walks_are_objects_and_never_exceed_the_budget():
    constraint, rng = JsonSchemaConstraint({"type": "object"}), random.Random(1)
    for budget in [2, 3, 10, 40, 200] * 20:
        text = walk(constraint, rng, budget, stop_p=0.02)
        assert isinstance(json.loads(text), dict) and len(text) <= budget


def test_choice_walks_end_exactly_at_a_choice():
    constraint, rng = ChoiceConstraint(CHOICES + ["kee"]), random.Random(2)
    seen = {walk(constraint, rng, 10, stop_p=0.5) for _ in range(100)}
    assert seen == set(CHOICES + ["kee"])
    assert constraint.allowed("") == {"k", "r", "c"}
    assert constraint.allowed("kee") == {"p"} and constraint.is_complete("kee")
    assert constraint.allowed("keep") == set() and constraint.is_complete("keep")
    assert not constraint.is_complete("rev")


def test_prefix_interface_and_integer_bounds():
    constraint = JsonSchemaConstraint({"type": "integer", "minimum": 10, "maximum": 25})
    assert constraint.allowed("") == {"1", "2"}
    assert constraint.allowed("2") == set("012345") and not constraint.is_complete("2")
    assert constraint.is_complete("25") and constraint.allowed("25") == set()
    enum_ = JsonSchemaConstraint({"enum": ["a", 1, None]})
    assert enum_.allowed("") == {'"', "1", "n"} and enum_.is_complete("null")


@pytest.mark.parametrize("schema, keyword", [
    ({"type": "string", "pattern": "^a$"}, "pattern"),
    ({"oneOf": [{"type": "string"}]}, "oneOf"),
    ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, "uniqueItems"),
    ({"type": "object", "properties": {"d": {"type": "string", "format": "date"}}}, "format"),
    ({"type": "number", "minimum": 0}, "minimum"),
])
def test_unsupported_keywords_are_one_line_value_errors_naming_them(schema, keyword):
    with pytest.raises(ValueError, match=keyword) as e:
        JsonSchemaConstraint(schema)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------ server

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _evolve_serve(*args: str, env: dict | None = None, **kw) -> subprocess.Popen | subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    cmd = [sys.executable, "-m", "evolve", "serve", *args]
    if kw.pop("background", False):
        return subprocess.Popen(cmd, env=env, cwd=ROOT, **kw)
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from trainer.config import ModelConfig, TrainConfig, to_dict
    from trainer.model import MoETransformer

    torch.manual_seed(0)
    cfg = ModelConfig(hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, head_dim=32, rotary_dim=16, num_local_experts=4,
                      num_experts_per_tok=2, max_position_embeddings=512)
    path = tmp_path_factory.mktemp("serve") / "tiny.pt"
    torch.save({"model": MoETransformer(cfg).state_dict(), "config": to_dict(TrainConfig(model=cfg))}, path)
    return path


@pytest.fixture(scope="module")
def client(checkpoint) -> openai.OpenAI:
    port, log = _free_port(), checkpoint.parent / "server.log"
    with open(log, "w") as out:
        proc = _evolve_serve(str(checkpoint), "--port", str(port), "--model-name", "tiny",
                             background=True, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"server exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"server not healthy in 60 s: {log.read_text()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        yield openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=60)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def chat(client, content: str = "hi", **kw):
    return client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": content}], **kw)


def test_models_lists_the_served_model(client):
    assert [m.id for m in client.models.list()] == ["tiny"]


def test_chat_completion_returns_text_and_usage(client):
    r = chat(client, max_tokens=12, temperature=0)
    text = r.choices[0].message.content
    assert text and len(text) <= 12 and r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens == len("hi") + 4  # bos, user, eos, assistant
    assert r.usage.completion_tokens >= len(text)
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_concatenates_to_the_greedy_text(client):
    whole = chat(client, "stream me", max_tokens=20, temperature=0).choices[0].message.content
    chunks = list(chat(client, "stream me", max_tokens=20, temperature=0, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_a_fixed_seed_reproduces_a_sample_and_a_tiny_top_p_is_greedy(client):
    texts = [chat(client, max_tokens=16, temperature=1, seed=s).choices[0].message.content for s in (7, 7, 8)]
    assert texts[0] == texts[1] != texts[2]
    greedy = chat(client, max_tokens=16, temperature=0).choices[0].message.content
    assert chat(client, max_tokens=16, temperature=1, top_p=1e-6, seed=9).choices[0].message.content == greedy


def test_text_completion_and_stop_strings(client):
    full = client.completions.create(model="tiny", prompt="abc", max_tokens=20, temperature=0).choices[0].text
    assert len(full) >= 3
    stop = full[2:4]
    cut = client.completions.create(model="tiny", prompt="abc", max_tokens=20, temperature=0, stop=[stop])
    assert cut.choices[0].text == full[:full.find(stop)] and cut.choices[0].finish_reason == "stop"
    streamed = client.completions.create(model="tiny", prompt="abc", max_tokens=20, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == full


def test_json_schema_outputs_all_parse_and_validate(client):
    fmt = {"type": "json_schema", "json_schema": {"name": "Decision", "schema": Decision.model_json_schema()}}
    for seed in range(50):
        text = chat(client, "decide", response_format=fmt, temperature=1, seed=seed, max_tokens=200)
        text = text.choices[0].message.content
        json.loads(text)
        Decision.model_validate_json(text)


def test_parse_with_a_pydantic_response_format(client):
    r = client.chat.completions.parse(model="tiny", messages=[{"role": "user", "content": "x"}],
                                      response_format=Item, max_tokens=100, seed=3)
    assert isinstance(r.choices[0].message.parsed, Item)


def test_json_object_and_choice_structured_outputs(client):
    r = chat(client, response_format={"type": "json_object"}, max_tokens=60, seed=1)
    assert isinstance(json.loads(r.choices[0].message.content), dict)
    for seed in range(6):
        r = chat(client, extra_body={"structured_outputs": {"choice": CHOICES}}, seed=seed, max_tokens=10)
        assert r.choices[0].message.content in CHOICES and r.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("kw", [
    {"n": 2},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "string", "pattern": "a+"}}}},
    {"max_tokens": 10_000},
    {"extra_body": {"structured_outputs": {"regex": "a+"}}},
])
def test_bad_requests_are_400s(client, kw):
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, **kw)
    assert e.value.body["message"]


@pytest.mark.parametrize("content", [None, "garbage"])
def test_a_missing_or_broken_checkpoint_exits_2_with_one_line(tmp_path, content):
    if content is not None:
        (tmp_path / "nope.pt").write_text(content)
    r = _evolve_serve(str(tmp_path / "nope.pt"))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("error:") and r.stderr.count("\n") == 1


def test_vllm_engine_without_vllm_exits_2_with_one_line(checkpoint):
    r = _evolve_serve(str(checkpoint), "--engine", "vllm", env={"PATH": ""})
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("error:") and "vllm" in r.stderr and r.stderr.count("\n") == 1


def test_the_serving_line_is_printed_only_once_the_port_is_bound_and_it_is_true(checkpoint):
    """Regression (issue 10): a port in use exited 3 *after* printing "serving ... on". Now the socket is bound
    first (a busy port is one line, exit 2), and the printed address answers at once; --port 0 picks one."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        r = _evolve_serve(str(checkpoint), "--port", str(busy.getsockname()[1]))
    assert r.returncode == 2 and r.stdout == "" and "Address already in use" in r.stderr
    assert r.stderr.count("\n") == 1
    proc = _evolve_serve(str(checkpoint), "--port", "0", background=True, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = line.split(" on ")[1].strip()
        assert line.startswith("serving ") and not url.endswith(":0/v1"), line
        with urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=10) as answer:
            assert answer.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
