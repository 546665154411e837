"""The builtin engine's FastAPI app: GET /health, GET /v1/models, POST /v1/chat/completions and
POST /v1/completions (both with `stream: true` as server-sent events).

Errors are OpenAI-shaped ({"error": {"message", "type", "code"}}): 400 for a bad request (protocol.py's messages
and pydantic's, as `field.path: what`); 404 for a `model` this server does not serve, as OpenAI and vLLM answer;
anything else is a one-line 500.
"""

from __future__ import annotations

from pathlib import Path

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from trainer.checkpoint import load_policy
from trainer.serve.engine import Engine, prepare, respond
from trainer.serve.protocol import APIError, ChatRequest, CompletionRequest, Sampling, to_message


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

    def check_model(req: Sampling) -> None:
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
        messages = [to_message(m, i) for i, m in enumerate(req.messages)]
        for i, m in enumerate(messages):  # name the message whose text the vocabulary cannot spell
            try:
                engine.encode(m.content)
            except APIError as e:
                raise APIError(f"messages[{i}].content: {e}", code=e.code) from None
        prompt = engine.encode(messages)
        max_new, constraint = prepare(engine, req, prompt, req.response_format)
        return respond(engine, req, prompt, constraint, max_new, name, chat=True)

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
        max_new, constraint = prepare(engine, req, prompt)
        return respond(engine, req, prompt, constraint, max_new, name, chat=False)

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

