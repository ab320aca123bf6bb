"""The CMS engine (RFC 5652): open, decrypt and verify S/MIME structures. No MIME here.

Parsing is asn1crypto's; every primitive is the ``cryptography`` package's.
Keys and certificates come in through callables, so the engine never knows
where they are stored.

Failure reasons are short, stable strings: they end up in header values that
Sieve rules match. Every failure of a key that was actually tried gives the
same reason, ``decryption failed``, whatever broke (RSA padding, key unwrap,
content padding, GCM tag): a sender who could tell these apart would have a
padding oracle (Bleichenbacher, RFC 3218).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import exceptions as crypto_exceptions
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, keywrap
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.serialization import load_der_public_key

from ciphermilter.formats.smime import ber

from ciphermilter.formats import ids

from ciphermilter.formats import memo

from ciphermilter.formats import readers

ENVELOPED_DATA = "1.2.840.113549.1.7.3"
SIGNED_DATA = "1.2.840.113549.1.7.2"
AUTH_ENVELOPED_DATA = "1.2.840.113549.1.9.16.1.23"
COMPRESSED_DATA = "1.2.840.113549.1.9.16.1.9"  # RFC 3274
ZLIB = "1.2.840.113549.1.9.16.3.8"  # the one compression algorithm RFC 3274 defines

DECRYPTION_FAILED = "decryption failed"
MALFORMED = "malformed CMS"

# Content ciphers: OID -> (spec name, key length, mode). Only those with a mode are implemented.
_CONTENT_CIPHERS = {
    "2.16.840.1.101.3.4.1.2": ("AES-128-CBC", 16, "cbc"),
    "2.16.840.1.101.3.4.1.22": ("AES-192-CBC", 24, "cbc"),
    "2.16.840.1.101.3.4.1.42": ("AES-256-CBC", 32, "cbc"),
    "2.16.840.1.101.3.4.1.6": ("AES-128-GCM", 16, "gcm"),
    "2.16.840.1.101.3.4.1.26": ("AES-192-GCM", 24, "gcm"),
    "2.16.840.1.101.3.4.1.46": ("AES-256-GCM", 32, "gcm"),
    "1.2.840.113549.3.7": ("DES-EDE3-CBC", 24, "3des"),
    "1.2.840.113549.3.2": ("RC2-CBC", None, None),
    "1.3.14.3.2.7": ("DES-CBC", None, None),
}
# Digests by asn1crypto's name for their OID; MD5 and the like are refused.
_HASH_BY_NAME = {"sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256,
                 "sha384": hashes.SHA384, "sha512": hashes.SHA512}
# RFC 5753 / RFC 8418 key agreement schemes: OID -> KDF hash. For the NIST
# prime curves the cofactor is 1, so cofactor ECDH equals standard ECDH.
_ECDH_SCHEMES = {
    "1.3.133.16.840.63.0.2": hashes.SHA1,  # dhSinglePass-stdDH-sha1kdf-scheme
    "1.3.132.1.11.0": hashes.SHA224,
    "1.3.132.1.11.1": hashes.SHA256,
    "1.3.132.1.11.2": hashes.SHA384,
    "1.3.132.1.11.3": hashes.SHA512,
    "1.3.133.16.840.63.0.3": hashes.SHA1,  # dhSinglePass-cofactorDH-sha1kdf-scheme
    "1.3.132.1.14.0": hashes.SHA224,
    "1.3.132.1.14.1": hashes.SHA256,
    "1.3.132.1.14.2": hashes.SHA384,
    "1.3.132.1.14.3": hashes.SHA512,
}
# AES key wraps: OID -> (KEK size, RFC 5649 padding); without padding it is RFC 3394.
_KEY_WRAPS = {
    "2.16.840.1.101.3.4.1.5": (16, False),
    "2.16.840.1.101.3.4.1.25": (24, False),
    "2.16.840.1.101.3.4.1.45": (32, False),
    "2.16.840.1.101.3.4.1.8": (16, True),
    "2.16.840.1.101.3.4.1.28": (24, True),
    "2.16.840.1.101.3.4.1.48": (32, True),
}
_RSA_PKCS1 = "1.2.840.113549.1.1.1"
_RSA_OAEP = "1.2.840.113549.1.1.7"
_MGF1 = "1.2.840.113549.1.1.8"
MICALG = {"sha1": "sha-1", "sha224": "sha-224", "sha256": "sha-256", "sha384": "sha-384", "sha512": "sha-512"}


class CmsError(Exception):
    """A CMS structure cannot be used; ``reason`` is the short stable text for the reason header."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class MalformedCms(CmsError):
    def __init__(self, reason: str = MALFORMED):
        super().__init__(reason)


