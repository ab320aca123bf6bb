"""Recognise and parse the key and certificate files an admin imports.

Accepted: PKCS#12 (password), PEM or DER X.509 certificates (one or a chain,
also PKCS#7 certificate bundles), PEM or DER private keys (PKCS#8, encrypted
PKCS#8, traditional RSA/EC), and armored or binary OpenPGP public or secret
keys (one or a keyring). :func:`parse` turns a file into a :class:`Bundle` or
raises :class:`KeyFormatError` with one line that tells the admin what is wrong.

OpenPGP keys, version 4 and version 6 (RFC 9580), are read by the engine's own
key model (:mod:`ciphermilter.formats.openpgp.keys`); a part it cannot use is
named in a warning at import, never discovered by a message.
Passphrase-protected secret keys are unlocked here and handed on
unprotected, because the store protects them with its master key and the milter
must never need a passphrase.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import cast

from asn1crypto import core as asn1_core
from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from ciphermilter.formats.openpgp import armor, certifications, keys, secretkeys
from ciphermilter.formats.openpgp.keymaterial import KeyMaterialError
from ciphermilter.formats.openpgp.keys import OpenPGPKey
from ciphermilter.formats.openpgp.packets import OpenPGPError, packets as openpgp_packets


class KeyFormatError(ValueError):
    """The file is not something we can import; ``str()`` is one line for the admin."""


class SecretNeeded(KeyFormatError):
    """The file is protected and no password (``kind == "password"``) or passphrase was given."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class Bundle:
    certificates: list[bytes] = field(default_factory=list)  # DER
    private_keys: list[PrivateKeyTypes] = field(default_factory=list)  # cryptography private key objects
    pgp_keys: list[OpenPGPKey] = field(default_factory=list)  # secret keys unprotected
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- entry point


def parse(data: bytes, *, password: bytes | None = None, passphrase: str | None = None) -> Bundle:
    if not data.strip():
        raise KeyFormatError("empty file")
    bundle = _parse_any(data, password, passphrase)
    if not (bundle.certificates or bundle.private_keys or bundle.pgp_keys):
        raise KeyFormatError("no key or certificate found")
    return bundle


def _parse_any(data: bytes, password: bytes | None, passphrase: str | None) -> Bundle:
    if is_export(data):
        raise KeyFormatError("this is a ciphermilter export: read it with 'ciphermilter store import'")
    if armor.ARMOR_BEGIN in data:
        return parse_openpgp(dearmor_keys(data), passphrase)
    if b"-----BEGIN " in data:
        return parse_pem(data, password)
    if _looks_like_openpgp(data):
        return parse_openpgp([data], passphrase)
    return _parse_der(data, password)


# ---------------------------------------------------------------------------- BEGIN/END blocks


@dataclass
class Block:
    label: bytes
    start: int  # of the BEGIN line
    body_start: int  # after the BEGIN line's line break
    body_end: int  # where the END line starts
    end: int  # after the END line's label and dashes


def delimited_blocks(data: bytes, begin: re.Pattern[bytes], end: re.Pattern[bytes]) -> list[Block]:
    """Every block from a ``begin`` match to the first ``end`` match after it with the same label (group 1),
    in order and apart; a BEGIN without its END is skipped.

    What ``begin(.*?)end-with-backreference`` finds, in O(n log n): the END
    lines are indexed once, by label, and each BEGIN looks its END up there.
    """
    ends: dict[bytes, list[tuple[int, int]]] = {}  # label -> (start, end) of its END lines, in order
    for match in end.finditer(data):
        ends.setdefault(match.group(1), []).append((match.start(), match.end(1) + len(b"-----")))
    blocks, pos = [], 0
    while (opening := begin.search(data, pos)) is not None:
        label = opening.group(1)
        candidates = ends.get(label, [])
        index = bisect.bisect_left(candidates, (opening.end(), 0))
        if index == len(candidates):
            pos = opening.end()  # no BEGIN can start inside the BEGIN line it matched
            continue
        body_end, block_end = candidates[index]
        blocks.append(Block(label, opening.start(), opening.end(), body_end, block_end))
        pos = block_end
    return blocks


# ---------------------------------------------------------------------------- X.509 / PKCS


# A PEM block: its BEGIN line, then everything up to the first END line of the same label. Found by
# delimited_blocks (a BEGIN search and an index of the END lines), not by one regex: "(.*?)-----END \1-----"
# searched to the end of the data for every BEGIN without its END, quadratic (8,000 such lines, 280 KB: 12 s).
_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n")
_PEM_END = re.compile(rb"(?=-----END ([A-Z0-9 ]+)-----)")  # a look-ahead: END lines may share their dashes
_CERTIFICATE_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"}
_KEY_LABELS = {b"PRIVATE KEY", b"ENCRYPTED PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY"}
_PKCS7_LABELS = {b"PKCS7", b"CMS"}
_PKCS12_LABEL = b"PKCS12"  # base64 of a DER PKCS#12 (no RFC 7468 label): gpgsm imports it, test suites ship it


