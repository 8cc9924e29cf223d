"""Token counts (creditgate.providers.tokens): the model's encoding, chat framing, token pieces."""

import pytest

from creditgate.providers import tokens
from creditgate.providers.tokens import chat_prompt_tokens, encoding_name, text_tokens, token_pieces


@pytest.mark.parametrize("model, encoding", [
    ("gpt-5.1", "o200k_base"), ("gpt-5.1-2025-11-13", "o200k_base"), ("gpt-4o", "o200k_base"),
    ("gpt-4o-mini", "o200k_base"), ("gpt-4.1-nano", "o200k_base"), ("o1", "o200k_base"), ("o3-mini", "o200k_base"),
    ("o4-mini", "o200k_base"), ("some-future-model", "o200k_base"),
    ("gpt-4", "cl100k_base"), ("gpt-4-turbo", "cl100k_base"), ("gpt-4-0613", "cl100k_base"),
    ("gpt-3.5-turbo", "cl100k_base"), ("ft:gpt-4-0613:acme::abc", "cl100k_base"),
    ("ft:gpt-4o-mini:acme::x", "o200k_base"),
])
def test_encoding_by_model_name(model, encoding):
    assert encoding_name(model) == encoding


def test_known_counts():
    assert text_tokens("Hello world", "gpt-5.1") == 2
    assert text_tokens("hello world", "gpt-4") == 2
    assert text_tokens("", "gpt-5.1") == 0
    # The two encodings differ on the same text: CJK is one token per character in cl100k_base here.
    assert text_tokens("你好世界", "gpt-4") > text_tokens("你好世界", "gpt-4o")


def test_text_that_looks_like_a_special_token_counts_as_text():
    assert text_tokens("<|endoftext|>", "gpt-5.1") > 1


@pytest.mark.parametrize("text", [
    "Plain ASCII words, with punctuation!",
    "Emoji: 👋🏽 👨‍👩‍👧‍👦 🦊 and flags 🇫🇷🇯🇵",
    "中文文本\uff0c日本語のテキスト、한국어 텍스트",
    "naïve café — e\u0301 combining, zero\u200bwidth",
    "  leading and trailing spaces \n\n\ttabs\r\n",
    "",
])
@pytest.mark.parametrize("model", ["gpt-5.1", "gpt-4"])
def test_token_pieces_join_back_to_the_text(text, model):
    pieces = token_pieces(text, model)
    assert "".join(pieces) == text
    assert all(pieces)
    # One piece per token, except tokens that are partial UTF-8 and were joined with the next.
    assert len(pieces) <= text_tokens(text, model)


def test_token_pieces_are_tokens_for_ascii():
    text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit."
    pieces = token_pieces(text, "gpt-5.1")
    assert len(pieces) == text_tokens(text, "gpt-5.1") and "".join(pieces) == text


def test_an_emoji_split_across_tokens_is_one_piece():
    # 👋 alone is two tokens in o200k_base (its 4 bytes split 3 + 1): one piece, never half a character.
    assert text_tokens(" 👋", "gpt-5.1") == 2
    assert token_pieces(" 👋", "gpt-5.1") == [" 👋"]


def test_long_text_is_counted_in_parts_exactly():
    text = "word " * 30_000  # 150,000 characters: three parts for the tokenizer
    assert len(text) > 2 * tokens._CHUNK_CHARS
    assert text_tokens(text, "gpt-5.1") == 30_001  # "word", 29,999 x " word", " "
    assert "".join(token_pieces(text, "gpt-5.1")) == text


def test_chat_prompt_framing():
    model = "gpt-5.1"
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Name a fox.", "name": "ana"}]
    expected = (3 + text_tokens("system", model) + text_tokens("You are terse.", model)
                + 3 + text_tokens("user", model) + text_tokens("Name a fox.", model) + text_tokens("ana", model) + 1
                + 3)
    assert chat_prompt_tokens(messages, model) == expected
    # One short user message: 3 (message) + 1 ("user") + 2 ("Hello world") + 3 (reply priming).
    assert chat_prompt_tokens([{"role": "user", "content": "Hello world"}], model) == 9


def test_chat_content_parts_count_their_text():
    model = "gpt-5.1"
    parts = [{"type": "text", "text": "Hello"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
             {"type": "text", "text": " world"}]
    assert chat_prompt_tokens([{"role": "user", "content": parts}], model) == (
        3 + text_tokens("user", model) + text_tokens("Hello", model) + text_tokens(" world", model) + 3)
    assert chat_prompt_tokens([{"role": "assistant", "content": None}], model) == 3 + 1 + 3
