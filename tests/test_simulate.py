"""The simulator: labelled, reproducible, realistic where it matters, and fair to detectors."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from itertools import pairwise
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stillwatch.cli.main import app
from stillwatch.evaluate.stats import ks_2samp
from stillwatch.events import Account, Label, RequestEvent, parse_ts, read_records
from stillwatch.simulate.attacks import STRATEGIES
from stillwatch.simulate.base import EMAIL_DOMAINS, USER_AGENTS
from stillwatch.simulate.corpora import load_corpora
from stillwatch.simulate.personas import PERSONAS
from stillwatch.simulate.scenario import load_scenario

SCENARIO = """
seed: 11
days: 3
new_model_day: 1.5
benign: {chat_user: 400, power_user: 60, student: 40, new_signup: 20, benchmark_evaluator: 4,
         app_backend: 3, enterprise_batch: 2}
attacks:
  - {strategy: naive_bulk, accounts: 1, per_hour: 40}
  - {strategy: hydra, accounts: 30, per_hour: 2, proxies: true, signup_burst_hours: 6,
     shared_payment: 0.3, shared_email_domain: 0.3, reseller: true}
  - {strategy: low_and_slow, accounts: 8, per_hour: 1}
  - {strategy: coercion, accounts: 4, per_hour: 4}
  - {strategy: capability_sweep, accounts: 4, per_hour: 4}
  - {strategy: mimicry, accounts: 60}
  - {strategy: templated, accounts: 4, per_hour: 4}
  - {strategy: model_switch, accounts: 4, per_hour: 3}