def parse_pem(data: bytes, password: bytes | None) -> Bundle:
    bundle = Bundle()
    blocks = delimited_blocks(data, _PEM_BEGIN, _PEM_END)
    if not blocks:
        raise KeyFormatError("PEM data without a complete BEGIN/END block (truncated?)")
    for block in blocks:
        label, text = block.label, data[block.start:block.end]
        name = label.decode("ascii")
        if label in _CERTIFICATE_LABELS:
            bundle.certificates.append(_pem_certificate(text, name))
        elif label in _KEY_LABELS:
            bundle.private_keys.append(_private_key(text, password, serialization.load_pem_private_key, name))
        elif label in _PKCS7_LABELS:
            bundle.certificates.extend(_pkcs7(text, pkcs7.load_pem_pkcs7_certificates))
        elif label == _PKCS12_LABEL:
            inside = parse_pkcs12(_pem_body(text, name), password)
            bundle.certificates.extend(inside.certificates)
            bundle.private_keys.extend(inside.private_keys)
        else:
            raise KeyFormatError(f"unsupported PEM block '{name}'")
    return bundle


def _pem_body(text: bytes, name: str) -> bytes:
    """The DER between a block's BEGIN and END lines."""
    try:
        return base64.b64decode(b"".join(text.splitlines()[1:-1]))
    except binascii.Error:
        raise KeyFormatError(f"corrupt PEM block '{name}' (bad base64)") from None


def _pem_certificate(text: bytes, name: str) -> bytes:
    # TRUSTED CERTIFICATE (OpenSSL's cert + trust settings) is a certificate followed by extra DER
    body = _pem_body(text, name)
    der = _first_der_element(body) if name == "TRUSTED CERTIFICATE" else body
    return _certificate_der(der, f"corrupt PEM block '{name}'")


# cryptography raises InvalidVersion (not a ValueError) for a certificate whose version field is damaged.
_BAD_CERTIFICATE = (ValueError, x509.InvalidVersion)


def _certificate_der(der: bytes, error: str) -> bytes:
    try:
        x509.load_der_x509_certificate(der)
    except x509.InvalidVersion as exc:  # its text is words: "Invalid X509 version 6"
        raise KeyFormatError(f"{error}: {exc}") from None
    except ValueError:  # its text is the parser's debug output (ParseError { kind: ShortData ... })
        raise KeyFormatError(f"{error}: not a readable X.509 certificate") from None
    return der


def _private_key(data: bytes, password: bytes | None, loader: Callable[..., PrivateKeyTypes],
                 name: str) -> PrivateKeyTypes:
    try:
        return loader(data, password=password)
    except TypeError:  # cryptography's way to say "password missing" or "not encrypted"
        if password is None:
            raise SecretNeeded("the private key is encrypted: give its password", "password") from None
        # the password was meant for another file of the same command (a PKCS#12): not needed here
        return _private_key(data, None, loader, name)
    except ValueError as exc:
        if password is not None and "ENCRYPTED" in name.upper():
            raise KeyFormatError("wrong password for the encrypted private key") from None
        raise KeyFormatError(f"corrupt or unsupported private key ({name}): damaged, or an algorithm or curve"
                             " that cannot be read") from None
    except UnsupportedAlgorithm:
        raise KeyFormatError(f"unsupported private key ({name}): its algorithm cannot be read") from None


def _pkcs7(data: bytes, loader: Callable[[bytes], list[x509.Certificate]]) -> list[bytes]:
    try:
        with warnings.catch_warnings():  # bundles with unsorted SETs (openssl's) parse as BER, with a warning
            warnings.simplefilter("ignore")
            certs = loader(data)
    except ValueError:
        raise KeyFormatError("corrupt PKCS#7 certificate bundle") from None
    return [cert.public_bytes(serialization.Encoding.DER) for cert in certs]


def _first_der_element(data: bytes) -> bytes:
    """The first complete DER element of ``data``; KeyFormatError when it is cut short."""
    try:
        element = asn1_core.Asn1Value.load(data, strict=False)
        return cast(bytes, element.dump())  # asn1crypto is untyped
    except (ValueError, TypeError):
        raise KeyFormatError("truncated or corrupt DER data") from None


def _der_is_complete(data: bytes) -> bool:
    try:
        asn1_core.Asn1Value.load(data, strict=True)
        return True
    except (ValueError, TypeError):
        return False


