"""Rate limiter, Origin rule and constant-time key comparison, without a stack."""

from __future__ import annotations

import hmac

import pytest

from gateway import auth
from gateway.origins import origin_allowed
from gateway.ratelimit import RateLimiter, Verdict


def test_rate_limiter_refuses_then_closes_and_recovers_after_the_window() -> None:
    limiter = RateLimiter(per_minute=3, grace=2)
    assert [limiter.check(t) for t in (0, 1, 2)] == [Verdict.ALLOW] * 3
    assert [limiter.check(t) for t in (3, 4)] == [Verdict.REFUSE] * 2
    assert limiter.check(5) is Verdict.CLOSE
    assert limiter.check(61) is Verdict.ALLOW  # the first messages left the window


def test_rate_limit_zero_means_off() -> None:
    limiter = RateLimiter(per_minute=0, grace=0)
    assert all(limiter.check(float(t)) is Verdict.ALLOW for t in range(1000))


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "ok"),
    [
        (None, "gw:8000", [], True),  # a program, not a page
        ("http://gw:8000", "gw:8000", [], True),  # same origin: the demo page
        ("https://GW:8000/", "gw:8000", [], True),
        ("http://localhost:5173", "gw:8000", [], True),
        ("http://127.0.0.1:3000", "gw:8000", [], True),
        ("http://[::1]:3000", "gw:8000", [], True),
        ("https://evil.example", "gw:8000", [], False),
        ("http://localhost.evil.example", "gw:8000", [], False),
        ("null", "gw:8000", [], False),
        ("file://", "gw:8000", [], False),
        ("https://app.example", "gw:8000", ["https://app.example"], True),
        ("https://app.example", "gw:8000", ["https://other.example"], False),
        ("http://localhost:5173", "gw:8000", ["https://app.example"], False),  # a list replaces localhost
        ("https://evil.example", "gw:8000", ["*"], False),  # no wildcard
        ("http://gw:8000", "gw:8000", ["https://app.example"], True),
    ],
)
def test_origin_rule(origin: str | None, host: str, allowed: list[str], ok: bool) -> None:
    assert origin_allowed(origin, host, allowed) is ok


def test_api_key_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):  # type: ignore[no-untyped-def]
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert auth.key_matches("k-1", "k-1") and not auth.key_matches("k-2", "k-1")
    assert len(calls) == 2
