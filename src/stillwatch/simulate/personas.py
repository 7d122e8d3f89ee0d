"""Benign personas: the customers a detector must leave alone, hard negatives included."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator

from stillwatch.simulate.base import DAY, HOUR, Draft, SimContext, conversation

Persona = Callable[[SimContext], Iterator[Draft]]

FOLLOW_UPS = (
    "I don't get the second step, can you explain it again more slowly?",
    "wait why did you divide there",
    "Can you check my answer? I got a different number.",
    "ok that makes sense. what if the numbers were different?",
    "my teacher said we can't use that method, is there another way?",
    "Thanks! Could you give me a similar practice problem?",
)


def _days(ctx: SimContext) -> int:
    return max(1, int((ctx.end - ctx.start) // DAY))


def _chat_turns(ctx: SimContext, max_turns: int) -> list[str]:
    rng = ctx.rng
    if rng.random() < 0.6 and ctx.corpora.conversations:
        turns = list(rng.choice(ctx.corpora.conversations))
    else:
        turns = [rng.choice(ctx.corpora.chat)]
    return turns[:max_turns]


def sessions(ctx: SimContext, per_week: float, evening: bool) -> Iterator[float]:
    """Session start times: some days of the week, at office hours or in the evening."""
    rng = ctx.rng
    for day in range(_days(ctx)):
        if rng.random() < per_week / 7:
            hour = rng.uniform(19, 23.5) if evening else rng.gauss(13, 2.5)
            yield ctx.local_hour_start(day, min(max(hour, 7), 23.8))


def chat_user(ctx: SimContext) -> Iterator[Draft]:
    evening = ctx.rng.random() < 0.4
    per_week = ctx.rng.uniform(1, 6)
    free_at = ctx.start
    for t in sessions(ctx, per_week, evening):
        turns = _chat_turns(ctx, 6)
        free_at = yield from conversation(
            ctx, max(t, free_at), turns, ctx.rng.choice(ctx.identity.ips)
        )


def power_user(ctx: SimContext) -> Iterator[Draft]:
    free_at = ctx.start
    for t in sessions(ctx, 7, evening=False):
        t = max(t, free_at)
        for _ in range(ctx.rng.randint(3, 10)):
            turns = _chat_turns(ctx, 12)
            free_at = yield from conversation(ctx, t, turns, ctx.rng.choice(ctx.identity.ips))
            t = free_at + 60 + ctx.rng.expovariate(1 / 1800)


def new_signup(ctx: SimContext) -> Iterator[Draft]:
    """Signs up during the window, tries the API a few times that day, rarely returns."""
    rng = ctx.rng
    t = rng.uniform(ctx.start, ctx.end - HOUR)
    ctx.identity.created_at = t - rng.uniform(60, 3600)
    for _ in range(rng.randint(1, 3)):
        ended = yield from conversation(ctx, t, _chat_turns(ctx, 2), ctx.identity.ips[0])
        t = ended + rng.uniform(300, 3 * HOUR)


def student(ctx: SimContext) -> Iterator[Draft]:
    """Homework from the same math and code sets attackers use, with confused follow-ups."""
    rng = ctx.rng
    free_at = ctx.start
    for t in sessions(ctx, rng.uniform(1, 4), evening=True):
        pool = ctx.corpora.math if rng.random() < 0.7 else ctx.corpora.code
        turns = [rng.choice(pool), *rng.sample(FOLLOW_UPS, rng.randint(1, 3))]
        free_at = yield from conversation(ctx, max(t, free_at), turns, ctx.identity.ips[0])


def benchmark_evaluator(ctx: SimContext) -> Iterator[Draft]:
    """Runs GSM8K or HumanEval once, in order, at temperature 0, on one day."""
    rng = ctx.rng
    pool = ctx.corpora.math if rng.random() < 0.6 else ctx.corpora.code
    n = min(len(pool), rng.randint(150, 500))
    first = rng.randrange(0, max(1, len(pool) - n + 1))
    t = ctx.local_hour_start(rng.randrange(_days(ctx)), rng.uniform(9, 16))
    ip = ctx.identity.ips[0]
    cid = ctx.conversation_id()
    for item in pool[first : first + n]:
        if t >= ctx.end:
            return
        body = {
            "model": ctx.model(t),
            "temperature": 0,
            "max_tokens": 512,
            "messages": [{"role": "user", "content": item}],
        }
        yield Draft(t, body, f"{cid}-{int(t)}", ip, None, body["model"])
        t += rng.uniform(1.5, 6)


def enterprise_batch(ctx: SimContext) -> Iterator[Draft]:
    """One template over many documents, short outputs, a nightly burst."""
    rng = ctx.rng
    template = rng.choice(
        (
            "Summarize the following customer message in one sentence:\n\n{doc}",
            "Classify the sentiment of this text as positive, neutral or negative:\n\n{doc}",
            "Extract the product names mentioned in the text below as a JSON list.\n\n{doc}",
            "Translate into formal German:\n\n{doc}",
        )
    )
    ips = ctx.identity.ips
    for day in range(_days(ctx)):
        if rng.random() < 0.2:  # not every night
            continue
        t = ctx.local_hour_start(day, 2 + rng.uniform(0, 1))
        for _ in range(rng.randint(100, 600)):
            doc = rng.choice(ctx.corpora.chat)
            body = {
                "model": ctx.model(t),
                "max_tokens": 64,
                "temperature": 0,
                "messages": [{"role": "user", "content": template.format(doc=doc)}],
            }
            yield Draft(t, body, ctx.conversation_id(), rng.choice(ips), None, body["model"])
            t += rng.uniform(0.5, 3)


def interleave(hours: Iterator[tuple[float, list[Iterator[Draft]]]]) -> Iterator[Draft]:
    """Merge conversations that start hour by hour, holding only the ones under way."""
    heap: list[tuple[float, int, Draft, Iterator[Draft]]] = []
    seq = 0

    def push(conv: Iterator[Draft]) -> None:
        nonlocal seq
        draft = next(conv, None)
        if draft is not None:
            seq += 1
            heapq.heappush(heap, (draft.ts, seq, draft, conv))

    for hour_end, starting in hours:
        for conv in starting:
            push(conv)
        while heap and heap[0][0] < hour_end:
            _, _, draft, conv = heapq.heappop(heap)
            yield draft
            push(conv)
    while heap:
        _, _, draft, conv = heapq.heappop(heap)
        yield draft
        push(conv)


def app_backend(ctx: SimContext) -> Iterator[Draft]:
    """An app's server: a few IPs, many end users' conversations interleaved, diverse topics."""
    rng = ctx.rng
    users = [f"user-{rng.getrandbits(40):010x}" for _ in range(rng.randint(200, 3000))]
    per_hour = rng.uniform(20, 120)

    def hours() -> Iterator[tuple[float, list[Iterator[Draft]]]]:
        for day in range(_days(ctx)):
            for hour in range(24):
                busy = 1.0 if 8 <= hour <= 22 else 0.25  # the app's own users' day
                base = ctx.local_hour_start(day, hour)
                starting = []
                for _ in range(int(rng.expovariate(1 / (per_hour * busy)))):
                    t = base + rng.uniform(0, HOUR)
                    turns = (
                        _chat_turns(ctx, 4)
                        if rng.random() < 0.8
                        else [rng.choice(ctx.corpora.instructions)]
                    )
                    starting.append(
                        conversation(
                            ctx, t, turns, rng.choice(ctx.identity.ips), end_user=rng.choice(users)
                        )
                    )
                yield base + HOUR, starting

    yield from interleave(hours())


PERSONAS: dict[str, Persona] = {
    "chat_user": chat_user,
    "app_backend": app_backend,
    "enterprise_batch": enterprise_batch,
    "benchmark_evaluator": benchmark_evaluator,
    "student": student,
    "power_user": power_user,
    "new_signup": new_signup,
}
TIER = {
    "app_backend": "enterprise",
    "enterprise_batch": "enterprise",
    "new_signup": "free",
    "student": "free",
}
