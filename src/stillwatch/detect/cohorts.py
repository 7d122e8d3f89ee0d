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
  shares none where six or more were expected, and whose items interleave (slices dealt out
  in turn, not two stretches of the corpus as two people splitting a benchmark would take),
  took its slices from one plan, when the two also stand apart from the same other accounts
  and step through the corpus at the same stride: every member of a plan avoids every other
  and is dealt alike, while two plans dealt over one corpus miss each other only here and
  there, by arithmetic, and must not merge.

Pairs found are merged into cohorts (union-find, the smallest account id names a cohort, so
the names do not depend on the order pairs were found in); an account holds the entity of each
cohort it has belonged to, and a cohort's entity weighs the same however many hold it: every
tie in it was checked pair by pair, unlike a shared address that anyone may use.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import numpy as np

from stillwatch.watermark.hashing import mix64

SYNC_BUCKET = 10.0  # seconds: a wave of one orchestrator lands within a bucket or two
SYNC_WINDOW = 3 * 3600.0
SYNC_MIN_BUCKETS = 10
SYNC_MAX_DENSITY = 0.2  # active in more of the window's buckets than this: always on
SYNC_MAX_RUNS = 0.5  # more of its buckets followed by another than this: busy, not in waves
SYNC_ROWS, SYNC_BANDS = 4, 8
SYNC_AGREEMENT = 0.5  # share of the signature two accounts must agree on
SYNC_MAX_ACCOUNTS = 4096  # compared in one tick at most (the busiest first): a bounded pause
PARTITION_MIN_ITEMS = 20
PARTITION_EXPECTED = 6.0  # shared items two independent sweeps would have (P(none) = 0.25%)
PARTITION_MIXING = 0.5  # share of the possible alternations between the two sorted slices
PARTITION_AGREEMENT = 0.8  # Jaccard of the sets of accounts each of a pair stands apart from
PARTITION_EVERY = 3600.0  # seconds of event time between two looks
PARTITION_STRIDE = 0.15  # how far apart the two slices' typical gaps may be (relative)
PARTITION_MAX_ITEMS = 1024  # items remembered per account and corpus
PARTITION_MAX_HOLDERS = 32  # an item taken by more accounts is a popular one: not tracked
PARTITION_MAX_SWEEPERS = 512  # per corpus and look, the largest sweeps: a bounded pause

