"""Who is calling (TokenReview) and whether they may do this (SubjectAccessReview).

Cluster mode (the chart's Deployment): the caller's Kubernetes bearer token arrives as
`Authorization: Bearer`, as `X-Taskforge-Token` (through the API server's service proxy,
which authenticates the caller itself and strips Authorization before proxying), or as the
`taskforge_token` cookie that `POST /api/v1/login` sets for a browser. A TokenReview says
who it is; every request then asks a SubjectAccessReview for the verb and resource it
touches, as that user. Both answers are cached briefly in bounded maps, so a page that makes
ten calls costs one review of each kind, and a revoked right takes effect within seconds.

Local mode (`taskforge ui`): the server acts with the kubeconfig's identity. The browser
proves it is the person who started it with a random secret (printed in the URL, then a
cookie), and permissions are the kubeconfig user's own, asked with
SelfSubjectAccessReview.

A cookie is sent by the browser on its own, so a request authenticated by the cookie that
changes something must also carry `X-Taskforge-Request` (which a cross-site form cannot set
without a CORS preflight this server never grants).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiohttp import web

from taskforge import GROUP
from taskforge.web.errors import ApiError, Handler
from taskforge.web.kubeapi import KubeApi

COOKIE = "taskforge_token"
TOKEN_HEADER = "X-Taskforge-Token"
CSRF_HEADER = "X-Taskforge-Request"
TOKEN_TTL = 30.0
DECISION_TTL = 10.0
MAX_TOKENS = 2_000
MAX_DECISIONS = 20_000
_USER = "taskforge.user"

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """At most `size` entries, each good for `ttl` seconds; the oldest go first."""

    def __init__(self, size: int, ttl: float) -> None:
        self.size, self.ttl = size, ttl
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        hit = self._data.get(key)
        if hit is None:
            return None
        if hit[0] < time.monotonic():
            del self._data[key]
            return None
        return hit[1]

    def put(self, key: K, value: V) -> None:
        self._data[key] = (time.monotonic() + self.ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


@dataclass(frozen=True)
class User:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()
    token: str | None = None  # cluster mode: writes are made with it

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "groups": list(self.groups)}


@dataclass(frozen=True)
class Check:
    """One RBAC question: may the user `verb` `resource` in `namespace`?"""

    verb: str
    resource: str
    namespace: str
    group: str = GROUP
    subresource: str = ""
    name: str = ""

    def attributes(self) -> dict[str, str]:
        attrs = {"verb": self.verb, "resource": self.resource, "namespace": self.namespace,
                 "group": self.group}
        if self.subresource:
            attrs["subresource"] = self.subresource
        if self.name:
            attrs["name"] = self.name
        return attrs

    def describe(self) -> str:
        what = self.resource + (f"/{self.subresource}" if self.subresource else "")
        if self.group:
            what += f".{self.group}"
        return f"{self.verb} {what} in namespace {self.namespace!r}"


class Access:
    """Cluster mode: TokenReview and SubjectAccessReview with the server's own identity."""

    mode = "cluster"

    def __init__(self, kube: KubeApi) -> None:
        self.kube = kube
        # A 1-tuple, so that "not a valid token" is cached too: a client retrying a bad
        # token must not turn every request into a TokenReview.
        self._tokens: TtlCache[str, tuple[User | None]] = TtlCache(MAX_TOKENS, TOKEN_TTL)
        self._decisions: TtlCache[tuple[str, Check], bool] = TtlCache(MAX_DECISIONS, DECISION_TTL)
        self.reviews = 0  # TokenReviews + SubjectAccessReviews sent (tests, metrics)

    async def authenticate(self, token: str) -> User | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        if len(token) > 16_384:
            return None
        cached = self._tokens.get(key)
        if cached is not None:
            return cached[0]
        self.reviews += 1
        review = await self.kube.request(
            "POST", "/apis/authentication.k8s.io/v1/tokenreviews",
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                  "spec": {"token": token}})
        status = review.get("status") or {}
        info = status.get("user") or {}
        user = None
        if status.get("authenticated") and info.get("username"):
            user = User(
                name=str(info["username"]), uid=str(info.get("uid") or ""),
                groups=tuple(str(g) for g in info.get("groups") or []),
                extra=tuple(sorted((str(k), tuple(str(x) for x in v))
                                   for k, v in (info.get("extra") or {}).items())),
                token=token,
            )
        self._tokens.put(key, (user,))
        return user

    async def allowed(self, user: User, check: Check) -> bool:
        key = (f"{user.name}\0{user.uid}\0{','.join(user.groups)}\0{user.extra}", check)
        cached = self._decisions.get(key)
        if cached is not None:
            return cached
        self.reviews += 1
        answer = await self._review(user, check)
        ok = bool((answer.get("status") or {}).get("allowed"))
        self._decisions.put(key, ok)
        return ok

    async def _review(self, user: User, check: Check) -> dict[str, Any]:
        spec: dict[str, Any] = {"user": user.name, "groups": list(user.groups),
                                "resourceAttributes": check.attributes()}
        if user.uid:
            spec["uid"] = user.uid
        if user.extra:
            spec["extra"] = {k: list(v) for k, v in user.extra}
        return await self.kube.request(
            "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            body={"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                  "spec": spec})

    def write_token(self, user: User) -> str | None:
        """The token writes are made with: the caller's own."""
        return user.token


