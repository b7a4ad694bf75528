"""Federated documents reload off the request path (PROFILE.md §7.2, §12).

A trust directory's spiffile bundles are parsed in slices and slim; the
result and every error are those of the whole parse.  While a changed
document is parsed (held at a slice boundary by an injected pause, no
timing), callers are served the previous one; a revoked key stops working
once the new one is installed, and a token only the new one can verify
waits for it.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from spiffeforge import SpiffeRealm

import spiffile.federation
import spiffile.svid.jwt
from spiffile import Identity, svid
from spiffile.bundle import Bundle
from spiffile.bundle.spiffe import SpiffeBundle
from spiffile.errors import SpiffileError
from spiffile.federation import TrustDirectory
from spiffile.files import atomic_write
from spiffile.keys import generate_private_key, kid_for, private_key_to_pem, public_jwk
from spiffile.trust import parse_trust_document

TD = "partner.org"
ORDERS = f"spiffe://{TD}/orders"
BILLING = "spiffe://example.org/billing"
_WAIT = 10.0


class Hold:
    """A pause that, once armed, parks the first parse that calls it until released."""

    def __init__(self) -> None:
        self.armed = False
        self.entered = threading.Event()
        self.released = threading.Event()

    def __call__(self) -> None:
        if self.armed and not self.entered.is_set():
            self.entered.set()
            self.released.wait(6 * _WAIT)


def _document(sequence: int, identities: dict[str, Any], td: str = TD) -> bytes:
    """A bundle with *identities* and enough filler entries to span several parse slices."""
    filler = public_jwk(generate_private_key().public_key())
    entries = {f"spiffe://{td}/filler/{i}": {"keys": [filler]} for i in range(1500)}
    entries.update(identities)
    document = {
        "trust_domain": td,
        "spiffile_version": 1,
        "spiffe_sequence": sequence,
        "identities": entries,
        "x-extension": {"anything": [1, 2, {"deep": "value"}]},
    }
    data = Bundle.from_document(document).to_json()
    assert len(data) > 3 * 128 * 1024
    return data


# --- the same documents and errors as the whole parse --------------------------------------


def _outcome(data: bytes, trust_domain: str, **options: Any) -> Any:
    try:
        document = parse_trust_document(data, trust_domain, **options)
    except SpiffileError as exc:
        return (type(exc).__name__, exc.code, str(exc))
    if isinstance(document, SpiffeBundle):
        return ("spiffe", document.trust_domain, document.sequence, repr(document))
    try:
        names = list(json.loads(data)["identities"])
    except (ValueError, TypeError, KeyError):
        names = []
    found: list[Any] = [document.trust_domain, document.sequence, len(document)]
    for name in names:
        try:
            entry = document.lookup(name)
        except SpiffileError as exc:
            found.append(str(exc))
        else:
            found.append((str(entry.id), [key.kid for key in entry.keys]))
    found.append(document.warnings)
    return found


def _same_as_whole(data: bytes, trust_domain: str = TD) -> None:
    expected = _outcome(data, trust_domain)
    got = _outcome(data, trust_domain, pause=lambda: None, slim=True)
    assert got == expected, data[:200]


def _small(sequence: int = 3, extra: dict[str, Any] | None = None) -> bytes:
    key = public_jwk(generate_private_key().public_key())
    document = {
        "trust_domain": TD,
        "spiffile_version": 1,
        "spiffe_sequence": sequence,
        "identities": {ORDERS: {"keys": [key], "x-note": [1, {"a": "b"}]}},
        **(extra or {}),
    }
    return json.dumps(document, indent=1).encode()


_SPIFFE = SpiffeRealm(trust_domain=TD)


@pytest.mark.parametrize(
    "data",
    [
        _small(),
        _small(extra={"x": [[], {}, "}"]}),
        _small(extra={"identities": {}}),
        _small(sequence=-1),
        _small().replace(TD.encode(), b"other.org", 1),
        _small()[:-3],
        _small() + b"x",
        b'{"spiffile_version": 1}',
        b'{"keys": [], "note": "spiffile_version"}',
        b'{"x": "\\"spiffile_version\\""}',
        b'{"spiffile_version": 1, "trust_domain": "partner.org", "identities": [] }',
        b'{"spiffile_version": 2, "trust_domain": "partner.org", "identities": {}}',
        _SPIFFE.jwks_bytes(),
        json.dumps({TD: base64.b64encode(_SPIFFE.jwks_bytes()).decode()}).encode(),
        b"[]",
        b"",
        b"\xff",
    ],
    ids=lambda data: repr(data[:40]),
)
def test_a_trust_document_parses_as_the_whole_parse_does(data: bytes) -> None:
    _same_as_whole(data)


def test_mutated_federated_bundles_fail_or_succeed_as_the_whole_parse_does() -> None:
    rng = random.Random(20261130)
    base = _small(extra={"x-ext": {"a": [1, 2, 3], "b": "text"}})
    structure = b'{}[],:"\\ \n0ae-.'
    for _ in range(600):
        data = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(data))
            how = rng.randrange(3)
            if how == 0:
                del data[at]
            elif how == 1:
                data.insert(at, rng.choice(structure))
            else:
                data[at] = rng.choice(structure)
        _same_as_whole(bytes(data))


def test_a_large_federated_bundle_parses_the_same_in_slices_and_keeps_no_extension() -> None:
    data = _document(4, {})
    _same_as_whole(data)
    calls: list[int] = []
    document = parse_trust_document(data, TD, pause=lambda: calls.append(1), slim=True)
    assert len(calls) >= 3  # Parsed in slices, the pause called between them.
    assert isinstance(document, Bundle) and document.extra == {}


# --- off the request path ------------------------------------------------------------------


def _in_thread(call: Callable[[], Any]) -> list[Any]:
    """Run *call* in a thread; its result, once it has returned (never parked)."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(call()))
    thread.start()
    thread.join(_WAIT)
    assert not thread.is_alive(), "a caller waited for the parse"
    return out


