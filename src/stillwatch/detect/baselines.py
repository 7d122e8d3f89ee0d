"""Two causal baselines every real detector must beat.

`null` flags nothing. `volume` flags an account once its rolling 24-hour request count passes
the 99th percentile of the peak 24-hour counts of all accounts seen so far.
"""

from __future__ import annotations

import bisect
from collections import deque

from stillwatch.detect.base import ALLOW, Decision, RequestContext
from stillwatch.events import RequestEvent, parse_ts

DAY = 86_400.0


class NullDetector:
    name = "null"

    def decide(self, request: RequestContext) -> Decision:
        return ALLOW

    def record(self, event: RequestEvent) -> None:
        return None


class VolumeDetector:
    """Per account: hourly counts over the last day (24 numbers, bounded state) and the peak.

    The threshold is the `quantile` of all accounts' peaks, kept as a sorted list; risk is the
    share of accounts whose peak the account's current volume exceeds.
    """

    name = "volume"

    def __init__(self, quantile: float = 0.99, min_accounts: int = 100) -> None:
        self.quantile = quantile
        self.min_accounts = min_accounts
        self._hours: dict[str, deque[tuple[int, int]]] = {}
        self._peak: dict[str, int] = {}
        self._peaks: list[int] = []  # sorted, one per account

    def _volume(self, account: str, now: float) -> int:
        hours = self._hours.get(account)
        if not hours:
            return 0
        oldest = int(now // 3600) - 23
        while hours and hours[0][0] < oldest:
            hours.popleft()
        return sum(n for _, n in hours)

    def decide(self, request: RequestContext) -> Decision:
        volume = self._volume(request.account_id, request.ts) + 1  # this request included
        n = len(self._peaks)
        if n < self.min_accounts:
            return ALLOW
        risk = bisect.bisect_left(self._peaks, volume) / n
        if risk < self.quantile:
            return Decision(risk=risk)
        threshold = self._peaks[min(n - 1, int(self.quantile * n))]
        return Decision(
            action="review",
            risk=risk,
            rule="volume:p99",
            reasons=(
                f"{volume} requests in 24 h, above the {threshold} of the top 1% of accounts",
            ),
        )

    def record(self, event: RequestEvent) -> None:
        account = event.account_id
        if account is None:
            return
        now = parse_ts(event.ts)
        hour = int(now // 3600)
        hours = self._hours.setdefault(account, deque())
        if hours and hours[-1][0] == hour:
            hours[-1] = (hour, hours[-1][1] + 1)
        else:
            hours.append((hour, 1))
        volume = self._volume(account, now)
        old = self._peak.get(account)
        if old is None:
            bisect.insort(self._peaks, volume)
            self._peak[account] = volume
        elif volume > old:
            del self._peaks[bisect.bisect_left(self._peaks, old)]
            bisect.insort(self._peaks, volume)
            self._peak[account] = volume


DETECTORS = {"null": NullDetector, "volume": VolumeDetector}
