"""`evolve serve CHECKPOINT`: an OpenAI-compatible HTTP server for a checkpoint of the in-repo model.

So that anything speaking the OpenAI API (the `openai` client, agents, eval harnesses) can use a trained
policy. Two engines:

* builtin (default): FastAPI + uvicorn around trainer/model.py, one request at a time under a lock,
  incremental decoding with the model's KV cache. Endpoints: GET /health, GET /v1/models,
  POST /v1/chat/completions and POST /v1/completions (both with `stream: true` as server-sent events).
  Sampling: temperature (0 is greedy), top_p, max_tokens / max_completion_tokens, seed, stop, n=1.
  Structured outputs by constrained decoding (evolve/constrain.py): `response_format` json_schema or
  json_object, and vLLM's `structured_outputs` {"choice": [...]} / {"json": schema}. Logits of every
  token whose character would break the constraint are masked; <|eos|> is allowed only once the output
  is complete, and the character budget is max_tokens, so a constrained output always finishes valid.
* vllm: exports the checkpoint as a Hugging Face MiniMax-M2 directory (trainer/export.py) and runs
  `vllm serve` on it with MiniMax-M2's tool-call and reasoning parsers; needs vllm and a CUDA GPU.

Errors are OpenAI-shaped ({"error": {"message", "type", "code"}}): 400 for a bad request, its one-line
message starting with the field's path (`messages[1].content: ...`, `response_format.json_schema.schema:
'required' at #/properties/a ...`); 404 for a `model` this server does not serve, as OpenAI and vLLM answer.
A schema is request input, so no schema is a 500 (constrain.py caps its nesting). The command line binds its
socket before it prints "serving": a port in use or a host that is not this machine's is one line, exit 2.
"""

from __future__ import annotations

import argparse
import errno
import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from evolve.constrain import ChoiceConstraint, Constraint, JsonSchemaConstraint
from trainer.checkpoint import load_policy, resolve_checkpoint
from trainer.config import ConfigError
from trainer.model import KVCache, MoETransformer
from trainer.tokenizer import Message, get_tokenizer

ROLE_ALIASES = {"developer": "system", "function": "tool"}


class APIError(Exception):
    """A request the server turns down: an OpenAI-shaped error with this status."""

    def __init__(self, message: str, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.status, self.code = status, code


# ------------------------------------------------------------------------------------------ requests

class _Sampling(BaseModel):
    """Fields both endpoints share. Unknown OpenAI fields (user, logprobs, penalties, ...) are ignored."""

    model_config = ConfigDict(extra="ignore")

    # strict: `"max_tokens": true` or `"n": "2"` is a client bug to report, not a value to guess at
    model: str | None = None
    temperature: float = Field(1.0, ge=0.0, le=2.0, strict=True)
    top_p: float = Field(1.0, gt=0.0, le=1.0, strict=True)
    max_tokens: int | None = Field(None, ge=1, strict=True)
    max_completion_tokens: int | None = Field(None, ge=1, strict=True)
    seed: int | None = Field(None, ge=-(2**63), lt=2**64, strict=True)  # what torch.Generator accepts
    n: int = Field(1, strict=True)
    stop: str | list[str] | None = None
    stream: bool = Field(False, strict=True)
    stream_options: dict[str, Any] | None = None
    structured_outputs: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        # clients send "temperature": null for "not set"; the defaults above then apply
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    response_format: dict[str, Any] | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str]


def _message(m: ChatMessage, i: int) -> Message:
    where = f"messages[{i}]"
    if isinstance(m.content, list):
        for j, part in enumerate(m.content):
            if part.get("type") != "text":
                raise APIError(f"{where}.content[{j}].type: only text content parts are supported",
                               code="unsupported_content")
            if not isinstance(part.get("text", ""), str):
                raise APIError(f"{where}.content[{j}].text: must be a string")
        text = "".join(part.get("text", "") for part in m.content)
    else:
        text = m.content or ""
    try:
        return Message(ROLE_ALIASES.get(m.role, m.role), text)
    except ValueError as e:
        raise APIError(f"{where}.role: {e}") from None


def _schema_constraint(schema: str | Any) -> JsonSchemaConstraint:
    """vLLM's structured_outputs.json: a schema, or a schema as JSON text."""
    return JsonSchemaConstraint(json.loads(schema) if isinstance(schema, str) else schema)


