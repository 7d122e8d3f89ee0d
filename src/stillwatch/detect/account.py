"""Per-account behaviour: bounded counters updated once per request, and the feature vector the
risk model reads. Nothing here grows with the number of requests: counts, a capped table of
template minima, a capped table of recent conversations, Welford moments of the gaps, and 48
hourly buckets."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

from stillwatch.detect.signals import CATEGORIES, RequestSignals

DAY = 86_400.0
HOUR = 3_600.0
MAX_TEMPLATES = 256
MAX_CONVERSATIONS = 32
MAX_END_USERS = 4096
_CHAT = CATEGORIES.index("chat")
_FOCUSED = tuple(i for i, c in enumerate(CATEGORIES) if c != "chat")

FEATURES = (
    "log_requests",
    "corpus_share",
    "single_turn_share",
    "multi_item_share",
    "template_reuse_share",
    "coercion_share",
    "tools_share",
    "temperature_0_share",
    "max_tokens_high_share",
    "sampling_share",
    "capability_concentration",
    "chat_share",
    "gap_log_std",
    "hours_active_24h",
    "log_requests_24h",
    "log_end_users",
    "fast_model_switch",
    "log_account_age_days",
    "log_corpus_items",
)


def template_bands(minhash: tuple[int, ...]) -> tuple[int, ...]:
    return tuple((minhash[i] << 32) | minhash[i + 1] for i in range(0, len(minhash) - 1, 2))


@dataclass(slots=True)
class AccountState:
    first_ts: float = 0.0
    last_ts: float = 0.0
    n: int = 0
    corpus: int = 0
    single_turn: int = 0
    multi_item: int = 0
    template_reuse: int = 0
    coercion: int = 0
    tools: int = 0
    temperature_0: int = 0
    max_tokens_high: int = 0
    sampling: int = 0
    categories: list[int] = field(default_factory=lambda: [0] * len(CATEGORIES))
    templates: dict[int, int] = field(default_factory=dict)
    conversations: dict[str, int] = field(default_factory=dict)  # conversation -> corpus item
    corpus_items: int = 0  # distinct, approximately (first sightings within the table)
    gap_n: int = 0
    gap_mean: float = 0.0
    gap_m2: float = 0.0
    hours: deque[list[int]] = field(default_factory=deque)  # [hour index, requests]
    end_users: set[str] = field(default_factory=set)
    models: dict[str, float] = field(default_factory=dict)  # model -> first use
    fast_switch: bool = False
    created_at: float | None = None
    tokens: int = 0

    def update(
        self,
        ts: float,
        sig: RequestSignals,
        conversation: str | None,
        end_user: str | None,
        model: str | None,
        model_release: float | None,
    ) -> None:
        if self.n == 0:
            self.first_ts = ts
        else:
            gap = min(DAY, max(1.0, ts - self.last_ts))
            x = math.log(gap)
            self.gap_n += 1
            delta = x - self.gap_mean
            self.gap_mean += delta / self.gap_n
            self.gap_m2 += delta * (x - self.gap_mean)
        self.last_ts = max(self.last_ts, ts)
        self.n += 1
        if sig.user_turns <= 1:
            self.single_turn += 1
        if sig.coercion_flag:
            self.coercion += 1
        params = sig.params
        if "tools" in params:
            self.tools += 1
        if "temperature_0" in params:
            self.temperature_0 += 1
        if "max_tokens_high" in params:
            self.max_tokens_high += 1
        if "n_gt_1" in params or "logprobs" in params:
            self.sampling += 1
        self.categories[CATEGORIES.index(sig.category)] += 1
        self._templates(sig.template)
        if sig.corpus is not None:
            self.corpus += 1
            self._conversation(conversation, sig.corpus.item * 7 + len(sig.corpus.corpus))
        self._count_hour(int(ts // HOUR))
        if end_user and len(self.end_users) < MAX_END_USERS:
            self.end_users.add(end_user)
        if model and model not in self.models:
            if (
                self.models
                and model_release is not None
                and ts - model_release <= DAY
                and self.n > 5
            ):
                self.fast_switch = True
            self.models[model] = ts

    def _count_hour(self, hour: int) -> None:
        """Hourly buckets kept in time order, the last 48 hours; a request a little late
        (replicas' clocks, a slow exchange) lands in its own hour's bucket."""
        hours = self.hours
        if hours and hours[-1][0] == hour:
            hours[-1][1] += 1
        elif not hours or hours[-1][0] < hour:
            hours.append([hour, 1])
            while hours[0][0] < hour - 47:
                hours.popleft()
        elif hour >= hours[-1][0] - 47:
            at = len(hours)
            while at and hours[at - 1][0] > hour:
                at -= 1
            if at and hours[at - 1][0] == hour:
                hours[at - 1][1] += 1
            else:
                hours.insert(at, [hour, 1])

    def _templates(self, minhash: tuple[int, ...]) -> None:
        """Counts the prompt's two bands (pairs of minima): one shared minimum is often a
        common phrase; two at once are a shared skeleton."""
        if not minhash:
            return
        table = self.templates
        bands = template_bands(minhash)
        if any(b in table for b in bands):
            self.template_reuse += 1
        for b in bands:
            table[b] = table.get(b, 0) + 1
        if len(table) > MAX_TEMPLATES:  # keep the recurring ones
            for v in [v for v, c in table.items() if c == 1]:
                del table[v]
            if len(table) > MAX_TEMPLATES // 2:
                table.clear()

    def _conversation(self, conversation: str | None, item: int) -> None:
        convs = self.conversations
        if conversation is not None and conversation in convs:
            if convs[conversation] != item:
                self.multi_item += 1
                self.corpus_items += 1
            convs[conversation] = item
            return
        self.corpus_items += 1
        if conversation is not None:
            if len(convs) >= MAX_CONVERSATIONS:
                del convs[next(iter(convs))]
            convs[conversation] = item

    # --- sharing between replicas ---------------------------------------------------------
    _COUNTS: ClassVar[tuple[str, ...]] = (
        "n",
        "corpus",
        "single_turn",
        "multi_item",
        "template_reuse",
        "coercion",
        "tools",
        "temperature_0",
        "max_tokens_high",
        "sampling",
        "corpus_items",
        "tokens",
    )

    def to_wire(self) -> dict[str, Any]:
        """A plain, bounded snapshot (msgpack-able); `from_wire` reads it back."""
        return {
            "c": [getattr(self, k) for k in self._COUNTS],
            "t": [self.first_ts, self.last_ts, self.created_at],
            "g": [self.gap_n, self.gap_mean, self.gap_m2],
            "cat": list(self.categories),
            "tpl": list(self.templates.items()),
            "conv": list(self.conversations.items()),
            "h": [list(b) for b in self.hours],
            "eu": sorted(self.end_users)[:512],
            "m": list(self.models.items()),
            "fs": self.fast_switch,
        }

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> AccountState:
        s = cls()
        for k, v in zip(cls._COUNTS, d["c"], strict=True):
            setattr(s, k, v)
        s.first_ts, s.last_ts, s.created_at = d["t"]
        s.gap_n, s.gap_mean, s.gap_m2 = d["g"]
        s.categories = list(d["cat"])
        s.templates = {int(k): int(v) for k, v in d["tpl"]}
        s.conversations = {str(k): int(v) for k, v in d["conv"]}
        s.hours = deque([int(h), int(c)] for h, c in d["h"])
        s.end_users = set(d["eu"])
        s.models = {str(k): float(v) for k, v in d["m"]}
        s.fast_switch = bool(d["fs"])
        return s

    def merged(self, other: AccountState) -> AccountState:
        """Both parts of an account served by two replicas, as one. Counts add; gap moments
        combine exactly (Chan's parallel formula) over each part's own gaps; hourly buckets
        add; sets and tables unite within their caps."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        m = AccountState()
        for k in self._COUNTS:
            setattr(m, k, getattr(self, k) + getattr(other, k))
        m.first_ts = min(self.first_ts, other.first_ts)
        m.last_ts = max(self.last_ts, other.last_ts)
        m.created_at = self.created_at if self.created_at is not None else other.created_at
        n = self.gap_n + other.gap_n
        if n:
            delta = other.gap_mean - self.gap_mean
            m.gap_n = n
            m.gap_mean = self.gap_mean + delta * other.gap_n / n
            m.gap_m2 = self.gap_m2 + other.gap_m2 + delta * delta * self.gap_n * other.gap_n / n
        m.categories = [a + b for a, b in zip(self.categories, other.categories, strict=True)]
        m.templates = dict(self.templates)
        for k, v in other.templates.items():
            m.templates[k] = m.templates.get(k, 0) + v
        m.conversations = {**other.conversations, **self.conversations}
        hours: dict[int, int] = {}
        for h, c in (*self.hours, *other.hours):
            hours[h] = hours.get(h, 0) + c
        latest = max(hours)
        m.hours = deque([h, hours[h]] for h in sorted(hours) if h >= latest - 47)
        m.end_users = set(self.end_users) | set(other.end_users)
        m.models = dict(other.models)
        for k, v in self.models.items():
            m.models[k] = min(v, m.models.get(k, v))
        m.fast_switch = self.fast_switch or other.fast_switch
        return m

    def last_24h(self, now: float) -> tuple[int, int]:
        """(requests, hours with a request) in the 24 hourly buckets up to `now`; the
        buckets are in time order, so the walk back stops at the first older one."""
        oldest = int(now // HOUR) - 23
        requests = hours = 0
        for h, c in reversed(self.hours):
            if h < oldest:
                break
            requests += c
            hours += 1
        return requests, hours

    def requests_24h(self, now: float) -> int:
        return self.last_24h(now)[0]

    def hours_active_24h(self, now: float) -> int:
        return self.last_24h(now)[1]

    def features(self, now: float) -> list[float]:
        n = max(1, self.n)
        cats = self.categories
        chat = cats[_CHAT]
        focused = max(cats[i] for i in _FOCUSED)
        gap_std = math.sqrt(self.gap_m2 / (self.gap_n - 1)) if self.gap_n >= 3 else 1.5
        age = (now - self.created_at) / DAY if self.created_at is not None else 180.0
        requests_24h, hours_24h = self.last_24h(now)
        return [
            math.log1p(self.n),
            self.corpus / n,
            self.single_turn / n,
            self.multi_item / n,
            self.template_reuse / n,
            self.coercion / n,
            self.tools / n,
            self.temperature_0 / n,
            self.max_tokens_high / n,
            self.sampling / n,
            focused / n,
            chat / n,
            min(gap_std, 4.0),
            hours_24h / 24,
            math.log1p(requests_24h),
            math.log1p(len(self.end_users)),
            float(self.fast_switch),
            math.log1p(max(0.0, age)),
            math.log1p(self.corpus_items),
        ]
