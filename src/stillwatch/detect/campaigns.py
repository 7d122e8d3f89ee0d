"""Campaigns across accounts: an entity graph and community detection, off the request path.

Accounts are linked through what they share: client IPs and their /24 (IPv6 /64), payment
fingerprints, rare e-mail domains, sign-up bursts, a user agent within a network range,
recurring prompt templates,
and the cohorts of `stillwatch.detect.cohorts` (activity in lockstep, one corpus split between
accounts). The graph is
bipartite (accounts and entities), so a proxy address shared by fifty accounts costs fifty
edges, not 1,225. Each edge weighs the inverse log of how many accounts share the entity,
so a university NAT or a free-mail domain says little while a payment card shared by six
accounts says a lot; a cohort, whose every tie was checked pair by pair, weighs the same
however large it is. Leiden (igraph's own, seeded) finds the communities; accounts in one
community form a candidate campaign, and its risk is what its members show together.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import igraph

log = logging.getLogger("stillwatch.detect.campaigns")

MAX_ENTITY_ACCOUNTS = 400  # an entity more common than this links nothing (a CDN, gmail.com)
MAX_ENTITIES_PER_ACCOUNT = 96
SIGNUP_BUCKET = 6 * 3600.0
# an entity links accounts once this many share it: a shared card or proxy address at two,
# a sign-up window on one e-mail domain only as a burst of ten (a few people signing up with
# gmail.com on the same afternoon is no evidence); a sign-up burst alone (weight 0.5) does
# not tie an account to a campaign: it needs a shared address, card or template too
MIN_HOLDERS = {"signup": 10, "template": 3}
RESOLUTION = 0.1  # below 1: Leiden keeps a campaign whole instead of splitting it by subnet
MIN_TIE = 0.3  # e.g. one IP shared with up to 27 others, or one payment method
KINDS_WEIGHT = {
    "ip": 1.0, "subnet": 0.6, "payment": 2.0, "signup": 0.5, "template": 1.0,
    # one user agent behind one /24 (IPv6 /64): the same client program on the same network
    # range. A user agent alone is no tie: most people share a handful of them
    "agent": 0.5,
    "sync": 1.0, "partition": 1.0,
}
COHORT_KINDS = ("sync", "partition")  # checked pair by pair: not diluted by their size


def subnet_of(ip: str) -> str | None:
    """The /24 of an IPv4 address or the /64 of an IPv6 one."""
    if ":" not in ip:
        head, _, _ = ip.rpartition(".")
        return f"{head}.0/24" if head else None
    try:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    except ValueError:
        return None


@dataclass
class CampaignState:
    campaign_id: str
    members: set[str]
    first_seen: float
    detected_at: float | None = None
    risk: float = 0.0
    evidence: list[str] = field(default_factory=list)
    indicators: dict[str, list[str]] = field(default_factory=dict)


class EntityGraph:
    """Who shares what. Bounded: entities per account and accounts per entity are capped."""

    def __init__(self) -> None:
        self.accounts_of: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.entities_of: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self.shared: set[tuple[str, str]] = set()  # entities held by two accounts or more
        self.common: set[tuple[str, str]] = set()  # entities too common to link anything
        self.dirty = False
        self._cache: dict[tuple[str, ...], list[list[str]]] = {}

    def link(self, account: str, kind: str, value: str | None) -> bool:
        """Records that `account` holds the entity; True when that is new."""
        if not value:
            return False
        key = (kind, value)
        mine = self.entities_of[account]
        if key in mine or key in self.common or len(mine) >= MAX_ENTITIES_PER_ACCOUNT:
            return False
        holders = self.accounts_of[key]
        if len(holders) >= MAX_ENTITY_ACCOUNTS:  # too common: forget it everywhere
            self.common.add(key)
            for a in holders:
                self.entities_of[a].discard(key)
            del self.accounts_of[key]
            self.shared.discard(key)
            self.dirty = True
            return False
        holders.add(account)
        mine.add(key)
        if len(holders) >= MIN_HOLDERS.get(kind, 2):
            self.shared.add(key)
            self.dirty = True
        return True

    def snapshot(self) -> Snapshot:
        """The shared entities and their holders, sorted: all clustering needs, picklable."""
        return [(key, sorted(self.accounts_of[key])) for key in sorted(self.shared)]

    def communities(self, seed: int = 42) -> list[list[str]]:
        """Communities of at least two accounts, each sorted, in a deterministic order."""
        self.dirty = False
        groups, self._cache = find_communities(self.snapshot(), seed, self._cache)
        return groups

    def shared_evidence(self, members: list[str]) -> tuple[list[str], dict[str, list[str]]]:
        """What the members share, in words and as indicators."""
        inside = set(members)
        counts: dict[tuple[str, str], int] = {}
        for a in members:
            for key in self.entities_of.get(a, ()):
                counts[key] = counts.get(key, 0) + 1
        by_kind: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for (kind, value), c in counts.items():
            if c >= 2:
                outside = len(self.accounts_of[(kind, value)] - inside)
                by_kind[kind].append((c - outside, value))
        words = {
            "ip": "IP addresses",
            "subnet": "network ranges",
            "payment": "payment methods",
            "signup": "sign-up bursts on one e-mail domain",
            "template": "prompt templates",
            "agent": "user agents within one network range",
            "sync": "cohorts active in lockstep (the same 10-second buckets, wave after wave)",
            "partition": "cohorts taking disjoint slices of one public corpus",
        }
        evidence = []
        indicators: dict[str, list[str]] = {}
        for kind in ("payment", "ip", "subnet", "template", "sync", "partition", "agent",
                     "signup"):
            items = sorted(by_kind.get(kind, []), reverse=True)
            if not items:
                continue
            evidence.append(
                f"{len(members)} accounts share {len(items)} {words[kind]}"
                f" (top: {items[0][1]} used by {counts[(kind, items[0][1])]})"
            )
            indicators[kind] = [v for _, v in items[:50]]
        return evidence, indicators


def campaign_id_for(members: list[str]) -> str:
    digest = hashlib.blake2b("\n".join(members[:8]).encode(), digest_size=5).hexdigest()
    return f"camp_{digest}"


Snapshot = list[tuple[tuple[str, str], list[str]]]


def find_communities(
    snap: Snapshot, seed: int, cache: dict[tuple[str, ...], list[list[str]]]
) -> tuple[list[list[str]], dict[tuple[str, ...], list[list[str]]]]:
    """Connected components first; Leiden and the tie check only on a component that changed
    since the call that produced `cache`, so a quiet graph costs a component search. Returns
    the communities and the cache for the next call."""
    if not snap:
        return [], {}
    accounts = sorted({a for _, members in snap for a in members})
    index = {a: i for i, a in enumerate(accounts)}
    n = len(accounts)
    edges: list[tuple[int, int]] = []
    weights: list[float] = []
    for j, (key, members) in enumerate(snap):
        w = _weight(key, members)
        # sorted members: set order varies between processes; output must not
        edges.extend((index[a], n + j) for a in members)
        weights.extend([w] * len(members))
    g = igraph.Graph(n=n + len(snap), edges=edges)
    g.es["weight"] = weights
    out: list[list[str]] = []
    fresh: dict[tuple[str, ...], list[list[str]]] = {}
    for component in g.connected_components():
        members_here = [v for v in component if v < n]
        if len(members_here) < 2:
            continue
        signature = (
            *(accounts[v] for v in members_here),
            str(len(component)),
            str(sum(g.degree(component))),
        )
        kept = cache.get(signature)
        if kept is None:
            parts = _leiden(g.induced_subgraph(component), component, accounts, n, seed)
            kept = _attached_parts(parts, [snap[v - n] for v in sorted(component) if v >= n])
        fresh[signature] = kept
        out.extend(kept)
    out.sort(key=lambda m: (-len(m), m[0]))
    return out, fresh


def _weight(key: tuple[str, str], holders: list[str]) -> float:
    if key[0] in COHORT_KINDS:
        return KINDS_WEIGHT[key[0]]
    return KINDS_WEIGHT.get(key[0], 1.0) / math.log(1 + len(holders))


def _attached_parts(parts: list[list[str]], entities: Snapshot) -> list[list[str]]:
    """`_attached` members of each part (`entities`: the component's, in snapshot order),
    the parts of two members or more."""
    weight_of: dict[tuple[str, str], float] = {}
    holders_of: dict[tuple[str, str], set[str]] = {}
    entities_of: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for key, members in entities:
        weight_of[key] = _weight(key, members)
        holders_of[key] = set(members)
        for a in members:
            entities_of[a].append(key)
    out = []
    for p in parts:
        kept = _attached(p, entities_of, holders_of, weight_of)
        if len(kept) >= 2:
            out.append(kept)
    return out


def _attached(
    members: list[str],
    entities_of: dict[str, list[tuple[str, str]]],
    holders_of: dict[tuple[str, str], set[str]],
    weight_of: dict[tuple[str, str], float],
) -> list[str]:
    """Only the members tied to another member by MIN_TIE of shared entities: a node that
    Leiden placed here for want of anywhere better is not a campaign member."""
    inside = set(members)
    kept = []
    for a in members:
        tie = sum(
            weight_of[key]
            for key in entities_of.get(a, ())
            if len(holders_of[key] & inside) >= 2
        )
        if tie >= MIN_TIE:
            kept.append(a)
    return kept


def _leiden(
    sub: igraph.Graph, component: list[int], accounts: list[str], n: int, seed: int
) -> list[list[str]]:
    """Leiden on the RB configuration objective (modularity at `RESOLUTION`), igraph's C
    implementation: about fourteen times faster than leidenalg's on these graphs. igraph
    draws from the generator it is given, so a fresh one seeded here makes the answer
    depend on the graph alone."""
    if len(component) <= 3:
        return [sorted(accounts[v] for v in component if v < n)]
    igraph.set_random_number_generator(random.Random(seed))
    part = sub.community_leiden(
        objective_function="modularity",
        weights="weight",
        resolution=RESOLUTION,
        n_iterations=2,
    )
    out = []
    for community in part:
        members = sorted(accounts[component[v]] for v in community if component[v] < n)
        if len(members) >= 2:
            out.append(members)
    return out


_WORKER_CACHE: dict[tuple[str, ...], list[list[str]]] = {}


def _communities_in_worker(snap: Snapshot, seed: int) -> list[list[str]]:
    global _WORKER_CACHE
    groups, _WORKER_CACHE = find_communities(snap, seed, _WORKER_CACHE)
    return groups


class BackgroundClusterer:
    """Leiden holds the GIL, so a thread would still stall the gateway's event loop: the
    clustering runs in one worker process, fed a snapshot of the shared entities."""

    def __init__(self, seed: int = 42) -> None:
        self.seed = seed
        self._pool: Any = None  # started on the first round: most processes never need it
        self._future: Any = None
        self._at = 0.0

    def submit(self, graph: EntityGraph, now: float) -> bool:
        if self._future is not None:
            return False  # the previous round is still running; the next tick will retry
        if self._pool is None:
            from concurrent.futures import ProcessPoolExecutor
            from multiprocessing import get_context

            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
        graph.dirty = False
        self._future = self._pool.submit(_communities_in_worker, graph.snapshot(), self.seed)
        self._at = now
        return True

    def ready(self) -> tuple[list[list[str]], float] | None:
        """The communities of the last round and the event time it was taken at, once."""
        if self._future is None or not self._future.done():
            return None
        future, self._future = self._future, None
        try:
            return future.result(), self._at
        except Exception:
            log.exception("campaign clustering failed; retrying next round")
            return None

    def wait(self) -> tuple[list[list[str]], float] | None:
        if self._future is not None:
            self._future.result()
        return self.ready()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
