"""A local auth service that speaks the real one's protocol (docs/auth.md).

The FastAPI app reproduces ``cl_server_auth_service@8849af4``: the same routes, form fields,
status codes and messages, ES256 tokens with the claims ``id``, ``permissions``, ``is_admin``
and ``exp``. Users live in memory. Every request is recorded (method, path, query, headers,
body) so tests can check what a client actually sent.
"""

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, cast
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import Depends, FastAPI, Form, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from starlette.middleware.base import RequestResponseEndpoint

__all__ = ["AuthServiceState", "RecordedRequest", "StoredUser", "create_auth_app"]

ALGORITHM = "ES256"
_BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the local service received it."""

    method: str
    path: str
    query_string: str
    headers: dict[str, str]
    body: bytes
    status_code: int

    @property
    def query(self) -> dict[str, str]:
        """Query parameters (last value wins)."""
        return {k: v[-1] for k, v in parse_qs(self.query_string, keep_blank_values=True).items()}

    @property
    def form(self) -> dict[str, str]:
        """The body parsed as ``application/x-www-form-urlencoded`` (last value wins)."""
        text = self.body.decode("utf-8", errors="replace")
        return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def bearer_token(self) -> str | None:
        """The token of an ``Authorization: Bearer`` header, if any."""
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" and token else None

    def __repr__(self) -> str:
        return f"RecordedRequest({self.method} {self.path} -> {self.status_code})"


@dataclass(slots=True)
class StoredUser:
    """A user of the local auth service."""

    id: int
    username: str
    password_hash: bytes
    salt: bytes
    is_admin: bool = False
    is_active: bool = True
    permissions: list[str] = field(default_factory=list[str])
    created_at: datetime = field(default_factory=datetime.now)

    def as_response(self) -> dict[str, object]:
        """The real ``UserResponse`` (``created_at`` naive ISO-8601)."""
        return {
            "username": self.username,
            "is_admin": self.is_admin,
            "is_active": self.is_active,
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "permissions": list(self.permissions),
        }

    def __repr__(self) -> str:
        return f"StoredUser(id={self.id}, username={self.username!r}, is_admin={self.is_admin})"


def _hash_password(password: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 1_000)


class AuthServiceState:
    """Keys, users, token lifetime and the request log of one local auth service."""

    def __init__(self, *, admin_username: str, admin_password: str, token_lifetime: float) -> None:
        self._private_key = ec.generate_private_key(ec.SECP256R1())
        self.public_key_pem: str = (
            self._private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        self.token_lifetime: float = token_lifetime
        self.users: dict[int, StoredUser] = {}
        self.requests: list[RecordedRequest] = []
        self._next_id = 1
        self.add_user(admin_username, admin_password, is_admin=True, permissions=["*"])

    # users ---------------------------------------------------------------------------------
    def add_user(
        self,
        username: str,
        password: str,
        *,
        is_admin: bool = False,
        is_active: bool = True,
        permissions: list[str] | None = None,
    ) -> StoredUser:
        salt = secrets.token_bytes(16)
        user = StoredUser(
            id=self._next_id,
            username=username,
            password_hash=_hash_password(password, salt),
            salt=salt,
            is_admin=is_admin,
            is_active=is_active,
            permissions=list(permissions or []),
        )
        self.users[user.id] = user
        self._next_id += 1
        return user

    def set_password(self, user: StoredUser, password: str) -> None:
        user.salt = secrets.token_bytes(16)
        user.password_hash = _hash_password(password, user.salt)

    def find_user(self, username: str) -> StoredUser | None:
        return next((u for u in self.users.values() if u.username == username), None)

    def authenticate(self, username: str, password: str) -> StoredUser | None:
        user = self.find_user(username)
        if user is None or not hmac.compare_digest(
            user.password_hash, _hash_password(password, user.salt)
        ):
            return None
        return user

    # tokens --------------------------------------------------------------------------------
    def sign(self, claims: dict[str, object]) -> str:
        """Sign any claims with the service's private key (tests use it to forge tokens)."""
        return jwt.encode(claims, self._private_key, algorithm=ALGORITHM)

    def issue_token(self, user: StoredUser, lifetime: float | None = None) -> str:
        """A token as the real service issues it: ``id``, ``permissions``, ``is_admin``, ``exp``."""
        seconds = self.token_lifetime if lifetime is None else lifetime
        return self.sign(
            {
                "id": str(user.id),
                "permissions": list(user.permissions),
                "is_admin": user.is_admin,
                "exp": int(time.time() + seconds),
            }
        )

    def user_from_token(self, token: str) -> StoredUser | None:
        """The user a valid, unexpired token belongs to, else None."""
        try:
            claims = cast(
                dict[str, object],
                jwt.decode(token, self.public_key_pem, algorithms=[ALGORITHM]),
            )
            user_id = int(cast(str, claims["id"]))
        except (jwt.InvalidTokenError, KeyError, TypeError, ValueError):
            return None
        return self.users.get(user_id)