"""


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("sim")
    (root / "s.yaml").write_text(SCENARIO)
    r = CliRunner().invoke(app, ["simulate", str(root / "s.yaml"), "--out", str(root / "out")])
    assert r.exit_code == 0, r.output
    out = root / "out"
    labels = {lab.account_id: lab for lab in read_records(out / "labels.jsonl.gz", Label)}
    accounts = {a.account_id: a for a in read_records(out / "accounts.jsonl.gz", Account)}
    events = list(read_records(out / "events.jsonl.gz", RequestEvent))
    return {
        "root": root,
        "out": out,
        "labels": labels,
        "accounts": accounts,
        "events": events,
        "output": r.output,
    }


def by_persona(log: dict) -> dict[str, list[RequestEvent]]:
    out: dict[str, list[RequestEvent]] = defaultdict(list)
    for e in log["events"]:
        out[log["labels"][e.account_id].persona].append(e)
    return out


def test_every_attacker_event_belongs_to_a_labelled_campaign(log: dict) -> None:
    assert "simulating" in log["output"] and "events from" in log["output"]
    attackers = 0
    for e in log["events"]:
        lab = log["labels"][e.account_id]
        if lab.label == "attacker":
            attackers += 1
            assert lab.campaign_id
    assert attackers > 1000
    assert {lab.persona for lab in log["labels"].values()} >= {*PERSONAS, *STRATEGIES}


def test_log_is_in_time_order_and_reproducible(log: dict, tmp_path: Path) -> None:
    keys = [(parse_ts(e.ts), e.id) for e in log["events"]]
    assert keys == sorted(keys)
    r = CliRunner().invoke(app, ["simulate", str(log["root"] / "s.yaml"), "--out", str(tmp_path)])
    assert r.exit_code == 0
    import gzip

    for name in ("events", "accounts", "labels"):
        assert gzip.decompress((tmp_path / f"{name}.jsonl.gz").read_bytes()) == gzip.decompress(
            (log["out"] / f"{name}.jsonl.gz").read_bytes()
        )


def test_app_backends_interleave_many_conversations_from_few_ips(log: dict) -> None:
    events = by_persona(log)["app_backend"]
    per_account: dict[str, list[RequestEvent]] = defaultdict(list)
    for e in events:
        per_account[e.account_id].append(e)
    for evs in per_account.values():
        assert len({e.ip for e in evs}) <= 4
        assert len({e.end_user for e in evs}) > 50
        convs = [e.conversation_id for e in evs]
        switches = sum(1 for a, b in pairwise(convs) if a != b)
        multi = [c for c, n in Counter(convs).items() if n > 1]
        # conversations overlap in time: a conversation's turns are not back to back
        assert multi and switches > len(set(convs))


def test_students_and_evaluators_use_the_attack_corpora(log: dict) -> None:
    corpora = load_corpora()
    attack_texts = set(corpora.math) | set(corpora.code)
    personas = by_persona(log)
    for persona in ("student", "benchmark_evaluator"):
        firsts = {e.request["messages"][0]["content"] for e in personas[persona]}
        assert len(firsts & attack_texts) / len(firsts) > 0.9, persona


def test_benign_and_attackers_alike_where_no_strategy_says_otherwise(log: dict) -> None:
    id_form = re.compile(r"^acct_[0-9a-f]{12}$")
    kinds: dict[str, dict[str, Counter]] = {
        "benign": defaultdict(Counter),
        "attacker": defaultdict(Counter),
    }
    for account_id, lab in log["labels"].items():
        acc = log["accounts"][account_id]
        assert id_form.match(account_id)
        kinds[lab.label]["country"][acc.country] += 1
        kinds[lab.label]["route"][acc.signup_route] += 1
    ua = {"benign": Counter(), "attacker": Counter()}
    for e in log["events"]:
        ua[log["labels"][e.account_id].label][e.user_agent] += 1
    assert set(ua["attacker"]) <= set(USER_AGENTS) and set(ua["benign"]) <= set(USER_AGENTS)
    assert len(set(ua["attacker"])) >= 5
    # e-mail domains: attackers not given a throwaway domain draw from the common pool
    domains = Counter(
        log["accounts"][a].email_domain
        for a, lab in log["labels"].items()
        if lab.label == "attacker"
    )
    common = sum(n for d, n in domains.items() if d in EMAIL_DOMAINS)
    assert common / sum(domains.values()) > 0.6
    # event ids carry no label: one sequence across everyone, in time order
    assert all(re.match(r"^evt_\d{10}$", e.id) for e in log["events"][:1000])


def _gaps(events: list[RequestEvent]) -> list[float]:
    last: dict[str, float] = {}
    gaps = []
    for e in events:
        t = parse_ts(e.ts)
        if e.conversation_id in last:
            gaps.append(t - last[e.conversation_id])
        last[e.conversation_id] = t
    return gaps


def test_human_gaps_match_the_timestamped_chat_log(log: dict) -> None:
    reference = load_corpora().gaps
    simulated = _gaps(by_persona(log)["chat_user"])
    assert len(simulated) > 200
    # timestamps carry milliseconds, the log whole seconds: compare at the log's resolution
    _, p = ks_2samp([round(g) for g in simulated], [round(g) for g in reference])
    assert p > 0.01, p


def test_mimicry_matches_chat_users_volume_and_gaps(log: dict) -> None:
    personas = by_persona(log)

    def volumes(name: str) -> list[float]:
        return list(Counter(e.account_id for e in personas[name]).values())

    chat, mimic = sorted(volumes("chat_user")), sorted(volumes("mimicry"))
    assert 0.5 < (mimic[len(mimic) // 2] / chat[len(chat) // 2]) < 2.5
    _, p = ks_2samp(
        [round(g) for g in _gaps(personas["mimicry"])],
        [round(g) for g in _gaps(personas["chat_user"])],
    )
    assert p > 0.01, p


def test_strategies_define_what_they_say(log: dict) -> None:
    personas = by_persona(log)
    hydra_ips = {e.ip for e in personas["hydra"]}
    assert len({ip.rsplit(".", 1)[0] for ip in hydra_ips}) >= 5  # many /24s
    payments = Counter(
        log["accounts"][a].payment_fingerprint
        for a, lab in log["labels"].items()
        if lab.persona == "hydra"
    )
    assert payments.most_common(1)[0][1] >= 3  # a shared payment method
    assert any("tools" in e.request for e in personas["capability_sweep"])
    models = [(parse_ts(e.ts), e.model) for e in personas["model_switch"]]
    assert {m for _, m in models} == {"frontier-1", "frontier-2"}
    switch_at = min(t for t, m in models if m == "frontier-2")
    sc = load_scenario(log["root"] / "s.yaml")
    release = sc.start_ts + sc.new_model_day * 86400
    assert release <= switch_at <= release + 86400
    reseller = personas["hydra_reseller"]
    assert len({e.end_user for e in reseller}) > 50
    texts = " ".join(e.request["messages"][0]["content"] for e in personas["coercion"])
    assert (
        sum(
            w in texts
            for w in (
                "chain of thought",
                "razonamiento",
                "raisonnement",
                "Gedankenkette",
                "思维链",
                "рассуждений",
            )
        )
        >= 5
    )


def test_default_scenario_has_every_persona_and_strategy() -> None:
    sc = load_scenario()
    assert set(sc.benign) == set(PERSONAS) and sum(sc.benign.values()) >= 20_000
    assert {a.strategy for a in sc.attacks} == set(STRATEGIES)


def test_bad_scenarios_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "s.yaml"
    bad.write_text("benign: {wizard: 3}\n")
    r = CliRunner().invoke(app, ["simulate", str(bad), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "unknown personas" in r.output


def test_attack_prompts_are_mostly_unique(log: dict) -> None:
    personas = by_persona(log)
    for strategy in ("naive_bulk", "hydra", "low_and_slow", "coercion", "templated"):
        texts = [e.request["messages"][-1]["content"] for e in personas[strategy]]
        assert len(set(texts)) / len(texts) > 0.8, strategy


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "corpora"


@pytest.mark.skipif(
    not (SHARED / "benign" / "chitchat").exists(),
    reason="the shared corpora are not beside this checkout",
)
def test_gaps_match_the_full_chat_log_with_the_shared_corpora(tmp_path: Path) -> None:
    from stillwatch.simulate.corpora import chat_gaps

    (tmp_path / "s.yaml").write_text("seed: 4\ndays: 4\nbenign: {chat_user: 600}\n")
    r = CliRunner().invoke(
        app,
        [
            "simulate",
            str(tmp_path / "s.yaml"),
            "--out",
            str(tmp_path / "o"),
            "--corpora",
            str(SHARED),
        ],
    )
    assert r.exit_code == 0, r.output
    events = list(read_records(tmp_path / "o" / "events.jsonl.gz", RequestEvent))
    simulated = _gaps(events)
    reference = chat_gaps(SHARED / "benign" / "chitchat" / "dataset.2018-04.json.gz")
    assert len(simulated) > 300 and len(reference) > 10_000
    _, p = ks_2samp([round(g) for g in simulated], reference)
    assert p > 0.01, p
