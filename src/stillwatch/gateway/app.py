"""The gateway's data plane: a plain ASGI app, because every microsecond here is on the
request path of every API call.

One exchange: read the body (capped) → authenticate → validate → reserve limits → ask the
detector → forward (streamed event by event) → settle token reservations with real usage →
hand the event to the detector and to telemetry. Every exchange, refused ones included,
becomes one request event of the spec.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import inspect
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from stillwatch.detect import AllowAllDetector, Decision, Detector, RequestContext
from stillwatch.detect.base import ALLOW
from stillwatch.events import ErrorInfo, RequestEvent, Response, Usage, format_ts, parse_ts
from stillwatch.gateway.auth import KeyRing
from stillwatch.gateway.clientip import ClientIpResolver, NetworkSet
from stillwatch.gateway.errors import ApiError
from stillwatch.gateway.limiting import LimitPlan, rate_headers, retry_after
from stillwatch.gateway.metrics import GatewayMetrics
from stillwatch.gateway.sse import SseRelay, assemble_stream, read_json_response
from stillwatch.gateway.tokens import completion_budget, prompt_tokens, text_tokens
from stillwatch.gateway.upstream_pool import (
    UpstreamError,
    UpstreamPool,
    UpstreamResponse,
    UpstreamTimeout,
)
from stillwatch.gateway.validate import validate_request
from stillwatch.gateway.watermark import WatermarkHandoff
from stillwatch.limits import Check, Limiter, LimiterUnavailable, Outcome
from stillwatch.limits.base import BucketState
from stillwatch.policy import Policy
from stillwatch.respond.reasoning import withhold_reasoning_message
from stillwatch.store.accounts import KeyInfo
from stillwatch.store.telemetry import TelemetryWriter

log = logging.getLogger("stillwatch.gateway")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

COMPLETION_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})
EVENT_TIME_HEADER = b"x-stillwatch-event-time"
END_USER_HEADER = b"x-stillwatch-end-user"
CONVERSATION_HEADER = b"x-stillwatch-conversation-id"
WATERMARK_HEADER = "x-stillwatch-watermark-key"
_WANTED = frozenset(
    {
        b"authorization",
        b"content-length",
        b"x-forwarded-for",
        b"user-agent",
        EVENT_TIME_HEADER,
        END_USER_HEADER,
        CONVERSATION_HEADER,
    }
)
_JSON = (b"content-type", b"application/json")
# Public reason codes: the only detection state a client is ever shown.
REASON_CODES = {
    "block": "access_blocked",
    "challenge": "verification_required",
    "throttle": "rate_reduced",
}


@dataclass(slots=True)
class Exchange:
    """What the gateway learns about one exchange; becomes the request event at the end."""

    id: str
    ts: float
    ip: str
    endpoint: str
    started: float
    user_agent: str | None = None
    key: KeyInfo | None = None
    body: dict[str, Any] = field(default_factory=dict)
    end_user: str | None = None
    conversation_id: str | None = None
    action: str = "allow"
    rule: str | None = None
    risk: float | None = None
    status: int = 200
    response: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    upstream_ms: float | None = None
    watermark_key_id: str | None = None
    observing: asyncio.Future[None] | None = None  # the detector's slow observe, if any


class Gateway:
    def __init__(
        self,
        *,
        policy: Policy,
        upstream_url: str,
        keyring: KeyRing,
        telemetry: TelemetryWriter,
        limiter: Limiter,
        detector: Detector | None = None,
        admin_app: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None,
        upstream_token: str | None = None,
    ) -> None:
        self.policy = policy
        self.upstream_url = upstream_url.rstrip("/")
        self.keyring = keyring
        self.telemetry = telemetry
        self.limiter = limiter
        self.detector: Detector = detector or AllowAllDetector()
        self.admin_app = admin_app
        self.upstream_token = upstream_token
        self.metrics = GatewayMetrics()
        self.metrics.add_gauge(
            "stillwatch_telemetry_pending", "Events waiting to be written", telemetry.pending
        )
        self.metrics.add_gauge(
            "stillwatch_telemetry_written", "Events written since start", lambda: telemetry.written
        )
        self.metrics.add_gauge(
            "stillwatch_telemetry_spooled", "Events parked on local disk", lambda: telemetry.spooled
        )
        self.ips = ClientIpResolver(policy.trusted_proxies)
        self.plan = LimitPlan(policy)
        self.upstream: UpstreamPool | None = None
        self._id_prefix = os.urandom(6).hex()
        self._seq = 0
        self._allow_accounts = frozenset(policy.allow_list.accounts)
        self._allow_orgs = frozenset(policy.allow_list.orgs)
        self._allow_ips = NetworkSet(policy.allow_list.ips)
        self.watermark = WatermarkHandoff(policy.watermark)
        self._budget = policy.decision_budget_ms / 1000.0
        self._observing: set[asyncio.Future[None]] = set()  # strong refs to slow observes
        self.in_flight = 0  # exchanges between arrival and their event's hand-off

    # --- lifecycle ------------------------------------------------------------------------
    async def startup(self) -> None:
        self.upstream = UpstreamPool(
            self.upstream_url,
            connect_timeout=self.policy.upstream_connect_timeout_s,
            read_timeout=self.policy.upstream_read_timeout_s,
        )
        await asyncio.to_thread(self.keyring.load)
        warm = getattr(self.detector, "warm", None)
        if warm is not None:  # models a first request would otherwise load on the loop
            await asyncio.to_thread(warm)
        self.keyring.start()
        self.telemetry.start()
        # Everything loaded so far lives as long as the process: keep it out of the cyclic
        # collector's scans, whose full passes would otherwise stall requests for milliseconds.
        gc.collect()
        gc.freeze()

    async def shutdown(self) -> None:
        await self.keyring.stop()
        if self.upstream is not None:
            await self.upstream.close()
        await self.limiter.close()
        await asyncio.to_thread(self.telemetry.close)
        close = getattr(self.detector, "close", None)
        if close is not None:
            try:
                await asyncio.to_thread(close)
            except Exception:
                log.exception("closing the detector failed")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if path in COMPLETION_PATHS:
                if scope["method"] != "POST":
                    return await _reply(send, ApiError(405, "use POST", "invalid_request_error"))
                return await self._guarded(self._completion, scope, receive, send, path)
            if path == "/v1/models":
                return await self._models(scope, receive, send)
            if path == "/healthz":
                return await _reply_raw(send, 200, b'{"status":"ok"}')
            if path == "/readyz":
                return await self._ready(send)
            if path == "/metrics":
                body = self.metrics.render()
                return await _reply_raw(send, 200, body, b"text/plain; version=0.0.4")
            if path.startswith("/admin") and self.admin_app is not None:
                return await self.admin_app(scope, receive, send)
            return await _reply(
                send, ApiError(404, f"no route {path}", "invalid_request_error", code="unknown_url")
            )
        if kind == "lifespan":
            return await self._lifespan(receive, send)

    async def _guarded(
        self, handler: Any, scope: Scope, receive: Receive, send: Send, path: str
    ) -> None:
        """Run a handler; if it fails unexpectedly before answering, answer in OpenAI's shape
        instead of letting the server send a bare 500."""
        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        self.in_flight += 1
        try:
            await handler(scope, receive, tracking_send, path)
        except Exception:
            log.exception("unexpected error on %s", path)
            if not started:
                await _reply(
                    send,
                    ApiError(
                        500,
                        "The gateway failed on this request.",
                        "server_error",
                        code="internal_error",
                    ),
                )
        finally:
            self.in_flight -= 1

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _ready(self, send: Send) -> None:
        limiter_ok = await self.limiter.ping()
        ok = limiter_ok and self.telemetry.healthy and self.upstream is not None
        body = orjson.dumps(
            {
                "ready": ok,
                "limiter": limiter_ok,
                "telemetry": self.telemetry.healthy,
                "keys": len(self.keyring),
            }
        )
        await _reply_raw(send, 200 if ok else 503, body)

    # --- the exchange ---------------------------------------------------------------------
    def _new_id(self) -> str:
        self._seq += 1
        return f"req_{self._id_prefix}{self._seq:010x}"

    async def _completion(self, scope: Scope, receive: Receive, send: Send, endpoint: str) -> None:
        started = time.perf_counter()
        headers = {k: v for k, v in scope["headers"] if k in _WANTED}
        peer = scope.get("client")
        peer_ip = peer[0] if peer else None
        ex = Exchange(
            id=self._new_id(),
            ts=time.time(),
            endpoint=endpoint,
            started=started,
            ip=self.ips.resolve(peer_ip, headers.get(b"x-forwarded-for")),
        )
        ua = headers.get(b"user-agent")
        if ua is not None:
            ex.user_agent = ua.decode("latin-1")
        try:
            event_time = self._event_time(headers, peer_ip, ex)
            raw = await _read_body(
                receive, headers.get(b"content-length"), self.policy.max_body_bytes
            )
            key = self.keyring.authenticate(headers.get(b"authorization"), ex.ts)
            if key is None:
                ex.body = _parse_quietly(raw)
                anonymous = self.plan.anonymous_checks(ex.ip)
                if anonymous:
                    outcome = await self._acquire(anonymous, ex.ts, event_time)
                    if not outcome.allowed:
                        ex.action = "rate_limited"
                        return await self._refuse_limited(
                            send, ex, anonymous, outcome, "rate_limited"
                        )
                raise ApiError(
                    401,
                    "Incorrect API key provided.",
                    "invalid_request_error",
                    code="invalid_api_key",
                )
            ex.key = key
            body = _parse(raw)
            if isinstance(body, dict):
                ex.body = body
            validate_request(endpoint, body, self.policy)
        except ApiError as err:
            ex.action = "rejected"
            return await self._refuse(send, ex, err)
        ex.end_user = body.get("user") or _text(headers.get(END_USER_HEADER))
        ex.conversation_id = _text(headers.get(CONVERSATION_HEADER)) or _conversation_of(
            key.account_id, body
        )

        # limits
        reserved = prompt_tokens(body) + completion_budget(body, self.policy.default_max_tokens)
        checks = self.plan.checks(key, ex.ip, ex.end_user, reserved)
        outcome = await self._acquire(checks, ex.ts, event_time)
        if not outcome.allowed:
            ex.action = "rate_limited"
            return await self._refuse_limited(send, ex, checks, outcome, "rate_limited")
        limit_headers = rate_headers(checks, outcome)

        # detection
        decision = await self._decide(ex, key, body)
        action = decision.action
        if self.policy.mode == "shadow":
            ex.rule = f"shadow:{action}" if action != "allow" else decision.rule
            action = "allow"
        else:
            ex.rule = decision.rule
        ex.risk = decision.risk
        ex.action = action
        ex.watermark_key_id = decision.watermark_key_id or self.watermark.key_id(
            key.account_id, key.tier, decision.action
        )
        if action in ("block", "challenge"):
            await self._settle(checks, reserved, 0, ex.ts, event_time)
            return await self._refuse(
                send,
                ex,
                ApiError(
                    403,
                    _refusal_message(action),
                    "permission_error",
                    code=decision.reason_code or REASON_CODES[action],
                ),
            )
        if action == "throttle":
            tight = self.plan.throttle_checks(key, reserved)
            tight_outcome = await self._acquire(tight, ex.ts, event_time)
            if not tight_outcome.allowed:
                await self._settle(checks, reserved, 0, ex.ts, event_time)
                return await self._refuse_limited(send, ex, tight, tight_outcome, "throttle")
            checks = checks + tight
        forward = raw
        degrade = action == "degrade"
        if degrade:
            _degrade_request(body, self.policy.degrade_max_tokens)
        hide_usage = False
        if body.get("stream") is True:
            opts = body.get("stream_options")
            if not (isinstance(opts, dict) and opts.get("include_usage")):
                # ask for usage to settle the token reservation; the client never sees it
                body = {**body, "stream_options": {**(opts or {}), "include_usage": True}}
                hide_usage = True
        if degrade or hide_usage:
            forward = orjson.dumps(body)
        try:
            await self._forward(send, ex, forward, limit_headers, hide_usage, degrade)
        finally:
            used = _tokens_used(ex)
            await self._settle(checks, reserved, used, ex.ts, event_time)
            self._finish(ex)

    def _event_time(self, headers: dict[bytes, bytes], peer: str | None, ex: Exchange) -> bool:
        value = headers.get(EVENT_TIME_HEADER)
        if value is None or not self.policy.replay or not self.ips.is_trusted(peer):
            return False
        text = value.decode("latin-1")
        try:
            ex.ts = float(text) if text.replace(".", "", 1).isdigit() else parse_ts(text)
        except ValueError:
            raise ApiError(
                400,
                f"{EVENT_TIME_HEADER.decode()} is not a time: {text!r}",
                param=EVENT_TIME_HEADER.decode(),
            ) from None
        return True

    async def _acquire(self, checks: list[Check], now: float, event_time: bool) -> Outcome:
        try:
            return await self.limiter.acquire(checks, now, event_time=event_time)
        except LimiterUnavailable as exc:
            self.metrics.limiter_errors.inc()
            log.warning("limiter unavailable (%s): failing %s", exc, self.policy.redis_failure)
            allowed = self.policy.redis_failure == "open"
            retry = 0.0 if allowed else 1.0
            state = BucketState(0, 0.0, retry)
            return Outcome(allowed, tuple(state for _ in checks), now, degraded=True)

    async def _settle(
        self, checks: list[Check], reserved: int, used: int, now: float, event_time: bool
    ) -> None:
        delta = used - reserved
        if delta == 0:
            return
        deltas = [delta if c.kind == "tokens" else 0 for c in checks]
        if not any(deltas):
            return
        try:
            await self.limiter.adjust(checks, deltas, now, event_time=event_time)
        except LimiterUnavailable:
            self.metrics.limiter_errors.inc()

    async def _decide(self, ex: Exchange, key: KeyInfo, body: dict[str, Any]) -> Decision:
        if key.account_id in self._allow_accounts or (
            key.org_id and key.org_id in self._allow_orgs
        ):
            return Decision(rule="allow_list")
        if ex.ip in self._allow_ips:
            return Decision(rule="allow_list")
        ctx = RequestContext(
            id=ex.id,
            ts=ex.ts,
            account_id=key.account_id,
            ip=ex.ip,
            endpoint=ex.endpoint,
            body=body,
            api_key_id=key.key_id,
            org_id=key.org_id,
            tier=key.tier,
            end_user=ex.end_user,
            user_agent=ex.user_agent,
            model=body.get("model"),
            conversation_id=ex.conversation_id,
        )
        t0 = time.perf_counter()
        try:
            result = self.detector.decide(ctx)
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, self._budget)
        except TimeoutError:
            self.metrics.decision_timeouts.inc()
            return ALLOW
        except Exception:
            self.metrics.decision_errors.inc()
            log.exception("detector failed; allowing")
            return ALLOW
        if time.perf_counter() - t0 > self._budget:
            self.metrics.decision_timeouts.inc()
            return ALLOW
        self.metrics.decided(result.action, self.policy.mode)
        observe = getattr(self.detector, "observe", None)
        if observe is not None:
            # the request's part of the account state: once this request has been written
            # upstream (the loop runs it at this coroutine's next wait), not on its latency
            asyncio.get_running_loop().call_soon(self._observe_soon, observe, ex, ctx)
        return result

    def _observe_soon(self, observe: Any, ex: Exchange, ctx: RequestContext) -> None:
        slow = getattr(self.detector, "slow_signals", None)
        work = self._slow_work(slow, ctx) if slow is not None else None
        if work is None:
            self._observe(observe, ctx)
        else:  # a slow signal first, in a worker thread: the loop serves others meanwhile
            ex.observing = asyncio.ensure_future(self._observe_after(work, observe, ctx))
            self._observing.add(ex.observing)
            ex.observing.add_done_callback(self._observing.discard)

    def _slow_work(self, slow: Any, ctx: RequestContext) -> Any:
        try:
            return slow(ctx)
        except Exception:
            self.metrics.decision_errors.inc()
            log.exception("detector.slow_signals failed")
            return None

    async def _observe_after(self, work: Any, observe: Any, ctx: RequestContext) -> None:
        try:
            await asyncio.to_thread(work)
        except Exception:  # observe computes the signals itself
            self.metrics.decision_errors.inc()
            log.exception("detector slow signals failed")
        self._observe(observe, ctx)

    def _observe(self, observe: Any, ctx: RequestContext) -> None:
        try:
            observe(ctx)
        except Exception:
            self.metrics.decision_errors.inc()
            log.exception("detector.observe failed")

    async def _forward(
        self,
        send: Send,
        ex: Exchange,
        payload: bytes,
        limit_headers: list[tuple[bytes, bytes]],
        hide_usage: bool,
        degrade: bool,
    ) -> None:
        assert self.upstream is not None
        fwd_headers = [("Content-Type", "application/json")]
        if self.upstream_token:
            fwd_headers.append(("Authorization", f"Bearer {self.upstream_token}"))
        if ex.watermark_key_id:
            fwd_headers.append((WATERMARK_HEADER, ex.watermark_key_id))
        t0 = time.perf_counter()
        try:
            resp = await self.upstream.request(b"POST", ex.endpoint, payload, fwd_headers)
        except UpstreamTimeout:
            return await self._upstream_failed(send, ex, 504, "timeout", "the model timed out")
        except UpstreamError as exc:
            return await self._upstream_failed(
                send, ex, 502, "unavailable", f"the model is unavailable: {exc}"
            )
        content_type = resp.content_type
        base_headers = [
            (b"content-type", content_type.encode()),
            (b"x-request-id", ex.id.encode()),
            *limit_headers,
        ]
        ex.status = resp.status
        try:
            if content_type.startswith("text/event-stream"):
                await self._relay_stream(send, ex, resp, base_headers, hide_usage, degrade)
            else:
                try:
                    data = await resp.read()
                except UpstreamTimeout:
                    return await self._upstream_failed(
                        send, ex, 504, "timeout", "the model timed out"
                    )
                except UpstreamError as exc:
                    return await self._upstream_failed(
                        send, ex, 502, "unavailable", f"the model failed: {exc}"
                    )
                ex.response, ex.usage, err = read_json_response(data)
                if err is not None or resp.status >= 400:
                    ex.error = {"type": "upstream_error", "message": _err_message(err, resp.status)}
                    self.metrics.upstream_errors.labels("status").inc()
                elif degrade:
                    data = _degrade_answer(data)
                    ex.response.pop("reasoning", None)
                await send(
                    {"type": "http.response.start", "status": resp.status, "headers": base_headers}
                )
                await send({"type": "http.response.body", "body": data})
        finally:
            ex.upstream_ms = (time.perf_counter() - t0) * 1000.0
            resp.release()

    async def _relay_stream(
        self,
        send: Send,
        ex: Exchange,
        resp: UpstreamResponse,
        headers: list[tuple[bytes, bytes]],
        hide_usage: bool,
        degrade: bool,
    ) -> None:
        relay = SseRelay(hide_usage=hide_usage, withhold_reasoning=degrade)
        await send(
            {
                "type": "http.response.start",
                "status": resp.status,
                "headers": [*headers, (b"cache-control", b"no-cache")],
            }
        )
        failure: str | None = None
        try:
            async for chunk in resp.iter_chunks():
                out = relay.feed(chunk)
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
        except UpstreamTimeout:
            failure = "timeout"
        except UpstreamError as exc:
            failure = str(exc)
        tail = relay.flush()
        if failure is not None:
            self.metrics.upstream_errors.labels("stream_cut").inc()
            ex.error = {
                "type": "upstream_error",
                "message": f"the model's stream ended early ({failure})",
            }
            tail += (
                b"data: "
                + orjson.dumps(
                    {
                        "error": {
                            "message": "the model's stream ended early",
                            "type": "server_error",
                            "param": None,
                            "code": "upstream_stream_cut",
                        }
                    }
                )
                + b"\n\n"
            )
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        response, usage, err = assemble_stream(relay.events)
        if degrade:
            response.pop("reasoning", None)
        ex.response, ex.usage = response, usage
        if err is not None and ex.error is None:
            ex.error = {"type": "upstream_error", "message": _err_message(err, resp.status)}

    async def _upstream_failed(
        self, send: Send, ex: Exchange, status: int, kind: str, message: str
    ) -> None:
        self.metrics.upstream_errors.labels(kind).inc()
        err = ApiError(status, message, "server_error", code=f"upstream_{kind}")
        ex.status = status
        ex.error = {"type": "upstream_error", "message": message}
        await _reply(send, err, [(b"x-request-id", ex.id.encode())])

    # --- refusals -------------------------------------------------------------------------
    async def _refuse(
        self,
        send: Send,
        ex: Exchange,
        err: ApiError,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        ex.status = err.status
        ex.error = {"type": err.code or err.type, "message": err.message}
        try:
            await _reply(send, err, [(b"x-request-id", ex.id.encode()), *(extra or [])])
        finally:
            self._finish(ex)

    async def _refuse_limited(
        self, send: Send, ex: Exchange, checks: list[Check], outcome: Outcome, rule_prefix: str
    ) -> None:
        refused = outcome.refused_by(checks)
        wait = retry_after(outcome)
        ex.rule = f"{rule_prefix}:{refused.dimension}:{refused.kind}" if refused else rule_prefix
        headers = rate_headers(checks, outcome)
        if outcome.degraded:
            err = ApiError(
                503,
                "Rate limits cannot be checked right now; retry shortly.",
                "server_error",
                code="limits_unavailable",
            )
            headers.append((b"retry-after", b"1"))
            return await self._refuse(send, ex, err, headers)
        if math.isinf(wait):
            kind = refused.kind if refused else "tokens"
            err = ApiError(
                429,
                f"Request too large: it needs more {kind} than the "
                f"{refused.dimension if refused else ''} limit allows at once.",
                "tokens" if kind == "tokens" else "requests",
                code="request_too_large",
            )
            return await self._refuse(send, ex, err, headers)
        headers.append((b"retry-after", str(max(1, math.ceil(wait))).encode()))
        headers.append((b"retry-after-ms", str(math.ceil(wait * 1000)).encode()))
        dim = refused.dimension if refused else "account"
        kind = refused.kind if refused else "requests"
        message = f"Rate limit reached for {kind} per {dim}. Please try again in {wait:.3g}s."
        err = ApiError(429, message, kind, code="rate_limit_exceeded")
        await self._refuse(send, ex, err, headers)

    # --- the record -----------------------------------------------------------------------
    def _record(self, event: RequestEvent) -> None:
        try:
            self.detector.record(event)
        except Exception:
            self.metrics.decision_errors.inc()
            log.exception("detector.record failed")

    def _finish(self, ex: Exchange) -> None:
        seconds = time.perf_counter() - ex.started
        self.metrics.count(ex.endpoint, ex.action, seconds)
        event = self._event(ex)
        if ex.action not in ("rejected",) and ex.key is not None:
            if ex.observing is not None and not ex.observing.done():
                # the request's observe is still computing a slow signal: record after it
                ex.observing.add_done_callback(lambda _: self._record(event))
            else:
                self._record(event)
        self.telemetry.submit(event)
        if ex.usage:
            self.metrics.tokens.labels("prompt").inc(ex.usage.get("prompt_tokens") or 0)
            self.metrics.tokens.labels("completion").inc(ex.usage.get("completion_tokens") or 0)

    def _event(self, ex: Exchange) -> RequestEvent:
        key = ex.key
        response = None
        if ex.response is not None or ex.status:
            r = ex.response or {}
            response = Response(
                status=ex.status,
                content=_str_or_none(r.get("content")),
                reasoning=_str_or_none(r.get("reasoning")),
                finish_reason=_str_or_none(r.get("finish_reason")),
                tool_calls=r.get("tool_calls") if isinstance(r.get("tool_calls"), list) else None,
            )
        usage = None
        if isinstance(ex.usage, dict):
            details = ex.usage.get("completion_tokens_details") or {}
            usage = Usage(
                prompt_tokens=_int_or_none(ex.usage.get("prompt_tokens")),
                completion_tokens=_int_or_none(ex.usage.get("completion_tokens")),
                reasoning_tokens=_int_or_none(
                    ex.usage.get("reasoning_tokens") or details.get("reasoning_tokens")
                ),
            )
        model = ex.body.get("model")
        return RequestEvent(
            id=ex.id,
            ts=format_ts(ex.ts),
            account_id=key.account_id if key else None,
            ip=ex.ip,
            request=ex.body,
            api_key_id=key.key_id if key else None,
            end_user=ex.end_user,
            user_agent=ex.user_agent,
            endpoint=ex.endpoint,
            model=model if isinstance(model, str) else None,
            conversation_id=ex.conversation_id,
            response=response,
            usage=usage,
            latency_ms=None if ex.upstream_ms is None else round(ex.upstream_ms, 3),
            action=ex.action,
            rule=ex.rule,
            risk=ex.risk,
            watermark_key_id=ex.watermark_key_id
            if ex.status is not None and 200 <= ex.status < 300 and ex.watermark_key_id != "off"
            else None,
            error=ErrorInfo(type=str(ex.error.get("type")), message=str(ex.error.get("message")))
            if ex.error
            else None,
        )

    # --- models ---------------------------------------------------------------------------
    async def _models(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        if self.keyring.authenticate(headers.get(b"authorization"), time.time()) is None:
            return await _reply(
                send, ApiError(401, "Incorrect API key provided.", code="invalid_api_key")
            )
        assert self.upstream is not None
        try:
            resp = await self.upstream.request(b"GET", "/v1/models")
            try:
                data = await resp.read()
            finally:
                resp.release()
            await _reply_raw(send, resp.status, data)
        except UpstreamError:
            await _reply(
                send,
                ApiError(
                    502, "the model is unavailable", "server_error", code="upstream_unavailable"
                ),
            )


# --- helpers ------------------------------------------------------------------------------


async def _read_body(receive: Receive, content_length: bytes | None, cap: int) -> bytes:
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise ApiError(400, "Content-Length is not a number") from None
        if declared > cap:
            raise ApiError(413, f"request body over the {cap}-byte limit", code="request_too_large")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            raise ApiError(413, f"request body over the {cap}-byte limit", code="request_too_large")
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _parse(raw: bytes) -> Any:
    if not raw:
        raise ApiError(400, "the request body is empty; send a JSON object", code="invalid_json")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = "not valid UTF-8" if "utf-8" in str(exc).lower() else "not valid JSON"
        raise ApiError(400, f"the request body is {reason}: {exc}", code="invalid_json") from None


def _parse_quietly(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value else None


def _conversation_of(account_id: str, body: dict[str, Any]) -> str | None:
    """A thread id derived from the account and the conversation's first user turn, so the
    turns of one conversation share it without the client naming it."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            text = content if isinstance(content, str) else orjson.dumps(content).decode()
            digest = hashlib.blake2b(
                f"{account_id}\x00{text}".encode("utf-8", "replace"), digest_size=8
            ).hexdigest()
            return f"conv_{digest}"
    return None