def _is_pkcs12(data: bytes) -> bool:
    try:
        pfx = asn1_pkcs12.Pfx.load(data)
        return pfx["version"].native == "v3" and pfx["auth_safe"]["content_type"].native in ("data", "signed_data")
    except (ValueError, TypeError, KeyError):
        return False


def _parse_der(data: bytes, password: bytes | None) -> Bundle:
    if data[:1] != b"\x30":
        raise KeyFormatError("unknown format (not PKCS#12, PEM, DER or OpenPGP)")
    if not _der_is_complete(data):
        raise KeyFormatError("truncated or corrupt DER data")
    if _is_pkcs12(data):
        return parse_pkcs12(data, password)
    try:
        return Bundle(certificates=[x509.load_der_x509_certificate(data).public_bytes(serialization.Encoding.DER)])
    except _BAD_CERTIFICATE:
        pass
    try:
        return Bundle(private_keys=[_private_key(data, password, serialization.load_der_private_key, "DER")])
    except SecretNeeded:
        raise
    except KeyFormatError:
        pass
    try:
        return Bundle(certificates=_pkcs7(data, pkcs7.load_der_pkcs7_certificates))
    except KeyFormatError:
        pass
    raise KeyFormatError("unknown DER structure (not a certificate, private key, PKCS#12 or PKCS#7)")


def parse_pkcs12(data: bytes, password: bytes | None) -> Bundle:
    # Try no password, then the empty one, when the admin gave none: some tools write those.
    attempts = [password] if password is not None else [None, b""]
    for attempt in attempts:
        try:
            with warnings.catch_warnings():  # BER-encoded files (NSS) work but warn
                warnings.simplefilter("ignore")
                loaded = pkcs12.load_pkcs12(data, attempt)
            break
        except ValueError:
            continue
        except UnsupportedAlgorithm:
            raise KeyFormatError("unsupported PKCS#12 protection: re-export it with AES (openssl pkcs12 -export"
                                 " -keypbe AES-256-CBC -certpbe AES-256-CBC)") from None
    else:
        if password is None:
            raise SecretNeeded("the PKCS#12 file is password protected: give its password", "password")
        raise KeyFormatError("wrong PKCS#12 password (or corrupt PKCS#12 file)")
    bundle = Bundle()
    if loaded.cert is not None:
        bundle.certificates.append(loaded.cert.certificate.public_bytes(serialization.Encoding.DER))
    bundle.certificates.extend(c.certificate.public_bytes(serialization.Encoding.DER) for c in loaded.additional_certs)
    if loaded.key is not None:
        bundle.private_keys.append(loaded.key)
    if not bundle.certificates and not bundle.private_keys:
        raise KeyFormatError("the PKCS#12 file holds neither a certificate nor a key")
    return bundle


# ---------------------------------------------------------------------------- OpenPGP

# An armored key: its BEGIN line, then everything up to the first END line of the same kind at a line start
# (delimited_blocks, as for PEM blocks above).
_ARMOR_BEGIN = re.compile(rb"-----BEGIN PGP ([A-Z ,/0-9]+)-----\r?\n")
_ARMOR_END = re.compile(rb"^-----END PGP ([A-Z ,/0-9]+)-----", re.M)
_KEY_TAGS = {5, 6}  # secret key, public key: the packets that start a transferable key


def dearmor_keys(data: bytes) -> list[bytes]:
    """The key blocks of armored OpenPGP data, read strictly (:func:`armor.dearmor`): a damaged key is refused."""
    blobs = []
    for block in delimited_blocks(data, _ARMOR_BEGIN, _ARMOR_END):
        kind = block.label.decode("ascii")
        if kind not in ("PUBLIC KEY BLOCK", "PRIVATE KEY BLOCK"):
            raise KeyFormatError(f"armored OpenPGP '{kind}' is not a key")
        try:
            blobs.append(armor.dearmor(data[block.start:block.end], strict=True).data)
        except OpenPGPError:
            raise KeyFormatError("corrupt armored OpenPGP key (bad base64)") from None
    if not blobs:
        raise KeyFormatError("armored OpenPGP data without a complete BEGIN/END block (truncated?)")
    return blobs


def _looks_like_openpgp(data: bytes) -> bool:
    first = data[0]
    if not first & 0x80:
        return False
    tag = first & 0x3F if first & 0x40 else (first >> 2) & 0x0F
    return tag in _KEY_TAGS


def _packets(data: bytes) -> Iterator[tuple[int, bytes, int]]:
    """(tag, body, start) of every packet of a key; KeyFormatError when one is cut short or streamed."""
    try:
        for packet in openpgp_packets(data):
            if packet.streamed:
                raise KeyFormatError("corrupt OpenPGP data (a partial or indeterminate length in a key)")
            yield packet.tag, packet.body, packet.start
    except OpenPGPError as exc:
        raise KeyFormatError(f"truncated or corrupt OpenPGP data ({exc})") from None


