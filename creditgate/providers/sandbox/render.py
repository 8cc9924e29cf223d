"""What the emulator "generates": PNGs that show what was asked, and text counted in the model's own tokens.

Cheap on purpose (a flat background and a few lines of text) so a batch of 8 at 1024x1024 stays
well under the latency knob and the benchmarks measure the code under test, not Pillow.
"""

from __future__ import annotations

import hashlib
import io
import random
import textwrap
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from creditgate.providers.tokens import text_tokens, token_pieces

LOREM = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et "
         "dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris nisi aliquip ex "
         "ea commodo consequat duis aute irure in reprehenderit voluptate velit esse cillum fugiat nulla pariatur "
         "excepteur sint occaecat cupidatat non proident sunt culpa qui officia deserunt mollit anim id est "
         "laborum").split()


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _background(seed_text: str) -> tuple[int, int, int]:
    digest = hashlib.sha256(seed_text.encode()).digest()
    # Dark enough that white text is always readable.
    return 30 + digest[0] % 90, 30 + digest[1] % 90, 30 + digest[2] % 90


def render_png(*, prompt: str, model: str, width: int, height: int, seed: int | None = None) -> bytes:
    # A palette image (background, white, grey) encodes several times faster than RGB, which keeps
    # a batch of 8 cheap next to the latency knob.
    image = Image.new("P", (width, height), 0)
    image.putpalette([*_background(f"{prompt}|{seed}"), 255, 255, 255, 200, 200, 200])
    draw = ImageDraw.Draw(image)
    font_size = max(12, min(width, height) // 28)
    chars_per_line = max(10, int(width / (font_size * 0.55)) - 4)
    margin = font_size
    lines = textwrap.wrap(prompt, width=chars_per_line)
    max_lines = max(1, (height - 4 * margin) // int(font_size * 1.25) - 2)
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], lines[max_lines - 1][: chars_per_line - 1] + "…"]
    draw.multiline_text((margin, margin), "\n".join(lines), font=_font(font_size), fill=1,
                        spacing=font_size // 4)
    footer = f"{model} · {width}x{height}" + (f" · seed {seed}" if seed is not None else "")
    draw.text((margin, height - 2 * margin), footer, font=_font(max(10, font_size * 3 // 4)), fill=2)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


@dataclass(frozen=True)
class Completion:
    text: str
    pieces: list[str]       # the text cut at token boundaries: what a stream sends, one per chunk
    completion_tokens: int
    finish_reason: str      # "stop", or "length" when cut at max_tokens


def completion_for(prompt: str, *, max_tokens: int, model: str) -> Completion:
    """What the emulated model answers. Deterministic per prompt (and model, whose tokenizer
    counts it); a longer prompt gets a longer answer, and the answer is cut at `max_tokens` tokens
    of the model's tokenizer like a real model's (finish_reason "length"). The words are ASCII, so
    each piece is one token and `completion_tokens` is the number of pieces."""
    rng = random.Random(hashlib.sha256(prompt.encode()).digest())
    wanted = 60 + min(540, 4 * len(prompt.split())) + rng.randint(0, 60)
    sentences: list[str] = []
    length = 0
    while length < wanted:  # whole sentences until the answer is long enough
        words = [rng.choice(LOREM) for _ in range(rng.randint(8, 16))]
        sentence = " ".join(words).capitalize() + "."
        # Sentences meet at a space before a word, where the tokenizer cuts too: counts add up.
        length += text_tokens(sentence if not sentences else f" {sentence}", model)
        sentences.append(sentence)
    pieces = token_pieces(" ".join(sentences), model)
    finish_reason = "stop"
    if len(pieces) > max_tokens:
        pieces, finish_reason = pieces[:max_tokens], "length"
    return Completion(text="".join(pieces), pieces=pieces, completion_tokens=len(pieces),
                      finish_reason=finish_reason)
