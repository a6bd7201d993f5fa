"""Who may ask serve anything: the Host a request names, and its token when the server has one.

ASGI middleware in front of the app, two checks in turn:

- The Host header must name the server: the address it listens on with its port (for a
  loopback address any of `127.0.0.1`, `localhost`, `[::1]`), or a name given with
  --allowed_hosts. A page on another site whose name was re-pointed at this machine (DNS
  rebinding) sends its own name and gets 421. Listening on every address (0.0.0.0, ::),
  any IP address written as digits is accepted, with the port: every address of the
  machine is one the server listens on (and inside Docker the host's addresses cannot be
  known), while rebinding needs a name, which an address written as digits is not.
- With a token (TG_SERVE_TOKEN), every request carries it: `Authorization: Bearer TOKEN`,
  or the cookie the page gets when it is opened once as `/?token=TOKEN` (HttpOnly,
  SameSite=Strict, and the address bar is sent back to `/` so that the token leaves it).
  Compared in constant time.

Refusals are a status and one line of JSON, as every error of the API.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from tensorguess import strict_json
from tensorguess.data.images import printable

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARDS = ("0.0.0.0", "::", "")
COOKIE = "tg_serve_token"
TOKEN_ENV = "TG_SERVE_TOKEN"
# Characters a header, a cookie and a URL's query carry as they are (no '+', which a query
# reads as a space); long enough not to be guessed.
HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9._~-]{16,256}")


class AccessError(ValueError):
    """The access settings cannot be used; the message says what to give instead."""


def checked_token(token: str) -> str:
    if not TOKEN_SHAPE.fullmatch(token):
        raise AccessError(f"{TOKEN_ENV} must be 16 to 256 characters of A-Z a-z 0-9 . _ ~ -; "
                          "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe())'")
    return token


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Access:
    """What the guard lets in. `hosts`: the addresses the server listens on and is reached at
    (--host, and the address Docker publishes it on); `allowed_hosts`: more names (--allowed_hosts,
    any port; "*": any Host); `token`: None for none."""

    hosts: tuple[str, ...] = ("127.0.0.1",)
    allowed_hosts: tuple[str, ...] = ()
    token: str | None = None

    def __post_init__(self) -> None:
        for name in self.allowed_hosts:
            if name != "*" and _host_key(name) is None:
                raise AccessError(f"--allowed_hosts: {name!r} is not a host name or address "
                                  "(give names without ports, separated by commas)")
        if self.token is not None:
            checked_token(self.token)


def _host_key(name: str) -> str | None:
    """A host name or address in one spelling (lower case; an address as ipaddress writes it;
    an IPv4 address mapped into IPv6 as the IPv4 one), or None if it is neither."""
    name = name.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return name if HOST_NAME.fullmatch(name) else None
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def _split_host_header(value: str) -> tuple[str | None, int | None]:
    """(the host's key, its port; 80 when none is written) of a Host header; (None, None) if unreadable."""
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(?::([0-9]{1,5}))?", value.strip())
    if not match:
        return None, None
    return _host_key(match.group(1)), int(match.group(2) or 80)


def _is_address(key: str) -> bool:
    try:
        ipaddress.ip_address(key)
    except ValueError:
        return False
    return True


class AccessGuard:
    """ASGI middleware: the Host check, then the token check, before the app sees a request."""

    def __init__(self, app, access: Access):
        self.app = app
        self.access = access
        self.any_host = "*" in access.allowed_hosts
        self.extra = {_host_key(name) for name in access.allowed_hosts if name != "*"}
        self.wildcard = any(host in WILDCARDS for host in access.hosts)
        self.names: set[str | None] = set()
        for host in access.hosts:
            if host in WILDCARDS or is_loopback(host):
                self.names.update(_host_key(name) for name in LOOPBACK_NAMES)
            if host not in WILDCARDS:
                self.names.add(_host_key(host))
        self.token = access.token.encode() if access.token else None

    def __getattr__(self, name):  # app.state and friends, for tests
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        refusal = self._host_refusal(headers.get("host"), scope.get("server"))
        if refusal:
            return await _refuse(send, *refusal)
        if self.token is None:
            return await self.app(scope, receive, send)
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if "token" in query:
            if not self._matches(query["token"]):
                return await _refuse(send, 401, "the token in ?token= is not this server's")
            if scope.get("method") == "GET" and scope.get("path") == "/":
                # The page, opened once with its token: a cookie from now on, and the token out of
                # the address bar and the history.
                cookie = f"{COOKIE}={query['token']}; Path=/; HttpOnly; SameSite=Strict"
                return await _answer(send, 303, b"", [(b"location", b"/"), (b"set-cookie", cookie.encode())])
            return await self.app(scope, receive, send)
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        offered = credential.strip() if scheme.lower() == "bearer" else _cookie(headers.get("cookie", ""))
        if offered is None or not self._matches(offered):
            return await _refuse(send, 401, "this server needs its token (TG_SERVE_TOKEN): send "
                                 "'Authorization: Bearer TOKEN', or open the page once as /?token=TOKEN",
                                 [(b"www-authenticate", b"Bearer")])
        return await self.app(scope, receive, send)

    def _matches(self, offered: str) -> bool:
        return hmac.compare_digest(offered.encode("utf-8", "replace"), self.token or b"")

    def _host_refusal(self, host: str | None, server) -> tuple[int, str] | None:
        """(status, message) for a Host header that names another server; None when it names this one."""
        if host is None:
            return 400, "the request has no Host header"
        if self.any_host:
            return None
        key, port = _split_host_header(host)
        if key is not None and key in self.extra:
            return None
        local = _host_key(str(server[0])) if server else None
        port_ok = server is None or port == server[1]
        if key is not None and port_ok and (key in self.names or key == local
                                            or (self.wildcard and _is_address(key))):
            return None
        return 421, (f"this server does not answer to the host {printable(host[:100])!r}; open it at the "
                     "address it listens on, or start it with --allowed_hosts NAME")


def _headers(scope) -> dict[str, str]:
    """The request's headers by lower-case name; of a repeated one, the first."""
    found: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        found.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return found


def _cookie(header: str) -> str | None:
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


async def _refuse(send, status: int, message: str, headers: list | None = None) -> None:
    body = (strict_json.dumps({"error": message}) + "\n").encode()
    await _answer(send, status, body, [(b"content-type", b"application/json"), *(headers or [])])


async def _answer(send, status: int, body: bytes, headers: list) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
