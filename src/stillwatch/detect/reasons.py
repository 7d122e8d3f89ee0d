"""Evidence in words an analyst can check against the log: each reason names a measured
quantity of the account, not a model weight."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from stillwatch.detect.account import HOUR, AccountState
from stillwatch.detect.campaigns import CampaignState


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / max(1, whole):.0f}%"


_PHRASES: dict[str, Callable[[AccountState, float], str]] = {
    "corpus_share": lambda s, now: (
        f"{_pct(s.corpus, s.n)} of {s.n} prompts are items of public instruction, math or "
        f"code corpora ({s.corpus_items} distinct items)"
    ),
    "single_turn_share": lambda s, now: (
        f"{_pct(s.single_turn, s.n)} of {s.n} requests start a new conversation; few follow-ups"
    ),
    "multi_item_share": lambda s, now: (
        f"{s.multi_item} follow-up turns were unrelated corpus items, not questions about the "
        "previous answer"
    ),
    "template_reuse_share": lambda s, now: (
        f"{_pct(s.template_reuse, s.n)} of prompts reuse one of the account's templates"
    ),
    "coercion_share": lambda s, now: (
        f"{s.coercion} requests asked for the model's hidden reasoning"
    ),
    "tools_share": lambda s, now: f"{_pct(s.tools, s.n)} of requests carry tool schemas",
    "temperature_0_share": lambda s, now: (
        f"{_pct(s.temperature_0, s.n)} of requests ask for greedy decoding (temperature 0)"
    ),
    "max_tokens_high_share": lambda s, now: (
        f"{_pct(s.max_tokens_high, s.n)} of requests ask for the largest outputs"
    ),
    "sampling_share": lambda s, now: (
        f"{_pct(s.sampling, s.n)} of requests ask for several samples or log-probabilities"
    ),
    "capability_concentration": lambda s, now: (
        "requests concentrate on one capability (math, code, tools or grading)"
    ),
    "gap_log_std": lambda s, now: "requests arrive at a steady machine pace (low spread of gaps)",
    "hours_active_24h": lambda s, now: f"active in {s.hours_active_24h(now)} of the last 24 hours",
    "log_requests_24h": lambda s, now: f"{s.requests_24h(now)} requests in the last 24 hours",
    "log_requests": lambda s, now: (
        f"{s.n} requests since {(now - s.first_ts) / HOUR:.1f} hours ago"
    ),
    "fast_model_switch": lambda s, now: (
        "moved to a newly released model within a day of its release"
    ),
    "log_account_age_days": lambda s, now: "young account",
    "log_corpus_items": lambda s, now: f"{s.corpus_items} distinct corpus items requested",
}


def feature_reasons(
    s: AccountState,
    x: Sequence[float],
    contributions: Sequence[tuple[float, str]],
    now: float,
    limit: int = 3,
) -> list[str]:
    out = []
    for push, name in contributions:
        if push <= 0.25 or len(out) >= limit:
            break
        phrase = _PHRASES.get(name)
        if phrase is not None:
            out.append(phrase(s, now))
    return out


def campaign_reason(camp: CampaignState) -> str:
    shared = camp.evidence[1] if len(camp.evidence) > 1 else "shared infrastructure"
    return f"member of campaign {camp.campaign_id} ({len(camp.members)} accounts): {shared}"