def packet_contents(data: bytes) -> set[tuple[int, bytes]]:
    """(tag, body) of every packet: equal for the same key however its packet headers were written."""
    return {(tag, body) for tag, body, _ in _packets(data)}


def read_openpgp_keys(blob: bytes) -> list[OpenPGPKey]:
    """The transferable keys of a binary keyring (:mod:`ciphermilter.formats.openpgp.keys`): version 4 and
    version 6 keys; KeyFormatError with the reason when one cannot be read at all."""
    try:
        return keys.parse_keys(blob)
    except OpenPGPError as exc:
        raise KeyFormatError(f"OpenPGP key not usable: {exc}") from None


def parse_openpgp(blobs: list[bytes], passphrase: str | None, *, check_user_ids: bool = True) -> Bundle:
    bundle = Bundle()
    for blob in blobs:
        for key in read_openpgp_keys(blob):
            if check_user_ids:
                key = _drop_unsigned_user_ids(_drop_unproven_self_signatures(key, bundle.warnings), bundle.warnings)
            key = _unprotected(key, passphrase)
            bundle.warnings.extend(_usability_warnings(key))
            bundle.pgp_keys.append(key)
    return bundle


def _drop_unproven_self_signatures(key: OpenPGPKey, warnings_out: list[str]) -> OpenPGPKey:
    """The key without the self-signatures its primary key did not make (they would set flags and expiry)."""
    unproven = certifications.unproven_self_signatures(key)
    if not unproven:
        return key
    warnings_out.append(f"OpenPGP key {key.fingerprint}: {len(unproven)} self-signature(s) dropped that do not verify (or cannot be checked)")
    return key.without_packets(unproven)


def _drop_unsigned_user_ids(key: OpenPGPKey, warnings_out: list[str]) -> OpenPGPKey:
    """The key without the user IDs that its primary key did not certify; a warning for each.

    Anyone can append a user ID packet to a key on a keyserver (keyserver pollution); only the key's own
    certification (RFC 9580 section 5.2.1, "self-signature") says its owner claims the address. gpg drops
    such user IDs on import ("no valid self-signature"); kept, they would give the owner's signatures
    ``PGP-Signer-Email`` of any address, and make that address a reader of the key. Checked here, once at
    import, so what the store keeps (and every message reads) holds only certified user IDs.
    """
    certified = certifications.certified_user_ids(key)
    dropped = [body for body in certifications.user_id_packets(key) if body not in certified]
    if not dropped:
        return key
    warnings_out.extend(f"OpenPGP key {key.fingerprint}: user ID {keys.user_id_text(body)!r} dropped:"
                        " no valid self-signature" for body in dropped)
    return key.without_user_ids(set(dropped))


def _unprotected(key: OpenPGPKey, passphrase: str | None) -> OpenPGPKey:
    """The key with its secret parts unlocked (RFC 9580 section 5.5.3): the store protects them with its
    master key, and the milter must never need a passphrase."""
    if not key.is_protected:
        return key
    if passphrase is None:
        raise SecretNeeded(f"OpenPGP secret key {key.fingerprint} is passphrase protected: give its passphrase",
                           "passphrase")
    try:
        key.unlock(passphrase)
    except KeyMaterialError as exc:
        if str(exc) == secretkeys.WRONG_PASSPHRASE:
            raise KeyFormatError(f"wrong passphrase for OpenPGP secret key {key.fingerprint}") from None
        raise KeyFormatError(f"OpenPGP secret key {key.fingerprint} not usable: {exc}") from None
    return key


def _usability_warnings(key: OpenPGPKey) -> list[str]:
    """What a message would otherwise find out: parts that make no usable key, a secret key that can decrypt
    nothing (issue 16: such a key imported silently, then failed every message that tried it)."""
    found = [f"OpenPGP key {key.fingerprint}: {problem}: it will not be used" for problem in key.unusable_parts()]
    if not key.is_public and not any(part.has_secret and part.can_encrypt and part.unusable is None
                                     for part in key.parts):
        found.append(f"OpenPGP key {key.fingerprint}: no secret subkey may decrypt (key flags or algorithm):"
                     " mail encrypted to it cannot be read")
    return found


# The first bytes of a ``ciphermilter store export`` document (:mod:`ciphermilter.store.keyexport`): not a key file.
EXPORT_FORMAT = "ciphermilter-export"


def is_export(data: bytes) -> bool:
    return data.lstrip()[:1] == b"{" and EXPORT_FORMAT.encode() in data[:200]