_WINDOW_BUCKETS = int(SYNC_WINDOW // SYNC_BUCKET)
_SEEDS = (
    np.arange(1, SYNC_ROWS * SYNC_BANDS + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
)


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
        eligible = []
        for account in self.active:
            seen = self.buckets[account]
            while seen and seen[0] <= lo:
                seen.popleft()
            if SYNC_MIN_BUCKETS <= len(seen) <= SYNC_MAX_DENSITY * _WINDOW_BUCKETS and (
                _runs(seen) <= SYNC_MAX_RUNS
            ):
                eligible.append((-len(seen), account))
        self.active.clear()
        names = [a for _, a in sorted(eligible)[:SYNC_MAX_ACCOUNTS]]
        sigs = [self.signature(self.buckets[a]) for a in names]
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
        return mix64(arr[None, :] ^ _SEEDS[:, None]).min(axis=1)

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


def _runs(buckets: deque[int]) -> float:
    """Share of the active buckets followed by an active one: near 1 for an account busy
    for a stretch (a nightly batch job), low for one that fires in waves."""
    arr = np.fromiter(buckets, dtype=np.int64)
    return float(np.mean(np.diff(arr) == 1)) if arr.size > 1 else 0.0


def _stride(items: set[int]) -> float:
    """The typical gap between consecutive items of a slice: one plan deals every member the
    same stride, two plans over one corpus rarely share it."""
    return float(np.median(np.diff(np.sort(np.fromiter(items, dtype=np.int64)))))


def _mixing(a: set[int], b: set[int]) -> float:
    """How finely two disjoint sets of item numbers interleave: alternations between them in
    sorted order, as a share of the most there can be. Slices dealt out in turn (or drawn at
    random) mix; two runs over different stretches of a corpus (a benchmark's first and
    second half) do not, and that is how people split work too."""
    items = np.fromiter([*a, *b], dtype=np.int64, count=len(a) + len(b))
    side = np.repeat(np.array([0, 1], dtype=np.int8), [len(a), len(b)])
    switches = int(np.count_nonzero(np.diff(side[np.argsort(items, kind="stable")])))
    return switches / max(1, 2 * min(len(a), len(b)))


class PartitionTracker:
    """Which corpus items each account took, whom it shares one with, and sweeps that avoid
    each other by plan. Overlaps are recorded as items are taken, so a tick only compares the
    sizes of the sweeps that grew."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, set[int]]] = {}  # corpus -> account -> items
        self.holders: dict[tuple[str, int], list[str]] = {}  # (corpus, item) -> accounts
        self.overlaps: dict[tuple[str, str], set[str]] = {}  # (corpus, account) -> accounts
        self.sweepers: dict[str, set[str]] = {}  # corpus -> accounts with enough items
        self.changed: set[tuple[str, str]] = set()  # (corpus, sweeper) grown since the tick
        self.cohorts = Cohorts()
        self._next = float("-inf")

    def take(self, account: str, corpus: str, item: int) -> None:
        mine = self.items.setdefault(corpus, {}).setdefault(account, set())
        if item in mine or len(mine) >= PARTITION_MAX_ITEMS:
            return
        mine.add(item)
        who = self.holders.setdefault((corpus, item), [])
        if who:
            shared = self.overlaps.setdefault((corpus, account), set())
            for other in who:
                shared.add(other)
                self.overlaps.setdefault((corpus, other), set()).add(account)
        if len(who) < PARTITION_MAX_HOLDERS:
            who.append(account)
        if len(mine) >= PARTITION_MIN_ITEMS:
            self.sweepers.setdefault(corpus, set()).add(account)
            self.changed.add((corpus, account))

    def tick(self, sizes: dict[str, int], now: float) -> list[tuple[str, str, str]]:
        """(corpus, account, cohort) for every account whose cohort in a corpus changed.
        Runs at most once per PARTITION_EVERY seconds of event time: a sweep takes days."""
        if now < self._next:
            return []
        self._next = now + PARTITION_EVERY
        out: list[tuple[str, str, str]] = []
        corpora = sorted({c for c, _ in self.changed})
        self.changed.clear()
        for corpus in corpora:
            size = sizes.get(corpus, 0)
            taken = self.items[corpus]
            largest = sorted(self.sweepers.get(corpus, ()), key=lambda a: (-len(taken[a]), a))
            sweepers = sorted(largest[:PARTITION_MAX_SWEEPERS])
            if size > 0 and len(sweepers) >= 3:
                out.extend((corpus, a, r) for a, r in self._cohorts_in(corpus, size, sweepers))
        return out

    def _cohorts_in(self, corpus: str, size: int, sweepers: list[str]) -> list[tuple[str, str]]:
        """Pairs apart by plan: they share no item where six were expected, they interleave,
        and they stand apart from the same others (two members of one plan avoid each other
        and everyone in it; a pair from two plans that miss each other by luck does not)."""
        taken = self.items[corpus]
        counts = np.array([len(taken[a]) for a in sweepers], dtype=np.float64)
        where = {a: i for i, a in enumerate(sweepers)}
        overlap = np.zeros((len(sweepers), len(sweepers)), dtype=bool)
        for i, a in enumerate(sweepers):
            for other in self.overlaps.get((corpus, a), ()):
                j = where.get(other)
                if j is not None:
                    overlap[i, j] = True
        apart = (np.outer(counts, counts) / size >= PARTITION_EXPECTED) & ~overlap
        np.fill_diagonal(apart, False)
        profile = (apart | np.eye(len(sweepers), dtype=bool)).astype(np.float32)
        shared = profile @ profile.T
        sizes_ = profile.sum(axis=1)
        agree = shared / (sizes_[:, None] + sizes_[None, :] - shared)
        candidates = np.triu(apart & (agree >= PARTITION_AGREEMENT))
        candidates &= (sizes_ >= 3)[:, None]  # a plan of three accounts at least
        pairs = []
        gaps: dict[str, float] = {}
        for i, j in zip(*np.nonzero(candidates), strict=True):
            a, b = sweepers[i], sweepers[j]
            if self.cohorts.root(a) == self.cohorts.root(b):
                continue
            ga = gaps[a] if a in gaps else gaps.setdefault(a, _stride(taken[a]))
            gb = gaps[b] if b in gaps else gaps.setdefault(b, _stride(taken[b]))
            if abs(ga - gb) <= PARTITION_STRIDE * max(ga, gb) and (
                _mixing(taken[a], taken[b]) >= PARTITION_MIXING
            ):
                pairs.append((a, b))
        return _joined(self.cohorts, pairs)


def _joined(cohorts: Cohorts, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    moved: dict[str, None] = {}
    for a, b in pairs:
        for account in cohorts.join(a, b):
            moved[account] = None
    return [(a, cohorts.root(a)) for a in sorted(moved)]
