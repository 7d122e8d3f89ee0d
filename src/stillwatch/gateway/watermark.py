"""The watermark key the gateway names for each request.

The deployment key by default; an account's own key once the account has been flagged (and
from then on, so that everything it harvested afterwards traces to it) or when its tier is
named in the policy. Flagged accounts are remembered in a bounded map, oldest dropped first.
"""

from __future__ import annotations

from collections import OrderedDict

from stillwatch.policy import WatermarkPolicy
from stillwatch.watermark.keys import KeyId

OFF = "off"
FLAGGING_ACTIONS = frozenset({"throttle", "degrade", "challenge", "review", "block"})


class WatermarkHandoff:
    def __init__(self, policy: WatermarkPolicy) -> None:
        self.policy = policy
        self.tiers = frozenset(policy.account_key_tiers)
        self._flagged: OrderedDict[str, None] = OrderedDict()

    def key_id(self, account_id: str, tier: str | None, action: str) -> str:
        """`action` is what detection decided, before shadow mode serves it anyway."""
        p = self.policy
        if not p.enabled:
            return OFF
        if p.account_keys == "flagged" and action in FLAGGING_ACTIONS:
            self._remember(account_id)
        own = (
            tier in self.tiers
            or p.account_keys == "always"
            or (p.account_keys == "flagged" and account_id in self._flagged)
        )
        return str(KeyId(p.key_version, account_id if own else None))

    def _remember(self, account_id: str) -> None:
        self._flagged[account_id] = None
        self._flagged.move_to_end(account_id)
        while len(self._flagged) > self.policy.remember_accounts:
            self._flagged.popitem(last=False)

    @property
    def flagged(self) -> int:
        return len(self._flagged)