def _constraint(req: _Sampling, response_format: dict | None) -> Constraint | None:
    """The structured-output constraint a request asks for, if any. Every way a schema or choice list can
    be wrong is a 400 naming the field: it is request input, so never a 500 (the compiler caps nesting)."""
    so = req.structured_outputs or {}
    kind = (response_format or {}).get("type", "text")
    if so and kind != "text":
        raise APIError("structured_outputs and response_format both ask for a structure; send one of them")
    if "choice" in so:
        field, make, arg = "structured_outputs.choice", ChoiceConstraint, so["choice"]
    elif "json" in so:
        field, make, arg = "structured_outputs.json", _schema_constraint, so["json"]
    elif so:
        raise APIError(f"structured_outputs: unsupported keys {sorted(so)}; use choice or json")
    elif kind == "text":
        return None
    elif kind == "json_object":
        field, make, arg = "response_format", JsonSchemaConstraint, {"type": "object"}
    elif kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise APIError("response_format.json_schema.schema: required, and must be a JSON Schema object")
        field, make, arg = "response_format.json_schema.schema", JsonSchemaConstraint, spec["schema"]
    else:
        raise APIError(f"response_format.type: {kind!r} is not one of text, json_object, json_schema")
    try:
        return make(arg)
    except RecursionError:
        raise APIError(f"{field}: nested too deeply", code="unsupported_schema") from None
    except ValueError as e:  # the compiler's one-line errors, and JSON that does not parse
        raise APIError(f"{field}: {e}", code="unsupported_schema") from None
    except (TypeError, KeyError, AttributeError, IndexError, OverflowError) as e:  # a shape no check foresaw
        raise APIError(f"{field}: malformed ({type(e).__name__}: {str(e)[:200]})", code="unsupported_schema") from None


# ------------------------------------------------------------------------------------------ engine

class Engine:
    """Decoding for one model, one request at a time (the lock: the model is small, a batch is not
    worth its bookkeeping here)."""

    def __init__(self, model: MoETransformer):
        self.model, self.tok, self.lock = model, get_tokenizer(), threading.Lock()
        self.device = model.lm_head.weight.device
        self.context = model.cfg.max_position_embeddings
        self.char_ids = {self.tok.id_to_token(i): i for i in range(self.tok.vocab_size) if self.tok.is_character(i)}

    def encode(self, text: str | list[Message]) -> list[int]:
        """Plain text, or a conversation rendered as a prompt for the assistant's next turn."""
        try:
            return self.tok.encode(text) if isinstance(text, str) else self.tok.render_prompt(text)
        except ValueError as e:
            raise APIError(str(e), code="unsupported_character") from None

    def encode_completion(self, text: str) -> list[int]:
        """A raw prompt as the model saw every sequence in training, after <|bos|>. The export's tokenizer
        adds it too (trainer/export.py), so transformers and vLLM encode a prompt to these same ids."""
        return [self.tok.bos_id, *self.encode(text)]

    def budget(self, prompt: list[int], req: _Sampling) -> int:
        """New tokens allowed: the request's limit, within what the model's positions leave."""
        room = self.context - len(prompt)
        want = req.max_completion_tokens or req.max_tokens
        if (want or 1) > room:
            raise APIError(f"prompt ({len(prompt)} tokens) + max_tokens ({want or 1}) exceeds the model's "
                           f"context of {self.context} tokens", code="context_length_exceeded")
        return want or room

    def _mask(self, cursor) -> torch.Tensor:
        """Token ids that may come next: every character and eos, or what the constraint allows."""
        mask = torch.zeros(self.tok.vocab_size, dtype=torch.bool)
        chars = self.char_ids.keys() if cursor is None else cursor.allowed
        mask[[self.char_ids[c] for c in chars if c in self.char_ids]] = True
        mask[self.tok.eos_id] = cursor is None or cursor.complete
        return mask

    @staticmethod
    def _pick(logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator) -> int:
        if temperature == 0:
            return int(logits.argmax())
        probs = torch.softmax(logits / temperature, dim=-1)
        if top_p < 1:  # nucleus: the smallest set of top tokens whose mass reaches top_p
            sorted_p, order = probs.sort(descending=True)
            drop = sorted_p.cumsum(0) - sorted_p >= top_p
            probs = probs.clone().index_fill_(0, order[drop], 0.0)
        return int(torch.multinomial(probs, 1, generator=gen))

    @torch.inference_mode()
    def generate(self, prompt: list[int], req: _Sampling, max_new: int,
                 constraint: Constraint | None) -> Iterator[tuple[int | None, str | None]]:
        """Yield (token id, None) per new token; the last item carries the finish reason (and the eos
        id, or None when the constraint ended the output or the budget ran out). A token the
        constraint forces (say `"verdict":"` in an object) is not sampled: such runs go through the
        model together with the next sampled token, one forward pass for the lot."""
        gen = torch.Generator().manual_seed(req.seed if req.seed is not None else random.getrandbits(63))
        cursor = constraint.start(max_new) if constraint else None
        cache = KVCache(self.model.cfg, 1, len(prompt) + max_new, self.device, self.model.lm_head.weight.dtype)
        unread = list(prompt)  # tokens the cache has not seen yet
        for _ in range(max_new):
            if cursor is not None and cursor.complete and not cursor.allowed:
                yield None, "stop"  # nothing may follow: no need to ask the model for eos
                return
            if cursor is not None and not cursor.complete and len(cursor.allowed) == 1:
                token = self.char_ids[next(iter(cursor.allowed))]
            else:
                logits = self.model(torch.tensor([unread], device=self.device), cache=cache).logits_BTV[0, -1]
                unread = []
                logits = logits.float().cpu().masked_fill(~self._mask(cursor), float("-inf"))
                token = self._pick(logits, req.temperature, req.top_p, gen)
            if token == self.tok.eos_id:
                yield token, "stop"
                return
            cursor = cursor.advance(self.tok.id_to_token(token)) if cursor is not None else None
            unread.append(token)
            yield token, None
        yield None, "stop" if cursor is not None and cursor.complete else "length"


