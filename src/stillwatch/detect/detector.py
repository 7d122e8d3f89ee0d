"""The distillation detector: request signals, account behaviour, campaigns, and the default
policy that turns them into the spec's actions. The gateway and `stillwatch detect` run this
same object: `decide` before an exchange, `observe` once the request is sent on, `record`
after the exchange.

`decide` is on every request's path, so it reads state and scans the request for one signal
only (coercion, which this very response must answer); the rest of the request's signals and
its update of the account's state are `observe`'s, off that path.

Causality: `decide` sees the request in hand and everything observed before it. Campaigns are
re-clustered from the entity graph every `cluster_every` seconds of event time (not wall time),
so replaying a log gives the same campaigns as the gateway saw live, and byte-identical output
on every rerun.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

from stillwatch.detect.account import AccountState, template_bands
from stillwatch.detect.base import ALLOW, Decision, RequestContext
from stillwatch.detect.campaigns import (
    SIGNUP_BUCKET,
    BackgroundClusterer,
    CampaignState,
    EntityGraph,
    campaign_id_for,
    subnet_of,
)
from stillwatch.detect.cohorts import PartitionTracker, SyncTracker
from stillwatch.detect.reasons import campaign_reason, feature_reasons
from stillwatch.detect.risk import RiskModel
from stillwatch.detect.shared import RedisShare
from stillwatch.detect.signals import Coercion, RequestSignals, SignalExtractor
from stillwatch.events import Account, Campaign, RequestEvent, format_ts, parse_ts

PROTECTED_TIERS = ("enterprise",)
_OBSERVED = object()  # a decided request whose part of the state is in
TEMPLATE_SHARE = 0.05  # never blocked automatically: review instead


@dataclass
class DetectionSettings:
    """The default policy (docs/detection.md). Thresholds on the account risk come from the
    risk model (fit, then calibrated); these settings say what each level does."""

    cluster_every: float = 600.0  # seconds of event time between re-clusterings
    campaign_min_members: int = 3
    campaign_threshold: float = 0.5  # mean member risk that makes a cluster a campaign
    campaign_block: float = 0.9  # mean member risk of a large campaign that blocks members
    campaign_block_members: int = 10
    block_min_requests: int = 20
    protected_tiers: tuple[str, ...] = PROTECTED_TIERS
    end_user_coercion_limit: int = 2  # coercing requests before one end user is refused
    coercion_min: int = 3  # coercing requests, and their share, that flag an account alone
    coercion_share: float = 0.2
    unrelated_min: int = 3  # follow-ups that are unrelated corpus items, and their share
    unrelated_share: float = 0.2
    seed: int = 42


@dataclass
class _Account:
    state: AccountState = field(default_factory=AccountState)
    tier: str | None = None
    risk: float = 0.0
    campaign: str | None = None
    reasons: tuple[tuple[int, str | None], tuple[str, ...]] | None = None
    end_user_coercion: dict[str, int] = field(default_factory=dict)


class DistillationDetector:
    name = "distillation"

    def __init__(
        self,
        model: RiskModel | None = None,
        signals: SignalExtractor | None = None,
        accounts: Mapping[str, Account] | None = None,
        settings: DetectionSettings | None = None,
        share: RedisShare | None = None,
        clusterer: BackgroundClusterer | None = None,
    ) -> None:
        self.model = model or RiskModel.load()
        self.signals = signals or SignalExtractor()
        self.meta = accounts if accounts is not None else {}
        self.settings = settings or DetectionSettings()
        self.graph = EntityGraph()
        self.sync = SyncTracker()
        self.partition = PartitionTracker()
        self.campaigns: dict[str, CampaignState] = {}
        self._accounts: dict[str, _Account] = {}
        # decided requests not yet recorded: their early coercion signal, until observed
        self._pending: OrderedDict[str, Coercion | object] = OrderedDict()
        self._model_release: dict[str, float] = {}
        self._next_cluster: float | None = None
        self._now = 0.0
        self.share = share  # replicas' shared state (Redis), or None for one process
        # the gateway clusters in a worker process; offline, in line (and so reproducibly)
        self.clusterer = clusterer

    # --- the three calls -----------------------------------------------------------------
    def decide(self, request: RequestContext) -> Decision:
        """What to do with this request, from the account's state so far and the one signal
        that answers this request alone (a demand for the hidden reasoning). Its own part of
        the state is added by `observe`, after the request has been sent on."""
        early = self.signals.coercion_of(request.body)
        self._pending[request.id] = early
        if len(self._pending) > 10_000:  # requests that never came back to `record`
            self._pending.popitem(last=False)
        acct = self._known(request.account_id)
        if request.tier:
            acct.tier = request.tier
        end_user = request.end_user
        if early.flag and end_user:
            acct.end_user_coercion[end_user] = acct.end_user_coercion.get(end_user, 0) + 1
            if len(acct.end_user_coercion) > 1024:
                acct.end_user_coercion.clear()
        return self._decision(request.account_id, acct, early.flag, end_user)

    def observe(self, request: RequestContext) -> None:
        """The request's part of the account's state: all its signals, behaviour, links and
        risk. The gateway calls it once the request is on its way upstream (off the
        request's latency, before its answer); offline, right after `decide`. A request
        observed here is not observed again by `record`."""
        early = self._pending.get(request.id)
        if not isinstance(early, Coercion):
            return  # not decided here, or already observed (or recorded)
        self._pending[request.id] = _OBSERVED
        self._observe(
            request.account_id,
            request.ts,
            self.signals(request.body, early),
            request.ip,
            request.conversation_id,
            request.end_user,
            request.model or request.body.get("model"),
            request.tier,
            request.user_agent,
        )

    def warm(self) -> None:
        """Load what the signals load on first use (the gateway calls it at start-up)."""
        self.signals.warm()

    def slow_signals(self, request: RequestContext) -> Callable[[], None] | None:
        """Work `observe` would otherwise do on the caller's thread for tens of milliseconds
        (the coercion signal's encoder stage, for a new text in a language the lexicon does
        not read): the gateway runs it in a worker thread first. None when there is none."""
        early = self._pending.get(request.id)
        if not isinstance(early, Coercion):
            return None
        text = self.signals.slow_text(request.body, early)
        if text is None:
            return None
        return partial(self.signals.precompute, text, early)

    def standing(self, account: str) -> Decision:
        """The account's standing as observed so far: the decision its next plain request
        would get (what the verdicts of `stillwatch detect` read after `observe`)."""
        acct = self._accounts.get(account)
        if acct is None:
            return ALLOW
        return self._decision(account, acct, False, None)

    def record(self, event: RequestEvent) -> None:
        account = event.account_id
        if account is None:
            return
        ts = parse_ts(event.ts)
        early = self._pending.pop(event.id, None)
        if early is not _OBSERVED:  # refused before `decide`, or `observe` did not run yet
            self._observe(
                account,
                ts,
                self.signals(event.request, early if isinstance(early, Coercion) else None),
                event.ip,
                event.conversation_id,
                event.end_user,
                event.model or event.request.get("model"),
                None,
                event.user_agent,
            )
        acct = self._accounts.get(account)
        if acct is not None and event.usage is not None:
            acct.state.tokens += (event.usage.prompt_tokens or 0) + (
                event.usage.completion_tokens or 0
            )
        if self.share is not None:
            if acct is not None:
                self.share.offer(account, acct.state, acct.risk)
            for other, kind, value in self.share.incoming_links():
                self._known(other)
                self.graph.link(other, kind, value)
        self._maybe_cluster(ts)

    # --- state ----------------------------------------------------------------------------
    def _observe(
        self,
        account: str,
        ts: float,
        sig: RequestSignals,
        ip: str,
        conversation: str | None,
        end_user: str | None,
        model: str | None,
        tier: str | None,
        user_agent: str | None = None,
    ) -> _Account:
        self._now = max(self._now, ts)
        acct = self._known(account)
        if tier:
            acct.tier = tier
        release = None
        if model:
            release = self._model_release.setdefault(model, ts)
        acct.state.update(ts, sig, conversation, end_user, model, release)
        link = self._link
        link(account, "ip", ip)
        subnet = subnet_of(ip)
        link(account, "subnet", subnet)
        if user_agent and subnet:  # one client program behind one network range
            link(account, "agent", f"{user_agent} @ {subnet}")
        self.sync.beat(account, ts)
        if sig.corpus is not None:
            self.partition.take(account, sig.corpus.corpus, sig.corpus.item)
        else:  # a public corpus item is no template of the account's own
            state = acct.state
            for band in template_bands(sig.template):
                seen = state.templates.get(band, 0)
                # the account's own template: it recurs, and carries a share of its traffic
                # (a sweep over a public set repeats each item, but each is a sliver)
                if seen >= 3 and seen >= TEMPLATE_SHARE * state.n:
                    link(account, "template", f"{band:016x}")
        acct.risk = self._risk(account, acct, ts)
        return acct

    def _known(self, account: str) -> _Account:
        acct = self._accounts.get(account)
        if acct is None:
            acct = self._accounts[account] = _Account()
            self._first_sight(account, acct)
        return acct

    def _link(self, account: str, kind: str, value: str | None) -> None:
        if self.graph.link(account, kind, value) and self.share is not None and value:
            self.share.link(account, kind, value)

    def _view(self, account: str, state: AccountState) -> tuple[AccountState, float]:
        """The account's whole state: ours merged with the other replicas' parts."""
        if self.share is not None:
            remote = self.share.remote.get(account)
            if remote is not None:
                return state.merged(remote[0]), remote[1]
        return state, 0.0

    def _first_sight(self, account: str, acct: _Account) -> None:
        meta = self.meta.get(account)
        if meta is None:
            return
        acct.tier = meta.tier
        self._link(account, "payment", meta.payment_fingerprint)
        if meta.created_at:
            created = parse_ts(meta.created_at)
            acct.state.created_at = created
            if meta.email_domain:  # a sign-up burst on one domain; either alone is common
                bucket = int(created // SIGNUP_BUCKET)
                self._link(account, "signup", f"{meta.email_domain}@{bucket}")

    def _risk(self, account: str, acct: _Account, now: float) -> float:
        state, _ = self._view(account, acct.state)
        if state.n < self.model.min_requests:
            return 0.0
        risk = self.model.score(state.features(now))
        # repeated demands for the hidden reasoning are a harvest whatever else the account does
        if state.coercion >= self.settings.coercion_min and (
            state.coercion >= self.settings.coercion_share * state.n
        ):
            risk = max(risk, 0.995)
        # follow-ups that are fresh items of public corpora, not questions about the answer:
        # a sweep dressed as a conversation
        if state.multi_item >= self.settings.unrelated_min and (
            state.multi_item >= self.settings.unrelated_share * state.n
        ):
            risk = max(risk, 0.99)
        return risk

    # --- policy ---------------------------------------------------------------------------
    def _decision(
        self, account: str, acct: _Account, coercing: bool, end_user: str | None
    ) -> Decision:
        s = self.settings
        model = self.model
        own = acct.risk
        camp = self.campaigns.get(acct.campaign) if acct.campaign else None
        flagged_campaign = camp is not None and self.campaign_active(camp)
        risk = max(own, camp.risk if flagged_campaign and camp else 0.0)
        protected = acct.tier in s.protected_tiers
        state = acct.state

        if own >= model.threshold or flagged_campaign:
            reasons = self._reasons(account, acct, camp if flagged_campaign else None)
            if (
                not protected
                and state.n >= s.block_min_requests
                and (
                    own >= model.block_threshold
                    or (
                        flagged_campaign
                        and camp is not None
                        and camp.risk >= s.campaign_block
                        and len(camp.members) >= s.campaign_block_members
                        and own >= model.threshold
                    )
                )
            ):
                return Decision("block", risk, "detect:block", "distillation_suspected", reasons)
            if protected:
                return Decision("review", risk, "detect:review", None, reasons)
            by_campaign = flagged_campaign and own < model.threshold
            rule = "detect:campaign" if by_campaign else "detect:risk"
            return Decision("throttle", risk, rule, None, reasons)
        if end_user and acct.end_user_coercion.get(end_user, 0) > s.end_user_coercion_limit:
            return Decision(
                "block",
                own,
                "detect:end_user",
                "reasoning_extraction",
                (
                    f"end user {end_user} asked for the model's hidden reasoning "
                    f"{acct.end_user_coercion[end_user]} times",
                ),
                scope="end_user",
            )
        if coercing:
            return Decision(
                "degrade",
                own,
                "detect:coercion",
                None,
                ("the request asks for the model's internal reasoning; reasoning withheld",),
                scope="request",
            )
        if own >= model.threshold * 0.5 and state.n >= model.min_requests:
            return Decision(risk=risk, rule="detect:watch")
        return Decision(risk=risk) if risk else ALLOW

    def _reasons(
        self, account: str, acct: _Account, camp: CampaignState | None
    ) -> tuple[str, ...]:
        key = (acct.state.n.bit_length(), camp.campaign_id if camp else None)
        if acct.reasons is not None and acct.reasons[0] == key:
            return acct.reasons[1]  # refreshed as the account doubles its requests
        out: list[str] = []
        if camp is not None:
            out.append(campaign_reason(camp))
        view, _ = self._view(account, acct.state)
        x = view.features(self._now)
        out.extend(feature_reasons(view, x, self.model.contributions(x), self._now))
        out.append(f"account risk {acct.risk:.3f} (threshold {self.model.threshold:.3f})")
        acct.reasons = (key, tuple(out[:5]))
        return acct.reasons[1]

    # --- campaigns ------------------------------------------------------------------------
    def _maybe_cluster(self, ts: float) -> None:
        if self._next_cluster is None:
            self._next_cluster = ts + self.settings.cluster_every
            return
        if self.clusterer is not None and (done := self.clusterer.ready()) is not None:
            self._apply(*done)
        if ts < self._next_cluster:
            return
        self._next_cluster = ts + self.settings.cluster_every
        self._link_cohorts(ts)
        if not self.graph.dirty and not self.campaigns:
            return
        if self.clusterer is not None:
            self.clusterer.submit(self.graph, ts)
        else:
            self.cluster(ts)

    def _link_cohorts(self, now: float) -> None:
        """Accounts that moved in lockstep, or split a corpus, since the last tick."""
        for account, cohort in self.sync.tick(now):
            self._link(account, "sync", cohort)
        corpus = self.signals.corpus
        sizes = corpus.corpora if corpus is not None else {}
        for name, account, cohort in self.partition.tick(sizes, now):
            self._link(account, "partition", f"{name}:{cohort}")

    def cluster(self, now: float) -> None:
        """Re-cluster and re-score campaigns from what has been seen up to `now`."""
        self._apply(self.graph.communities(seed=self.settings.seed), now)

    def _apply(self, groups: list[list[str]], now: float) -> None:
        s = self.settings
        old_of = {a: c.campaign_id for c in self.campaigns.values() for a in c.members}
        fresh: dict[str, CampaignState] = {}
        for members in groups:
            if len(members) < s.campaign_min_members:
                continue
            votes: dict[str, int] = {}
            for a in members:
                if a in old_of:
                    votes[old_of[a]] = votes.get(old_of[a], 0) + 1
            cid = max(sorted(votes), key=lambda c: votes[c]) if votes else campaign_id_for(members)
            if cid in fresh:  # an old campaign split: the larger part keeps the name
                cid = campaign_id_for(members)
            old = self.campaigns.get(cid)
            views = [self._member(a) for a in members]
            judged = [risk for n, _, risk in views if n >= self.model.min_requests]
            risk = sum(judged) / len(judged) if len(judged) >= s.campaign_min_members else 0.0
            camp = CampaignState(
                cid,
                set(members),
                min((first for n, first, _ in views if n), default=now),
                old.detected_at if old else None,
                risk,
            )
            if camp.detected_at is None and risk >= s.campaign_threshold:
                camp.detected_at = now
            if camp.detected_at is not None:
                evidence, indicators = self.graph.shared_evidence(members)
                camp.evidence = [
                    f"mean account risk {risk:.2f} over {len(judged)} active members",
                    *evidence,
                ]
                camp.indicators = indicators
            fresh[cid] = camp
        for acct in self._accounts.values():
            acct.campaign = None
        for cid, camp in fresh.items():
            for a in camp.members:
                self._accounts[a].campaign = cid
        self.campaigns = fresh

    def _member(self, account: str) -> tuple[int, float, float]:
        """(requests, first seen, risk) of a campaign member, across replicas."""
        acct = self._accounts[account]
        state, remote_risk = self._view(account, acct.state)
        return state.n, state.first_ts, max(acct.risk, remote_risk)

    # --- output ---------------------------------------------------------------------------
    def campaign_of(self, account: str) -> str | None:
        acct = self._accounts.get(account)
        if acct is None or acct.campaign is None:
            return None
        camp = self.campaigns.get(acct.campaign)
        return acct.campaign if camp is not None and camp.detected_at is not None else None

    def close(self) -> None:
        """Stops the clustering worker and publishes the last state (the gateway's shutdown)."""
        if self.clusterer is not None:
            self.clusterer.close()
        if self.share is not None:
            self.share.close()

    def campaign_active(self, camp: CampaignState) -> bool:
        return camp.detected_at is not None and camp.risk >= self.settings.campaign_threshold

    def campaign_records(self) -> list[Campaign]:
        out = []
        for camp in sorted(self.campaigns.values(), key=lambda c: c.campaign_id):
            if camp.detected_at is None:
                continue
            out.append(
                Campaign(
                    campaign_id=camp.campaign_id,
                    accounts=sorted(camp.members),
                    first_seen=format_ts(camp.first_seen),
                    detected_at=format_ts(camp.detected_at),
                    evidence=list(camp.evidence),
                    indicators=dict(camp.indicators),
                )
            )
        return out

    def snapshot(self, account: str, now: float) -> list[float] | None:
        acct = self._accounts.get(account)
        return acct.state.features(now) if acct is not None else None
