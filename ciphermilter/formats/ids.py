"""Identifiers shared by the store and the CMS engine.

A CMS RecipientInfo names its certificate by issuer and serial number or by
subject key identifier; the store indexes certificates the same way. Both
sides derive the lookup key from asn1crypto's normalised name
(``Name.hashable``), so that a PrintableString and a UTF8String spelling of
the same DN match, as RFC 5280 section 7.1 asks.
"""

from __future__ import annotations

import hashlib

from asn1crypto import x509 as asn1_x509

from ciphermilter.formats import memo

# RFC 4514 section 3 short names; anything else is written as its dotted OID.
_SHORT_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.6": "C",
    "2.5.4.9": "STREET",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}
_SPECIAL = set('"+,;<>\\')


def name_key(name: asn1_x509.Name) -> str:
    """Stable lookup key of a distinguished name (hex SHA-256 of its normalised form)."""
    return _name_key_of_der(name.dump())


# Memoised by the name's DER: the same few issuers come back on every message, and asn1crypto's
# normalisation (stringprep) and the RFC 4514 text cost more than the RSA operation of a small message.
@memo.of_small_encodings(maxsize=4096)
def _name_key_of_der(der: bytes) -> str:
    return hashlib.sha256(asn1_x509.Name.load(der).hashable.encode("utf-8")).hexdigest()


def _escape_value(text: str) -> str:
    out = []
    for pos, char in enumerate(text):
        if char in _SPECIAL or (char == "#" and pos == 0) or (char == " " and pos in (0, len(text) - 1)):
            out.append("\\" + char)
        elif " " <= char <= "~":
            out.append(char)
        else:  # non-printable or non-ASCII: hex of each UTF-8 byte, so the header stays ASCII
            out.extend(f"\\{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
    return "".join(out)


def _attribute(type_and_value: asn1_x509.AttributeTypeAndValue) -> str:
    oid = type_and_value["type"].dotted
    value = type_and_value["value"]
    label = _SHORT_NAMES.get(oid)
    if label is None:
        label = oid
        if oid != "1.2.840.113549.1.9.1":  # emailAddress is a plain IA5String: readable as text
            return f"{label}=#{value.dump().hex().upper()}"
    native = value.native
    text = native if isinstance(native, str) else str(native)
    return f"{label}={_escape_value(text)}"


def rfc4514(name: asn1_x509.Name) -> str:
    """RFC 4514 string of ``name``: last RDN first, ASCII only (``\\XX`` escapes)."""
    return _rfc4514_of_der(name.dump())


@memo.of_small_encodings(maxsize=4096)
def _rfc4514_of_der(der: bytes) -> str:
    rdns = asn1_x509.Name.load(der).chosen
    return ",".join("+".join(_attribute(atv) for atv in rdn) for rdn in reversed(list(rdns)))


def issuer_serial_id(issuer: asn1_x509.Name, serial: int) -> str:
    """``issuer=<DN>; serial=<HEX>``: the spec's text form of an issuerAndSerialNumber."""
    return f"issuer={rfc4514(issuer)}; serial={serial_hex(serial)}"


def serial_hex(serial: int) -> str:
    if serial < 0:  # negative serials exist in the wild; keep the sign visible
        return "-" + format(-serial, "X")
    return format(serial, "X")


def ski_id(ski: bytes) -> str:
    return f"ski={ski.hex().upper()}"


def sha256_hex(data: bytes | bytearray | memoryview) -> str:
    """How reports identify content (plaintext, certificates) without holding it."""
    return hashlib.sha256(data).hexdigest()
