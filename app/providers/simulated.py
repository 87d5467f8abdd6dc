"""The `simulated/` model: a built-in stand-in for demos and benchmarks."""

from __future__ import annotations

import asyncio
import re

from app.providers.base import ChatMessage, ModelRequest, ModelResponse, OnFirstToken

_WORDS = re.compile(r"\s*\S+\s*")


def split_words(text: str) -> list[str]:
    """Word-sized pieces that join back to exactly `text` (spacing stays on the pieces)."""
    return _WORDS.findall(text)


def _echoed(turn: ChatMessage | None) -> list[str]:
    pieces = [turn.text] if turn is not None and turn.text else []
    if turn is not None and turn.images:
        count = len(turn.images)
        pieces.append(f"[+{count} image{'s' if count > 1 else ''}]")
    return pieces


class SimulatedProvider:
    """NOT a real model: no network, no intelligence, only timing.

    After `ttft_ms` it "streams" `echo: <last user text>` one word at a time, `token_ms` apart,
    and never calls tools. It looks at no image: a turn with images is echoed with a count of
    them (`[+1 image]`), so a demo shows they arrived. Everything waits with asyncio.sleep, so
    hundreds of calls share one event loop, which is what benchmarks of the batch machinery need.
    """

    def __init__(self, *, ttft_ms: float, token_ms: float) -> None:
        self._ttft_s = max(0.0, ttft_ms) / 1000.0
        self._token_s = max(0.0, token_ms) / 1000.0

    async def stream(self, request: ModelRequest, *, on_first_token: OnFirstToken) -> ModelResponse:
        last_user = next((m for m in reversed(request.messages) if m.role == "user" and (m.text or m.images)),
                         None)
        words = split_words(f"echo: {' '.join(_echoed(last_user))}")
        finish = "stop"
        if request.max_tokens is not None and len(words) > request.max_tokens:
            words, finish = words[: max(1, request.max_tokens)], "length"
        await asyncio.sleep(self._ttft_s)
        streamed: list[str] = []
        for i, word in enumerate(words):
            if i == 0:
                on_first_token()
            else:
                await asyncio.sleep(self._token_s)
            streamed.append(word)
        prompt_words = sum(len(split_words(t)) for t in (request.system, *(m.text for m in request.messages)))
        return ModelResponse(text="".join(streamed), finish_reason=finish, prompt_tokens=prompt_words,
                             completion_tokens=len(streamed))