class UnsupportedAlgorithm(CmsError):
    pass


class KeyNotFound(CmsError):
    def __init__(self):
        super().__init__("no private key for any recipient")


class DecryptionFailed(CmsError):
    def __init__(self):
        super().__init__(DECRYPTION_FAILED)


class TooMany(CmsError):
    """More RecipientInfos or SignerInfos than the limits allow."""


# asn1crypto parses lazily and reports broken input as one of these.
_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError)


class _ContentInfo(cms.ContentInfo):
    """A ContentInfo that may come with its encrypted content held outside it (see :mod:`ciphermilter.ber`)."""

    encrypted_content: list | None = None  # pieces of the ciphertext, views of the decoded message


# The contents octets of the OIDs whose encrypted content is lifted out before asn1crypto parses.
_LIFTED_TYPES = tuple(core.ObjectIdentifier(oid).contents for oid in (ENVELOPED_DATA, AUTH_ENVELOPED_DATA))


def load(der: bytes) -> cms.ContentInfo:
    """Parse the outer ContentInfo; truncation or trailing junk shows here.

    The inside is parsed lazily, field by field, by whoever reads it: a full
    parse would refuse real signatures for an attribute asn1crypto does not
    know (Thunderbird's encryption key preference). An enveloped structure's
    ciphertext is lifted out first, so it is never copied.
    """
    lifted = ber.lift_encrypted_content(der, _LIFTED_TYPES)
    try:
        info = _ContentInfo.load(der if lifted is None else lifted[0], strict=True)
        info["content"]  # noqa: B018  parses the content's outer structure
    except _PARSE_ERRORS:
        raise MalformedCms() from None
    if lifted is not None:
        info.encrypted_content = lifted[1]
    return info


def content_type(info: cms.ContentInfo) -> str:
    return info["content_type"].dotted


# ---------------------------------------------------------------- recipients


@dataclass
class Recipient:
    """One key that may open an enveloped layer: a RecipientInfo, or one RecipientEncryptedKey of a kari."""

    index: int  # position among the layer's recipients, for the INDEX of the headers
    kind: str  # ktri, kari, kekri, pwri, ori
    text: str  # the spec's identifier text
    algorithm: str  # key encryption algorithm, dotted OID
    issuer_key: str | None = None
    serial: int | None = None
    ski: bytes | None = None
    _info: object = field(default=None, repr=False)  # the RecipientInfo
    _encrypted_key: bytes = field(default=b"", repr=False)

    @property
    def lookup(self) -> dict:
        """Keyword arguments for the key store's lookups."""
        if self.ski is not None:
            return {"ski": self.ski}
        if self.issuer_key is not None:
            return {"issuer_key": self.issuer_key, "serial": self.serial}
        return {}


def _identify(rid) -> dict:
    """Identifier fields of an issuerAndSerialNumber or subjectKeyIdentifier choice."""
    return dict(_identify_encoded(type(rid), rid.dump()))


# The parsing below is memoised by the encoding it parses (with the asn1crypto class that parses it),
# because the same bytes come back on message after message: a recipient's or a signer's identifier,
# a key transport algorithm. Parsing them cost 30-50 us per RecipientInfo, more than decrypting the
# content of a 20 KB message. Safe: bounded in entries and in the size of what is kept (memo module);
# keys and values are immutable and public (identifiers, OIDs), never key material; a parse error is
# raised again each time, never cached.
@memo.of_small_encodings(maxsize=4096)
def _identify_encoded(choice: type, encoded: bytes) -> tuple[tuple[str, object], ...]:
    rid = choice.load(encoded)
    if rid.name == "issuer_and_serial_number":
        issuer, serial = rid.chosen["issuer"], rid.chosen["serial_number"].native
        fields = {"text": ids.issuer_serial_id(issuer, serial), "issuer_key": ids.name_key(issuer), "serial": serial}
        return tuple(fields.items())
    if rid.name == "r_key_id":
        ski = rid.chosen["subject_key_identifier"].native
    else:
        ski = rid.chosen.native
    return (("text", ids.ski_id(ski)), ("ski", ski))


def _algorithm_oid(algorithm) -> str:
    """The dotted OID of an AlgorithmIdentifier (parameters are parsed where they are used)."""
    return _algorithm_oid_encoded(type(algorithm), algorithm.dump())


