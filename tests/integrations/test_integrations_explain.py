"""A refused request is explained in the server's log and stays coarse on the wire.

WSGI middleware under wsgiref on 127.0.0.1, real provisioned identities.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from liveservers import serve_wsgi
from servicerealm import provision_realm

from spiffile.integrations.wsgi import SpiffileMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def ok(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def call(url: str, token: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_wrong_audience_and_unknown_sender_are_explained_locally(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    realm = provision_realm(tmp_path)
    app = SpiffileMiddleware(ok, realm.billing)
    caplog.set_level(logging.INFO, logger="spiffile.integrations")
    with serve_wsgi(app) as url:
        wrong_audience = realm.orders.token("spiffe://example.org/reports")
        status, body = call(url + "/x", wrong_audience)
        unknown = realm.ghost.token(realm.billing.id)
        status2, body2 = call(url + "/x", unknown)
    # The caller learns nothing more than "invalid token", the same both times.
    assert (status, status2) == (401, 401)
    assert json.loads(body) == json.loads(body2) == {"error": "invalid_token"}
    records = [r for r in caplog.records if r.name == "spiffile.integrations"]
    assert len(records) == 2
    audience_line, unknown_line = (r.getMessage() for r in records)
    assert "aud='spiffe://example.org/reports'" in audience_line
    assert "expected aud='spiffe://example.org/billing'" in audience_line
    assert "sub='spiffe://example.org/orders'" in audience_line
    assert f"kid={realm.orders.kid!r}" in audience_line
    assert "leeway=30 s" in audience_line
    assert "unknown_identity" in unknown_line and "sub='spiffe://example.org/ghost'" in unknown_line
    details = records[0].spiffile_details  # type: ignore[attr-defined]
    assert details["audience"] == "spiffe://example.org/reports"
    assert details["expected_audience"] == "spiffe://example.org/billing"
    for record in records:
        for token in (wrong_audience, unknown):
            assert token not in record.getMessage()
            assert token.split(".")[2] not in record.getMessage()
