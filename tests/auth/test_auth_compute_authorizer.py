"""The local compute's token checks, with tokens minted by the auth service.

What is checked: docs/auth.md#how-compute-checks-a-token.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import HTTPException

from cl_client.testing import ComputeAuthorizer
from cl_client.testing.auth._app import AuthServiceState

INFERENCE = "ai_inference_support"


@pytest.fixture(scope="module")
def issuer() -> AuthServiceState:
    return AuthServiceState(admin_username="admin", admin_password="pw", token_lifetime=600)


@pytest.fixture(scope="module")
def authorizer(issuer: AuthServiceState) -> ComputeAuthorizer:
    return ComputeAuthorizer(issuer.public_key_pem)


def bearer(token: str) -> str:
    return f"Bearer {token}"


def claims(**extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "2",
        "permissions": [INFERENCE],
        "is_admin": False,
        "exp": int(time.time()) + 600,
    }
    base.update(extra)
    return base


def refused(
    authorizer: ComputeAuthorizer, header: str | None, *, admin: bool = False
) -> tuple[int, object]:
    with pytest.raises(HTTPException) as info:
        authorizer.check(header, guest_mode=False, admin=admin)
    detail: object = info.value.detail
    return info.value.status_code, detail


@pytest.mark.parametrize("header", [None, "", "Bearer garbage", "Basic YWRtaW46YWRtaW4="])
@pytest.mark.parametrize("admin", [False, True])
def test_guest_mode_ignores_the_token(
    authorizer: ComputeAuthorizer, header: str | None, admin: bool
) -> None:
    assert authorizer.check(header, guest_mode=True, admin=admin) is None


@pytest.mark.parametrize("header", [None, "", "Basic YWRtaW46YWRtaW4=", "Token abc"])
def test_missing_or_non_bearer_token(authorizer: ComputeAuthorizer, header: str | None) -> None:
    assert refused(authorizer, header) == (401, "Authentication required")
    assert refused(authorizer, header, admin=True) == (401, "Authentication required")


def test_user_with_the_permission(authorizer: ComputeAuthorizer, issuer: AuthServiceState) -> None:
    token = issuer.sign(claims())
    assert authorizer.check(bearer(token), guest_mode=False, admin=False) == "2"
    assert authorizer.check(f"bearer {token}", guest_mode=False, admin=False) == "2"


def test_issued_tokens_pass(authorizer: ComputeAuthorizer, issuer: AuthServiceState) -> None:
    admin = issuer.users[1]
    assert authorizer.check(bearer(issuer.issue_token(admin)), guest_mode=False, admin=True) == "1"


@pytest.mark.parametrize("permissions", [[], ["*"], ["admin"], ["ai_inference"]])
def test_user_without_the_permission(
    authorizer: ComputeAuthorizer, issuer: AuthServiceState, permissions: list[str]
) -> None:
    token = issuer.sign(claims(permissions=permissions))
    assert refused(authorizer, bearer(token)) == (
        403,
        "Insufficient permissions. Required: ai_inference_support",
    )


def test_admin_bypasses_the_permission_check(
    authorizer: ComputeAuthorizer, issuer: AuthServiceState
) -> None:
    token = issuer.sign(claims(id="1", permissions=[], is_admin=True))
    assert authorizer.check(bearer(token), guest_mode=False, admin=False) == "1"
    assert authorizer.check(bearer(token), guest_mode=False, admin=True) == "1"


def test_admin_routes_need_is_admin(
    authorizer: ComputeAuthorizer, issuer: AuthServiceState
) -> None:
    token = issuer.sign(claims(permissions=[INFERENCE, "*", "admin"]))
    assert refused(authorizer, bearer(token), admin=True) == (
        403,
        "Insufficient permissions. Admin access required",
    )


def test_expired_token(authorizer: ComputeAuthorizer, issuer: AuthServiceState) -> None:
    token = issuer.sign(claims(exp=int(time.time()) - 10))
    assert refused(authorizer, bearer(token)) == (401, "JWT token has expired")
    # expiry is checked before the payload model
    bad_and_expired = issuer.sign(claims(id=5, exp=int(time.time()) - 10))
    assert refused(authorizer, bearer(bad_and_expired)) == (401, "JWT token has expired")


def test_token_without_exp_is_accepted(
    authorizer: ComputeAuthorizer, issuer: AuthServiceState
) -> None:
    payload = claims()
    del payload["exp"]
    assert authorizer.check(bearer(issuer.sign(payload)), guest_mode=False, admin=False) == "2"


def _foreign_es256(payload: dict[str, object]) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode(payload, key, algorithm="ES256")


def _hs256(payload: dict[str, object]) -> str:
    return jwt.encode(payload, "a-shared-secret-that-is-long-enough-for-hs256", algorithm="HS256")


def _none_alg(payload: dict[str, object]) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(payload).encode())}."


@pytest.mark.parametrize(
    "make",
    [
        lambda: _foreign_es256(claims()),
        lambda: _hs256(claims()),
        lambda: _none_alg(claims()),
        lambda: "not-a-jwt",
        lambda: "",
        lambda: "a.b.c",
    ],
    ids=["other-key", "hs256", "alg-none", "garbage", "empty", "three-junk-segments"],
)
def test_bad_signature_or_malformed(authorizer: ComputeAuthorizer, make: Callable[[], str]) -> None:
    token = make()
    assert refused(authorizer, bearer(token)) == (401, "Could not validate credentials")


def test_tampered_payload(authorizer: ComputeAuthorizer, issuer: AuthServiceState) -> None:
    header, _, signature = issuer.sign(claims(is_admin=False)).split(".")
    forged_payload = issuer.sign(claims(is_admin=True)).split(".")[1]
    token = f"{header}.{forged_payload}.{signature}"
    assert refused(authorizer, bearer(token), admin=True) == (401, "Could not validate credentials")


@pytest.mark.parametrize(
    "payload",
    [
        {"permissions": [INFERENCE]},  # no id
        {"sub": "2", "permissions": [INFERENCE]},  # sub is not id
        {"id": 2, "permissions": [INFERENCE]},  # id not a string
        {"id": "2", "is_admin": "true"},  # not a strict bool
        {"id": "2", "is_admin": 1},
        {"id": "2", "permissions": "ai_inference_support"},  # not a list
        {"id": "2", "permissions": [1]},
    ],
)
def test_payload_failing_the_strict_model(
    authorizer: ComputeAuthorizer, issuer: AuthServiceState, payload: dict[str, object]
) -> None:
    assert refused(authorizer, bearer(issuer.sign(payload))) == (401, "JWT payload is invalid")


def test_extra_claims_are_ignored(authorizer: ComputeAuthorizer, issuer: AuthServiceState) -> None:
    token = issuer.sign(claims(role="whatever", iss="elsewhere"))
    assert authorizer.check(bearer(token), guest_mode=False, admin=False) == "2"


def test_duplicate_permissions_are_fine(
    authorizer: ComputeAuthorizer, issuer: AuthServiceState
) -> None:
    token = issuer.sign(claims(permissions=[INFERENCE, INFERENCE]))
    assert authorizer.check(bearer(token), guest_mode=False, admin=False) == "2"


def test_without_a_public_key(issuer: AuthServiceState) -> None:
    authorizer = ComputeAuthorizer(None)
    assert repr(authorizer) == "ComputeAuthorizer(public_key=none)"
    assert authorizer.check(None, guest_mode=True, admin=True) is None
    assert refused(authorizer, None) == (401, "Authentication required")
    status, detail = refused(authorizer, bearer(issuer.sign(claims())))
    assert status == 500
    assert isinstance(detail, str)
    assert detail.startswith("Public key not found")


def test_key_pem_round_trip(issuer: AuthServiceState) -> None:
    key = serialization.load_pem_public_key(issuer.public_key_pem.encode())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp256r1"
    assert (
        repr(ComputeAuthorizer(issuer.public_key_pem)) == "ComputeAuthorizer(public_key=configured)"
    )