def _parse_create_permissions(permissions: str | None) -> list[str]:
    """``POST /users/``: a JSON array, Dart's ``[a, b]``, or ``a,b`` (as the real service)."""
    if not permissions:
        return []
    try:
        parsed = cast(object, json.loads(permissions))
    except ValueError:
        cleaned = permissions.strip()
        if cleaned.startswith("[") and cleaned.endswith("]"):
            cleaned = cleaned[1:-1]
        return [p.strip() for p in cleaned.split(",") if p.strip()]
    if isinstance(parsed, list):
        return [str(p) for p in cast(list[object], parsed)]
    return [str(parsed)]


def create_auth_app(state: AuthServiceState) -> FastAPI:
    """The FastAPI app of the local auth service, backed by ``state``."""
    app = FastAPI(title="User Auth Service")
    oauth2_scheme = OAuth2PasswordBearer(tokenUrl="auth/token")

    @app.middleware("http")
    async def record(request: Request, call_next: RequestResponseEndpoint) -> Response:
        body = await request.body()
        response = await call_next(request)
        state.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.url.path,
                query_string=request.url.query,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                status_code=response.status_code,
            )
        )
        return response

    def current_user(token: Annotated[str, Depends(oauth2_scheme)]) -> StoredUser:
        user = state.user_from_token(token)
        if user is None:
            raise HTTPException(401, "Could not validate credentials", headers=_BEARER_CHALLENGE)
        return user

    def admin_user(user: Annotated[StoredUser, Depends(current_user)]) -> StoredUser:
        if not user.is_admin:
            raise HTTPException(403, "The user doesn't have enough privileges")
        return user

    def lookup(user_id: int) -> StoredUser:
        user = state.users.get(user_id)
        if user is None:
            raise HTTPException(404, "User not found")
        return user

    @app.get("/")
    async def root() -> dict[str, str]:
        return {"message": "authentication service is running"}

    @app.post("/auth/token")
    async def login(form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> dict[str, str]:
        user = state.authenticate(form.username, form.password)
        if user is None:
            raise HTTPException(401, "Incorrect username or password", headers=_BEARER_CHALLENGE)
        return {"access_token": state.issue_token(user), "token_type": "bearer"}

    @app.post("/auth/token/refresh")
    async def refresh(user: Annotated[StoredUser, Depends(current_user)]) -> dict[str, str]:
        return {"access_token": state.issue_token(user), "token_type": "bearer"}

    @app.get("/auth/public-key")
    async def public_key() -> dict[str, str]:
        return {"public_key": state.public_key_pem, "algorithm": ALGORITHM}

    @app.get("/users/me")
    async def me(user: Annotated[StoredUser, Depends(current_user)]) -> JSONResponse:
        return JSONResponse(user.as_response())

    @app.post("/users/", status_code=201)
    async def create_user(
        _admin: Annotated[StoredUser, Depends(admin_user)],
        username: Annotated[str, Form()],
        password: Annotated[str, Form()],
        is_admin: Annotated[bool, Form()] = False,
        is_active: Annotated[bool, Form()] = True,
        permissions: Annotated[str | None, Form()] = None,
    ) -> JSONResponse:
        if state.find_user(username) is not None:
            raise HTTPException(400, "Username already registered")
        user = state.add_user(
            username,
            password,
            is_admin=is_admin,
            is_active=is_active,
            permissions=_parse_create_permissions(permissions),
        )
        return JSONResponse(user.as_response(), status_code=201)

    @app.get("/users/")
    async def list_users(
        _admin: Annotated[StoredUser, Depends(admin_user)], skip: int = 0, limit: int = 100
    ) -> JSONResponse:
        users = sorted(state.users.values(), key=lambda u: u.id)[skip : skip + limit]
        return JSONResponse([u.as_response() for u in users])

    @app.get("/users/{user_id}")
    async def get_user(
        _admin: Annotated[StoredUser, Depends(admin_user)], user_id: int
    ) -> JSONResponse:
        return JSONResponse(lookup(user_id).as_response())

    @app.put("/users/{user_id}")
    async def update_user(
        _admin: Annotated[StoredUser, Depends(admin_user)],
        user_id: int,
        password: Annotated[str | None, Form()] = None,
        permissions: Annotated[str | None, Form()] = None,
        is_active: Annotated[bool | None, Form()] = None,
        is_admin: Annotated[bool | None, Form()] = None,
    ) -> JSONResponse:
        user = lookup(user_id)
        if password:
            state.set_password(user, password)
        if is_active is not None:
            user.is_active = is_active
        if is_admin is not None:
            user.is_admin = is_admin
        if permissions is not None:  # comma-separated only ("" never arrives: FastAPI drops it)
            user.permissions = [p.strip() for p in permissions.split(",") if p.strip()]
        return JSONResponse(user.as_response())

    @app.delete("/users/{user_id}", status_code=204)
    async def delete_user(
        _admin: Annotated[StoredUser, Depends(admin_user)], user_id: int
    ) -> Response:
        del state.users[lookup(user_id).id]
        return Response(status_code=204)

    return app