@memo.of_small_encodings(maxsize=256)
def _algorithm_oid_encoded(spec: type, encoded: bytes) -> str:
    return spec.load(encoded)["algorithm"].dotted


def _recipients(recipient_infos, limit: int, seen: Callable[[Recipient], None]) -> list[Recipient]:
    out: list[Recipient] = []
    for recipient in _each_recipient(recipient_infos):
        seen(recipient)
        out.append(recipient)
        if len(out) > limit:
            raise TooMany(f"more than {limit} recipients in one layer")
    return out


def _each_recipient(recipient_infos):
    """The recipients one by one, as they are parsed (asn1crypto parses each RecipientInfo on access)."""
    index = 0
    for info in recipient_infos:
        chosen = info.chosen
        if info.name in ("ktri", "kari"):
            algorithm = _algorithm_oid(chosen["key_encryption_algorithm"])
            # A kari carries one RecipientEncryptedKey per recipient; a ktri is its own.
            keyed = chosen["recipient_encrypted_keys"] if info.name == "kari" else [chosen]
            for item in keyed:
                yield Recipient(index, info.name, algorithm=algorithm, _info=chosen,
                                _encrypted_key=item["encrypted_key"].native, **_identify(item["rid"]))
                index += 1
            continue
        if info.name == "kekri":
            kek_id = chosen["kekid"]["key_identifier"].native
            yield Recipient(index, "kekri", f"kek={kek_id.hex().upper()}", "kek")
        elif info.name == "pwri":
            yield Recipient(index, "pwri", "password", "password")
        else:
            yield Recipient(index, "ori", f"other={chosen['ori_type'].dotted}", "other")
        index += 1


def all_recipients(info: cms.ContentInfo) -> list[Recipient]:
    """Every recipient of an (Auth)EnvelopedData, past any limit: identifiers only, no key touched.

    For a layer :func:`open_enveloped` refused (:class:`TooMany`): whether it names a key we hold
    still decides what happens to the message. Broken input gives the recipients before the break.
    """
    out: list[Recipient] = []
    try:
        out.extend(_each_recipient(info["content"]["recipient_infos"]))
    except _PARSE_ERRORS:
        pass
    return out


# ---------------------------------------------------------------- enveloped data


@dataclass
class EnvelopedLayer:
    authenticated: bool  # AuthEnvelopedData (RFC 5083)
    cipher: str  # the spec's name of the content cipher, or its dotted OID
    recipients: list[Recipient]
    _data: object = field(repr=False)  # the (Auth)EnvelopedData
    _encrypted: object = field(repr=False)  # its EncryptedContentInfo
    _ciphertext: list | None = field(repr=False)  # the encrypted content in pieces; None when detached


def open_enveloped(info: cms.ContentInfo, *, max_recipients: int,
                   seen: Callable[[Recipient], None] = lambda recipient: None) -> EnvelopedLayer:
    """Describe an EnvelopedData or AuthEnvelopedData without touching any key.

    ``seen`` is called with each recipient as it is parsed (40,000 RecipientInfos took 2.5 s): the caller
    may look up what each names while the parse goes on.
    """
    ctype = content_type(info)
    if ctype not in (ENVELOPED_DATA, AUTH_ENVELOPED_DATA):
        raise UnsupportedAlgorithm(f"not enveloped data: {ctype}")
    try:
        data = info["content"]
        if ctype == AUTH_ENVELOPED_DATA:
            encrypted = data["auth_encrypted_content_info"]
        else:
            encrypted = data["encrypted_content_info"]
        oid = encrypted["content_encryption_algorithm"]["algorithm"].dotted
        recipients = _recipients(data["recipient_infos"], max_recipients, seen)
        ciphertext = getattr(info, "encrypted_content", None)
        if ciphertext is None and encrypted["encrypted_content"].native is not None:
            ciphertext = [encrypted["encrypted_content"].native]
    except _PARSE_ERRORS:
        raise MalformedCms() from None
    cipher = _CONTENT_CIPHERS.get(oid, (oid,))[0]
    return EnvelopedLayer(ctype == AUTH_ENVELOPED_DATA, cipher, recipients, data, encrypted, ciphertext)


KeyFinder = Callable[[Recipient], list]  # -> [(certificate DER, private key)]
Candidate = tuple  # (Recipient, certificate DER, private key): one key that may open a layer
# Orders the candidates into groups (see readers.open_agreeing); an empty list refuses them all.
Arranger = Callable[[list[Candidate]], list[list[Candidate]]]


