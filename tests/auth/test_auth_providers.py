"""Auth providers, token models and unverified claim decoding (no network)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping

import anyio
import pytest

from cl_client import ProtocolError, SessionExpiredError
from cl_client._transports.retry import IDEMPOTENT_METHODS, send_with_retry
from cl_client.auth import (
    AuthProvider,
    JWTAuthProvider,
    NoAuthProvider,
    Token,
    TokenClaims,
    TokenSource,
    User,
    decode_claims,
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims: object) -> str:
    """An unsigned-looking JWT (the client never checks signatures)."""
    header = _b64(json.dumps({"alg": "ES256", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}.{_b64(b'sig' * 20)}"


class FakeSource:
    """A TokenSource recording what the provider asks for."""

    def __init__(self) -> None:
        self.tokens = ["tok-1", "tok-2"]
        self.rejected: list[str | None] = []

    async def get_valid_token(self) -> str:
        return self.tokens[0]

    async def replace_rejected_token(self, token: str | None) -> bool:
        self.rejected.append(token)
        self.tokens.pop(0)
        return True


# -- decode_claims --------------------------------------------------------------------------


def test_decode_claims_reads_the_payload_without_a_key() -> None:
    claims = {"id": "7", "permissions": ["a"], "is_admin": False, "exp": 1795252885}
    assert decode_claims(make_jwt(claims)) == claims


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("only.two", "3 dot-separated"),
        ("a.b.c.d", "3 dot-separated"),
        ("h.!!!notbase64json!!!.s", "base64url"),
        (f"h.{_b64(b'[1, 2]')}.s", "JSON object"),
        (f"h.{_b64(b'{not json')}.s", "base64url"),
    ],
)
def test_decode_claims_errors_never_quote_the_token(token: str, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason) as info:
        decode_claims(token)
    assert token not in str(info.value)
    assert info.value.__cause__ is None


# -- Token ----------------------------------------------------------------------------------


def test_token_exposes_claims_and_expiry() -> None:
    exp = int(time.time()) + 100
    token = Token(access_token=make_jwt({"id": "3", "permissions": ["x"], "exp": exp}))
    assert token.user_id == "3"
    assert token.claims == TokenClaims(id="3", permissions=["x"], is_admin=False, exp=exp)
    assert token.expires_at is not None
    assert token.expires_at.timestamp() == exp
    remaining = token.expires_in()
    assert remaining is not None
    assert 98 < remaining <= 100
    assert not token.is_expired()
    assert token.is_expired(now=exp + 1)
    # 100 s lifetime, margin 60: half the lifetime (50 s) is used
    assert not token.needs_refresh(60, now=exp - 51)
    assert token.needs_refresh(60, now=exp - 49)
    # margin smaller than half the lifetime: the margin is used
    assert not token.needs_refresh(10, now=exp - 11)
    assert token.needs_refresh(10, now=exp - 9)


def test_tokens_compare_by_value() -> None:
    value = make_jwt({"id": "1"})
    first = Token(access_token=value)
    time.sleep(0.001)
    second = Token(access_token=value)
    assert first == second
    assert hash(first) == hash(second)
    assert first != Token(access_token=make_jwt({"id": "2"}))
    assert first != value


def test_token_without_exp_never_needs_a_refresh() -> None:
    token = Token(access_token=make_jwt({"id": "1"}))
    assert token.expires_at is None
    assert token.expires_in() is None
    assert not token.is_expired()
    assert not token.needs_refresh(60)


def test_undecodable_token_has_empty_claims() -> None:
    token = Token(access_token="opaque-token-value")
    assert token.claims == TokenClaims()
    assert token.user_id is None
    assert not token.needs_refresh(60)
    assert repr(token) == "Token(token_type='bearer', user_id=None, expires_at=None)"


def test_token_repr_and_str_hide_the_token() -> None:
    value = make_jwt({"id": "5", "exp": 1795252885})
    token = Token(access_token=value)
    assert value not in repr(token)
    assert value not in str(token)
    assert "user_id='5'" in repr(token)
    assert "2026-11-21T" in repr(token)


def test_user_permission_check_is_literal_unless_admin() -> None:
    user = User(id=2, username="u", permissions=["*"])
    assert not user.has_permission("ai_inference_support")
    assert User(id=3, username="v", permissions=["ai_inference_support"]).has_permission(
        "ai_inference_support"
    )
    assert User(id=1, username="a", is_admin=True).has_permission("anything")


# -- providers ------------------------------------------------------------------------------


async def test_no_auth_provider() -> None:
    provider = NoAuthProvider()
    assert isinstance(provider, AuthProvider)
    assert await provider.get_headers() == {}
    assert await provider.handle_unauthorized() is False
    assert repr(provider) == "NoAuthProvider()"


async def test_fixed_token_provider() -> None:
    value = make_jwt({"id": "1", "exp": int(time.time()) + 600})
    provider = JWTAuthProvider(value)
    assert isinstance(provider, AuthProvider)
    assert provider.session is None
    assert await provider.get_headers() == {"Authorization": f"Bearer {value}"}
    assert await provider.get_token() == value
    assert await provider.handle_unauthorized() is False  # nothing to refresh
    assert value not in repr(provider)
    same = JWTAuthProvider(Token(access_token=value))
    assert await same.get_token() == value


async def test_fixed_expired_token_says_log_in_again() -> None:
    value = make_jwt({"id": "1", "exp": int(time.time()) - 5})
    provider = JWTAuthProvider(value)
    assert await provider.get_headers() == {"Authorization": f"Bearer {value}"}
    with pytest.raises(SessionExpiredError, match="log in again") as info:
        await provider.handle_unauthorized()
    assert value not in str(info.value)


def test_provider_needs_exactly_one_source() -> None:
    with pytest.raises(TypeError):
        JWTAuthProvider()
    with pytest.raises(TypeError):
        JWTAuthProvider("t", session=FakeSource())


async def test_session_provider_reports_the_token_this_task_sent() -> None:
    source = FakeSource()
    assert isinstance(source, TokenSource)
    provider = JWTAuthProvider(session=source)
    assert await provider.get_headers() == {"Authorization": "Bearer tok-1"}
    assert await provider.handle_unauthorized() is True
    assert source.rejected == ["tok-1"]
    assert await provider.get_headers() == {"Authorization": "Bearer tok-2"}
    assert "FakeSource" in repr(provider)


async def test_session_provider_without_a_sent_token_forces_a_renewal() -> None:
    source = FakeSource()
    provider = JWTAuthProvider(session=source)
    other = JWTAuthProvider(session=FakeSource())
    await other.get_headers()  # another provider's token does not count

    async def in_a_fresh_task() -> None:
        assert await provider.handle_unauthorized() is True

    async with anyio.create_task_group() as tg:
        tg.start_soon(in_a_fresh_task)
    assert source.rejected == [None]


async def test_each_task_reports_its_own_token() -> None:
    source = FakeSource()
    source.tokens = ["a", "b", "c"]
    provider = JWTAuthProvider(session=source)
    sent: dict[str, str] = {}

    async def request(name: str, go: anyio.Event) -> None:
        headers = await provider.get_headers()
        sent[name] = headers["Authorization"]
        await go.wait()
        await provider.handle_unauthorized()

    first_go, second_go = anyio.Event(), anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(request, "first", first_go)
        await anyio.sleep(0.01)
        source.tokens.pop(0)  # the token changes between the two requests
        source.tokens.insert(0, "b")
        tg.start_soon(request, "second", second_go)
        await anyio.sleep(0.01)
        first_go.set()
        await anyio.sleep(0.01)
        second_go.set()
    assert sent == {"first": "Bearer a", "second": "Bearer b"}
    assert source.rejected == ["a", "b"]


class _CountingProvider:
    """Hands out numbered tokens; says a retry may succeed while ``renew`` is True."""

    def __init__(self, *, renew: bool) -> None:
        self.renew = renew
        self.tokens = 0
        self.unauthorized = 0

    async def get_headers(self) -> dict[str, str]:
        self.tokens += 1
        return {"Authorization": f"Bearer t{self.tokens}"}

    async def handle_unauthorized(self) -> bool:
        self.unauthorized += 1
        return self.renew


async def _run_retry(
    method: str, provider: AuthProvider | None, statuses: list[int]
) -> tuple[int, list[dict[str, str]]]:
    sent: list[dict[str, str]] = []

    async def send(headers: Mapping[str, str]) -> int:
        sent.append(dict(headers))
        return statuses[len(sent) - 1]

    result = await send_with_retry(method, provider, send, lambda status: status)
    return result, sent


@pytest.mark.parametrize("method", sorted(IDEMPOTENT_METHODS))
async def test_send_with_retry_retries_an_idempotent_401_once_with_fresh_headers(
    method: str,
) -> None:
    provider = _CountingProvider(renew=True)
    assert await _run_retry(method, provider, [401, 200]) == (
        200,
        [{"Authorization": "Bearer t1"}, {"Authorization": "Bearer t2"}],
    )
    provider = _CountingProvider(renew=True)
    result, sent = await _run_retry(method, provider, [401, 401, 200])
    assert (result, len(sent), provider.unauthorized) == (401, 2, 1)  # at most one retry


@pytest.mark.parametrize("statuses", [[200], [403], [500]])
async def test_send_with_retry_sends_once_unless_refused(statuses: list[int]) -> None:
    provider = _CountingProvider(renew=True)
    result, sent = await _run_retry("GET", provider, statuses)
    assert (result, sent, provider.unauthorized) == (
        statuses[0],
        [{"Authorization": "Bearer t1"}],
        0,
    )


async def test_send_with_retry_never_repeats_a_post_or_a_declined_retry() -> None:
    post = _CountingProvider(renew=True)
    assert await _run_retry("POST", post, [401, 200]) == (401, [{"Authorization": "Bearer t1"}])
    assert post.unauthorized == 0
    assert {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"} == IDEMPOTENT_METHODS
    declined = _CountingProvider(renew=False)
    assert await _run_retry("GET", declined, [401, 200]) == (401, [{"Authorization": "Bearer t1"}])
    assert declined.unauthorized == 1
    assert await _run_retry("GET", None, [401, 200]) == (401, [{}])  # no provider: no headers