def _stop_cut(text: str, stops: list[str]) -> tuple[int, bool]:
    """(how much of `text` is safe to emit, whether a stop string was hit). Text that could be the
    start of a stop string is held back until the next characters decide it."""
    hits = [text.find(s) for s in stops if s and s in text]
    if hits:
        return min(hits), True
    held = max((k for s in stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
    return len(text) - held, False


def _run(engine: Engine, prompt: list[int], req: _Sampling, max_new: int,
         constraint: Constraint | None) -> Iterator[tuple[str, str | None, int]]:
    """Yield (text delta, finish_reason or None, completion tokens so far). Stop strings apply to
    unconstrained outputs only: cutting a constrained one would break it."""
    stops = [] if constraint else [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    text, sent, n = "", 0, 0
    with engine.lock:
        for token, finish in engine.generate(prompt, req, max_new, constraint):
            n += token is not None
            if finish is None:
                text += engine.tok.id_to_token(token)
            cut, hit = _stop_cut(text, stops) if finish is None else (len(text), False)
            if cut > sent or hit or finish:
                yield text[sent:cut], "stop" if hit else finish, n
                sent = cut
            if hit:
                return


# ------------------------------------------------------------------------------------------ app

def _prepare(engine: Engine, req: _Sampling, prompt: list[int],
             response_format: dict | None = None) -> tuple[int, Constraint | None]:
    """Checks that need no model: everything a request can get wrong fails here, before streaming."""
    if req.n != 1:
        raise APIError(f"n: only n=1 is supported, got {req.n}", code="unsupported_n")
    max_new = engine.budget(prompt, req)
    constraint = _constraint(req, response_format)
    if isinstance(constraint, ChoiceConstraint):
        for i, choice in enumerate(req.structured_outputs["choice"]):
            try:  # a choice the vocabulary cannot spell could never be generated
                engine.encode(choice)
            except APIError as e:
                raise APIError(f"structured_outputs.choice[{i}]: {e}", code=e.code) from None
    if constraint is not None and constraint.min_chars > max_new:
        raise APIError(f"max_tokens={max_new} is too small for this structured output "
                       f"(it needs at least {constraint.min_chars})")
    return max_new, constraint


def _usage(prompt: list[int], n: int) -> dict:
    return {"prompt_tokens": len(prompt), "completion_tokens": n, "total_tokens": len(prompt) + n}


def _respond(engine: Engine, req: _Sampling, prompt: list[int], constraint, max_new: int, name: str,
             chat: bool):
    """The whole response, or a stream of server-sent chunks; chat and text completions differ only
    in the shape of a choice."""
    head = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}", "created": int(time.time()),
            "model": name, "object": "chat.completion" if chat else "text_completion"}
    pieces = _run(engine, prompt, req, max_new, constraint)

    def choice(text: str, finish: str | None, delta: bool) -> dict:
        if not chat:
            return {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        body = ({"content": text} if text else {}) if delta else {"role": "assistant", "content": text}
        return {"index": 0, ("delta" if delta else "message"): body, "finish_reason": finish, "logprobs": None}

    if not req.stream:
        parts = list(pieces)  # the last piece carries the finish reason and the final token count
        text, (_, finish, n) = "".join(p[0] for p in parts), parts[-1]
        return {**head, "choices": [choice(text, finish, False)], "usage": _usage(prompt, n)}

    def events() -> Iterator[str]:
        def event(**fields) -> str:
            return f"data: {json.dumps({**head, 'object': head['object'] + '.chunk' * chat, **fields})}\n\n"
        if chat:  # OpenAI opens a chat stream with the role
            yield event(choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        n = 0
        for delta, finish, n in pieces:  # noqa: B007 (the last count is the usage)
            if delta or finish:
                yield event(choices=[choice(delta, finish, True)])
        if (req.stream_options or {}).get("include_usage"):
            yield event(choices=[], usage=_usage(prompt, n))
        yield "data: [DONE]\n\n"
    return StreamingResponse(events(), media_type="text/event-stream")


def create_app(checkpoint: str | Path, model_name: str | None = None, device: str | None = None) -> FastAPI:
    """The builtin engine's app. ConfigError (one line) when `checkpoint` is not a checkpoint."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, _ = load_policy(checkpoint, device)
    engine, name = Engine(model), model_name or default_model_name(checkpoint)
    app = FastAPI(title="evolve serve")

    @app.exception_handler(APIError)
    async def api_error(_: Request, e: APIError):
        return _error(e.status, str(e), e.code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException):
        # FastAPI's only 400 of its own is a body it could not parse (too deeply nested for json, say)
        return _error(e.status_code, f"request body: {e.detail}" if e.status_code == 400 else str(e.detail), None)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, e: RequestValidationError):
        return _error(400, _validation_message(e.errors()), "invalid_request")

    @app.exception_handler(Exception)
    async def server_error(_: Request, e: Exception):  # still OpenAI-shaped, and one line
        return _error(500, f"internal error ({type(e).__name__}: {' '.join(str(e).split())[:200]})", None)

    def check_model(req: _Sampling) -> None:
        if req.model is not None and req.model != name:  # OpenAI's and vLLM's answer: 404 model_not_found
            raise APIError(f"model: {req.model!r} is not served here; this server serves {name!r}",
                           status=404, code="model_not_found")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "evolve",
                                            "max_model_len": engine.context}]}

    @app.post("/v1/chat/completions")
    def chat(req: ChatRequest):
        check_model(req)
        messages = [_message(m, i) for i, m in enumerate(req.messages)]
        for i, m in enumerate(messages):  # name the message whose text the vocabulary cannot spell
            try:
                engine.encode(m.content)
            except APIError as e:
                raise APIError(f"messages[{i}].content: {e}", code=e.code) from None
        prompt = engine.encode(messages)
        max_new, constraint = _prepare(engine, req, prompt, req.response_format)
        return _respond(engine, req, prompt, constraint, max_new, name, chat=True)

    @app.post("/v1/completions")
    def completions(req: CompletionRequest):
        check_model(req)
        texts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if len(texts) != 1:
            raise APIError(f"prompt: exactly one prompt per request is supported, got {len(texts)}")
        try:
            prompt = engine.encode_completion(texts[0])
        except APIError as e:
            raise APIError(f"prompt: {e}", code=e.code) from None
        max_new, constraint = _prepare(engine, req, prompt)
        return _respond(engine, req, prompt, constraint, max_new, name, chat=False)

    return app


def _validation_message(errors: list[dict]) -> str:
    """pydantic's first complaint as `field.path: what`; the body itself when it is not a JSON object."""
    first = errors[0] if errors else {}
    where = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in first.get("loc", ())[1:]).lstrip(".")
    msg = first.get("msg", "invalid request")
    if first.get("type") == "json_invalid":
        return f"request body: not valid JSON ({(first.get('ctx') or {}).get('error', msg)})"
    return f"{where or 'request body'}: {msg}"


def _error(status: int, message: str, code: str | None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}}, status)


