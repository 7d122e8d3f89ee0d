"""Ties between accounts that no single request shows: activity in lockstep, and one public
corpus split between accounts. Both are read at each clustering tick from bounded state kept
per account, and enter the entity graph as shared entities, like an address or a card.

- Synchronised activity (after SynchroTrap): one orchestrator driving many accounts sends
  their requests in the same seconds, wave after wave. Each account's active 10-second buckets
  of the last three hours are a set; accounts whose sets agree (MinHash with LSH bands, then
  the whole signature checked) move together. Accounts that are active nearly all the time (an
  app backend) say nothing by their timing and are left out, as are accounts with too few
  buckets to tell.
- Partitioned corpora: accounts that each take a disjoint slice of one corpus. Two independent
  sweeps of a corpus of N items, of a and b items, share about a * b / N of them; a pair that
  shares none where three or more were expected took its slices from one plan.

Pairs found are merged into cohorts (union-find, the smallest account id names a cohort, so
the names do not depend on the order pairs were found in); an account holds the entity of each
cohort it has belonged to, and a cohort's entity weighs the same however many hold it: every
tie in it was checked pair by pair, unlike a shared address that anyone may use.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import numpy as np

SYNC_BUCKET = 10.0  # seconds: a wave of one orchestrator lands within a bucket or two
SYNC_WINDOW = 3 * 3600.0
SYNC_MIN_BUCKETS = 10
SYNC_MAX_DENSITY = 0.2  # active in more of the window's buckets than this: always on
SYNC_ROWS, SYNC_BANDS = 4, 8
SYNC_AGREEMENT = 0.5  # share of the signature two accounts must agree on
PARTITION_MIN_ITEMS = 20
PARTITION_EXPECTED = 3.0
PARTITION_MAX_ITEMS = 1024  # items remembered per account and corpus
PARTITION_MAX_HOLDERS = 32  # an item taken by more accounts is a popular one: not tracked

_WINDOW_BUCKETS = int(SYNC_WINDOW // SYNC_BUCKET)
_SEEDS = (
    np.arange(1, SYNC_ROWS * SYNC_BANDS + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
)


def _mix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


class Cohorts:
    """Union-find over accounts; `join` returns the accounts whose cohort name changed."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}
        self._members: dict[str, list[str]] = {}

    def root(self, account: str) -> str:
        top = account
        while (up := self._parent.get(top, top)) != top:
            top = up
        while account != top:  # path compression
            up = self._parent[account]
            self._parent[account] = top
            account = up
        return top

    def join(self, a: str, b: str) -> list[str]:
        ra, rb = self.root(a), self.root(b)
        if ra == rb:
            return []
        keep, gone = (ra, rb) if ra < rb else (rb, ra)
        first = keep not in self._members  # the cohort is new: its namesake joins it too
        moved = self._members.pop(gone, [gone])
        self._parent[gone] = keep
        self._members.setdefault(keep, [keep]).extend(moved)
        return [*moved, keep] if first else moved


