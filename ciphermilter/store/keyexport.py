"""The container ``ciphermilter store export`` writes and ``store import`` reads: every key of a gateway in
one JSON document, private keys under the export password.

Apart from :mod:`ciphermilter.formats.keyfiles` (which reads key files as an
admin or a message hands them over) because it writes as well as reads, and
reads what the store itself wrote: user IDs were checked when a key was first
imported, so they are not checked again.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

from ciphermilter.formats.keyfiles import (EXPORT_FORMAT, KeyFormatError, dearmor_keys, parse_openpgp, parse_pem,
                                          parse_pkcs12)
from ciphermilter.formats.openpgp.keys import OpenPGPKey

# ---------------------------------------------------------------------------- export container
#
# ``ciphermilter store export`` writes one JSON document (UTF-8) so that an admin can move every key to a
# new gateway and read it with ordinary tools:
#
#   {"format": "ciphermilter-export", "version": 1, "created": "<ISO 8601>",
#    "certificates":  [{"pem": "<PEM certificate>", "origin": "imported" | "harvested"}, ...],
#    "smime_keys":    ["<base64 PKCS#12: one private key with its certificate, under the export password>", ...],
#    "openpgp_keys":  [{"armored": "<armored key>", "secret": true | false, "origin": "..."}, ...],
#    "trust_anchors": ["<PEM certificate>", ...],
#    "domains":       ["example.com", "*.example.org", ...]}
#
# Secret OpenPGP keys are protected with the export password (secretkeys.protect: v4 AES-256 CFB under an
# iterated and salted S2K, v6 AES-256 OCB under Argon2).

EXPORT_VERSION = 1


@dataclass
class ExportContents:
    certificates: list[tuple[bytes, str]] = field(default_factory=list)  # (DER, origin)
    private_keys: list[PrivateKeyTypes] = field(default_factory=list)  # as read back: their certificates are above
    smime_keys: list[tuple[bytes, PrivateKeyTypes]] = field(default_factory=list)  # to write: (DER, key)
    pgp_keys: list[tuple[OpenPGPKey, str]] = field(default_factory=list)  # (key, origin)
    trust_anchors: list[bytes] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    bindings: list[tuple[str, str]] = field(default_factory=list)  # (key ID, address or @domain): readers
    warnings: list[str] = field(default_factory=list)


def certificate_pem(der: bytes) -> str:
    body = base64.encodebytes(der).decode("ascii").replace("\n", "")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


# The private keys PKCS#12 carries (cryptography's PKCS12PrivateKeyTypes).
_PKCS12_KEYS = (rsa.RSAPrivateKey, dsa.DSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey,
                ed448.Ed448PrivateKey)


def pkcs12_bytes(der: bytes, private_key: PrivateKeyTypes, password: bytes | None,
                 name: bytes | None = None) -> bytes:
    """The certificate and its private key as PKCS#12; KeyFormatError for a key PKCS#12 cannot carry."""
    if not isinstance(private_key, _PKCS12_KEYS):  # the store keeps RSA, EC and EdDSA keys: not reached
        raise KeyFormatError(f"a {type(private_key).__name__} cannot be exported as PKCS#12")
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    return pkcs12.serialize_key_and_certificates(name, private_key, x509.load_der_x509_certificate(der), None,
                                                 encryption)


def write_export(contents: ExportContents, password: str, created: str) -> bytes:
    if not password:
        raise KeyFormatError("an export needs a password to protect its private keys")
    document = {
        "format": EXPORT_FORMAT, "version": EXPORT_VERSION, "created": created,
        "certificates": [{"pem": certificate_pem(der), "origin": origin} for der, origin in contents.certificates],
        "smime_keys": [base64.b64encode(pkcs12_bytes(der, key, password.encode("utf-8"))).decode("ascii")
                       for der, key in contents.smime_keys],
        "openpgp_keys": [{"armored": key.armored(None if key.is_public else password),
                          "secret": not key.is_public, "origin": origin} for key, origin in contents.pgp_keys],
        "trust_anchors": [certificate_pem(der) for der in contents.trust_anchors],
        "domains": list(contents.domains),
        "bindings": [{"key": key_id, "address": address} for key_id, address in contents.bindings],
    }
    return json.dumps(document, indent=1).encode("utf-8")


def read_export(data: bytes, password: str | None) -> ExportContents:
    try:
        document = json.loads(data.decode("utf-8"))
        if document.get("format") != EXPORT_FORMAT:
            raise KeyFormatError("not a ciphermilter export")
        if document.get("version") != EXPORT_VERSION:
            raise KeyFormatError(f"export version {document.get('version')} is not supported")
        return _export_contents(document, password)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeyFormatError("corrupt or truncated export file (not valid JSON)") from None
    except (KeyError, TypeError, AttributeError, binascii.Error):
        raise KeyFormatError("corrupt export file (unexpected structure)") from None


def _export_contents(document: dict[str, Any], password: str | None) -> ExportContents:
    needs_password = document["smime_keys"] or any(item["secret"] for item in document["openpgp_keys"])
    if needs_password and not password:
        raise KeyFormatError("the export holds private keys: give its password")
    contents = ExportContents(domains=[str(domain) for domain in document["domains"]],
                              bindings=[(str(item["key"]), str(item["address"]))
                                        for item in document.get("bindings", [])])  # none before schema 2
    for item in document["certificates"]:
        contents.certificates.extend((der, str(item["origin"])) for der in parse_pem(item["pem"].encode(), None).certificates)
    for anchor in document["trust_anchors"]:
        contents.trust_anchors.extend(parse_pem(anchor.encode(), None).certificates)
    for blob in document["smime_keys"]:
        try:
            bundle = parse_pkcs12(base64.b64decode(blob, validate=True), (password or "").encode("utf-8"))
        except KeyFormatError as exc:
            raise KeyFormatError(str(exc).replace("PKCS#12 password", "export password")) from None
        contents.certificates.extend((der, "imported") for der in bundle.certificates)
        contents.private_keys.extend(bundle.private_keys)
    for item in document["openpgp_keys"]:
        # The store's own export: its user IDs were checked when first imported (stores made with pgpy
        # hold self-signatures re-serialised without the feature bits pgpy did not know: they no longer verify).
        bundle = parse_openpgp(dearmor_keys(item["armored"].encode("ascii")), password, check_user_ids=False)
        contents.pgp_keys.extend((key, str(item["origin"])) for key in bundle.pgp_keys)
        contents.warnings.extend(bundle.warnings)
    return contents
