"""``_jws.parse``'s one-scan path against its check-by-check path (``_parse_checked``).

The one-scan path maps the whole token's base64url at once and leaves any
oddity to the check-by-check code; for every text, both must give the same
result, or the same error class and message, and record the same ``kid`` and
claims for the error's explanation (PROFILE.md §10).
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from spiffile import _wire, keys, svid
from spiffile.errors import InvalidTokenError
from spiffile.svid import _jws

_KEY = keys.generate_private_key()
_KID = "kid-1"
_TOKEN = svid.mint(
    _KEY, _KID, "spiffe://example.org/a", "spiffe://example.org/b", now=1_700_000_000
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _outcome(parse: Any, token: str) -> tuple[object, ...]:
    seen = _jws.Seen()
    try:
        result: object = parse(token, seen, defer_floats=True)
    except InvalidTokenError as exc:
        result = (type(exc), str(exc))
    if seen.claims is not None:
        _wire.resolve_floats(seen.claims)  # In place: the result holds the same dict.
    return result, seen.kid, seen.claims


def _same(token: str) -> None:
    fast = _outcome(lambda t, s, **o: _jws.parse(t, s, **o), token)
    checked = _outcome(lambda t, s, **o: _jws._parse_checked(t, s, o["defer_floats"]), token)
    assert fast == checked


def _variants() -> list[str]:
    head, payload, signature = _TOKEN.split(".")
    raw_signature = base64.urlsafe_b64decode(signature + "==")
    found = [
        _TOKEN,
        "",
        ".",
        "..",
        "a.b",
        "a.b.c.d",
        f".{payload}.{signature}",
        f"{head}..{signature}",
        f"{head}.{payload}.",
        f"{head}.{payload}.{signature}=",
        f"{head}=.{payload}.{signature}",
        f"{head}.{payload}=.{signature}",
        f"{head}.{payload}x.{signature}",
        f"{head}.{payload}xy.{signature}",
        f"{head}.{payload[:-1]}.{signature}",
        f"{head}.{payload}.{signature[:-1]}",
        f"{head}.{payload}.{signature[:-2]}",
        f"{head}.{payload}.{signature}AA",
        f"{head}.{payload}.{signature[:-1]}B",
        f"{head}.{payload}.{_b64(raw_signature[:63])}",
        f"{head}.{payload}.{_b64(raw_signature + b'x')}",
        f"{head}.{payload}.{signature[:10]}+{signature[11:]}",
        f"{head}.{payload}.{signature[:10]}é{signature[11:]}",
        f"{head}.{payload[:5]} {payload[6:]}.{signature}",
        ".".join((_b64(b"{}"), payload, signature)),
        ".".join((_b64(b'{"alg":"none","kid":"k"}'), payload, signature)),
        ".".join((head, _b64(b"[1,2]"), signature)),
        ".".join((head, _b64(b'{"sub":1,"sub":2}'), signature)),
        ".".join((head, _b64(b'{"a":1.5e3,"b":[2.5]}'), signature)),
        ".".join((head, _b64(b"\xff\xfe"), signature)),
    ]
    for ending in range(4):
        found.append(".".join((head, _b64(b'{"x":"' + b"y" * ending + b'"}'), signature)))
    return found


def test_both_paths_agree_on_chosen_tokens() -> None:
    for token in _variants():
        _same(token)


@settings(max_examples=400, deadline=None)
@given(
    position=st.integers(min_value=0, max_value=len(_TOKEN) - 1),
    replacement=st.sampled_from(list("AQgwBz09-_+/=.! \x00é")),
)
def test_both_paths_agree_on_one_changed_character(position: int, replacement: str) -> None:
    _same(_TOKEN[:position] + replacement + _TOKEN[position + 1 :])


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ABQgw09-_.=+/", max_size=120))
def test_both_paths_agree_on_arbitrary_text(text: str) -> None:
    _same(text)


def test_the_one_scan_path_returns_what_verify_needs() -> None:
    kid, claims, signing_input, der = _jws.parse(_TOKEN)
    head, payload, _ = _TOKEN.split(".")
    assert kid == _KID
    assert claims["sub"] == "spiffe://example.org/a"
    assert signing_input == f"{head}.{payload}".encode("ascii")
    public = _KEY.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(der, signing_input, _jws.ES256)
