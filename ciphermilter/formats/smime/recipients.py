"""The recipients of an enveloped CMS layer: who it names (RecipientInfos) and unwrapping a content key.

The RecipientInfos are read one by one as asn1crypto parses them: 40,000
of them took 2.5 s, so the caller sees each as it comes (``seen``), and a
count past the configured limit raises the handler contract's
``LimitExceeded`` at once. Unwrapping raises whatever the primitive raises:
the caller (:mod:`enveloped`) turns every failure of a real key into the one
reason ``decryption failed`` (no padding oracle, see :mod:`errors`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from asn1crypto import algos, cms, core
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF

from ciphermilter.core.contract import LimitExceeded
from ciphermilter.formats import memo
from ciphermilter.formats.smime import asn1, keywrap
from ciphermilter.formats.smime.algorithms import (EC_PUBLIC_KEY, ECDH_SCHEMES, KEY_WRAPS, MGF1, RSA_OAEP, RSA_PKCS1,
                                                   X448, X25519, hash_named, refused_name)
from ciphermilter.formats.smime.errors import UnsupportedAlgorithm

RecipientKind = Literal["ktri", "kari", "kekri", "pwri", "ori"]


@dataclass(frozen=True, kw_only=True)
class Recipient(asn1.Identifier):
    """One key that may open an enveloped layer: a RecipientInfo, or one RecipientEncryptedKey of a kari."""

    index: int  # position among the layer's recipients, for the INDEX of the headers
    kind: RecipientKind
    algorithm: str  # key encryption algorithm, dotted OID
    _info: core.Asn1Value = field(repr=False, compare=False)  # the RecipientInfo's chosen alternative
    _encrypted_key: bytes = field(default=b"", repr=False)


Seen = Callable[[Recipient], None]


def parse_recipients(recipient_infos: cms.RecipientInfos, limit: int, seen: Seen) -> list[Recipient]:
    out: list[Recipient] = []
    for recipient in each_recipient(recipient_infos):
        seen(recipient)
        out.append(recipient)
        if len(out) > limit:
            raise LimitExceeded(f"more than {limit} recipients in one layer")
    return out


def each_recipient(recipient_infos: Iterable[cms.RecipientInfo]) -> Iterator[Recipient]:
    """The recipients one by one, as they are parsed (asn1crypto parses each RecipientInfo on access)."""
    index = 0
    for info in recipient_infos:
        chosen = info.chosen
        if info.name in ("ktri", "kari"):
            algorithm = asn1.algorithm_oid(chosen["key_encryption_algorithm"])
            # A kari carries one RecipientEncryptedKey per recipient; a ktri is its own.
            keyed = chosen["recipient_encrypted_keys"] if info.name == "kari" else [chosen]
            for item in keyed:
                identifier = asn1.identify(item["rid"])
                yield Recipient(text=identifier.text, issuer_key=identifier.issuer_key, serial=identifier.serial,
                                ski=identifier.ski, index=index, kind=info.name, algorithm=algorithm,
                                _info=chosen, _encrypted_key=item["encrypted_key"].native)
                index += 1
            continue
        if info.name == "kekri":
            kek_id = chosen["kekid"]["key_identifier"].native
            yield Recipient(text=f"kek={kek_id.hex().upper()}", index=index, kind="kekri", algorithm="kek",
                            _info=chosen)
        elif info.name == "pwri":
            yield Recipient(text="password", index=index, kind="pwri", algorithm="password", _info=chosen)
        else:
            yield Recipient(text=f"other={asn1.dotted(chosen['ori_type'])}", index=index, kind="ori",
                            algorithm="other", _info=chosen)
        index += 1


def all_recipients(info: cms.ContentInfo) -> list[Recipient]:
    """Every recipient of an (Auth)EnvelopedData, past any limit: identifiers only, no key touched.

    For a layer :func:`enveloped.open_enveloped` refused (``LimitExceeded``): whether it names a key we
    hold still decides what happens to the message. Broken input gives the recipients before the break.
    """
    out: list[Recipient] = []
    try:
        out.extend(each_recipient(info["content"]["recipient_infos"]))
    except asn1.PARSE_ERRORS:
        pass
    return out


# ---------------------------------------------------------------- unwrapping the content key


def unwrap_content_key(recipient: Recipient, key: PrivateKeyTypes, key_size: int) -> bytes:
    if recipient.kind == "ktri":
        return _key_transport(recipient, key)
    return _key_agreement(recipient, key, key_size)


def _key_transport(recipient: Recipient, key: PrivateKeyTypes) -> bytes:
    if not isinstance(key, rsa.RSAPrivateKey):
        raise UnsupportedAlgorithm("key is not an RSA key")
    algorithm = recipient._info["key_encryption_algorithm"]
    if recipient.algorithm == RSA_PKCS1:
        # With OpenSSL >= 3.2 this returns random bytes of random length instead of raising on bad padding
        # (implicit rejection): checked for cryptography 50 (OpenSSL 4.0), which raises only for a value
        # not below the modulus (public). The content decryption then fails the same way a wrong key does.
        return key.decrypt(recipient._encrypted_key, asym_padding.PKCS1v15())
    if recipient.algorithm == RSA_OAEP:
        return key.decrypt(recipient._encrypted_key, _oaep_padding(algorithm["parameters"]))
    raise UnsupportedAlgorithm(f"unsupported key transport {recipient.algorithm}")


def _oaep_padding(params: algos.RSAESOAEPParams) -> asym_padding.OAEP:
    """RSAES-OAEP-params (RFC 4055); absent fields mean SHA-1 and MGF1-SHA-1."""
    if params.native is None or not isinstance(params, algos.RSAESOAEPParams):
        return asym_padding.OAEP(asym_padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)
    digest = hash_named(params["hash_algorithm"]["algorithm"].native)
    mgf = params["mask_gen_algorithm"]
    if asn1.dotted(mgf["algorithm"]) != MGF1:
        raise UnsupportedAlgorithm("unsupported OAEP mask generation")
    mgf_digest = hash_named(mgf["parameters"]["algorithm"].native)
    label = params["p_source_algorithm"]["parameters"].native or None
    return asym_padding.OAEP(asym_padding.MGF1(mgf_digest), digest, label)


def _key_agreement(recipient: Recipient, key: PrivateKeyTypes, key_size: int) -> bytes:
    kari = recipient._info
    kdf_hash = ECDH_SCHEMES.get(recipient.algorithm)
    if kdf_hash is None or not isinstance(key, AGREEMENT_KEYS):
        raise UnsupportedAlgorithm(f"unsupported key agreement {refused_name(recipient.algorithm)}")
    wrap_oid, wrap = _key_wrap(kari["key_encryption_algorithm"])
    if wrap_oid not in KEY_WRAPS:
        raise UnsupportedAlgorithm(f"unsupported key wrap {refused_name(wrap_oid)}")
    kek_size, scheme = KEY_WRAPS[wrap_oid]
    originator = kari["originator"]
    if originator.name != "originator_key":
        raise UnsupportedAlgorithm("static-static ECDH is not supported")
    shared = _shared_secret(key, originator.chosen)
    ukm = asn1.optional_octets(kari["ukm"])
    kek = X963KDF(kdf_hash(), kek_size, shared_info(wrap, ukm, kek_size)).derive(shared)
    return keywrap.unwrap(scheme, kek, recipient._encrypted_key)


AgreementKey = ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey | x448.X448PrivateKey
AGREEMENT_KEYS = (ec.EllipticCurvePrivateKey, x25519.X25519PrivateKey, x448.X448PrivateKey)


def _shared_secret(key: AgreementKey, originator: cms.OriginatorPublicKey) -> bytes:
    """ECDH with the sender's ephemeral key (RFC 5753 section 3.1.1, RFC 8418 section 2).

    The originator's key must be of the recipient key's algorithm: an X25519 recipient named under an EC
    point (or the reverse) is refused before the private key is used. X25519 and X448 refuse a point of
    small order (an all-zero shared secret, RFC 7748 section 6) with ValueError, a failed decryption.
    """
    algorithm = asn1.algorithm_oid(originator["algorithm"])
    point = asn1.octets(originator["public_key"])
    if isinstance(key, ec.EllipticCurvePrivateKey) and algorithm == EC_PUBLIC_KEY:
        return key.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(key.curve, point))
    if isinstance(key, x25519.X25519PrivateKey) and algorithm == X25519:
        return key.exchange(x25519.X25519PublicKey.from_public_bytes(point))
    if isinstance(key, x448.X448PrivateKey) and algorithm == X448:
        return key.exchange(x448.X448PublicKey.from_public_bytes(point))
    raise UnsupportedAlgorithm(f"originator key {algorithm} does not fit the recipient key")


def _key_wrap(algorithm: cms.KeyEncryptionAlgorithm) -> tuple[str, bytes]:
    """The key wrap a key agreement algorithm names in its parameters: its dotted OID and its encoding."""
    return _key_wrap_encoded(type(algorithm), algorithm.dump())


# Memoised like asn1.identify_encoded: a sender's key agreement parameters come back on every message,
# and asn1crypto's parse and encoding around them took as long as the ECDH itself.
@memo.of_small_encodings(maxsize=256)
def _key_wrap_encoded(spec: type[core.Sequence], encoded: bytes) -> tuple[str, bytes]:
    wrap: bytes = spec.load(encoded)["parameters"].dump()
    return asn1.dotted(algos.AlgorithmIdentifier.load(wrap)["algorithm"]), wrap


# Public values too; a sender whose user keying material (ukm) changes per message gets no hits.
@memo.of_small_encodings(maxsize=256)
def shared_info(wrap: bytes, ukm: bytes | None, kek_size: int) -> bytes:
    """ECC-CMS-SharedInfo, the KDF's input besides the shared secret (RFC 5753 section 7.2)."""
    encoded: bytes = asn1.SharedInfo({
        "key_info": core.Any.load(wrap),
        "entity_u_info": ukm,
        "supp_pub_info": (kek_size * 8).to_bytes(4, "big"),
    }).dump()
    return encoded
