"""svid.verify converts a token's floats only once its signature holds, with the same results.

Differential: every outcome (the claims of a valid token, the error and the
fields that explain it) is compared with what the eager parse gives
(``_wire.loads_claims`` without deferral), and the header's refusals name a
float a float.  Rows "reject: long floats at the caps, ':'" of
benchmarks/README.md are why floats wait.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from spiffile import _wire, errors, svid
from spiffile.bundle import Bundle
from spiffile.errors import (
    AlgorithmError,
    AudienceError,
    ClaimsError,
    InvalidTokenError,
    UnknownIdentityError,
)
from spiffile.keys import generate_private_key, kid_for, public_jwk
from spiffile.svid import _jws
from spiffile.trust import TrustSet

NOW = 1_750_000_000
ORDERS = "spiffe://example.org/orders"
BILLING = "spiffe://example.org/billing"
KEY = generate_private_key()
KID = kid_for(KEY.public_key())
BUNDLE = Bundle.empty("example.org").with_keys(ORDERS, [public_jwk(KEY.public_key())])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signed(claims_text: str, header: str | None = None) -> str:
    """A token whose payload is exactly *claims_text*, signed by orders' bound key."""
    head = _b64(header.encode()) if header is not None else _jws.encoded_header(KID)
    signing_input = f"{head}.{_b64(claims_text.encode())}"
    der = KEY.sign(signing_input.encode(), _jws.ES256)
    return f"{signing_input}.{_b64(_wire.der_to_raw(der))}"


_FLOATS = [
    '"f":1.5',
    '"f":-0.0',
    '"f":1e400',
    '"f":1.9999999999999999e-300',
    '"f":[2.5,{"g":4e-324}],"h":0.1',
    '"f":{"g":[1E2,2.5e+3]}',
]


@pytest.mark.parametrize("extra", _FLOATS)
def test_a_valid_token_returns_the_claims_the_eager_parse_gives(extra: str) -> None:
    text = f'{{"sub":"{ORDERS}","aud":"{BILLING}","exp":{NOW + 60},{extra}}}'
    caller = svid.verify(_signed(text), BUNDLE, audience=BILLING, now=NOW)
    expected = _wire.loads_claims(text.encode())
    assert json.dumps(caller.claims) == json.dumps(expected)  # 1.0 and 1 told apart
    assert caller.claims == json.loads(text)
    assert not any(isinstance(v, _wire.DeferredFloat) for v in caller.claims.values())


def _outcome(token: str, **options: Any) -> tuple[str, str, dict[str, object]]:
    options.setdefault("audience", BILLING)
    options.setdefault("now", NOW)
    with pytest.raises((InvalidTokenError, UnknownIdentityError)) as info:
        svid.verify(token, BUNDLE, **options)
    error = info.value
    fields = {
        name: getattr(error, name, None)
        for name in ("subject", "audience", "kid", "expires", "issued_at", "not_before")
    }
    return type(error).__name__, str(error), fields


@pytest.mark.parametrize(
    ("claims", "error"),
    [
        # aud arrays holding floats: shown as json.dumps writes the parsed array.
        (f'{{"sub":"{ORDERS}","aud":[1.5,"x",2.5e-300],"exp":{NOW + 60}}}', AudienceError),
        (f'{{"sub":"{ORDERS}","aud":[[1e400,-1e400,0.1]],"exp":{NOW + 60}}}', AudienceError),
        (
            f'{{"sub":"{ORDERS}","aud":[{{"k":' + ",".join(["1.25"] * 40) + "}]}",
            InvalidTokenError,
        ),
        (
            f'{{"sub":"{ORDERS}","aud":[' + ",".join(["1.2345678901234567e-300"] * 40) + "]}",
            AudienceError,
        ),
        # NumericDates written as floats, a float sub, a float iss.
        (f'{{"sub":"{ORDERS}","aud":"{BILLING}","exp":1.75e9}}', ClaimsError),
        (f'{{"sub":"{ORDERS}","aud":"{BILLING}","exp":{NOW + 60},"nbf":1.5}}', ClaimsError),
        (f'{{"sub":1.5,"aud":"{BILLING}","exp":{NOW + 60}}}', ClaimsError),
        ('{"sub":"spiffe://example.org/nobody","aud":[0.5],"exp":2.5}', AudienceError),
        (f'{{"sub":"{ORDERS}x","aud":"{BILLING}","exp":1,"f":0.5}}', UnknownIdentityError),
    ],
)
def test_a_refusal_and_its_explanation_are_those_of_the_eager_parse(
    claims: str, error: type[Exception], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = _signed(claims)
    deferred = _outcome(token)
    assert issubclass(getattr(errors, deferred[0]), error)
    # The same token through the eager parse: floats converted as they are met.
    eager_scan, eager_strict = _wire._scan_plain, _wire._strict_token
    monkeypatch.setattr(_wire, "_scan_deferred", eager_scan)
    monkeypatch.setattr(_wire, "_strict_deferred", eager_strict)
    assert _outcome(token) == deferred


def test_an_issuer_check_against_a_float_iss_is_refused_as_before() -> None:
    text = f'{{"sub":"{ORDERS}","aud":"{BILLING}","exp":{NOW + 60},"iss":1.5}}'
    with pytest.raises(ClaimsError, match="'iss' is not the expected issuer"):
        svid.verify(_signed(text), BUNDLE, audience=BILLING, now=NOW, issuer="x")


@pytest.mark.parametrize(
    "header",
    ['{"alg":1.5,"kid":"k"}', '{"alg":2.5e-300,"kid":"k","typ":"JWT"}'],
)
def test_a_float_alg_is_named_a_float(header: str) -> None:
    token = _signed(f'{{"sub":"{ORDERS}","aud":"{BILLING}","exp":{NOW + 60}}}', header=header)
    with pytest.raises(AlgorithmError, match="algorithm 'float' is not allowed"):
        svid.verify(token, BUNDLE, audience=BILLING, now=NOW)
    # Through a trust source too (the JWT-SVID standard's header check).
    with pytest.raises(AlgorithmError, match="algorithm float is not allowed"):
        svid.verify(token, TrustSet({"example.org": BUNDLE}), audience=BILLING, now=NOW)
