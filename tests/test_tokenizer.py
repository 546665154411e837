import pytest

from trainer.tokenizer import Message, Tokenizer, get_tokenizer

PRINTABLE = "".join(chr(c) for c in range(32, 127)) + "\n"


@pytest.fixture
def tok() -> Tokenizer:
    return Tokenizer()


def test_every_printable_character_round_trips(tok):
    ids = tok.encode(PRINTABLE)
    assert len(ids) == len(PRINTABLE)
    assert len(set(ids)) == len(PRINTABLE)
    assert tok.decode(ids) == PRINTABLE


def test_vocab_is_128_with_specials_first_and_unused_padding(tok):
    assert tok.vocab_size == 128
    assert len(tok.tokens) == 128
    assert tok.special_tokens == [
        "<|pad|>",
        "<|bos|>",
        "<|eos|>",
        "<|system|>",
        "<|user|>",
        "<|assistant|>",
        "<|tool|>",
    ]
    assert tok.tokens[:7] == tok.special_tokens
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    assert tok.role_ids == {"system": 3, "user": 4, "assistant": 5, "tool": 6}
    assert tok.id_to_token(7) == " "
    assert tok.id_to_token(101) == "~"
    assert tok.id_to_token(102) == "\n"
    assert tok.id_to_token(127) == "<|unused_127|>"
    assert max(tok.encode(PRINTABLE)) < tok.vocab_size


def test_unknown_character_error_names_char_and_position(tok):
    with pytest.raises(ValueError, match=r"'é' at position 2"):
        tok.encode("abé")
    with pytest.raises(ValueError, match=r"'\\t' at position 0"):
        tok.encode("\tx")


def test_special_token_names_in_text_are_plain_characters(tok):
    ids = tok.encode("<|eos|>")
    assert tok.eos_id not in ids
    assert len(ids) == len("<|eos|>")


def test_render_layout_is_bos_then_role_content_eos_per_message(tok):
    messages = [Message("system", "S"), Message("user", "1+2="), Message("assistant", "3")]
    ids = tok.render(messages)
    expected = (
        [tok.bos_id]
        + [tok.role_ids["system"]]
        + tok.encode("S")
        + [tok.eos_id]
        + [tok.role_ids["user"]]
        + tok.encode("1+2=")
        + [tok.eos_id]
        + [tok.role_ids["assistant"]]
        + tok.encode("3")
        + [tok.eos_id]
    )
    assert ids == expected
    assert ids[:3] == [1, 3, tok.encode("S")[0]]


def test_render_prompt_ends_with_assistant_role_and_turn_appends(tok):
    messages = [Message("user", "hi")]
    prompt = tok.render_prompt(messages)
    assert prompt == [1, 4, *tok.encode("hi"), 2, 5]
    # A prompt plus a generated turn ending in eos equals rendering the full conversation.
    full = tok.render([*messages, Message("assistant", "yo")])
    assert prompt + tok.encode("yo") + [tok.eos_id] == full
    assert tok.render(messages) + tok.render_turn("assistant", "yo") == full
    assert tok.render_turn("tool", "42") == [6, *tok.encode("42"), 2]


def test_decode_skips_specials_by_default_and_names_them_otherwise(tok):
    ids = tok.render_prompt([Message("user", "a\nb")])
    assert tok.decode(ids) == "a\nb"
    assert tok.decode(ids, skip_special=False) == "<|bos|><|user|>a\nb<|eos|><|assistant|>"
    assert tok.decode([0, 120, tok.encode("x")[0]]) == "x"
    assert tok.decode([120], skip_special=False) == "<|unused_120|>"


def test_out_of_range_id_is_rejected(tok):
    with pytest.raises(ValueError, match="128"):
        tok.decode([128])
    with pytest.raises(ValueError, match="-1"):
        tok.id_to_token(-1)


def test_message_rejects_unknown_role():
    with pytest.raises(ValueError, match="'bot'"):
        Message("bot", "hello")


def test_render_turn_rejects_unknown_role(tok):
    with pytest.raises(ValueError, match="'narrator'"):
        tok.render_turn("narrator", "x")


def test_get_tokenizer_returns_one_shared_instance():
    assert get_tokenizer() is get_tokenizer()
    assert get_tokenizer().encode("ab") == Tokenizer().encode("ab")
