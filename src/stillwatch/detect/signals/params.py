"""Request parameters typical of harvesting: many samples, log-probabilities, greedy decoding,
the largest output allowed, tool schemas."""

from __future__ import annotations

from typing import Any

MAXIMAL_TOKENS = 2048

FLAGS = ("n_gt_1", "logprobs", "temperature_0", "max_tokens_high", "tools")


def parameter_flags(body: dict[str, Any]) -> tuple[str, ...]:
    flags = []
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        flags.append("n_gt_1")
    if body.get("logprobs") or body.get("top_logprobs"):
        flags.append("logprobs")
    temperature = body.get("temperature")
    if isinstance(temperature, (int, float)) and temperature == 0:
        flags.append("temperature_0")
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and limit >= MAXIMAL_TOKENS:
        flags.append("max_tokens_high")
    if body.get("tools") or body.get("functions"):
        flags.append("tools")
    return tuple(flags)