def _outcome_of(call: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        try:
            return call()
        except SpiffileError as exc:
            return exc

    return run


@pytest.mark.parametrize("watched", [False, True], ids=["on use", "watch()"])
def test_callers_keep_the_previous_federated_document_while_a_new_one_is_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, watched: bool
) -> None:
    revoked, rotated = generate_private_key(), generate_private_key()
    now = time.time()

    def token(key: Any, issued: float) -> str:
        return svid.mint(key, kid_for(key.public_key()), ORDERS, BILLING, now=issued)

    atomic_write(
        tmp_path / f"{TD}.json",
        _document(1, {ORDERS: {"keys": [public_jwk(revoked.public_key())]}}),
    )
    hold = Hold()
    monkeypatch.setattr(spiffile.federation, "give_way", hold)
    trust = TrustDirectory(tmp_path)
    if watched:
        trust.watch()
    try:
        old = trust.bundle_for(TD)
        assert trust.verify(token(revoked, now), BILLING).id == ORDERS
        hold.armed = True
        # Orders' key is revoked and a new one bound in its place.
        atomic_write(
            tmp_path / f"{TD}.json",
            _document(2, {ORDERS: {"keys": [public_jwk(rotated.public_key())]}}),
        )
        # Whoever notices the change first parses it (the watcher, a thread
        # of its own, or without watch() this caller, which may be parked).
        first_caller = threading.Thread(
            target=lambda: [
                trust.bundle_for(TD) for _ in iter(lambda: hold.entered.wait(0.02), True)
            ]
        )
        first_caller.start()
        waiting = threading.Thread()
        outcome: list[Any] = []
        try:
            assert hold.entered.wait(_WAIT), "nobody started parsing"
            # Every other caller is served the previous document meanwhile:
            # the revoked key still works until the new document is installed.
            assert _in_thread(lambda: trust.bundle_for(TD)) == [old]
            assert _in_thread(lambda: trust.verify(token(revoked, now + 1), BILLING).id) == [ORDERS]
            # A token only the new document can verify waits for it.
            waiting = threading.Thread(
                target=lambda: outcome.append(
                    _outcome_of(lambda: trust.verify(token(rotated, now + 1), BILLING).id)()
                )
            )
            waiting.start()
        finally:
            hold.released.set()
            first_caller.join(_WAIT)
            waiting.join(_WAIT)
        assert outcome == [ORDERS], outcome
        installed = trust.bundle_for(TD)
        assert installed is not old and installed.sequence == 2
        # Installed: the revoked key stops working at once.
        with pytest.raises(SpiffileError):
            trust.verify(token(revoked, now + 2), BILLING)
        assert trust.verify(token(rotated, now + 2), BILLING).id == ORDERS
    finally:
        trust.close()