class LocalAccess(Access):
    """`taskforge ui`: one user (the kubeconfig's), proven by a random local secret."""

    mode = "local"

    def __init__(self, kube: KubeApi, secret: str, name: str = "kubeconfig user") -> None:
        super().__init__(kube)
        self.secret = secret
        self.user = User(name=name)

    async def who(self) -> None:
        """Ask the API server whose kubeconfig this is (SelfSubjectReview), for display."""
        try:
            answer = await self.kube.request(
                "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        except Exception:
            return
        info = (answer.get("status") or {}).get("userInfo") or {}
        if info.get("username"):
            self.user = User(name=str(info["username"]),
                             groups=tuple(str(g) for g in info.get("groups") or []))

    async def authenticate(self, token: str) -> User | None:
        return self.user if hmac.compare_digest(token.encode(), self.secret.encode()) else None

    async def _review(self, user: User, check: Check) -> dict[str, Any]:
        return await self.kube.request(
            "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            body={"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": check.attributes()}})

    def write_token(self, user: User) -> str | None:
        return None  # the kubeconfig's own credentials: the user is the kubeconfig's


ACCESS_KEY = web.AppKey("taskforge_access", Access)


def _token_of(request: web.Request) -> tuple[str | None, bool]:
    """The presented token and whether it came from the cookie."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip(), False
    if request.headers.get(TOKEN_HEADER):
        return request.headers[TOKEN_HEADER].strip(), False
    cookie = request.cookies.get(COOKIE)
    return (cookie, True) if cookie else (None, False)


async def current_user(request: web.Request) -> User | None:
    """The authenticated caller, or None (for pages: show the login form). Never raises
    for a bad or missing token; an unreachable API server does raise (503)."""
    if _USER in request:
        found: User | None = request[_USER]
        return found
    token, _ = _token_of(request)
    user = await request.app[ACCESS_KEY].authenticate(token) if token else None
    request[_USER] = user
    return user


async def require_user(request: web.Request) -> User:
    user = await current_user(request)
    if user is None:
        raise ApiError(401, "not logged in: send a Kubernetes bearer token"
                       " (Authorization: Bearer, X-Taskforge-Token or POST /api/v1/login)")
    return user


@web.middleware
async def csrf_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a cookie-authenticated change without the custom header, before anything."""
    _, from_cookie = _token_of(request)
    if (from_cookie and request.method not in ("GET", "HEAD", "OPTIONS")
            and request.path.startswith("/api/")
            and request.path not in ("/api/v1/login", "/api/v1/logout")
            and not request.headers.get(CSRF_HEADER)):
        raise ApiError(403, f"a cookie-authenticated {request.method} needs the"
                       f" {CSRF_HEADER} header")
    return await handler(request)


async def require(request: web.Request, check: Check) -> User:
    """The caller, if RBAC lets them do `check`; else 401/403 naming what was refused."""
    user = await require_user(request)
    if not await request.app[ACCESS_KEY].allowed(user, check):
        raise ApiError(403, f"{user.name} may not {check.describe()}")
    return user
