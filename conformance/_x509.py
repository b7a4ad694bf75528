"""Deterministic X.509-SVIDs (valid and hostile) for the ``verify-x509`` vectors.

Built on pyca/cryptography only.  Keys come from fixed seeds
(``ec.derive_private_key``), serial numbers and validity windows are fixed,
and ECDSA signatures use RFC 6979 deterministic nonces, so the same code
always writes the same certificates.  These are PUBLIC TEST KEYS.

``CertForge`` is also what the tests use to make certificates with one
property changed (tests/svid/test_svid_x509.py, tests/test_tls.py).
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertForge", "Issued", "seeded_key", "x509_vectors"]

UTC = datetime.timezone.utc
_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

#: keyUsage flags, by name, in the order of x509.KeyUsage's arguments.
_KU = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)
LEAF_USAGE = frozenset({"digital_signature", "key_encipherment", "key_agreement"})
CA_USAGE = frozenset({"key_cert_sign", "crl_sign"})


def seeded_key(seed: str) -> ec.EllipticCurvePrivateKey:
    """A P-256 key derived from *seed* (deterministic; for tests and vectors only)."""
    digest = int.from_bytes(hashlib.sha256(seed.encode("utf-8")).digest(), "big")
    return ec.derive_private_key(digest % (_ORDER - 1) + 1, ec.SECP256R1())


def _key_usage(flags: frozenset[str]) -> x509.KeyUsage:
    return x509.KeyUsage(*(name in flags for name in _KU))


def pem(*certificates: x509.Certificate) -> bytes:
    """Certificates as concatenated PEM."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """A key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return pem(self.cert)

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)


@dataclass
class CertForge:
    """Makes certificates around a fixed ``now`` (seconds since the epoch)."""

    now: int
    _serial: int = field(default=0x5F1F, repr=False)

    def _time(self, offset: int) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.now + offset, tz=UTC)

    def certificate(
        self,
        seed: str,
        *,
        issuer: Issued | None = None,
        uris: Sequence[str] = (),
        dns: Sequence[str] = (),
        ca: bool | None = False,
        usage: frozenset[str] | None = LEAF_USAGE,
        not_before: int = -3600,
        not_after: int = 3600,
        ekus: Sequence[x509.ObjectIdentifier] = (
            ExtendedKeyUsageOID.SERVER_AUTH,
            ExtendedKeyUsageOID.CLIENT_AUTH,
        ),
        extra: Sequence[tuple[x509.ExtensionType, bool]] = (),
        common_name: str | None = None,
    ) -> Issued:
        """One certificate for the key of *seed*, signed by *issuer* (self-signed if None).

        *ca* None leaves out basic constraints; *usage* None leaves out key usage;
        *not_before*/*not_after* are offsets from ``now``.
        """
        key = seeded_key(seed)
        names = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SPIFFE")]
        if common_name:
            names.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        subject = x509.Name(names)
        if issuer is None:
            issuer_name, signer = subject, key
        else:
            issuer_name, signer = issuer.cert.subject, issuer.key
        self._serial += 1
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big") | 1)
            .not_valid_before(self._time(not_before))
            .not_valid_after(self._time(not_after))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        )
        if issuer is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
            )
        if ca is not None:
            builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
        if usage is not None:
            builder = builder.add_extension(_key_usage(usage), True)
        if ekus and not ca:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(ekus)), False)
        general: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
        general += [x509.DNSName(d) for d in dns]
        if general:
            builder = builder.add_extension(x509.SubjectAlternativeName(general), False)
        for extension, critical in extra:
            builder = builder.add_extension(extension, critical)
        cert = builder.sign(signer, hashes.SHA256(), ecdsa_deterministic=True)
        return Issued(cert, key)

    def authority(self, seed: str, trust_domain: str, **options: Any) -> Issued:
        """A self-signed root CA for *trust_domain* (its URI SAN is the trust domain's ID)."""
        options.setdefault("not_before", -86400)
        options.setdefault("not_after", 86400 * 30)
        return self.certificate(
            seed, uris=[f"spiffe://{trust_domain}"], ca=True, usage=CA_USAGE, **options
        )

    def intermediate(self, seed: str, issuer: Issued, trust_domain: str, **options: Any) -> Issued:
        """A CA signed by *issuer*."""
        options.setdefault("not_before", -86400)
        options.setdefault("not_after", 86400 * 7)
        return self.certificate(
            seed,
            issuer=issuer,
            uris=[f"spiffe://{trust_domain}"],
            ca=True,
            usage=CA_USAGE,
            **options,
        )

    def leaf(self, seed: str, issuer: Issued, spiffe_id: str, **options: Any) -> Issued:
        """An X.509-SVID leaf for *spiffe_id* signed by *issuer*."""
        uris = options.pop("uris", [spiffe_id])
        return self.certificate(seed, issuer=issuer, uris=uris, **options)


