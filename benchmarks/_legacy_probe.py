"""Measure ``spiffile==0.1.0`` in its own virtual environment, the way ``benchmarks.core`` does.

Run by :mod:`benchmarks.legacy` with the other environment's interpreter, as
a script (``python benchmarks/_legacy_probe.py``) so that ``import spiffile``
finds the installed 0.1.0 and not this repository's package.  It imports
only the standard library, ``cryptography``, ``jwt``, the 0.1.0 package and
the sibling ``_timing`` module; the raw ECDSA baselines are measured in this
same process, interleaved, so the ratios compare like with like.  Prints one
JSON object on stdout.
"""

# mypy: ignore-errors
from __future__ import annotations

import argparse
import base64
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

# The sibling module (this script's directory is sys.path[0]) and 0.1.0's API,
# which a type checker run in this repository would resolve to our package.
from _timing import Op, calibrate, median_ratio, run_interleaved  # isort: skip

import spiffile
from spiffile.bundle import Bundle
from spiffile.keys import public_jwk
from spiffile.provision import add_service, init_root, load_identity

ES256 = ec.ECDSA(hashes.SHA256())
TRUST_DOMAIN = "example.org"
SENDER, RECEIVER = "svc-000000", "svc-000001"
MANY = f"spiffe://{TRUST_DOMAIN}/many-keys"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _tokens(key: ec.EllipticCurvePrivateKey, kid: str, count: int, now: int) -> list[str]:
    # The shape 0.1.0's Identity.token mints, with distinct iat; a long exp so
    # that the whole run stays valid (0.1.0 has no lifetime cap).
    return [
        jwt.encode(
            {
                "sub": f"spiffe://{TRUST_DOMAIN}/{SENDER}",
                "aud": f"spiffe://{TRUST_DOMAIN}/{RECEIVER}",
                "iat": now - n,
                "exp": now + 3000,
            },
            key,
            algorithm="ES256",
            headers={"kid": kid, "typ": "JWT"},
        )
        for n in range(count)
    ]


def _raw_material(tokens: list[str]) -> list[tuple[bytes, bytes]]:
    pairs = []
    for token in tokens:
        head, payload, signature = token.split(".")
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        pairs.append((f"{head}.{payload}".encode("ascii"), der))
    return pairs


def _rejecting(fn: Callable[[], object]) -> tuple[Callable[[], None], str]:
    """A call that swallows the (expected) rejection, and the name of what it raises."""
    try:
        fn()
    except Exception as exc:  # 0.1.0 may raise errors that are not its own: report which.
        raised = type(exc).__name__
    else:
        raised = "nothing (accepted)"

    def call() -> None:
        try:
            fn()
        except Exception:  # Any rejection is what is being timed.
            pass

    return call, raised


def main() -> None:
    """Set up a provisioned root with 0.1.0, measure, print JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("--sample", type=float, required=True)
    parser.add_argument("--load-rounds", type=int, required=True)
    parser.add_argument("--bundle", type=Path, required=True, help="100k-identity bundle file")
    args = parser.parse_args()

    workdir = tempfile.TemporaryDirectory(prefix="spiffile-legacy-")
    root = Path(workdir.name) / "root"
    init_root(root, TRUST_DOMAIN)
    add_service(root, SENDER)
    add_service(root, RECEIVER)
    # An identity with 50 bound keys, for the unknown-kid row.
    bundle_path = root / "bundle.json"
    document = json.loads(bundle_path.read_text())
    many = [public_jwk(ec.generate_private_key(ec.SECP256R1())) for _ in range(50)]
    document["identities"][MANY] = {"keys": many}
    bundle_path.write_text(json.dumps(document, indent=2) + "\n")
    time.sleep(0.05)

    sender, receiver = load_identity(root, SENDER), load_identity(root, RECEIVER)
    key_pem = (root / "services" / SENDER / "key.pem").read_bytes()
    private = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise SystemExit("0.1.0 wrote a key that is not EC")
    kid = public_jwk(private)["kid"]
    now = int(time.time())
    tokens = _tokens(private, kid, 32, now)
    raw = _raw_material(tokens)
    public = private.public_key()
    receiver.verify(tokens[0])
    sender.token(f"spiffe://{TRUST_DOMAIN}/{RECEIVER}")

    head = tokens[0].split(".")[0]
    signature = tokens[0].split(".")[2]
    big = ".".join((head, "A" * (1024 * 1024 - len(head) - 90), signature))
    unknown_kid = jwt.encode(
        {"sub": MANY, "aud": f"spiffe://{TRUST_DOMAIN}/{RECEIVER}", "iat": now, "exp": now + 60},
        private,
        algorithm="ES256",
        headers={"kid": "no-such-kid", "typ": "JWT"},
    )
    room = (8192 - len(head) - len(signature) - 2) * 3 // 4
    depth = (room - len('{"sub":"x","a":}')) // 2
    nested = ".".join(
        (head, _b64(('{"sub":"x","a":' + "[" * depth + "]" * depth + "}").encode()), signature)
    )

    next_token = itertools.cycle(tokens).__next__
    next_raw = itertools.cycle(raw).__next__
    next_input = itertools.cycle([data for data, _ in raw]).__next__
    audience = f"spiffe://{TRUST_DOMAIN}/{RECEIVER}"

    def raw_verify() -> None:
        data, der = next_raw()
        public.verify(der, data, ES256)

    def raw_sign() -> None:
        private.sign(next_input(), ES256)

    hostile = {
        name: _rejecting(lambda token=token: receiver.verify(token))
        for name, token in (
            ("hostile_1mb", big),
            ("hostile_unknown_kid", unknown_kid),
            ("hostile_nested", nested),
        )
    }
    plan: dict[str, Callable[[], object]] = {
        "raw_verify": raw_verify,
        "raw_sign": raw_sign,
        "identity_verify": lambda: receiver.verify(next_token()),
        "identity_token": lambda: sender.token(audience),
        **{name: call for name, (call, _) in hostile.items()},
    }
    ops = [Op(name, fn, calibrate(fn, args.sample)) for name, fn in plan.items()]
    samples = run_interleaved(ops, args.rounds)

    data = args.bundle.read_bytes()
    load = run_interleaved(
        [
            Op("json_loads", lambda: json.loads(data), 1),
            Op("load", lambda: Bundle.from_dict(json.loads(data)), 1),
        ],
        args.load_rounds,
    )
    result: dict[str, Any] = {
        "version": spiffile.__version__,
        "python": sys.version.split()[0],
        "median_s": {name: statistics.median(values) for name, values in samples.items()},
        "ratio": {
            "verify": median_ratio(samples["identity_verify"], samples["raw_verify"]),
            "token": median_ratio(samples["identity_token"], samples["raw_sign"]),
            **{name: median_ratio(samples[name], samples["identity_verify"]) for name in hostile},
            "load_100k": median_ratio(load["load"], load["json_loads"]),
        },
        "load_s": {name: statistics.median(values) for name, values in load.items()},
        "raised": {name: raised for name, (_, raised) in hostile.items()},
    }
    workdir.cleanup()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
