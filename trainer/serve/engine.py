"""The builtin engine: decoding with trainer/model.py, and a request's response (whole, or streamed).

One request at a time under a lock, incremental decoding with the model's KV cache. Sampling: temperature (0 is
greedy), top_p, max_tokens / max_completion_tokens, seed, stop, n=1. Structured outputs by constrained decoding
(constrain/): logits of every token whose character would break the constraint are masked; <|eos|> is allowed
only once the output is complete, and the character budget is max_tokens, so a constrained output always
finishes valid.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Iterator

import torch
from fastapi.responses import StreamingResponse

from trainer.model import KVCache, MoETransformer
from trainer.serve.constrain import ChoiceConstraint, Constraint
from trainer.serve.protocol import APIError, Sampling, constraint_for
from trainer.tokenizer import Message, get_tokenizer


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

    def budget(self, prompt: list[int], req: Sampling) -> int:
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
    def generate(self, prompt: list[int], req: Sampling, max_new: int,
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


def _run(engine: Engine, prompt: list[int], req: Sampling, max_new: int,
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


# ---------------------------------------------------------------------------------------- responses

def prepare(engine: Engine, req: Sampling, prompt: list[int],
            response_format: dict | None = None) -> tuple[int, Constraint | None]:
    """Checks that need no model: everything a request can get wrong fails here, before streaming."""
    if req.n != 1:
        raise APIError(f"n: only n=1 is supported, got {req.n}", code="unsupported_n")
    max_new = engine.budget(prompt, req)
    constraint = constraint_for(req, response_format)
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


def respond(engine: Engine, req: Sampling, prompt: list[int], constraint, max_new: int, name: str,
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