class SyncTracker:
    """Each account's recent active buckets, and the accounts that move in lockstep."""

    def __init__(self) -> None:
        self.buckets: dict[str, deque[int]] = {}
        self.active: set[str] = set()  # accounts seen since the last tick
        self.cohorts = Cohorts()

    def beat(self, account: str, ts: float) -> None:
        b = int(ts // SYNC_BUCKET)
        seen = self.buckets.get(account)
        if seen is None:
            seen = self.buckets[account] = deque(maxlen=_WINDOW_BUCKETS)
        if not seen or seen[-1] < b:  # a late request (rare) adds nothing new to its bucket
            seen.append(b)
        self.active.add(account)

    def tick(self, now: float) -> list[tuple[str, str]]:
        """(account, cohort) for every account whose cohort changed since the last tick."""
        lo = int(now // SYNC_BUCKET) - _WINDOW_BUCKETS
        names, sigs = [], []
        for account in sorted(self.active):
            seen = self.buckets[account]
            while seen and seen[0] <= lo:
                seen.popleft()
            if SYNC_MIN_BUCKETS <= len(seen) <= SYNC_MAX_DENSITY * _WINDOW_BUCKETS:
                names.append(account)
                sigs.append(self.signature(seen))
        self.active.clear()
        for account, stale in list(self.buckets.items()):
            if stale and stale[-1] <= lo:  # gone quiet: forget it
                del self.buckets[account]
        if len(names) < 2:
            return []
        pairs = self.pairs(np.stack(sigs))
        return _joined(self.cohorts, ((names[i], names[j]) for i, j in pairs))

    @staticmethod
    def signature(buckets: Iterable[int]) -> np.ndarray:
        arr = np.fromiter(buckets, dtype=np.uint64)
        return _mix(arr[None, :] ^ _SEEDS[:, None]).min(axis=1)

    @staticmethod
    def pairs(sigs: np.ndarray) -> list[tuple[int, int]]:
        """Index pairs whose signatures collide in a band and then agree on the whole."""
        found: set[tuple[int, int]] = set()
        for band in range(SYNC_BANDS):
            rows = sigs[:, band * SYNC_ROWS : (band + 1) * SYNC_ROWS]
            groups: dict[bytes, list[int]] = {}
            for i, row in enumerate(rows):
                groups.setdefault(row.tobytes(), []).append(i)
            for idx in groups.values():
                for x in range(len(idx)):
                    for y in range(x + 1, len(idx)):
                        found.add((idx[x], idx[y]))
        return sorted(
            (i, j) for i, j in found if float(np.mean(sigs[i] == sigs[j])) >= SYNC_AGREEMENT
        )


class PartitionTracker:
    """Which corpus items each account took, and sweeps that avoid each other by plan."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, set[int]]] = {}  # corpus -> account -> items
        self.holders: dict[tuple[str, int], set[str]] = {}  # (corpus, item) -> accounts
        self.changed: set[tuple[str, str]] = set()  # (corpus, account) since the last tick
        self.cohorts = Cohorts()

    def take(self, account: str, corpus: str, item: int) -> None:
        mine = self.items.setdefault(corpus, {}).setdefault(account, set())
        if item in mine or len(mine) >= PARTITION_MAX_ITEMS:
            return
        mine.add(item)
        who = self.holders.setdefault((corpus, item), set())
        if len(who) < PARTITION_MAX_HOLDERS:
            who.add(account)
        self.changed.add((corpus, account))

    def tick(self, sizes: dict[str, int]) -> list[tuple[str, str, str]]:
        """(corpus, account, cohort) for every account whose cohort in a corpus changed."""
        out: list[tuple[str, str, str]] = []
        changed = sorted(self.changed)
        self.changed.clear()
        for corpus in sorted({c for c, _ in changed}):
            size = sizes.get(corpus, 0)
            taken = self.items.get(corpus, {})
            sweepers = sorted(a for a, s in taken.items() if len(s) >= PARTITION_MIN_ITEMS)
            if size <= 0 or len(sweepers) < 2:
                continue
            counts = np.array([len(taken[a]) for a in sweepers], dtype=np.float64)
            where = {a: i for i, a in enumerate(sweepers)}
            pairs = []
            for c, a in changed:
                if c != corpus or a not in where:
                    continue
                overlap = np.zeros(len(sweepers), dtype=bool)
                for item in taken[a]:
                    for b in self.holders.get((corpus, item), ()):
                        if b in where:
                            overlap[where[b]] = True
                expected = counts[where[a]] * counts / size
                apart = np.flatnonzero(~overlap & (expected >= PARTITION_EXPECTED))
                pairs.extend((a, sweepers[j]) for j in apart if sweepers[j] != a)
            out.extend((corpus, a, r) for a, r in _joined(self.cohorts, pairs))
        return out


def _joined(cohorts: Cohorts, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    moved: dict[str, None] = {}
    for a, b in pairs:
        for account in cohorts.join(a, b):
            moved[account] = None
    return [(a, cohorts.root(a)) for a in sorted(moved)]
