"""Evaluation of verdicts against labels. Definitions (docs/evaluation.md says the same):

- attacker recall: flagged attacker accounts / attacker accounts; benign false-positive rate:
  flagged benign accounts / benign accounts. Both also per persona or strategy. With events,
  both count the accounts that sent at least one request; labelled accounts that sent none
  (they harvested nothing and have no verdict) are reported as silent, apart.
- campaign recall: labelled campaigns with at least one member flagged / labelled campaigns.
- campaign purity: over the predicted campaigns (verdicts' `campaign_id`), the share of their
  members that belong to the predicted campaign's majority labelled campaign (benign members
  count against it), weighted by size. 1.0 when nothing is predicted.
- extraction yield: attacker requests served before their account was flagged (all of them
  for accounts never flagged) / all attacker requests.
- requests and hours before detection: per flagged attacker, `requests_before_flag` and the time
  from its first request to `first_flagged_at`.
- benign requests affected: requests of benign accounts after they were flagged, by the
  verdict's action; and, when events carry the gateway's recorded actions, benign requests
  recorded as throttled, degraded, challenged or blocked.
- ROC over risk: one point per distinct risk threshold, with the area under the curve.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from stillwatch.events import Label, RequestEvent, Verdict, parse_ts

AFFECTING = ("throttle", "degrade", "challenge", "block")


@dataclass
class Evaluation:
    accounts: dict[str, int]
    attacker_recall: float
    benign_fpr: float
    by_persona: dict[str, dict[str, Any]]
    campaigns: dict[str, Any]
    extraction_yield: float | None
    before_detection: dict[str, Any]
    benign_affected: dict[str, Any]
    roc: dict[str, Any]
    unlabelled_verdicts: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _rate(num: int, den: int) -> float:
    return num / den if den else 0.0


def _quantiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "median": None, "p90": None, "max": None}
    s = sorted(values)

    def q(p: float) -> float:
        # nearest-rank quantile: an observed value, easy to check by hand
        k = max(0, min(len(s) - 1, int(-(-p * len(s) // 1)) - 1))
        return s[k]

    return {"n": len(s), "median": q(0.5), "p90": q(0.9), "max": s[-1]}


def roc_curve(scores: list[tuple[float, bool]], max_points: int = 1000) -> dict[str, Any]:
    """Points (fpr, tpr) from the highest threshold down, and the trapezoid area under them."""
    pos = sum(1 for _, y in scores if y)
    neg = len(scores) - pos
    points = [(0.0, 0.0)]
    if pos == 0 or neg == 0:
        return {"points": points, "auc": None}
    tp = fp = 0
    ordered = sorted(scores, key=lambda x: -x[0])
    i = 0
    while i < len(ordered):
        threshold = ordered[i][0]
        while i < len(ordered) and ordered[i][0] == threshold:
            if ordered[i][1]:
                tp += 1
            else:
                fp += 1
            i += 1
        points.append((fp / neg, tp / pos))
    auc = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in pairwise(points))
    if len(points) > max_points:  # the area is exact; the stored curve is thinned for reports
        step = (len(points) - 1) / (max_points - 1)
        points = [points[round(i * step)] for i in range(max_points)]
    return {"points": points, "auc": auc}


def evaluate(
    verdicts: Iterable[Verdict],
    labels: Iterable[Label],
    events: Iterable[RequestEvent] | None = None,
) -> Evaluation:
    verdict_of = {v.account_id: v for v in verdicts}
    notes: list[str] = []
    all_labels = list(labels)
    events_list = list(events) if events is not None else None
    silent: Counter[str] = Counter()
    if events_list is not None:
        # an account that never sent a request harvested nothing and cannot be judged: the
        # figures count the accounts in the traffic, and the silent ones are reported apart
        active = {e.account_id for e in events_list if e.account_id is not None}
        for lab in all_labels:
            if lab.account_id not in active:
                silent[lab.label] += 1
        if silent:
            notes.append(
                f"{sum(silent.values())} labelled accounts sent no request "
                f"({silent['attacker']} attacker, {silent['benign']} benign); left out"
            )
        label_of = {lab.account_id: lab for lab in all_labels if lab.account_id in active}
    else:
        label_of = {lab.account_id: lab for lab in all_labels}
    events = events_list

    attackers = [a for a, lab in label_of.items() if lab.label == "attacker"]
    benign = [a for a, lab in label_of.items() if lab.label == "benign"]
    flagged = {a for a, v in verdict_of.items() if v.flagged}

    by_persona: dict[str, dict[str, Any]] = {}
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for account, lab in label_of.items():
        groups[(lab.label, lab.persona or "unknown")].append(account)
    for (kind, persona), members in sorted(groups.items()):
        hit = sum(1 for a in members if a in flagged)
        by_persona[persona] = {
            "label": kind,
            "accounts": len(members),
            "flagged": hit,
            "rate": _rate(hit, len(members)),
        }

    # campaigns
    members_of: dict[str, list[str]] = defaultdict(list)
    for account in attackers:
        cid = label_of[account].campaign_id
        if cid:
            members_of[cid].append(account)
    detected = [c for c, m in members_of.items() if any(a in flagged for a in m)]
    predicted: dict[str, list[str]] = defaultdict(list)
    for account, v in verdict_of.items():
        if v.campaign_id:
            predicted[v.campaign_id].append(account)
    pure = total = 0
    for members in predicted.values():
        truth = Counter(
            label_of[a].campaign_id if a in label_of and label_of[a].label == "attacker" else None
            for a in members
        )
        majority = max((n for c, n in truth.items() if c is not None), default=0)
        pure += majority
        total += len(members)
    campaigns = {
        "labelled": len(members_of),
        "detected": len(detected),
        "recall": _rate(len(detected), len(members_of)),
        "predicted": len(predicted),
        "purity": pure / total if total else 1.0,
        "member_recall": {
            c: _rate(sum(1 for a in m if a in flagged), len(m))
            for c, m in sorted(members_of.items())
        },
    }

    # per-request figures need the events
    extraction_yield = None
    first_ts: dict[str, float] = {}
    requests_of: Counter[str] = Counter()
    recorded_affecting: Counter[str] = Counter()
    if events is not None:
        for ev in events:
            if ev.account_id is None or ev.action == "rejected":
                continue
            requests_of[ev.account_id] += 1
            t = parse_ts(ev.ts)
            if ev.account_id not in first_ts or t < first_ts[ev.account_id]:
                first_ts[ev.account_id] = t
            lab = label_of.get(ev.account_id)
            if lab is not None and lab.label == "benign" and ev.action in AFFECTING:
                recorded_affecting[ev.action] += 1
        harvested = total_attack = 0
        for account in attackers:
            n = requests_of.get(account, 0)
            total_attack += n
            v = verdict_of.get(account)
            if v is not None and v.flagged and v.requests_before_flag is not None:
                harvested += min(n, v.requests_before_flag)
            else:
                harvested += n
        extraction_yield = _rate(harvested, total_attack)
    else:
        notes.append("no events given: extraction yield and hours before detection not computed")

    req_before = [
        float(verdict_of[a].requests_before_flag)
        for a in attackers
        if a in flagged and verdict_of[a].requests_before_flag is not None
    ]
    hours_before = [
        (parse_ts(verdict_of[a].first_flagged_at) - first_ts[a]) / 3600
        for a in attackers
        if a in flagged and verdict_of[a].first_flagged_at and a in first_ts
    ]
    by_strategy_requests = {
        persona: _quantiles(
            [
                float(verdict_of[a].requests_before_flag)
                for a in members
                if a in flagged and verdict_of[a].requests_before_flag is not None
            ]
        )
        for (kind, persona), members in sorted(groups.items())
        if kind == "attacker"
    }

    benign_after: Counter[str] = Counter()
    for account in benign:
        v = verdict_of.get(account)
        if (
            v is not None
            and v.flagged
            and v.requests_before_flag is not None
            and events is not None
        ):
            benign_after[v.action] += max(0, requests_of.get(account, 0) - v.requests_before_flag)
    benign_affected = {
        "after_flag_by_action": dict(sorted(benign_after.items())),
        "recorded_by_gateway": dict(sorted(recorded_affecting.items())),
        "blocked_accounts": sum(
            1 for a in benign if a in verdict_of and verdict_of[a].action == "block"
        ),
    }

    scores = [
        (verdict_of[a].risk if a in verdict_of else 0.0, label_of[a].label == "attacker")
        for a in label_of
    ]
    unlabelled = sum(1 for a in verdict_of if a not in label_of)
    if unlabelled:
        notes.append(f"{unlabelled} verdicts name accounts without a label; left out")
    return Evaluation(
        accounts={
            "attacker": len(attackers),
            "benign": len(benign),
            "with_verdict": len(verdict_of),
            "silent_attacker": silent["attacker"],
            "silent_benign": silent["benign"],
        },
        attacker_recall=_rate(sum(1 for a in attackers if a in flagged), len(attackers)),
        benign_fpr=_rate(sum(1 for a in benign if a in flagged), len(benign)),
        by_persona=by_persona,
        campaigns=campaigns,
        extraction_yield=extraction_yield,
        before_detection={
            "requests": _quantiles(req_before),
            "hours": _quantiles(hours_before),
            "requests_by_strategy": by_strategy_requests,
        },
        benign_affected=benign_affected,
        roc=roc_curve(scores),
        unlabelled_verdicts=unlabelled,
        notes=notes,
    )