class KeysRefused(CmsError):
    """Keys for the layer are stored, but the caller's arranger refused every one (before any was used)."""

    def __init__(self):
        super().__init__("keys refused")


def decrypt(layer: EnvelopedLayer, find_keys: KeyFinder,
            arrange: Arranger = lambda candidates: [candidates]) -> tuple[bytearray, Recipient]:
    """Decrypt with the first key that works; returns the content and the recipient it matched.

    The content is a bytearray, decrypted in place: the caller drops the
    layer (and with it the ciphertext) before it makes bytes of it.

    ``arrange`` groups the stored keys: the first group's keys open the
    content, and every later group must hold a key that unwraps the same
    content key (:func:`readers.open_agreeing`). By default every key is
    tried in order, in one group.

    Raises :class:`UnsupportedAlgorithm` before any key is used when the
    content cipher is not implemented, :class:`KeyNotFound` when no key
    matches a recipient, :class:`KeysRefused` when ``arrange`` refuses them,
    :class:`DecryptionFailed` when keys were tried but none opened the
    content (or the groups disagree).
    """
    oid = layer._encrypted["content_encryption_algorithm"]["algorithm"].dotted
    name, key_size, mode = _CONTENT_CIPHERS.get(oid, (oid, None, None))
    if mode is None or (mode == "gcm") != layer.authenticated:
        raise UnsupportedAlgorithm(f"unsupported content cipher {name}")
    if layer._ciphertext is None:
        raise MalformedCms("detached encrypted content")  # before any key: no key could open what is not there
    candidates = [(recipient, cert, key) for recipient in layer.recipients if recipient.kind in ("ktri", "kari")
                  for cert, key in find_keys(recipient)]
    if not candidates:
        raise KeyNotFound()
    groups = arrange(candidates)
    if not groups:
        raise KeysRefused()
    attempts = _Attempts(layer, mode, key_size)
    try:
        opened = readers.open_agreeing(groups, attempts.content_key, attempts.open_content)
    except readers.Disagreement:
        raise DecryptionFailed() from None
    if opened is not None:
        content, (recipient, _cert, _key) = opened
        return content, recipient
    if attempts.tried:
        raise DecryptionFailed()
    if attempts.unsupported is not None:
        raise attempts.unsupported
    raise KeyNotFound()


class _Attempts:
    """Unwrapping content keys and opening the content, remembering how the failures went."""

    def __init__(self, layer: EnvelopedLayer, mode: str, key_size: int):
        self.layer, self.mode, self.key_size = layer, mode, key_size
        self.tried = False  # a real key was used and failed
        self.unsupported: UnsupportedAlgorithm | None = None  # a key that does not fit its scheme (no attempt)

    def content_key(self, candidate: Candidate) -> bytes | None:
        """The unwrapped content key; a decoy of the cipher's key size when the private key failed, so that
        the content decryption runs all the same (implicit rejection, no timing oracle); None when the key
        does not fit the recipient's scheme (a public fact: no private-key operation was made)."""
        recipient, _cert, key = candidate
        try:
            cek = _unwrap_cek(recipient, key, self.key_size)
            # A key of another size runs another cipher than the one reported. OpenSSL >= 3.2 answers bad
            # PKCS#1 v1.5 padding with a synthetic message of random length (implicit rejection): it ends here.
            if len(cek) != self.key_size:
                raise ValueError("content key size")
            return cek
        except UnsupportedAlgorithm as exc:  # the key does not fit the scheme: no attempt was made
            self.unsupported = exc
            return None
        except Exception:  # noqa: BLE001  any failure of a real key looks the same (no oracle)
            self.tried = True
            return readers.DecoyKey.of_size(self.key_size)

    def open_content(self, cek: bytes) -> bytearray | None:
        try:
            content = _decrypt_content(self.layer, self.mode, cek)
        except Exception:  # noqa: BLE001  a wrong content key fails like a wrong private key (no oracle)
            self.tried = True
            return None
        # A decoy unpads CBC content by chance about once in 256: that garbage is never content.
        return None if isinstance(cek, readers.DecoyKey) else content


def _unwrap_cek(recipient: Recipient, key, key_size: int) -> bytes:
    if recipient.kind == "ktri":
        return _key_transport(recipient, key)
    return _key_agreement(recipient, key, key_size)


