"""What a /v1 request may say, in OpenAI's vocabulary, checked into what the request layer takes.

A request is refused with 400 naming the parameter (OpenAI's `param`) and changes nothing. A
parameter we do not implement is refused rather than ignored (`stop`, `tools`, `n` > 1...): a
caller relying on it would otherwise get something other than what it asked for, and be charged.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from creditgate.core.errors import InvalidRequest
from creditgate.core.text import has_visible_character

CHAT_MESSAGES_MAX = 1000
CHAT_TEXT_MAX_CHARS = 200_000  # every message's text together
CHAT_ROLES = ("system", "developer", "user", "assistant")
IMAGE_PROMPT_MAX_CHARS = 1800  # as the job API's (Runware's limit, with room for the style)
USER_MAX_CHARS = 256
CHAT_PARAMS = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "stream",
               "stream_options", "user", "n"}
IMAGE_PARAMS = {"model", "prompt", "n", "size", "response_format", "user"}
RESPONSE_FORMATS = ("url", "b64_json")


def invalid(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, details={param: [message]})


def _body(body: Any) -> dict:
    if not isinstance(body, dict):
        raise invalid("body", "The request body must be a JSON object.")
    return body


def _unsupported(body: dict, known: set[str]) -> None:
    for name in sorted(body):
        if name not in known:
            raise invalid(name, f"Unsupported parameter: '{name}' is not supported by this server.")


def _count(body: dict, name: str, *, low: int, high: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise invalid(name, f"Invalid '{name}': expected an integer {bound}.")
    return value


@dataclass(frozen=True)
class Chat:
    model: str
    messages: list[dict]
    prompt: str  # what was asked, for people and for the hold's prompt estimate (see chat_check)
    max_tokens: int | None
    temperature: Decimal | None
    stream: bool
    include_usage: bool

    def checked(self) -> dict:
        """What intake.job_create_chat takes."""
        return {"messages": self.messages, "prompt": self.prompt, "max_tokens": self.max_tokens,
                "temperature": self.temperature, "stream": self.stream}


def chat_check(raw: Any) -> Chat:
    body = _body(raw)
    _unsupported(body, CHAT_PARAMS)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model", "You must provide a model parameter.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "'messages' must be a non-empty array.")
    if len(messages) > CHAT_MESSAGES_MAX:
        raise invalid("messages", f"'messages' may have at most {CHAT_MESSAGES_MAX} items.")
    clean, texts = [], []
    for n, message in enumerate(messages):
        param = f"messages[{n}]"
        if not isinstance(message, dict):
            raise invalid(param, f"'{param}' must be an object with a role and a content.")
        role = message.get("role")
        if role not in CHAT_ROLES:
            raise invalid(f"{param}.role", f"'{param}.role' must be one of {', '.join(CHAT_ROLES)}.")
        extra = set(message) - {"role", "content", "name"}
        if extra:
            raise invalid(f"{param}.{min(extra)}", f"'{param}.{min(extra)}' is not supported.")
        text = _content_text(message.get("content"), param=f"{param}.content")
        entry = {"role": role, "content": text}
        name = message.get("name")
        if name is not None:
            if not isinstance(name, str) or not name or len(name) > 64:
                raise invalid(f"{param}.name", f"'{param}.name' must be 1 to 64 characters.")
            entry["name"] = name
        clean.append(entry)
        texts.append(f"{role}: {text}")
    # What was asked, as the job's prompt: one user message as it was typed (the page's text, most
    # calls); several as a transcript, each labelled with its role.
    prompt = clean[0]["content"] if len(clean) == 1 and clean[0]["role"] == "user" else "\n\n".join(texts)
    if not any(has_visible_character(m["content"]) for m in clean):
        raise invalid("messages", "The messages have no visible text.")
    if sum(len(m["content"]) for m in clean) > CHAT_TEXT_MAX_CHARS:
        raise invalid("messages", f"The messages may have at most {CHAT_TEXT_MAX_CHARS} characters in all.")
    max_tokens = _count(body, "max_completion_tokens", low=1)
    legacy = _count(body, "max_tokens", low=1)
    if max_tokens is not None and legacy is not None and legacy != max_tokens:
        raise invalid("max_tokens", "Give max_completion_tokens or max_tokens, not both.")
    temperature = body.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
            raise invalid("temperature", "Invalid 'temperature': expected a number from 0 to 2.")
        temperature = Decimal(str(round(float(temperature), 2)))
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise invalid("stream", "Invalid 'stream': expected a boolean.")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise invalid("stream_options", "The 'stream_options' parameter is only allowed when 'stream' is enabled.")
        if not isinstance(options, dict) or set(options) - {"include_usage"}:
            raise invalid("stream_options", "'stream_options' takes only 'include_usage'.")
        include_usage = options.get("include_usage", False)
        if not isinstance(include_usage, bool):
            raise invalid("stream_options.include_usage", "Invalid 'stream_options.include_usage': expected a boolean.")
    _user(body)
    if _count(body, "n", low=1) not in (None, 1):
        raise invalid("n", "Only n=1 is supported for chat completions.")
    return Chat(model=model, messages=clean, prompt=prompt, max_tokens=max_tokens or legacy,
                temperature=temperature, stream=bool(stream), include_usage=include_usage)


def _content_text(content: Any, *, param: str) -> str:
    """A message's content as text: a string, or an array of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        parts = []
        for n, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise invalid(f"{param}[{n}]", f"'{param}[{n}]' must be a text part; only text is supported.")
            parts.append(part["text"])
        return "".join(parts)
    raise invalid(param, f"'{param}' must be a string or an array of text parts.")


def _user(body: dict) -> None:
    user = body.get("user")
    if user is not None and (not isinstance(user, str) or len(user) > USER_MAX_CHARS):
        raise invalid("user", f"'user' must be a string of at most {USER_MAX_CHARS} characters.")


@dataclass(frozen=True)
class Images:
    model: str
    prompt: str
    n: int
    size: str | None
    response_format: str


def images_check(raw: Any, *, max_n: int) -> Images:
    body = _body(raw)
    _unsupported(body, IMAGE_PARAMS)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model", "You must provide a model parameter: an image tier, such as image-basic.")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not has_visible_character(prompt):
        raise invalid("prompt", "Missing required parameter: 'prompt' (a text with a visible character).")
    if len(prompt) > IMAGE_PROMPT_MAX_CHARS:
        raise invalid("prompt", f"'prompt' may have at most {IMAGE_PROMPT_MAX_CHARS} characters.")
    n = _count(body, "n", low=1, high=max_n) or 1
    size = body.get("size")
    if size is not None and (not isinstance(size, str) or not size):
        raise invalid("size", "Invalid 'size': expected a string such as 1024x1024.")
    response_format = body.get("response_format") or "url"
    if response_format not in RESPONSE_FORMATS:
        raise invalid("response_format", "Invalid 'response_format': expected url or b64_json.")
    _user(body)
    return Images(model=model, prompt=prompt.strip(), n=n, size=None if size in (None, "auto") else size,
                  response_format=response_format)