def test_a_refused_token_waits_only_when_a_new_document_is_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing loading, a refused token is refused once, with the error of the whole parse."""
    key, stranger = generate_private_key(), generate_private_key()
    atomic_write(tmp_path / f"{TD}.json", _small())
    trust = TrustDirectory(tmp_path)
    verified: list[Any] = []
    real = spiffile.svid.jwt.verify

    def counting(*args: Any, **kwargs: Any) -> Any:
        verified.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(spiffile.svid.jwt, "verify", counting)
    now = time.time()
    for signer in (key, stranger):
        bad = svid.mint(signer, kid_for(signer.public_key()), ORDERS, BILLING, now=now)
        with pytest.raises(SpiffileError):
            trust.verify(bad, BILLING)
    with pytest.raises(SpiffileError):
        trust.verify(svid.mint(key, "k", "spiffe://nobody.org/x", BILLING, now=now), BILLING)
    assert len(verified) == 3  # One verification each, no retry.


def test_an_identity_waits_for_a_federated_document_only_it_verifies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Identity with a trust directory: a partner's key rotated in is waited for, not refused."""
    billing, orders, rotated = (generate_private_key() for _ in range(3))
    home = tmp_path / "home"
    trust_dir = tmp_path / "trust"
    home.mkdir()
    trust_dir.mkdir()
    atomic_write(home / "id", f"{BILLING}\n".encode())
    atomic_write(home / "key.pem", private_key_to_pem(billing), mode=0o600)
    own = {
        "trust_domain": "example.org",
        "spiffile_version": 1,
        "identities": {BILLING: {"keys": [public_jwk(billing.public_key())]}},
    }
    atomic_write(home / "bundle.json", json.dumps(own).encode())
    old_jwk = public_jwk(orders.public_key())
    atomic_write(trust_dir / f"{TD}.json", _document(1, {ORDERS: {"keys": [old_jwk]}}))
    hold = Hold()
    monkeypatch.setattr(spiffile.federation, "give_way", hold)
    identity = Identity.from_dir(home, trust_dir=trust_dir)
    now = time.time()
    old_token = svid.mint(orders, kid_for(orders.public_key()), ORDERS, BILLING, now=now)
    new_token = svid.mint(rotated, kid_for(rotated.public_key()), ORDERS, BILLING, now=now)
    assert identity.verify(old_token).id == ORDERS
    hold.armed = True
    both = [old_jwk, public_jwk(rotated.public_key())]
    atomic_write(trust_dir / f"{TD}.json", _document(2, {ORDERS: {"keys": both}}))
    directory = identity.trust_dir
    assert directory is not None
    parser = threading.Thread(
        target=lambda: [
            directory.bundle_for(TD) for _ in iter(lambda: hold.entered.wait(0.02), True)
        ]
    )
    parser.start()
    outcome: list[Any] = []
    waiting = threading.Thread(
        target=lambda: outcome.append(_outcome_of(lambda: identity.verify(new_token).id)())
    )
    try:
        assert hold.entered.wait(_WAIT)
        assert _in_thread(lambda: identity.verify(old_token).id) == [ORDERS]
        waiting.start()
    finally:
        hold.released.set()
        parser.join(_WAIT)
        waiting.join(_WAIT)
    assert outcome == [ORDERS], outcome
