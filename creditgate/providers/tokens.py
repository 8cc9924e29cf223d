"""Token counts as OpenAI's models count them: for a text, for a chat prompt, and the text cut at
token boundaries (the sandbox streams one token per chunk).

The tokenizer is `bpe-openai` (the Rust `bpe-openai` crate behind a tiktoken-like API), not
`tiktoken`: tiktoken downloads its o200k_base/cl100k_base files from OpenAI's servers the first time
an encoding is used, which fails where only package registries are reachable (our CI, the
developers' machines, locked-down servers); bpe-openai's wheel bundles those files. Both implement
the same byte-pair encodings, so the counts are the same.

Building an encoding reads and decodes its whole vocabulary (~0.5 s for o200k_base), so each is
built once per process and kept (`_encoding`), at its first use.
"""

from __future__ import annotations

import functools
import json
import re
import warnings
from collections.abc import Iterable

O200K = "o200k_base"
CL100K = "cl100k_base"

# Chat framing (OpenAI cookbook, "How to count tokens with tiktoken"): every message costs 3 tokens
# (<|start|>{role}<|message|> ... <|end|>) beside the tokens of its values, a `name` 1 more, and
# every reply is primed with 3 (<|start|>assistant<|message|>).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3

# bpe-openai refuses to encode more than 200,000 tokens or 1,000,000 characters at once; a longer
# text is encoded in pieces of at most this many characters (a character is at most 4 bytes, so
# at most 4 tokens: 4 x 50,000 stays within the token limit), cut before a space that follows a
# non-space, where the pre-tokenizer of both encodings cuts too ("... word| next").
_CHUNK_CHARS = 50_000
_CUT = re.compile(r"(?<=\S) (?=\S)")

_CL100K_MODEL = re.compile(r"^(gpt-4(-|$)|gpt-3\.5|gpt-35|text-embedding-(ada-002|3-))")


def encoding_name(model_name: str) -> str:
    """The encoding a model counts with: cl100k_base for gpt-4 (not gpt-4o, gpt-4.1, gpt-4.5) and
    gpt-3.5 (and the embedding models of their time); o200k_base for gpt-4o*, gpt-4.1*, gpt-5*,
    o1/o3/o4*, and for any name we do not know (the newer models all use it). A fine-tuned model
    (ft:BASE:...) counts as its base."""
    name = model_name.strip().lower()
    if name.startswith("ft:"):
        name = name[3:].split(":", 1)[0]
    return CL100K if _CL100K_MODEL.match(name) else O200K


@functools.cache
def _encoding(name: str):
    with warnings.catch_warnings():
        # Imported here, at first use: importing bpe-openai reads all its vocabularies (~0.35 s),
        # which a process that never counts tokens should not pay. It reads them through
        # importlib.resources.open_binary, deprecated since Python 3.11: its warning, not ours.
        warnings.filterwarnings("ignore", "open_binary is deprecated", DeprecationWarning)
        import bpe_openai

        return bpe_openai.get_encoding(name)


def _parts(text: str) -> Iterable[str]:
    """`text` in pieces short enough for the tokenizer, cut where its pre-tokenizer cuts too."""
    start = 0
    while len(text) - start > _CHUNK_CHARS:
        window = text[start:start + _CHUNK_CHARS]
        cuts = [m.start() for m in _CUT.finditer(window, _CHUNK_CHARS // 2)]
        end = start + (cuts[-1] if cuts else _CHUNK_CHARS)
        yield text[start:end]
        start = end
    yield text[start:]


def _token_ids(text: str, model_name: str) -> list[int]:
    encoding = _encoding(encoding_name(model_name))
    # encode_ordinary: text that looks like a special token (<|endoftext|>) is counted as text,
    # as the API does with what users send.
    return [token for part in _parts(text) for token in encoding.encode_ordinary(part)]


def text_tokens(text: str, model_name: str) -> int:
    """How many tokens `text` is for `model_name`."""
    return len(_token_ids(text, model_name)) if text else 0


def _part_texts(parts: list) -> list[str]:
    texts = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type") == "text":
            texts.append(str(part.get("text") or ""))
    return texts


def _value_tokens(value, model_name: str) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return text_tokens(value, model_name)
    if isinstance(value, list):  # content parts: the text ones count ({"type": "text", "text": ...})
        return sum(text_tokens(text, model_name) for text in _part_texts(value))
    # Anything else (tool calls, ...) is not counted by OpenAI's recipe; its JSON is close enough.
    return text_tokens(json.dumps(value, separators=(",", ":"), ensure_ascii=False), model_name)


def chat_prompt_tokens(messages: list[dict], model_name: str) -> int:
    """The prompt tokens of a chat completion request, by OpenAI's documented recipe: 3 per
    message, plus the tokens of each of its values (role, content, name, ...), plus 1 for a
    `name`, plus 3 priming the reply. Content may be a string or a list of parts, whose text parts
    count. (The API's own figure may differ slightly for tools and images, which this ignores.)"""
    total = REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            total += _value_tokens(value, model_name)
            if key == "name":
                total += TOKENS_PER_NAME
    return total


def token_pieces(text: str, model_name: str) -> list[str]:
    """`text` cut at token boundaries: one string per token, except that a token whose bytes are
    not valid UTF-8 on their own (part of an emoji, of a CJK character) is joined with the next
    ones until they are. `"".join(token_pieces(text, m)) == text`."""
    encoding = _encoding(encoding_name(model_name))
    pieces: list[str] = []
    pending = b""
    for token in _token_ids(text, model_name):
        pending += encoding.decode_single_token_bytes(token)
        try:
            pieces.append(pending.decode("utf-8"))
        except UnicodeDecodeError:
            continue
        pending = b""
    if pending:  # cannot happen for a str's own bytes; kept lossless all the same
        pieces.append(pending.decode("utf-8", errors="replace"))
    return pieces