def _key_transport(recipient: Recipient, key) -> bytes:
    if not isinstance(key, rsa.RSAPrivateKey):
        raise UnsupportedAlgorithm("key is not an RSA key")
    algorithm = recipient._info["key_encryption_algorithm"]
    if recipient.algorithm == _RSA_PKCS1:
        # With OpenSSL >= 3.2 this returns random bytes of random length instead of raising on bad padding
        # (implicit rejection): checked for cryptography 50 (OpenSSL 4.0), which raises only for a value
        # not below the modulus (public). The content decryption then fails the same way a wrong key does.
        return key.decrypt(recipient._encrypted_key, asym_padding.PKCS1v15())
    if recipient.algorithm == _RSA_OAEP:
        return key.decrypt(recipient._encrypted_key, _oaep_padding(algorithm["parameters"]))
    raise UnsupportedAlgorithm(f"unsupported key transport {recipient.algorithm}")


def _oaep_padding(params) -> asym_padding.OAEP:
    """RSAES-OAEP-params (RFC 4055); absent fields mean SHA-1 and MGF1-SHA-1."""
    if params.native is None or not isinstance(params, algos.RSAESOAEPParams):
        return asym_padding.OAEP(asym_padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)
    digest = _hash_named(params["hash_algorithm"]["algorithm"].native)
    mgf = params["mask_gen_algorithm"]
    if mgf["algorithm"].dotted != _MGF1:
        raise UnsupportedAlgorithm("unsupported OAEP mask generation")
    mgf_digest = _hash_named(mgf["parameters"]["algorithm"].native)
    label = params["p_source_algorithm"]["parameters"].native or None
    return asym_padding.OAEP(asym_padding.MGF1(mgf_digest), digest, label)


def _hash_named(name: str) -> hashes.HashAlgorithm:
    try:
        return _HASH_BY_NAME[name]()
    except KeyError:
        raise UnsupportedAlgorithm(f"unsupported digest {name}") from None


class _SharedInfo(core.Sequence):
    """ECC-CMS-SharedInfo (RFC 5753 section 7.2)."""

    _fields = [
        ("key_info", core.Any),
        ("entity_u_info", core.OctetString, {"explicit": 0, "optional": True}),
        ("supp_pub_info", core.OctetString, {"explicit": 2}),
    ]


def _key_agreement(recipient: Recipient, key, key_size: int) -> bytes:
    kari = recipient._info
    kdf_hash = _ECDH_SCHEMES.get(recipient.algorithm)
    if kdf_hash is None or not isinstance(key, ec.EllipticCurvePrivateKey):
        raise UnsupportedAlgorithm(f"unsupported key agreement {recipient.algorithm}")
    wrap_oid, wrap = _key_wrap(kari["key_encryption_algorithm"])
    if wrap_oid not in _KEY_WRAPS:
        raise UnsupportedAlgorithm(f"unsupported key wrap {wrap_oid}")
    kek_size, padded = _KEY_WRAPS[wrap_oid]
    originator = kari["originator"]
    if originator.name != "originator_key":
        raise UnsupportedAlgorithm("static-static ECDH is not supported")
    point = originator.chosen["public_key"].native
    peer = ec.EllipticCurvePublicKey.from_encoded_point(key.curve, point)
    shared = key.exchange(ec.ECDH(), peer)
    kek = X963KDF(kdf_hash(), kek_size, _shared_info(wrap, kari["ukm"].native, kek_size)).derive(shared)
    if padded:
        return keywrap.aes_key_unwrap_with_padding(kek, recipient._encrypted_key)
    return keywrap.aes_key_unwrap(kek, recipient._encrypted_key)


def _key_wrap(algorithm) -> tuple[str, bytes]:
    """The key wrap a key agreement algorithm names in its parameters: its dotted OID and its encoding."""
    return _key_wrap_encoded(type(algorithm), algorithm.dump())


# Memoised like _identify_encoded: a sender's key agreement parameters come back on every message,
# and asn1crypto's parse and encoding around them took as long as the ECDH itself.
@memo.of_small_encodings(maxsize=256)
def _key_wrap_encoded(spec: type, encoded: bytes) -> tuple[str, bytes]:
    wrap = spec.load(encoded)["parameters"].dump()
    return algos.AlgorithmIdentifier.load(wrap)["algorithm"].dotted, wrap


# Public values too; a sender whose user keying material (ukm) changes per message gets no hits.
@memo.of_small_encodings(maxsize=256)
def _shared_info(wrap: bytes, ukm: bytes | None, kek_size: int) -> bytes:
    """ECC-CMS-SharedInfo, the KDF's input besides the shared secret (RFC 5753 section 7.2)."""
    return _SharedInfo({
        "key_info": core.Any.load(wrap),
        "entity_u_info": ukm,
        "supp_pub_info": (kek_size * 8).to_bytes(4, "big"),
    }).dump()


