"""Character-level tokenizer with chat special tokens.

Layout of the id space (the model's vocabulary is exactly 128 ids):

    0..6     special tokens, in SPECIAL_TOKENS order
    7..101   printable ASCII, chr(32)..chr(126)
    102      "\\n"
    103..127 unused, named ``<|unused_N|>``; padding so the embedding table is a
             round 128 and new specials can be added without resizing the model

Chat format (the trainer depends on it exactly):

    <|bos|> (role-token content-chars <|eos|>)*

A prompt for generation is the rendered conversation followed by the assistant
role token; the model ends its turn by emitting ``<|eos|>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

VOCAB_SIZE = 128

SPECIAL_TOKENS: tuple[str, ...] = (
    "<|pad|>",
    "<|bos|>",
    "<|eos|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|tool|>",
)

ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")

# Plain characters follow the specials; "\n" is last so printable ASCII stays contiguous.
CHARACTERS: tuple[str, ...] = (*(chr(c) for c in range(32, 127)), "\n")


@dataclass(frozen=True)
class Message:
    role: str
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown message role {self.role!r}; use one of {', '.join(ROLES)}")


class Tokenizer:
    """Maps text to ids one character per token, plus chat rendering helpers."""

    def __init__(self) -> None:
        used = list(SPECIAL_TOKENS) + list(CHARACTERS)
        if len(used) > VOCAB_SIZE:  # guards future edits to the tables above
            raise ValueError(f"{len(used)} tokens do not fit in vocab of {VOCAB_SIZE}")
        unused = [f"<|unused_{i}|>" for i in range(len(used), VOCAB_SIZE)]
        self._tokens: list[str] = used + unused
        self._char_to_id: dict[str, int] = {ch: len(SPECIAL_TOKENS) + i for i, ch in enumerate(CHARACTERS)}
        self._num_chars_end = len(used)

        self.pad_id: int = SPECIAL_TOKENS.index("<|pad|>")
        self.bos_id: int = SPECIAL_TOKENS.index("<|bos|>")
        self.eos_id: int = SPECIAL_TOKENS.index("<|eos|>")
        self.role_ids: dict[str, int] = {role: SPECIAL_TOKENS.index(f"<|{role}|>") for role in ROLES}

    @property
    def vocab_size(self) -> int:
        return VOCAB_SIZE

    @property
    def tokens(self) -> list[str]:
        return list(self._tokens)

    @property
    def special_tokens(self) -> list[str]:
        return list(SPECIAL_TOKENS)

    def id_to_token(self, i: int) -> str:
        if not 0 <= i < VOCAB_SIZE:
            raise ValueError(f"token id {i} out of range; ids must be in 0..{VOCAB_SIZE - 1}")
        return self._tokens[i]

    def is_character(self, i: int) -> bool:
        """True for ids that decode to a plain character (not special, not unused)."""
        return len(SPECIAL_TOKENS) <= i < self._num_chars_end

    def encode(self, text: str) -> list[int]:
        """Encode plain text; special-token names are NOT recognised here.

        Specials only enter a sequence through the render_* helpers, so user or
        model text can never forge a role boundary.
        """
        ids: list[int] = []
        for pos, ch in enumerate(text):
            token_id = self._char_to_id.get(ch)
            if token_id is None:
                raise ValueError(
                    f"character {ch!r} at position {pos} is not in the vocabulary; "
                    "use printable ASCII or '\\n' only"
                )
            ids.append(token_id)
        return ids

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        """Decode ids; specials (and unused ids) are dropped or shown by name."""
        parts: list[str] = []
        for i in ids:
            i = int(i)  # accept numpy/torch integer scalars
            token = self.id_to_token(i)
            if self.is_character(i) or not skip_special:
                parts.append(token)
        return "".join(parts)

    def _role_id(self, role: str) -> int:
        if role not in self.role_ids:
            raise ValueError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        return self.role_ids[role]

    def render_turn(self, role: str, content: str) -> list[int]:
        """One message: role token, content characters, <|eos|>."""
        return [self._role_id(role), *self.encode(content), self.eos_id]

    def render(self, messages: Sequence[Message]) -> list[int]:
        """A whole conversation: <|bos|> followed by each rendered turn."""
        ids = [self.bos_id]
        for message in messages:
            ids.extend(self.render_turn(message.role, message.content))
        return ids

    def render_prompt(self, messages: Sequence[Message]) -> list[int]:
        """The prefix from which the model generates the next assistant turn."""
        return [*self.render(messages), self.role_ids["assistant"]]


@lru_cache(maxsize=1)
def get_tokenizer() -> Tokenizer:
    """Shared default instance; the tokenizer is stateless so one is enough."""
    return Tokenizer()
