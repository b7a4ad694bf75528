"""One client auth for several receivers: audience resolvers in the httpx and requests auths.

Two real WSGI servers on 127.0.0.1, ``billing`` and ``reports``, each
accepting only tokens for itself; ``orders`` calls both through one client.
"""

# ruff: noqa: E402
from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

for _client in ("httpx", "requests"):
    pytest.importorskip(_client)

import httpx
import requests
from liveservers import serve_wsgi
from servicerealm import Realm, provision_realm

from spiffile.errors import ConfigurationError, InvalidSpiffeIdError
from spiffile.integrations import httpx as spiffile_httpx
from spiffile.integrations import requests as spiffile_requests
from spiffile.integrations._audience import AudienceResolver
from spiffile.integrations.wsgi import SpiffileMiddleware, caller_from_environ
from spiffile.provision import load_identity

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

ORDERS = "spiffe://example.org/orders"
AUTHS = {"httpx": spiffile_httpx.SpiffileAuth, "requests": spiffile_requests.SpiffileAuth}


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Realm:
    return provision_realm(tmp_path_factory.mktemp("clients"))


def echo(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    caller = caller_from_environ(environ)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"caller": caller and str(caller.id)}).encode()]


@pytest.fixture(scope="module")
def servers(realm: Realm) -> Iterator[dict[str, str]]:
    reports = load_identity(realm.root, "reports")
    with (
        serve_wsgi(SpiffileMiddleware(echo, realm.billing)) as billing_url,
        serve_wsgi(SpiffileMiddleware(echo, reports)) as reports_url,
    ):
        yield {"billing": billing_url, "reports": reports_url}


def host_port(url: str) -> str:
    return url.removeprefix("http://")


def get(kind: str, auth: Any, url: str) -> tuple[int, Any]:
    if kind == "httpx":
        with httpx.Client(auth=auth) as client:
            response = client.get(url, timeout=10)
            return response.status_code, response.json()
    with requests.Session() as session:
        session.auth = auth
        answer = session.get(url, timeout=10)
        return answer.status_code, answer.json()


@pytest.mark.parametrize("kind", sorted(AUTHS))
def test_one_auth_for_two_receivers_by_host_and_port(
    realm: Realm, servers: dict[str, str], kind: str
) -> None:
    auth = AUTHS[kind](
        realm.orders,
        {
            host_port(servers["billing"]): "billing",  # A bare name: orders' trust domain.
            servers["reports"]: "spiffe://example.org/reports",  # An origin.
        },
    )
    for name in ("billing", "reports"):
        assert get(kind, auth, servers[name] + "/x") == (200, {"caller": ORDERS})


@pytest.mark.parametrize("kind", sorted(AUTHS))
def test_callable_resolver(realm: Realm, servers: dict[str, str], kind: str) -> None:
    by_url = {url: name for name, url in servers.items()}

    def resolve(url: str) -> str | None:
        return next((name for base, name in by_url.items() if url.startswith(base + "/")), None)

    auth = AUTHS[kind](realm.orders, resolve)
    for name in ("billing", "reports"):
        assert get(kind, auth, servers[name] + "/x") == (200, {"caller": ORDERS})
    with pytest.raises(ConfigurationError, match="knows no receiver"):
        get(kind, auth, "http://127.0.0.1:9/x")


@pytest.mark.parametrize("kind", sorted(AUTHS))
def test_unknown_destination_is_refused_before_sending(
    realm: Realm, servers: dict[str, str], kind: str
) -> None:
    auth = AUTHS[kind](realm.orders, {host_port(servers["billing"]): "billing"})
    # Port 9 (discard) on 127.0.0.1: were anything sent, this would be a connection error.
    with pytest.raises(ConfigurationError, match="no audience is configured"):
        get(kind, auth, "http://127.0.0.1:9/x")


def test_fixed_audience_still_works_and_wrong_receiver_refuses(
    realm: Realm, servers: dict[str, str]
) -> None:
    auth = spiffile_httpx.SpiffileAuth(realm.orders, "billing")
    assert auth.audience == "spiffe://example.org/billing"
    assert get("httpx", auth, servers["billing"] + "/x")[0] == 200
    assert get("httpx", auth, servers["reports"] + "/x")[0] == 401


def test_async_client_with_a_map(realm: Realm, servers: dict[str, str]) -> None:
    auth = spiffile_httpx.SpiffileAuth(realm.orders, {host_port(u): n for n, u in servers.items()})

    async def both() -> list[int]:
        async with httpx.AsyncClient(auth=auth) as client:
            answers = await asyncio.gather(*(client.get(u + "/x") for u in servers.values()))
        return [answer.status_code for answer in answers]

    assert asyncio.run(both()) == [200, 200]


# -- the resolver, directly ------------------------------------------------------------------


def test_most_specific_key_wins() -> None:
    resolve = AudienceResolver(
        {
            "billing.internal": "a",
            "billing.internal:8443": "b",
            "https://billing.internal:8443": "c",
            "https://billing.internal": "d",
            "[::1]:8000": "e",
            "Upper.Example": "f",
        },
        "example.org",
    )
    assert resolve("http://billing.internal/x") == "spiffe://example.org/a"
    assert resolve("http://billing.internal:8443/x") == "spiffe://example.org/b"
    assert resolve("https://billing.internal:8443/x") == "spiffe://example.org/c"
    assert resolve("https://billing.internal/x") == "spiffe://example.org/d"
    assert resolve("https://billing.internal:443/x") == "spiffe://example.org/d"
    assert resolve("http://[::1]:8000/") == "spiffe://example.org/e"
    assert resolve("http://upper.example/") == "spiffe://example.org/f"
    assert resolve("http://user:pw@billing.internal/") == "spiffe://example.org/a"
    with pytest.raises(ConfigurationError) as info:
        resolve("http://user:secret@elsewhere:1/path?q")
    assert "secret" not in str(info.value)
    assert "path" not in str(info.value)


def test_resolver_is_checked_when_built() -> None:
    with pytest.raises(InvalidSpiffeIdError):
        AudienceResolver({"billing": "billing/"}, "example.org")
    with pytest.raises(InvalidSpiffeIdError):
        AudienceResolver("https://billing.example.org", "example.org")
    with pytest.raises(ConfigurationError):
        AudienceResolver({}, "example.org")
    with pytest.raises(ValueError):
        AudienceResolver({"https://billing/path": "billing"}, "example.org")
    with pytest.raises(TypeError):
        AudienceResolver(42, "example.org")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        AudienceResolver({"": "billing"}, "example.org")