class _GcmParameters(core.Sequence):
    """GCMParameters (RFC 5084 section 3.2)."""

    _fields = [("nonce", core.OctetString), ("icv_len", core.Integer, {"default": 12})]


def _decrypt_content(layer: EnvelopedLayer, mode: str, cek: bytes) -> bytearray:
    encrypted = layer._encrypted
    params = encrypted["content_encryption_algorithm"]["parameters"]
    if mode == "gcm":
        gcm = _GcmParameters.load(params.dump())
        tag = layer._data["mac"].native
        # RFC 5084 section 3.2 allows 12 to 16 bytes; the length is not authenticated, and a shorter
        # tag cut from the real one would verify, with each forgery attempt far likelier to succeed.
        if not 12 <= len(tag) <= 16 or len(tag) != gcm["icv_len"].native:
            raise ValueError("tag length")
        auth_attrs = layer._data["auth_attrs"]
        decryptor = Cipher(algorithms.AES(cek), modes.GCM(gcm["nonce"].native, tag, min_tag_length=len(tag))).decryptor()
        # RFC 5083 section 2.1: the AAD is the DER of the authAttrs as a SET OF.
        if auth_attrs.contents:
            decryptor.authenticate_additional_data(b"\x31" + auth_attrs.dump()[1:])
        return _decrypt_pieces(decryptor, layer._ciphertext)
    iv = params.native  # asn1crypto types the parameters of each CBC cipher above as an OCTET STRING
    if not isinstance(iv, bytes):
        raise TypeError("initialization vector")
    algorithm = TripleDES(cek) if mode == "3des" else algorithms.AES(cek)
    if mode != "3des" and len(cek) * 8 not in (128, 192, 256):
        raise ValueError("content key size")
    padded = _decrypt_pieces(Cipher(algorithm, modes.CBC(iv)).decryptor(), layer._ciphertext)
    _strip_pkcs7_padding(padded, algorithm.block_size // 8)
    return padded


def _decrypt_pieces(decryptor, pieces: list) -> bytearray:
    """Decrypt the ciphertext pieces into one buffer: no joined copy of the ciphertext, no per-piece copies.

    The GCM tag is checked by ``finalize()``, before anything is returned.
    """
    plaintext = bytearray(sum(len(piece) for piece in pieces) + 16)  # update_into wants a block of room
    done = 0
    with memoryview(plaintext) as out:
        for piece in pieces:
            done += decryptor.update_into(piece, out[done:])
    tail = decryptor.finalize()  # nothing for CBC without padding and for GCM
    del plaintext[done:]
    plaintext += tail
    return plaintext


def _strip_pkcs7_padding(padded: bytearray, block_bytes: int) -> None:
    """Remove the RFC 5652 section 6.3 padding in place (the content is not copied); ValueError if bad."""
    pad = padded[-1] if padded else 0
    if not 1 <= pad <= block_bytes or len(padded) % block_bytes or padded[-pad:] != bytes([pad]) * pad:
        raise ValueError("invalid padding")
    del padded[-pad:]


# ---------------------------------------------------------------- compression


def compressed_content(info: cms.ContentInfo) -> bytes:
    """The zlib stream of a CompressedData layer (RFC 3274), still compressed: inflating it is the
    caller's, within its budget (asn1crypto's ``decompressed`` would inflate a bomb whole)."""
    if content_type(info) != COMPRESSED_DATA:
        raise UnsupportedAlgorithm(f"not compressed data: {content_type(info)}")
    try:
        data = info["content"]
        algorithm = data["compression_algorithm"]["algorithm"].dotted
        encap = data["encap_content_info"]["content"]
        content = None if isinstance(encap, core.Void) else bytes(encap)  # bytes() joins BER chunks
    except _PARSE_ERRORS:
        raise MalformedCms() from None
    if algorithm != ZLIB:
        raise UnsupportedAlgorithm(f"unsupported compression algorithm {algorithm}")
    if content is None:
        raise MalformedCms("no compressed content")
    return content


# ---------------------------------------------------------------- signed data


@dataclass
class Signer:
    """The outcome for one SignerInfo."""

    index: int
    text: str  # the spec's signer identifier
    digest: str  # digest algorithm name (sha256, ...)
    signature_algorithm: str
    certificate: bytes | None  # DER of the signer certificate, when found in the message or the store
    verified: bool
    reason: str | None  # why not verified


@dataclass
class SignedLayer:
    content: bytes | None  # the encapsulated content (opaque signing), None when detached
    certificates: list[bytes]  # DER of the certificates the message carries
    _info: object = field(repr=False)

    @property
    def signer_infos(self):
        return self._info["content"]["signer_infos"]


def open_signed(info: cms.ContentInfo, *, max_signers: int) -> SignedLayer:
    if content_type(info) != SIGNED_DATA:
        raise UnsupportedAlgorithm(f"not signed data: {content_type(info)}")
    try:
        data = info["content"]
        if len(data["signer_infos"]) > max_signers:
            raise TooMany(f"more than {max_signers} signers in one layer")
        encap = data["encap_content_info"]["content"]
        # bytes() joins the chunks of a BER constructed OCTET STRING (NSS writes those).
        content = None if isinstance(encap, core.Void) else bytes(encap)
        certificates = [c.chosen.dump() for c in data["certificates"] if c.name == "certificate"]
    except _PARSE_ERRORS:
        raise MalformedCms() from None
    return SignedLayer(content, certificates, info)


CertFinder = Callable[[dict], list]  # store lookup kwargs -> [certificate DER]


def verify(layer: SignedLayer, content: bytes, find_certificates: CertFinder, *,
           max_rsa_bits: int = 16384) -> list[Signer]:
    """Check every SignerInfo over ``content`` (the exact signed bytes).

    An RSA key above ``max_rsa_bits`` is refused unchecked: the sender picks
    the certificate, and a huge modulus is a cheap way to burn our CPU.
    """
    try:
        econtent_type = layer._info["content"]["encap_content_info"]["content_type"].dotted
        signer_infos = list(layer.signer_infos)
    except _PARSE_ERRORS:
        raise MalformedCms() from None
    return [_verify_signer(index, signer_info, content, econtent_type, layer.certificates, find_certificates,
                           max_rsa_bits) for index, signer_info in enumerate(signer_infos)]


def _verify_signer(index, signer_info, content, econtent_type, message_certs, find_certificates,
                   max_rsa_bits) -> Signer:
    try:
        sid = _identify(signer_info["sid"])
        digest_name = signer_info["digest_algorithm"]["algorithm"].native
        sig_name = signer_info["signature_algorithm"]["algorithm"].native
    except _PARSE_ERRORS:
        return Signer(index, "unknown", "unknown", "unknown", None, False, MALFORMED)
    certificate = _find_signer_certificate(sid, message_certs, find_certificates)
    signer = Signer(index, sid["text"], digest_name, sig_name, certificate, False, None)
    hash_cls = _HASH_BY_NAME.get(digest_name)
    if hash_cls is None:
        signer.reason = f"unsupported digest {digest_name}"
        return signer
    if certificate is None:
        signer.reason = "signer certificate not found"
        return signer
    try:
        public_key = _public_key(certificate)
        if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size > max_rsa_bits:
            raise CmsError("RSA key too large")
        signed_bytes = _signed_bytes(signer_info, content, econtent_type, hash_cls)
        _check_signature(public_key, signer_info, signed_bytes, hash_cls)
    except CmsError as exc:
        signer.reason = exc.reason
        return signer
    except crypto_exceptions.InvalidSignature:
        signer.reason = "bad signature"
        return signer
    except crypto_exceptions.UnsupportedAlgorithm:
        signer.reason = "unsupported public key"
        return signer
    except _PARSE_ERRORS:
        signer.reason = MALFORMED
        return signer
    signer.verified = True
    return signer


def _find_signer_certificate(sid: dict, message_certs: list[bytes], find_certificates: CertFinder) -> bytes | None:
    for der in message_certs:
        if _certificate_matches(der, sid):
            return der
    lookup = {"ski": sid["ski"]} if "ski" in sid else {"issuer_key": sid["issuer_key"], "serial": sid["serial"]}
    for der in find_certificates(lookup):
        if _certificate_matches(der, sid):
            return der
    return None


def _certificate_matches(der: bytes, sid: dict) -> bool:
    try:
        if "ski" in sid:
            return _certificate_id(der, by_ski=True) == sid["ski"]
        return _certificate_id(der, by_ski=False) == (sid["serial"], sid["issuer_key"])
    except _PARSE_ERRORS:
        return False


# Memoised by the certificate's DER: a signer's certificate (and the chain beside it) comes back on
# every message it signs, and asn1crypto's parse of it took longer than the RSA signature check.
# Safe: bounded (512 certificates of at most memo.MAX_MEMO_BYTES); keys are immutable public
# certificates, values their public identifiers and key; a parse error is raised again each time.
@memo.of_small_encodings(maxsize=512)
def _certificate_id(der: bytes, *, by_ski: bool):
    """The certificate's subject key identifier, or its (serial, issuer lookup key)."""
    cert = asn1_x509.Certificate.load(der)
    if by_ski:
        return cert.key_identifier
    return cert.serial_number, ids.name_key(cert.issuer)


@memo.of_small_encodings(maxsize=512)
def _public_key(der: bytes):
    return load_der_public_key(asn1_x509.Certificate.load(der).public_key.dump())


def _signed_bytes(signer_info, content: bytes, econtent_type: str, hash_cls) -> bytes:
    """What the signature covers: the signed attributes (after checking them) or the content itself."""
    attrs = signer_info["signed_attrs"]
    if not attrs.contents:
        return content
    values = {attr["type"].dotted: attr["values"] for attr in attrs}
    message_digest = values.get("1.2.840.113549.1.9.4")
    content_type_attr = values.get("1.2.840.113549.1.9.3")
    if message_digest is None or len(message_digest) != 1:
        raise CmsError("message digest attribute missing")
    if content_type_attr is None or len(content_type_attr) != 1:
        raise CmsError("content type attribute missing")
    if content_type_attr[0].dotted != econtent_type:
        raise CmsError("content type mismatch")
    digest = hashes.Hash(hash_cls())
    digest.update(content)
    if digest.finalize() != message_digest[0].native:
        raise CmsError("message digest mismatch")
    # RFC 5652 section 5.4: the signature is over the attributes as an explicit SET OF.
    return b"\x31" + attrs.dump()[1:]


def _check_signature(public_key, signer_info, data: bytes, hash_cls) -> None:
    algorithm = signer_info["signature_algorithm"]
    signature = signer_info["signature"].native
    kind = algorithm.signature_algo
    if isinstance(public_key, rsa.RSAPublicKey) and kind == "rsassa_pkcs1v15":
        public_key.verify(signature, data, asym_padding.PKCS1v15(), _signature_hash(algorithm, hash_cls))
    elif isinstance(public_key, rsa.RSAPublicKey) and kind == "rsassa_pss":
        params = algorithm["parameters"]
        pss_hash = _hash_named(params["hash_algorithm"]["algorithm"].native)
        mgf_hash = _hash_named(params["mask_gen_algorithm"]["parameters"]["algorithm"].native)
        pss = asym_padding.PSS(asym_padding.MGF1(mgf_hash), params["salt_length"].native)
        public_key.verify(signature, data, pss, pss_hash)
    elif isinstance(public_key, ec.EllipticCurvePublicKey) and kind == "ecdsa":
        public_key.verify(signature, data, ec.ECDSA(_signature_hash(algorithm, hash_cls)))
    elif isinstance(public_key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)) and kind in ("ed25519", "ed448"):
        public_key.verify(signature, data)
    else:
        raise UnsupportedAlgorithm(f"unsupported signature algorithm {algorithm['algorithm'].native}")