def default_model_name(checkpoint: str | Path) -> str:
    """The run directory's name for a run directory or a file in its checkpoints/, else the file stem."""
    path = Path(checkpoint).resolve()
    if path.is_file() and path.parent.name == "checkpoints":
        return path.parent.parent.name
    return path.name if path.is_dir() else path.stem


# ------------------------------------------------------------------------------------------ command line

def serve_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="evolve serve", description="Serve a checkpoint over the OpenAI API.")
    p.add_argument("checkpoint", help="a checkpoint file, or a run directory (its latest checkpoint)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=8000, help="0 picks a free port (printed)")
    p.add_argument("--engine", choices=("builtin", "vllm"), default="builtin")
    p.add_argument("--model-name", default=None, help="the id clients pass as `model` (default: the run's name)")
    args = p.parse_args(argv)
    sock = None
    try:
        resolve_checkpoint(args.checkpoint)
        if args.engine == "vllm":
            return _serve_vllm(args)
        sock = listen(args.host, args.port)
        app = create_app(args.checkpoint, args.model_name)
    except (ConfigError, ImportError) as e:
        return _fail(str(e), sock)
    except Exception as e:  # torch.load on a file that is no checkpoint can raise anything
        return _fail(f"{args.checkpoint}: cannot load it as a checkpoint ({type(e).__name__}: {e})", sock)
    import uvicorn

    host, port = sock.getsockname()[:2]
    print(f"serving {args.checkpoint} on http://{_url_host(host)}:{port}/v1", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    return 0


def _port(text: str) -> int:
    """argparse type for --port: a TCP port, so 99999 is a usage error rather than uvicorn's OverflowError."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (0..65535)")
    return port


def listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything says "serving": a port in use or a host that is not this
    machine's is one line (ConfigError), not uvicorn's exit 3 after a false start."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except (OSError, UnicodeError) as e:
        raise ConfigError(f"--host {host!r}: not an address of this machine ({getattr(e, 'strerror', None) or e}); "
                          "use 127.0.0.1 (local only) or 0.0.0.0 (all interfaces)") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no conflict
        sock.bind(address)
        sock.listen(2048)  # uvicorn's backlog; from here a client that read "serving" is queued, not refused
    except OSError as e:
        sock.close()
        hint = "choose another --port" if e.errno == errno.EADDRINUSE else "choose a --host of this machine"
        raise ConfigError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e}); {hint}") from None
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _fail(message: str, sock: socket.socket | None = None) -> int:
    if sock is not None:
        sock.close()
    print("error: " + " ".join(message.split()), file=sys.stderr)  # one line, whatever the message
    return 2


def _serve_vllm(args: argparse.Namespace) -> int:
    """Export, then run `vllm serve` on the export until it exits or we are told to stop."""
    exe = shutil.which("vllm")
    if exe is None:
        raise ConfigError("--engine vllm needs the `vllm` executable on PATH (pip install 'evolve[vllm]'); "
                       "or use --engine builtin")
    if not torch.cuda.is_available():
        raise ConfigError("--engine vllm needs a CUDA GPU and none is visible; use --engine builtin")
    listen(args.host, args.port).close()  # vllm binds it itself: this only checks, before the export, that it can
    from trainer.export import export  # only this engine needs it

    name = args.model_name or default_model_name(args.checkpoint)
    with tempfile.TemporaryDirectory(prefix="evolve-serve-") as tmp:
        out = export(args.checkpoint, Path(tmp) / name)
        cmd = [exe, "serve", str(out), "--served-model-name", name, "--host", args.host, "--port", str(args.port),
               "--dtype", "float32", "--enable-auto-tool-choice", "--tool-call-parser", "minimax_m2",
               "--reasoning-parser", "minimax_m2_append_think"]
        proc, stopped = subprocess.Popen(cmd), []
        for sig in (signal.SIGINT, signal.SIGTERM):  # vllm shuts down cleanly on these; let it
            signal.signal(sig, lambda s, _f: (stopped.append(s), proc.send_signal(s)))
        try:
            if _wait_healthy(proc, f"http://{'127.0.0.1' if args.host == '0.0.0.0' else args.host}:{args.port}"):
                print(f"serving {args.checkpoint} (vllm) on http://{args.host}:{args.port}/v1", flush=True)
            rc = proc.wait()
            return 0 if stopped else rc if rc >= 0 else 1
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _wait_healthy(proc: subprocess.Popen, base: str) -> bool:
    """Poll /health until it answers 200 (True) or the server process exits (False)."""
    while proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(1)
    return False


if __name__ == "__main__":
    sys.exit(serve_main(sys.argv[1:]))


def export_command(argv: list[str]) -> int:
    """`evolve export`: the checkpoint as a Hugging Face model directory, for transformers and vLLM."""
    from trainer.export import export_main

    return export_main(argv)