def _tampered(cert: x509.Certificate) -> bytes:
    """The certificate with one bit of its signature flipped, as PEM."""
    der = bytearray(cert.public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01
    return pem(x509.load_der_x509_certificate(bytes(der)))


def x509_vectors(now: int) -> dict[str, Any]:
    """The ``verify-x509`` vectors: SVID chains to accept and to reject, with the reason."""
    forge = CertForge(now)
    td, other = "example.org", "other.example"
    root = forge.authority("x509/root", td)
    other_root = forge.authority("x509/other-root", other)
    stranger = forge.authority("x509/stranger-root", td)
    inter = forge.intermediate("x509/intermediate", root, td)
    wid = f"spiffe://{td}/orders"
    ours = {td: pem(root.cert).decode()}
    both = {td: pem(root.cert).decode(), other: pem(other_root.cert).decode()}

    def leaf(seed: str, issuer: Issued = root, spiffe_id: str = wid, **options: Any) -> bytes:
        return forge.leaf(f"x509/leaf/{seed}", issuer, spiffe_id, **options).pem

    valid: list[dict[str, Any]] = []
    invalid: list[dict[str, Any]] = []

    def accept(vid: str, description: str, chain: bytes, spiffe_id: str = wid, **kw: Any) -> None:
        valid.append(
            {
                "id": vid,
                "level": "x509",
                "description": description,
                "input": {"chain": chain.decode(), "authorities": kw.get("auth", ours), "now": now},
                "expected": {"ok": True, "id": spiffe_id},
            }
        )

    def reject(vid: str, reason: str, description: str, chain: bytes, **kw: Any) -> None:
        invalid.append(
            {
                "id": vid,
                "level": "x509",
                "reason": reason,
                "description": description,
                "input": {
                    "chain": chain.decode(errors="replace"),
                    "authorities": kw.get("auth", ours),
                    "now": kw.get("at", now),
                },
                "expected": {"ok": False, "error": "invalid_x509_svid"},
            }
        )

    accept("direct", "leaf signed by the trust domain's root", leaf("direct"))
    accept(
        "intermediate",
        "leaf, intermediate; the root is the authority",
        leaf("via-inter", inter) + inter.pem,
    )
    accept("dns-too", "a DNS SAN beside the one URI SAN", leaf("dns", dns=["orders.internal"]))
    accept(
        "no-eku", "no extended key usage (X.509-SVID does not require one)", leaf("noeku", ekus=())
    )
    accept(
        "federated",
        "a leaf of another trust domain, with that domain's authorities",
        leaf("fed", other_root, f"spiffe://{other}/billing"),
        spiffe_id=f"spiffe://{other}/billing",
        auth=both,
    )
    accept(
        "at-not-after",
        "now equals notAfter: still valid",
        leaf("edge", not_after=0),
    )
    accept(
        "deep-path",
        "a long SPIFFE ID path",
        leaf("deep", spiffe_id=f"{wid}/a/b/c.d_e-f"),
        spiffe_id=f"{wid}/a/b/c.d_e-f",
    )

    reject("no-san", "x509_uri_san", "no subject alternative name", leaf("nosan", uris=[]))
    reject(
        "dns-only", "x509_uri_san", "a DNS SAN and no URI SAN", leaf("dnsonly", uris=[], dns=["a"])
    )
    reject(
        "two-uri-sans",
        "x509_uri_san",
        "two URI SANs (even both in the trust domain)",
        leaf("two", uris=[wid, f"spiffe://{td}/billing"]),
    )
    reject(
        "https-uri",
        "x509_spiffe_id",
        "the URI SAN is not spiffe://",
        leaf("https", uris=["https://example.org/orders"]),
    )
    reject(
        "bad-id",
        "x509_spiffe_id",
        "the URI SAN breaks the SPIFFE ID rules",
        leaf("badid", uris=[f"spiffe://{td}/a/../b"]),
    )
    reject(
        "upper-td",
        "x509_spiffe_id",
        "an uppercase trust domain",
        leaf("upper", uris=["spiffe://Example.org/orders"]),
    )
    reject(
        "trust-domain-id",
        "x509_spiffe_id",
        "the leaf names the trust domain itself (no path)",
        leaf("tdid", uris=[f"spiffe://{td}"]),
    )
    reject(
        "no-basic-constraints",
        "x509_leaf_ca",
        "the leaf has no basic constraints: X.509-SVID §4.1 has it set cA to false",
        leaf("nobc", ca=None),
    )
    reject(
        "leaf-ca",
        "x509_leaf_ca",
        "the leaf is a CA",
        leaf("ca", ca=True, usage=frozenset({"digital_signature"})),
    )
    reject("ca-as-leaf", "x509_leaf_ca", "the trust domain's root presented as a leaf", root.pem)
    reject(
        "no-key-usage",
        "x509_key_usage",
        "the leaf has no key usage extension",
        leaf("noku", usage=None),
    )
    reject(
        "no-digital-signature",
        "x509_key_usage",
        "the leaf lacks digitalSignature",
        leaf("nods", usage=frozenset({"key_encipherment"})),
    )
    reject(
        "key-cert-sign",
        "x509_key_usage",
        "the leaf asserts keyCertSign",
        leaf("kcs", usage=frozenset({"digital_signature", "key_cert_sign"})),
    )
    reject(
        "crl-sign",
        "x509_key_usage",
        "the leaf asserts cRLSign",
        leaf("crl", usage=frozenset({"digital_signature", "crl_sign"})),
    )
    bad_inter = forge.certificate(
        "x509/not-a-ca", issuer=root, uris=[f"spiffe://{td}"], ca=False, usage=CA_USAGE
    )
    reject(
        "intermediate-not-ca",
        "x509_signing_cert",
        "the certificate that signed the leaf is not a CA",
        leaf("under-nonca", bad_inter) + bad_inter.pem,
    )
    no_sign = forge.certificate(
        "x509/no-cert-sign",
        issuer=root,
        uris=[f"spiffe://{td}"],
        ca=True,
        usage=frozenset({"digital_signature"}),
    )
    reject(
        "intermediate-no-cert-sign",
        "x509_signing_cert",
        "the intermediate lacks keyCertSign",
        leaf("under-nosign", no_sign) + no_sign.pem,
    )
    reject(
        "expired",
        "x509_expired",
        "the leaf expired a second ago",
        leaf("expired", not_before=-7200, not_after=-1),
    )
    reject(
        "not-yet-valid",
        "x509_not_yet_valid",
        "the leaf is valid from a second on",
        leaf("future", not_before=1),
    )
    old_inter = forge.intermediate("x509/old-intermediate", root, td, not_after=-1)
    reject(
        "intermediate-expired",
        "x509_expired",
        "the intermediate expired",
        leaf("under-old", old_inter) + old_inter.pem,
    )
    reject(
        "unknown-trust-domain",
        "x509_unknown_trust_domain",
        "no authorities for the leaf's trust domain",
        leaf("unknown-td", other_root, f"spiffe://{other}/billing"),
    )
    reject(
        "wrong-trust-domain",
        "x509_untrusted",
        "an other.example ID signed by example.org's root: the chain must end at "
        "the ID's own trust domain",
        leaf("cross", root, f"spiffe://{other}/billing"),
        auth=both,
    )
    reject(
        "unknown-authority",
        "x509_untrusted",
        "signed by a root that is not in the bundle",
        leaf("stranger", stranger),
    )
    reject(
        "missing-intermediate",
        "x509_untrusted",
        "signed by an intermediate that is not presented",
        leaf("orphan", inter),
    )
    reject(
        "bad-signature",
        "x509_untrusted",
        "one bit of the leaf's signature flipped",
        _tampered(forge.leaf("x509/leaf/tampered", root, wid).cert),
    )
    reject(
        "unknown-critical-extension",
        "x509_untrusted",
        "the leaf carries a critical extension nobody understands",
        leaf(
            "critical",
            extra=[
                (
                    x509.UnrecognizedExtension(
                        x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00"
                    ),
                    True,
                )
            ],
        ),
    )
    reject(
        "self-signed-leaf",
        "x509_untrusted",
        "a self-signed leaf naming a workload",
        forge.certificate("x509/selfsigned", uris=[wid]).pem,
    )
    reject("empty", "x509_malformed", "no certificate at all", b"")
    reject(
        "garbage",
        "x509_malformed",
        "PEM armour around bytes that are not DER",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    reject(
        "key-in-chain",
        "x509_malformed",
        "a private key block in the certificate chain",
        leaf("withkey") + forge.leaf("x509/leaf/withkey", root, wid).key_pem,
    )
    return {"valid": valid, "invalid": invalid}
