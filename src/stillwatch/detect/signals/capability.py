"""Which capability a request exercises: math, code, agentic tool use, rubric grading, or
general chat. Campaigns concentrate on the first four; people spread over all five. Decided
from the skeleton's words with set lookups: no pass over the raw text."""

from __future__ import annotations

from typing import Any

CATEGORIES = ("math", "code", "agentic", "grading", "chat")

_CODE = frozenset(
    [
        "def",
        "class",
        "return",
        "function",
        "import",
        "include",
        "select",
        "python",
        "javascript",
        "typescript",
        "java",
        "rust",
        "golang",
        "kotlin",
        "haskell",
        "cpp",
        "sql",
        "regex",
        "bash",
        "html",
        "css",
        "algorithm",
        "compile",
        "array",
        "string",
        "integer",
        "implement",
        "code",
        "program",
        "script",
        "method",
        "variable",
        "loop",
        "recursion",
        "struct",
        "println",
        "printf",
        "console",
        "const",
        "var",
        "lambda",
        "api",
        "json",
        "parse",
    ]
)
_GRADING = frozenset(
    ["rubric", "grade", "grading", "score", "scores", "rate", "judge", "evaluate", "assess"]
)
_GRADED = frozenset(["answer", "response", "responses", "answers", "essay", "submission"])
_AGENT = frozenset(
    ["tool", "tools", "function_call", "run_python", "browse", "search_web", "execute"]
)
_MATH = frozenset(
    [
        "how",
        "many",
        "much",
        "calculate",
        "compute",
        "solve",
        "equation",
        "sum",
        "total",
        "percent",
        "percentage",
        "probability",
        "integral",
        "derivative",
        "prove",
        "each",
        "per",
        "remaining",
        "average",
        "cost",
        "costs",
        "price",
        "spent",
        "earn",
        "earns",
        "minutes",
        "hours",
        "days",
        "dollars",
        "times",
        "twice",
        "half",
        "left",
    ]
)


def uses_tools(body: dict[str, Any]) -> bool:
    """Tool schemas or tool results in the request: agentic whatever the words say."""
    if body.get("tools") or body.get("functions"):
        return True
    messages = body.get("messages")
    return isinstance(messages, list) and any(
        isinstance(m, dict) and m.get("role") == "tool" for m in messages
    )


def text_capability(words: list[str]) -> str:
    head = words[:300]
    vocab = set(head)
    if vocab & _GRADING and vocab & _GRADED:
        return "grading"
    if len(vocab & _AGENT) >= 2 and "use" in vocab:
        return "agentic"
    if len(vocab & _CODE) >= 2:
        return "code"
    if head.count("0") >= 2 and vocab & _MATH:
        return "math"
    return "chat"