def _tokens_used(ex: Exchange) -> int:
    usage = ex.usage
    if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
        return int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)
    if ex.response is None:
        return 0  # nothing was served
    content = ex.response.get("content")
    served = text_tokens(content) if isinstance(content, str) else 0
    return prompt_tokens(ex.body) + served


def _degrade_request(body: dict[str, Any], cap: int) -> None:
    for name in ("max_tokens", "max_completion_tokens"):
        if name in body:
            body[name] = min(int(body[name]), cap)
    if "max_tokens" not in body and "max_completion_tokens" not in body:
        body["max_tokens"] = cap
    body["n"] = 1
    for name in ("logprobs", "top_logprobs"):
        body.pop(name, None)


def _degrade_answer(data: bytes) -> bytes:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data
    for choice in obj.get("choices") or []:
        if isinstance(choice.get("message"), dict):
            withhold_reasoning_message(choice["message"])
    return orjson.dumps(obj)


def _refusal_message(action: str) -> str:
    if action == "challenge":
        return "This account must complete verification before it can continue."
    return "This request was refused under the service's usage policies."


def _err_message(err: Any, status: int) -> str:
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])
    return f"the model answered HTTP {status}"


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int_or_none(value: Any) -> int | None:
    return value if type(value) is int else None


async def _reply(send: Send, err: ApiError, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await send(
        {"type": "http.response.start", "status": err.status, "headers": [_JSON, *(extra or [])]}
    )
    await send({"type": "http.response.body", "body": err.body()})


async def _reply_raw(
    send: Send, status: int, body: bytes, content_type: bytes = b"application/json"
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type)],
        }
    )
    await send({"type": "http.response.body", "body": body})
