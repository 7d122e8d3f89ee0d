from __future__ import annotations

from pathlib import Path

import pytest

from stillwatch.policy import PolicyError, Rate, load_policy


def test_default_policy_loads_with_tiers() -> None:
    policy = load_policy()
    assert policy.mode == "enforce"
    assert policy.tier("free").account.requests == Rate(limit=20, period=60)
    assert policy.tier("no-such-tier") == policy.tier("default")


def test_rate_forms(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("tiers:\n  default:\n    key: {requests: 100/5min burst 10, tokens: 3/s}\n")
    tier = load_policy(path).tier(None)
    assert tier.key.requests == Rate(limit=100, period=300, burst=10)
    assert tier.key.requests.interval == 3.0
    assert tier.key.tokens == Rate(limit=3, period=1)


@pytest.mark.parametrize(
    "text, where",
    [
        ("mode: loud\n", "mode"),
        ("tiers:\n  default:\n    key: {requests: lots}\n", "requests"),
        ("tiers:\n  default:\n    kee: {requests: 1/s}\n", "kee"),
        ("default_tier: gold\n", "default_tier"),
        ("trusted_proxies: [banana]\n", "trusted_proxies"),
        ("- just a list\n", "mapping"),
        ("mode: [unclosed\n", "YAML"),
    ],
)
def test_bad_policies_say_which_setting(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert where in str(info.value)
