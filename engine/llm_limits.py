"""Request limits of the LLM client: a sliding-window requests/tokens-per-minute limiter and a token estimate."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, Sequence


class RateLimiter:
    """Sliding-window limit on requests and estimated tokens per ``window_s`` (0 = unlimited)."""

    def __init__(self, rpm: int, tpm: int, window_s: float = 60.0) -> None:
        self.rpm, self.tpm, self.window_s = rpm, tpm, window_s
        self._events: deque[tuple[float, int]] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: int) -> None:
        """Wait until one more request of ``tokens`` fits in the window, then record it."""
        if not self.rpm and not self.tpm:
            return
        async with self._lock:
            while True:
                now = time.monotonic()
                while self._events and now - self._events[0][0] >= self.window_s:
                    self._events.popleft()
                used = sum(t for _, t in self._events)
                fits_rpm = not self.rpm or len(self._events) < self.rpm
                fits_tpm = not self.tpm or used + tokens <= self.tpm or not self._events
                if fits_rpm and fits_tpm:
                    self._events.append((now, tokens))
                    return
                await asyncio.sleep(self._events[0][0] + self.window_s - now + 0.001)


def estimate_tokens(messages: Sequence[dict[str, Any]], max_tokens: int) -> int:
    """A rough token count for rate limiting: about 4 characters per token, plus ``max_tokens``."""
    chars = sum(len(str(m.get("content", ""))) + 8 for m in messages)
    return chars // 4 + 1 + max_tokens
