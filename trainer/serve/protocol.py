"""The request side of the OpenAI API: request bodies, messages, and the structured output a request asks for.

Errors are OpenAI-shaped (app.py writes them): 400 for a bad request, its one-line message starting with the
field's path (`messages[1].content: ...`, `response_format.json_schema.schema: 'required' at #/properties/a ...`).
Structured outputs: `response_format` json_schema or json_object, and vLLM's `structured_outputs`
{"choice": [...]} / {"json": schema}. A schema is request input, so no schema is a 500 (the compiler in
constrain/schema.py caps its nesting).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainer.serve.constrain import ChoiceConstraint, Constraint, JsonSchemaConstraint
from trainer.tokenizer import Message

ROLE_ALIASES = {"developer": "system", "function": "tool"}


class APIError(Exception):
    """A request the server turns down: an OpenAI-shaped error with this status."""

    def __init__(self, message: str, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.status, self.code = status, code


# ------------------------------------------------------------------------------------------ requests

class Sampling(BaseModel):
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


class ChatRequest(Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    response_format: dict[str, Any] | None = None


class CompletionRequest(Sampling):
    prompt: str | list[str]


def to_message(m: ChatMessage, i: int) -> Message:
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


def constraint_for(req: Sampling, response_format: dict | None) -> Constraint | None:
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