def _signature_hash(algorithm, hash_cls) -> hashes.HashAlgorithm:
    """The hash named by sha256WithRSAEncryption and friends, else the SignerInfo's digest algorithm."""
    try:
        return _hash_named(algorithm.hash_algo)
    except (ValueError, UnsupportedAlgorithm):
        return hash_cls()


def detached_signature(layer: SignedLayer) -> bytes:
    """The same SignedData without its eContent: a detached signature with the very same SignerInfos.

    Only the changed field is re-encoded; the SignerInfos and certificates
    keep their received bytes, so a BER-encoded signature (NSS) stays valid.
    """
    try:
        data = layer._info["content"].copy()
        encap = data["encap_content_info"]
        # PKCS#7 v1 SignedData holds a ContentInfo here, CMS an EncapsulatedContentInfo: keep the class.
        data["encap_content_info"] = type(encap)({"content_type": encap["content_type"].dotted})
        return cms.ContentInfo({"content_type": SIGNED_DATA, "content": data}).dump()
    except _PARSE_ERRORS:
        raise MalformedCms() from None


def micalg(signers: list[Signer]) -> str:
    """The multipart/signed micalg parameter (RFC 8551 section 3.5.3) for these signers' digests."""
    names = sorted({MICALG.get(s.digest, "unknown") for s in signers})
    return ",".join(names) or "sha-256"


