"""The decision hook: enforce and shadow modes, the time budget, allow-lists, degrade."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from stillwatch.detect import Decision, RequestContext
from stillwatch.events import RequestEvent

from helpers import start_gateway

MSGS = [{"role": "user", "content": "hi"}]


class ScriptedDetector:
    """Returns a fixed decision per account and remembers what it was shown."""

    def __init__(
        self, decisions: dict[str, Decision], delay: float = 0.0, async_delay: float | None = None
    ) -> None:
        self.decisions = decisions
        self.delay = delay
        self.async_delay = async_delay
        self.seen: list[RequestContext] = []
        self.recorded: list[RequestEvent] = []

    def decide(self, request: RequestContext):
        self.seen.append(request)
        decision = self.decisions.get(request.account_id, Decision())
        if self.delay:
            time.sleep(self.delay)
        if self.async_delay is not None:

            async def later() -> Decision:
                await asyncio.sleep(self.async_delay)
                return decision

            return later()
        return decision

    def record(self, event: RequestEvent) -> None:
        self.recorded.append(event)


def post(gw, key: str, **body):
    return httpx.post(
        gw.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "mock-reason", "messages": MSGS, **body},
    )


@pytest.fixture
def detector() -> ScriptedDetector:
    return ScriptedDetector(
        {
            "blocked": Decision(
                action="block",
                risk=0.99,
                rule="campaign:c1",
                reasons=("shared payment fingerprint with 40 accounts",),
            ),
            "challenged": Decision(action="challenge", risk=0.8, rule="risk>0.8"),
            "reviewed": Decision(action="review", risk=0.6, rule="risk>0.5"),
            "degraded": Decision(action="degrade", risk=0.7, rule="coercion"),
            "throttled": Decision(action="throttle", risk=0.7, rule="volume"),
        }
    )


def test_enforce_mode_applies_each_action(tmp_path: Path, mock_upstream, detector) -> None:
    gw = start_gateway(
        tmp_path,
        mock_upstream.url,
        detector=detector,
        tiers={"default": {"account": {"requests": "100/min"}}},
    )
    try:
        keys = {
            a: gw.account(a)
            for a in ("blocked", "challenged", "reviewed", "degraded", "throttled", "clean")
        }
        r = post(gw, keys["blocked"])
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "access_blocked"
        # nothing of the detector's state leaks: no risk, rule or reasons in headers or body
        leaked = r.text + " ".join(f"{k}:{v}" for k, v in r.headers.items())
        for secret in ("0.99", "campaign", "payment", "risk"):
            assert secret not in leaked.lower()
        assert post(gw, keys["challenged"]).json()["error"]["code"] == "verification_required"
        assert post(gw, keys["reviewed"]).status_code == 200
        degraded = post(gw, keys["degraded"], n=3, logprobs=True, max_tokens=5000).json()
        assert len(degraded["choices"]) == 1
        assert "reasoning_content" not in degraded["choices"][0]["message"]
        clean = post(gw, keys["clean"]).json()
        assert "reasoning_content" in clean["choices"][0]["message"]
        # throttle: a tenth of the account's 100/min, so the 11th request in a burst is refused
        statuses = [post(gw, keys["throttled"]).status_code for _ in range(12)]
        assert statuses.count(200) == 10 and statuses[-1] == 429
        events = {e.account_id: e for e in gw.flush() if e.account_id != "throttled"}
        assert events["blocked"].action == "block" and events["blocked"].risk == 0.99
        assert events["blocked"].rule == "campaign:c1"
        assert events["reviewed"].action == "review"
        assert events["degraded"].action == "degrade"
        assert events["degraded"].response.reasoning is None
        assert events["clean"].action == "allow"
        assert {e.account_id for e in detector.recorded} >= {"clean", "reviewed", "blocked"}
        throttled = [e for e in gw.flush() if e.account_id == "throttled"]
        assert throttled[-1].action == "throttle" and throttled[-1].rule.startswith("throttle:")
    finally:
        gw.stop()


def test_degraded_stream_withholds_reasoning(tmp_path: Path, mock_upstream, detector) -> None:
    gw = start_gateway(tmp_path, mock_upstream.url, detector=detector)
    try:
        key = gw.account("degraded")
        for model in ("mock-reason", "mock-think"):
            with httpx.stream(
                "POST",
                gw.url + "/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={"model": model, "messages": MSGS, "stream": True},
            ) as r:
                body = b"".join(r.iter_bytes())
            assert b"reasoning_content" not in body and b"<think>" not in body
            assert b'"content"' in body and body.rstrip().endswith(b"[DONE]")
    finally:
        gw.stop()


def test_shadow_mode_serves_and_records_what_would_happen(
    tmp_path: Path, mock_upstream, detector
) -> None:
    gw = start_gateway(tmp_path, mock_upstream.url, detector=detector, mode="shadow")
    try:
        key = gw.account("blocked")
        assert post(gw, key).status_code == 200
        (event,) = gw.flush()
        assert event.action == "allow" and event.rule == "shadow:block" and event.risk == 0.99
    finally:
        gw.stop()


def test_allow_list_skips_the_detector(tmp_path: Path, mock_upstream, detector) -> None:
    gw = start_gateway(
        tmp_path, mock_upstream.url, detector=detector, allow_list={"accounts": ["blocked"]}
    )
    try:
        assert post(gw, gw.account("blocked")).status_code == 200
        (event,) = gw.flush()
        assert event.rule == "allow_list" and event.action == "allow"
        assert detector.seen == []
    finally:
        gw.stop()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_slow_detector_fails_open_and_is_counted(tmp_path: Path, mock_upstream, kind) -> None:
    slow = ScriptedDetector(
        {"blocked": Decision(action="block", risk=1.0)},
        delay=0.05 if kind == "sync" else 0.0,
        async_delay=0.5 if kind == "async" else None,
    )
    gw = start_gateway(tmp_path, mock_upstream.url, detector=slow, decision_budget_ms=10)
    try:
        assert post(gw, gw.account("blocked")).status_code == 200
        metrics = httpx.get(gw.url + "/metrics").text
        assert "stillwatch_decision_timeouts_total 1.0" in metrics
    finally:
        gw.stop()


def test_detector_errors_fail_open(tmp_path: Path, mock_upstream) -> None:
    class Broken:
        def decide(self, request):
            raise RuntimeError("boom")

        def record(self, event):
            raise RuntimeError("boom")

    gw = start_gateway(tmp_path, mock_upstream.url, detector=Broken())
    try:
        assert post(gw, gw.account("a")).status_code == 200
        assert len(gw.flush()) == 1  # telemetry is kept even when the detector fails
        assert "stillwatch_decision_errors_total 2.0" in httpx.get(gw.url + "/metrics").text
    finally:
        gw.stop()


def test_detector_sees_context(tmp_path: Path, mock_upstream) -> None:
    det = ScriptedDetector({})
    gw = start_gateway(tmp_path, mock_upstream.url, detector=det, trusted_proxies=["127.0.0.1/32"])
    try:
        key = gw.account("ctx", tier="enterprise", org="org-9")
        httpx.post(
            gw.url + "/v1/chat/completions",
            json={"model": "mock-small", "messages": MSGS, "user": "end-7"},
            headers={
                "Authorization": f"Bearer {key}",
                "X-Forwarded-For": "192.0.2.44",
                "User-Agent": "probe/1",
            },
        )
        (ctx,) = det.seen
        assert (ctx.account_id, ctx.org_id, ctx.tier, ctx.end_user, ctx.ip, ctx.user_agent) == (
            "ctx",
            "org-9",
            "enterprise",
            "end-7",
            "192.0.2.44",
            "probe/1",
        )
        assert ctx.body["messages"] == MSGS
    finally:
        gw.stop()


def test_allow_listed_address_skips_the_detector(tmp_path: Path, mock_upstream, detector) -> None:
    gw = start_gateway(
        tmp_path,
        mock_upstream.url,
        detector=detector,
        trusted_proxies=["127.0.0.1/32"],
        allow_list={"ips": ["198.51.100.0/24"]},
    )
    try:
        key = gw.account("blocked")
        for ip, status in (("198.51.100.7", 200), ("203.0.113.7", 403)):
            r = httpx.post(
                gw.url + "/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}", "X-Forwarded-For": ip},
                json={"model": "mock-small", "messages": MSGS},
            )
            assert r.status_code == status, ip
        assert [c.ip for c in detector.seen] == ["203.0.113.7"]
    finally:
        gw.stop()


def test_observe_runs_after_decide_while_the_request_is_upstream(
    tmp_path: Path, mock_upstream
) -> None:
    """The detector's `observe` is scheduled once the decision is made, so it runs while the
    request is upstream (before its answer is recorded) and no request waits for it; a
    failing `observe` is counted and the request is served."""

    class Observing(ScriptedDetector):
        def __init__(self) -> None:
            super().__init__({})
            self.calls: list[tuple[str, str]] = []
            self.fail = False

        def decide(self, request: RequestContext):
            self.calls.append(("decide", request.id))
            return super().decide(request)

        def observe(self, request: RequestContext) -> None:
            self.calls.append(("observe", request.id))
            if self.fail:
                raise RuntimeError("boom")

        def record(self, event: RequestEvent) -> None:
            self.calls.append(("record", event.id))

    det = Observing()
    gw = start_gateway(tmp_path, mock_upstream.url, detector=det)
    try:
        key = gw.account("obs")
        assert post(gw, key).status_code == 200
        (rid,) = {r for _, r in det.calls}
        assert det.calls == [("decide", rid), ("observe", rid), ("record", rid)]
        det.fail = True
        assert post(gw, key).status_code == 200
        assert "stillwatch_decision_errors_total 1.0" in httpx.get(gw.url + "/metrics").text
    finally:
        gw.stop()


def test_slow_signals_run_in_a_thread_and_the_record_waits_for_observe(
    tmp_path: Path, mock_upstream
) -> None:
    """A detector's slow signal work (the coercion encoder stage) runs in a worker thread, not
    on the event loop: another request is served meanwhile; the request is observed once the
    work is done, and recorded only after it is observed, even when its answer came first."""

    class Slow(ScriptedDetector):
        def __init__(self) -> None:
            super().__init__({})
            self.calls: list[tuple[str, str]] = []

        def decide(self, request: RequestContext):
            self.calls.append(("decide", request.id))
            return super().decide(request)

        def slow_signals(self, request: RequestContext):
            if request.body["messages"][0]["content"] != "slow":
                return None

            def work() -> None:
                time.sleep(0.5)
                self.calls.append(("slow", request.id))

            return work

        def observe(self, request: RequestContext) -> None:
            self.calls.append(("observe", request.id))

        def record(self, event: RequestEvent) -> None:
            self.calls.append(("record", event.id))

    det = Slow()
    gw = start_gateway(tmp_path, mock_upstream.url, detector=det)
    try:
        key = gw.account("slow")
        body = {"model": "mock-small", "messages": [{"role": "user", "content": "slow"}]}
        headers = {"Authorization": f"Bearer {key}"}
        assert httpx.post(gw.url + "/v1/chat/completions", headers=headers, json=body).is_success
        assert post(gw, key).status_code == 200  # served while the first one's work runs
        deadline = time.time() + 5
        while len(det.calls) < 7 and time.time() < deadline:
            time.sleep(0.05)
        first = det.calls[0][1]
        mine = [c for c, r in det.calls if r == first]
        assert mine == ["decide", "slow", "observe", "record"]
        other = [c for c, r in det.calls if r != first]
        assert other == ["decide", "observe", "record"]
        # the second request was recorded before the first one's slow work was done
        assert det.calls.index(("slow", first)) > max(
            i for i, (c, r) in enumerate(det.calls) if r != first and c == "record"
        )
    finally:
        gw.stop()
