"""Checks a request body before anything is spent on it. Hand-written: it runs on every request."""

from __future__ import annotations

from typing import Any

from stillwatch.gateway.errors import ApiError
from stillwatch.policy import Policy

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def _bad(param: str, message: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, "invalid_request_error", param, code)


def _int_in(body: dict[str, Any], name: str, lo: int, hi: int) -> None:
    value = body.get(name)
    if value is None:
        return
    if type(value) is not int:
        raise _bad(name, f"'{name}' must be an integer; got {type(value).__name__}", "invalid_type")
    if not lo <= value <= hi:
        raise _bad(name, f"'{name}' must be between {lo} and {hi}; got {value}")


def _number_in(body: dict[str, Any], name: str, lo: float, hi: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if type(value) not in (int, float):
        raise _bad(name, f"'{name}' must be a number; got {type(value).__name__}", "invalid_type")
    if not lo <= value <= hi:
        raise _bad(name, f"'{name}' must be between {lo} and {hi}; got {value}")


def _typed(body: dict[str, Any], name: str, kinds: tuple[type, ...], label: str) -> None:
    value = body.get(name)
    if value is not None and not isinstance(value, kinds):
        raise _bad(name, f"'{name}' must be {label}; got {type(value).__name__}", "invalid_type")


def _content_ok(content: Any) -> bool:
    if content is None or isinstance(content, str):
        return True
    if isinstance(content, list):
        return all(isinstance(p, dict) and isinstance(p.get("type"), str) for p in content)
    return False


def validate_request(endpoint: str, body: Any, policy: Policy) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _bad("", "the request body must be a JSON object", "invalid_type")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad(
            "model",
            "'model' is required and must be a non-empty string",
            "missing_required_parameter",
        )
    if endpoint == "/v1/chat/completions":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _bad(
                "messages",
                "'messages' is required and must be a non-empty list",
                "missing_required_parameter",
            )
        for i, m in enumerate(messages):
            if not isinstance(m, dict):
                raise _bad(f"messages[{i}]", f"messages[{i}] must be an object", "invalid_type")
            if m.get("role") not in ROLES:
                raise _bad(
                    f"messages[{i}].role",
                    f"messages[{i}].role must be one of {', '.join(sorted(ROLES))}",
                )
            if not _content_ok(m.get("content")):
                raise _bad(
                    f"messages[{i}].content",
                    f"messages[{i}].content must be a string, a list of parts or null",
                    "invalid_type",
                )
    else:
        prompt = body.get("prompt")
        if prompt is None:
            raise _bad("prompt", "'prompt' is required", "missing_required_parameter")
        if not isinstance(prompt, str | list):
            raise _bad("prompt", "'prompt' must be a string or a list", "invalid_type")
    _int_in(body, "max_tokens", 1, policy.max_tokens_cap)
    _int_in(body, "max_completion_tokens", 1, policy.max_tokens_cap)
    _int_in(body, "n", 1, policy.max_n)
    _int_in(body, "top_logprobs", 0, 20)
    _number_in(body, "temperature", 0, 2)
    _number_in(body, "top_p", 0, 1)
    _typed(body, "stream", (bool,), "a boolean")
    _typed(body, "stream_options", (dict,), "an object")
    _typed(body, "tools", (list,), "a list")
    _typed(body, "user", (str,), "a string")
    _typed(body, "response_format", (dict,), "an object")
    if body.get("logprobs") is not None and not isinstance(body["logprobs"], bool | int):
        raise _bad("logprobs", "'logprobs' must be a boolean", "invalid_type")
    return body
