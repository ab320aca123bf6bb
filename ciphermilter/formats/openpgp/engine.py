"""The OpenPGP engine: armor, packets, session keys, SEIPD decryption, signatures. No MIME here.

pgpy 0.6 parses keys and verifies signatures for us, but its decryption path
cannot be used as is: it refuses wildcard ("hidden") recipients, inflates
compressed data without a bound (a 2 KB message can expand to 1 GiB), rebuilds
and re-validates an RSA private key on every call and checks the armor CRC-24
in pure Python. So this module reads the packet stream itself (RFC 4880
section 4), decrypts the session key with cached ``cryptography`` key objects
and the SEIPDv1 data with ``cryptography`` directly (CFB plus the MDC check),
and inflates compressed packets incrementally up to a byte budget.

Keys come through a :class:`Keyring` built on a
:class:`~ciphermilter.core.seams.PgpKeys` (the key store fits it); this
module never imports the store.
Only the public keys an administrator imported verify signatures
(``pgp_public_keys(keyid, imported_only=True)``): a key that arrived in mail
carries whatever user IDs its maker chose.
"""

from __future__ import annotations

import binascii
import contextlib
import hashlib
import hmac
import re
import weakref
from dataclasses import dataclass, field

import pgpy
from cryptography.hazmat.decrepit.ciphers import algorithms as decrepit
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap
from pgpy.constants import EllipticCurveOID
from pyasn1.codec.der import encoder

from ciphermilter.formats import ids

from ciphermilter.formats import inflate

from ciphermilter.formats import readers
from ciphermilter.core.contract import DecompressionBudget, LimitExceeded
from ciphermilter.core.seams import PgpKeys

WILDCARD_KEYID = "0" * 16
KEY_NOT_FOUND = "public key not found"
KEY_NOT_IMPORTED = "signer key not imported by an administrator"
DEFAULT_MAX_NESTING = 8
DEFAULT_MAX_RECIPIENTS = 100  # PKESK packets: each one may cost a private-key operation per secret key

# Symmetric algorithm number -> (header name, cipher class, key bytes).
# Twofish has no implementation in cryptography: it is named in reports but not decrypted.
CIPHERS = {
    1: ("IDEA", decrepit.IDEA, 16),
    2: ("3DES", decrepit.TripleDES, 24),
    3: ("CAST5", decrepit.CAST5, 16),
    4: ("Blowfish", decrepit.Blowfish, 16),
    7: ("AES-128", algorithms.AES, 16),
    8: ("AES-192", algorithms.AES, 24),
    9: ("AES-256", algorithms.AES, 32),
    10: ("Twofish", None, 32),
    11: ("Camellia-128", decrepit.Camellia, 16),
    12: ("Camellia-192", decrepit.Camellia, 24),
    13: ("Camellia-256", decrepit.Camellia, 32),
}
COMPRESSION = {0: "uncompressed", 1: "ZIP", 2: "ZLIB", 3: "BZIP2"}

TAG_PKESK, TAG_SIGNATURE, TAG_SKESK, TAG_ONE_PASS = 1, 2, 3, 4
TAG_COMPRESSED, TAG_SED, TAG_MARKER, TAG_LITERAL = 8, 9, 10, 11
TAG_SEIPD, TAG_OCB_AEAD, TAG_PADDING = 18, 20, 21
RSA_ALGORITHMS = (1, 2)
ELGAMAL_ALGORITHMS = (16, 20)
ECDH_ALGORITHM = 18
MDC_LENGTH = 22  # 0xD3 0x14 + SHA-1
INTEGRITY_FAILED = "integrity check failed"
NO_KEY_DECRYPTS = "no key in the store decrypts the session key"

ARMOR_BEGIN = b"-----BEGIN PGP "  # every armor line starts so (RFC 9580 section 6.2)
ARMOR_MESSAGE = b"-----BEGIN PGP MESSAGE-----"  # an encrypted (or signed, compressed) message's armor line
_ARMOR_HEADER_LINE = re.compile(rb"-----BEGIN PGP ([A-Z ,/0-9]+)-----")
_ARMOR_CHECKSUM = re.compile(rb"=[A-Za-z0-9+/]{4}")
_BARE_ADDRESS = re.compile(r"<?([^\s<>@]+@[^\s<>@]+)>?")
# RFC 9580 section 7 (RFC 4880 section 7): between the BEGIN line of a cleartext-signed message and its
# blank line stand only "Hash:" armor headers naming hash algorithms. Anything else there (a "Comment:",
# any text) is shown by some readers, covered by no signature, and refused by gpg ("signature digest
# conflict in message"): we refuse it too rather than report text nobody signed as signed.
_HASH_NAME = rb"(?:MD5|SHA1|RIPEMD160|SHA224|SHA256|SHA384|SHA512|SHA3-256|SHA3-512)"  # RFC 9580 9.5
_CLEARTEXT_HASH_HEADER = re.compile(rb"Hash: *" + _HASH_NAME + rb"(?: *, *" + _HASH_NAME + rb")*")
CLEARTEXT_BAD_HEADER = "cleartext signature with an armor header other than Hash"


class OpenPGPError(ValueError):
    """The OpenPGP data cannot be processed; ``str()`` is a short reason for a header."""


class IntegrityError(OpenPGPError):
    """The session key opened the data (its quick check passed) but the MDC does not match: the data was changed."""

    def __init__(self):
        super().__init__(INTEGRITY_FAILED)


class UnsupportedFormat(OpenPGPError):
    """Valid OpenPGP we cannot read (RFC 9580 SEIPDv2, v6 keys, the OCB AEAD packet)."""


# --------------------------------------------------------------------------- armor


@dataclass
class Armor:
    kind: str  # "MESSAGE", "SIGNATURE", "PUBLIC KEY BLOCK", ...
    headers: dict[str, str]
    data: bytes
    checksum: bytes | None  # the 3 CRC-24 bytes of the "=XXXX" line, when present


@dataclass
class ArmorSpan:
    kind: str  # as in Armor, plus "SIGNED MESSAGE" for cleartext signatures
    start: int
    end: int  # just past the END line's line break


def _crc24_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
        table.append(crc & 0xFFFFFF)
    return table


_CRC24_TABLE = _crc24_table()


def crc24(data: bytes) -> int:
    """The armor checksum (RFC 4880 section 6.1), table-driven."""
    crc = 0xB704CE
    table = _CRC24_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFF) ^ table[(crc >> 16) ^ byte]
    return crc


def find_at_line_start(text: bytes, marker: bytes, pos: int = 0) -> int:
    """The first ``marker`` at or after ``pos`` that starts a line, or -1.

    A search for the line break before the marker: markers inside a line are
    skipped by ``bytes.find`` itself. Looking at each marker and then for its
    line's end was quadratic on one long line of markers (issue 14: 320,000
    on a 16 MB line took 75 s).
    """
    if pos == 0 and text.startswith(marker):
        return 0
    found = text.find(b"\n" + marker, max(pos - 1, 0))
    return found + 1 if found != -1 else -1


def _line_end(text: bytes, pos: int) -> int:
    end = text.find(b"\n", pos)
    return len(text) if end == -1 else end


def find_armor(text: bytes) -> list[ArmorSpan]:
    """Every armored block in ``text``, in order; a block without its END line runs to the end.

    Plain ``bytes.find`` for the markers: regular expressions anchored at line
    starts scan a 20 KB part byte by byte. Each byte is searched a bounded
    number of times (tests/test_linear.py counts it).
    """
    spans = []
    pos = 0
    while (start := find_at_line_start(text, ARMOR_BEGIN, pos)) != -1:
        header_end = _line_end(text, start)
        match = _ARMOR_HEADER_LINE.fullmatch(text[start:header_end].rstrip())
        if not match:
            pos = header_end  # the next armor line starts after this line
            continue
        kind = match.group(1)
        # A cleartext-signed message ends with its signature block's END line.
        marker = b"-----END PGP " + (b"SIGNATURE" if kind == b"SIGNED MESSAGE" else kind) + b"-----"
        stop = _block_stop(text, find_at_line_start(text, marker, header_end), marker)
        spans.append(ArmorSpan(kind.decode("ascii"), start, stop))
        pos = stop
    return spans


def _block_stop(text: bytes, found: int, marker: bytes) -> int:
    """Where a block whose END line starts at ``found`` stops: past the line break of a bare END line, but
    right after the marker when text follows it on that line (a reader sees that text, nothing signs or
    encrypts it: it is text beside the block). A block without its END line runs to the end."""
    if found == -1:
        return len(text)
    after, line_end = found + len(marker), _line_end(text, found)
    return after if text[after:line_end].strip() else line_end + 1


def dearmor(block: bytes) -> Armor:
    """Decode one armored block (RFC 4880 section 6.2).

    The CRC-24 is parsed but not checked here: every packet we act on carries
    its own integrity (MDC, signature), and RFC 9580 makes the checksum
    optional. :func:`checksum_mismatch` explains a failure afterwards.
    """
    text = block  # CR before LF is stripped with the white space of each line, and skipped by a2b_base64
    start = find_at_line_start(text, ARMOR_BEGIN)
    header_end = _line_end(text, start) if start != -1 else -1
    match = _ARMOR_HEADER_LINE.fullmatch(text[start:header_end].rstrip()) if start != -1 else None
    if match is None:
        raise OpenPGPError("no armor header line")
    headers: dict[str, str] = {}
    pos = header_end + 1
    while pos < len(text):
        eol = _line_end(text, pos)
        name, sep, value = text[pos:eol].strip().partition(b":")
        if not name:  # the blank line: the body follows
            pos = eol + 1
            break
        if not sep:  # no blank line after the header line: the body starts here
            break
        headers[name.strip().decode("ascii", "replace")] = value.strip().decode("utf-8", "replace")
        pos = eol + 1
    end = text.find(b"\n-----END PGP ", pos - 1)
    body = text[pos:end if end != -1 else len(text)].rstrip()
    last_line_start = body.rfind(b"\n") + 1
    checksum = None
    if _ARMOR_CHECKSUM.fullmatch(body[last_line_start:].strip()):
        checksum = binascii.a2b_base64(body[last_line_start:].strip()[1:])
        body = body[:last_line_start]
    try:
        data = binascii.a2b_base64(body)  # skips the line breaks
    except binascii.Error as exc:
        raise OpenPGPError(f"corrupt armor: {exc}") from None
    return Armor(match.group(1).decode("ascii"), headers, data, checksum)


def checksum_mismatch(armor: Armor) -> bool:
    """True when the armor carried a CRC-24 that does not match its data (corrupted in transit)."""
    return armor.checksum is not None and armor.checksum != crc24(armor.data).to_bytes(3, "big")


def looks_binary_openpgp(data: bytes) -> bool:
    """True when ``data`` starts like a binary OpenPGP message (a PKESK, SKESK, compressed, signed... packet)."""
    if not data or not data[0] & 0x80:
        return False
    tag = data[0] & 0x3F if data[0] & 0x40 else (data[0] >> 2) & 0x0F
    return tag in (TAG_PKESK, TAG_SIGNATURE, TAG_SKESK, TAG_ONE_PASS, TAG_COMPRESSED, TAG_LITERAL, TAG_SEIPD)


# --------------------------------------------------------------------------- packets


@dataclass
class Packet:
    tag: int
    body: bytes
    start: int = 0  # offset of its header in the data
    streamed: bool = False  # partial or indeterminate length: fine in a message, never in a key


def _new_length(data: bytes, pos: int) -> tuple[int, int, bool]:
    """A new-format length at ``pos``: (length, next position, is a partial length)."""
    first = data[pos]
    if first < 192:
        return first, pos + 1, False
    if first < 224:
        if pos + 1 >= len(data):
            raise OpenPGPError("truncated packet length")
        return ((first - 192) << 8) + data[pos + 1] + 192, pos + 2, False
    if first == 255:
        if pos + 5 > len(data):
            raise OpenPGPError("truncated packet length")
        return int.from_bytes(data[pos + 1:pos + 5], "big"), pos + 5, False
    return 1 << (first & 0x1F), pos + 1, True


def packets(data: bytes):
    """Yield the packets of ``data`` (RFC 4880 section 4.2), joining partial body lengths."""
    view = memoryview(data)  # the pieces of a partial body are joined without a copy of each first
    pos = 0
    while pos < len(data):
        start, header = pos, data[pos]
        if not header & 0x80:
            raise OpenPGPError("not an OpenPGP packet")
        if header & 0x40:
            tag = header & 0x3F
            if pos + 1 >= len(data):
                raise OpenPGPError("truncated packet header")
            chunks = []
            length, pos, partial = _new_length(data, pos + 1)
            streamed = partial
            while partial:
                chunks.append(view[pos:pos + length])
                pos += length
                if pos >= len(data):
                    raise OpenPGPError("truncated partial packet")
                length, pos, partial = _new_length(data, pos)
            chunks.append(view[pos:pos + length])
            if len(chunks[-1]) < length:
                raise OpenPGPError("truncated packet")
            body = b"".join(chunks) if len(chunks) > 1 else chunks[0].tobytes()
        else:
            tag, length_type = (header >> 2) & 0x0F, header & 0x03
            streamed = length_type == 3
            if streamed:  # indeterminate: to the end of the data
                body, length = data[pos + 1:], len(data) - pos - 1
                pos += 1
            else:
                size = 1 << length_type
                if pos + 1 + size > len(data):
                    raise OpenPGPError("truncated packet header")
                length = int.from_bytes(data[pos + 1:pos + 1 + size], "big")
                pos += 1 + size
                body = data[pos:pos + length]
                if len(body) < length:
                    raise OpenPGPError("truncated packet")
        pos += length
        yield Packet(tag, body, start, streamed)


def _mpi_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    """The octets of an MPI at ``pos`` (RFC 4880 section 3.2): (octets, next position)."""
    if pos + 2 > len(data):
        raise OpenPGPError("truncated MPI")
    end = pos + 2 + (int.from_bytes(data[pos:pos + 2], "big") + 7) // 8
    if end > len(data):
        raise OpenPGPError("truncated MPI")
    return data[pos + 2:end], end


def _mpi(data: bytes, pos: int) -> tuple[int, int]:
    octets, end = _mpi_bytes(data, pos)
    return int.from_bytes(octets, "big"), end


@dataclass
class EncryptedSessionKey:
    """A version 3 public-key encrypted session key packet (RFC 4880 section 5.1)."""

    keyid: str
    algorithm: int
    fields: tuple  # RSA: (c,), ElGamal: (c1, c2), ECDH: (ephemeral point bytes, wrapped key)


def _pkesk_v6_keyid(body: bytes) -> str:
    """The key ID in a PKESKv6 (RFC 9580 section 5.1.1): v4 fingerprints end with it, v6 ones start with it."""
    if len(body) < 3 or body[1] == 0:
        return WILDCARD_KEYID
    key_version, fingerprint = body[2], body[3:2 + body[1]]
    return (fingerprint[:8] if key_version == 6 else fingerprint[-8:]).hex().upper()


def parse_pkesk(body: bytes) -> EncryptedSessionKey:
    if not body:
        raise OpenPGPError("empty PKESK packet")
    if body[0] == 6:  # RFC 9580: only the recipient's key ID is of use to us
        return EncryptedSessionKey(_pkesk_v6_keyid(body), -1, ())
    if body[0] != 3 or len(body) < 10:
        raise OpenPGPError(f"unknown PKESK version {body[0]}")
    keyid, algorithm = body[1:9].hex().upper(), body[9]
    if algorithm in RSA_ALGORITHMS:
        fields = (_mpi(body, 10)[0],)
    elif algorithm in ELGAMAL_ALGORITHMS:
        c1, pos = _mpi(body, 10)
        fields = (c1, _mpi(body, pos)[0])
    elif algorithm == ECDH_ALGORITHM:
        point, pos = _mpi_bytes(body, 10)
        size = body[pos] if pos < len(body) else 0
        fields = (point, body[pos + 1:pos + 1 + size])
    else:
        fields = ()
    return EncryptedSessionKey(keyid, algorithm, fields)


# --------------------------------------------------------------------------- keys


@dataclass
class SecretSubkey:
    """One secret (sub)key able to decrypt session keys, with its ready-to-use private key object."""

    keyid: str
    fingerprint: bytes
    algorithm: int
    material: object  # pgpy key material (for the ECDH curve, the ElGamal group)
    private: object  # cryptography private key (RSA, X25519, EC) or the ElGamal exponent
    kdf: tuple | None = None  # ECDH: (hash algorithm, key length, KDF "Param" of RFC 6637 section 8)
    primary: str = ""  # fingerprint of the primary key (upper-case hex): the key whose readers count


def _ecdh_kdf(material, fingerprint: bytes) -> tuple:
    """The parts of the ECDH key derivation that depend only on the key, computed once per key."""
    kdf = material.kdf
    param = (
        encoder.encode(material.oid.value)[1:]  # the curve OID with its length octet, without the tag
        + bytes([ECDH_ALGORITHM, 3, 1, int(kdf.halg), int(kdf.encalg)])
        + b"Anonymous Sender    "
        + fingerprint
    )
    return getattr(hashes, kdf.halg.name), kdf.encalg.key_size // 8, param


def _algorithm_family(algorithm: int) -> int:
    if algorithm in RSA_ALGORITHMS:
        return 1
    if algorithm in ELGAMAL_ALGORITHMS:
        return 16
    return algorithm


def _secret_subkeys(key: pgpy.PGPKey) -> list[SecretSubkey]:
    """The decryption-capable parts of an unlocked secret key, each built into a private key object once."""
    found = []
    for part in [key, *key.subkeys.values()]:
        material = part._key.keymaterial  # pgpy keeps the key material here; there is no public accessor
        algorithm = int(part.key_algorithm)
        if _algorithm_family(algorithm) not in (1, 16, ECDH_ALGORITHM) or part.is_public:
            continue
        if algorithm in ELGAMAL_ALGORITHMS:
            private = int(material.x)
        else:
            private = material.__privkey__()  # the expensive step (RSA validation): cached by the Keyring
        fingerprint = bytes.fromhex(str(part.fingerprint).replace(" ", ""))
        kdf = _ecdh_kdf(material, fingerprint) if algorithm == ECDH_ALGORITHM else None
        found.append(SecretSubkey(part.fingerprint.keyid.upper(), fingerprint, algorithm, material, private, kdf,
                                  primary=str(key.fingerprint).replace(" ", "").upper()))
    return found


class Keyring:
    """The engine's view of a key store, caching unlocked key material across messages.

    ``source`` is the key store seen as :class:`PgpKeys`. Everything cached is dropped when
    ``source.data_version()`` changes, so an added or deleted key takes effect
    on the next message.
    """

    def __init__(self, source: PgpKeys):
        self.source = source
        self._version = None
        self._by_keyid: dict[str, list[SecretSubkey]] = {}
        self._all: list[SecretSubkey] | None = None

    def _refresh(self) -> None:
        version = self.source.data_version()
        if version != self._version:
            self._version, self._by_keyid, self._all = version, {}, None

    def secret_subkeys(self, keyid: str) -> list[SecretSubkey]:
        self._refresh()
        if keyid not in self._by_keyid:
            subkeys = []
            for key in self.source.pgp_secret_keys(keyid):
                subkeys += [s for s in _secret_subkeys(key) if s.keyid == keyid]
            self._by_keyid[keyid] = subkeys
        return self._by_keyid[keyid]

    def all_secret_subkeys(self) -> list[SecretSubkey]:
        self._refresh()
        if self._all is None:
            self._all = [s for key in self.source.all_pgp_secret_keys() for s in _secret_subkeys(key)]
        return self._all

    def public_keys(self, keyid: str) -> list[pgpy.PGPKey]:
        """The keys that may verify a signature: only the ones an administrator imported."""
        return self.source.pgp_public_keys(keyid, imported_only=True)

    def has_unvouched_key(self, keyid: str) -> bool:
        """True when the store holds a key of ``keyid`` at all; asked only once :meth:`public_keys` (the
        admin-imported ones) found none, so such a key arrived in mail (harvested)."""
        return bool(self.source.pgp_public_keys(keyid))


class _NoKeys:
    """The :class:`PgpKeys` of a run without a key store: nothing to decrypt or verify with."""

    def pgp_secret_keys(self, keyid: str) -> list[pgpy.PGPKey]:
        return []

    def all_pgp_secret_keys(self) -> list[pgpy.PGPKey]:
        return []

    def pgp_public_keys(self, keyid: str, *, imported_only: bool = False) -> list[pgpy.PGPKey]:
        return []

    def data_version(self) -> int:
        return 0


_NO_KEYS: PgpKeys = _NoKeys()
_KEYRINGS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def keyring_for(source: PgpKeys | None) -> Keyring:
    """The long-lived :class:`Keyring` of a key store (or of no store), so its cache outlives one message."""
    source = _NO_KEYS if source is None else source
    keyring = _KEYRINGS.get(source)
    if keyring is None:
        keyring = _KEYRINGS[source] = Keyring(source)
    return keyring


# --------------------------------------------------------------------------- session keys


def _eme_pkcs1_decode(block: bytes) -> bytes | None:
    """EME-PKCS1-v1_5 decoding (RFC 8017 section 7.2.2) for ElGamal, where no library does it for us."""
    if len(block) < 11 or block[0] != 0 or block[1] != 2:
        return None
    separator = block.find(b"\x00", 2)
    return block[separator + 1:] if separator >= 10 else None


def _ecdh_shared_secret(subkey: SecretSubkey, point: bytes) -> bytes:
    material = subkey.material
    if material.oid == EllipticCurveOID.Curve25519:
        if len(point) != 33 or point[0] != 0x40:
            raise OpenPGPError("malformed Curve25519 ephemeral key")
        return subkey.private.exchange(x25519.X25519PublicKey.from_public_bytes(point[1:]))
    public = ec.EllipticCurvePublicKey.from_encoded_point(material.oid.curve(), point)
    return subkey.private.exchange(ec.ECDH(), public)


def _unwrap_ecdh(subkey: SecretSubkey, point: bytes, wrapped: bytes) -> bytes | None:
    """RFC 6637 section 8: shared point -> KDF -> AES key unwrap -> PKCS#5 unpadding."""
    hash_algorithm, length, param = subkey.kdf
    kek = ConcatKDFHash(hash_algorithm(), length, param).derive(_ecdh_shared_secret(subkey, point))
    try:
        padded = aes_key_unwrap(kek, wrapped)
    except InvalidUnwrap:
        return None
    pad = padded[-1] if padded else 0
    if not 1 <= pad <= 8 or padded[-pad:] != bytes([pad]) * pad:
        return None
    return padded[:-pad]


def _fits(esk: EncryptedSessionKey, subkey: SecretSubkey) -> bool:
    """True when ``subkey`` can attempt ``esk`` at all (public facts: its algorithm and fields)."""
    return _algorithm_family(esk.algorithm) == _algorithm_family(subkey.algorithm) and bool(esk.fields)


def _session_key_block(esk: EncryptedSessionKey, subkey: SecretSubkey) -> bytes | None:
    """The decrypted ``algorithm || key || checksum`` block, or None when this key does not fit or fails."""
    if not _fits(esk, subkey):
        return None
    try:
        if esk.algorithm in RSA_ALGORITHMS:
            size = (subkey.private.key_size + 7) // 8
            if esk.fields[0] >= 1 << (size * 8):
                return None
            return subkey.private.decrypt(esk.fields[0].to_bytes(size, "big"), padding.PKCS1v15())
        if esk.algorithm in ELGAMAL_ALGORITHMS:
            p = int(subkey.material.p)
            c1, c2 = esk.fields
            plain = c2 * pow(c1, p - 1 - subkey.private, p) % p
            return _eme_pkcs1_decode(plain.to_bytes((p.bit_length() + 7) // 8, "big"))
        return _unwrap_ecdh(subkey, *esk.fields)
    except ValueError:  # bad padding, a point not on the curve: not this key
        return None


# Every failed unwrap decrypts the whole data with AES-256 (what gpg and Sequoia choose by default), whatever
# cipher the sender named: the algorithm of a SEIPDv1 session key is inside the encrypted PKESK, so after a
# failure it is unknown. Nor would it help to know it: a tampered PKESK -- what a padding-oracle attack sends,
# good padding or bad -- unwraps to a block whose checksum fails (1 in 65,536 passes it by chance), so every
# tampered PKESK runs this decoy. Only an untampered one reaches the real cipher (a bad MDC then runs it, 3DES
# 14 times slower than AES-256 per byte), and its sender chose that cipher: the time tells him nothing new.
_DECOY_ALGORITHM = 9


def _decoy_session_key() -> tuple[int, readers.DecoyKey]:
    return _DECOY_ALGORITHM, readers.DecoyKey.of_size(CIPHERS[_DECOY_ALGORITHM][2])


def _parse_session_key(block: bytes | None) -> tuple[int, bytes] | None:
    """Check the algorithm byte, key length and two-byte checksum of a decrypted session key."""
    if not block or block[0] not in CIPHERS or len(block) != 3 + CIPHERS[block[0]][2]:
        return None
    key = block[1:-2]
    if sum(key) & 0xFFFF != int.from_bytes(block[-2:], "big"):
        return None
    return block[0], key


# --------------------------------------------------------------------------- symmetric layer


def _decrypt_seipd_v1(body: bytes, algorithm: int, key: bytes) -> bytes | None:
    """Decrypt a SEIPDv1 body (RFC 4880 section 5.13); None when the key is wrong.

    Raises :class:`IntegrityError` when the key is right but the MDC is not:
    the ciphertext was changed. "Right" is the two repeated bytes of the prefix
    and a packet header after them (changing a byte of CFB data garbles only it
    and the next block, so a change past the start leaves both intact); a wrong
    key passes both by chance about once in 2^16 * 7 tries (35 of 256 first bytes), not 2^16.
    """
    name, cipher_class, _ = CIPHERS[algorithm]
    if cipher_class is None:
        raise UnsupportedFormat(f"unsupported cipher {name}")
    block = cipher_class.block_size // 8
    data = body[1:]
    if len(data) < block + 2 + MDC_LENGTH:
        raise OpenPGPError("truncated encrypted data")
    decryptor = Cipher(cipher_class(key), CFB(bytes(block))).decryptor()
    plain = decryptor.update(data) + decryptor.finalize()
    # Hashed before the quick check decides, so that a wrong key (a decoy among them) does the same work
    # as a right key on changed data: only the outcome tells them apart, never the time.
    expected = hashlib.sha1(plain[:-20]).digest()
    if plain[block - 2:block] != plain[block:block + 2]:  # the quick check: wrong session key
        return None
    if plain[-MDC_LENGTH:-20] != b"\xd3\x14" or not hmac.compare_digest(expected, plain[-20:]):
        if looks_binary_openpgp(plain[block + 2:block + 3]):
            raise IntegrityError()
        return None
    return plain[block + 2:-MDC_LENGTH]


# --------------------------------------------------------------------------- results


@dataclass
class SignatureResult:
    keyid: str  # issuer key ID, 16 upper-case hex digits
    valid: bool
    reason: str | None = None  # why not valid
    emails: list[str] = field(default_factory=list)  # of the signing key's user IDs, lower case
    key_found: bool = False


@dataclass
class Opened:
    """What one OpenPGP message held."""

    encrypted: bool = False
    recipients: list[str] = field(default_factory=list)  # PKESK key IDs in packet order
    cipher: str | None = None
    decryption_key: str | None = None  # key ID of the subkey that opened it
    compression: list[str] = field(default_factory=list)
    plaintext: bytes | None = None  # the literal data
    literal_format: str | None = None  # "b", "t", "u"
    filename: str | None = None
    signatures: list[SignatureResult] = field(default_factory=list)
    key_not_found: bool = False
    keys_refused: bool = False  # keys were stored, but the caller's arranger refused them all (key_not_found too)
    failure: str | None = None  # why it could not be opened

    @property
    def sha256(self) -> str | None:
        return ids.sha256_hex(self.plaintext) if self.plaintext is not None else None




_COMPRESSION_KINDS = {1: inflate.RAW_DEFLATE, 2: inflate.ZLIB, 3: inflate.BZIP2}
_COMPRESSED_DATA = "OpenPGP data"  # what the budget's reason names


def _inflate(algorithm: int, data: bytes, budget: DecompressionBudget, check) -> bytes:
    """Decompress a compressed packet's data within the budget (:func:`inflate.inflate`)."""
    if algorithm == 0:
        budget.take(len(data), _COMPRESSED_DATA)
        return data
    if algorithm not in _COMPRESSION_KINDS:
        raise OpenPGPError(f"unknown compression algorithm {algorithm}")
    try:
        return inflate.inflate(_COMPRESSION_KINDS[algorithm], data, budget, check, _COMPRESSED_DATA)
    except inflate.CorruptData as exc:
        raise OpenPGPError(str(exc)) from None


def _read_literal(body: bytes, opened: Opened) -> None:
    if len(body) < 6 or 6 + body[1] > len(body):
        raise OpenPGPError("truncated literal data packet")
    name_length = body[1]
    opened.literal_format = chr(body[0])
    opened.filename = body[2:2 + name_length].decode("utf-8", "replace")
    opened.plaintext = body[6 + name_length:]


def _unwrap(data: bytes, opened: Opened, signatures: list[bytes], budget: DecompressionBudget, max_nesting: int,
            check, depth: int = 0) -> None:
    """Read a decrypted (or plain signed/compressed) packet sequence into ``opened``."""
    if depth > max_nesting:
        raise LimitExceeded(f"OpenPGP packets nested deeper than {max_nesting}")
    for packet in packets(data):
        if packet.tag == TAG_COMPRESSED:
            if not packet.body:
                raise OpenPGPError("empty compressed data packet")
            opened.compression.append(COMPRESSION.get(packet.body[0], str(packet.body[0])))
            inner = _inflate(packet.body[0], packet.body[1:], budget, check)
            _unwrap(inner, opened, signatures, budget, max_nesting, check, depth + 1)
        elif packet.tag == TAG_LITERAL:
            if opened.plaintext is not None:
                raise OpenPGPError("more than one literal data packet")
            _read_literal(packet.body, opened)
        elif packet.tag == TAG_SIGNATURE:
            signatures.append(packet.body)
        elif packet.tag in (TAG_ONE_PASS, TAG_MARKER, TAG_PADDING):
            continue
        else:
            raise OpenPGPError(f"unexpected packet (tag {packet.tag}) in the message")


def _seipd_cipher_v2(body: bytes) -> str | None:
    return CIPHERS.get(body[1], (str(body[1]),))[0] if len(body) > 1 else None


def _session_key_candidates(esks: list[EncryptedSessionKey], keyring: Keyring):
    """(PKESK, subkey) pairs to try: named recipients first, then every key for wildcard recipients."""
    named, wildcard = [], []
    for esk in esks:
        if esk.keyid == WILDCARD_KEYID:
            wildcard += [(esk, subkey) for subkey in keyring.all_secret_subkeys()]
        else:
            named += [(esk, subkey) for subkey in keyring.secret_subkeys(esk.keyid)]
    return named + wildcard


def _name_held_keys(esks: list[EncryptedSessionKey], packet: Packet, stream, keyring: Keyring, arrange) -> None:
    """Past max_recipients: hand ``arrange`` the stored keys every PKESK names (the one met at the limit and
    those after it), as if the message were decrypted: the caller learns that the limit hides content it
    could open. Key ids only, no secret-key operation; broken packets end the list."""
    named = list(esks)
    with contextlib.suppress(OpenPGPError, ValueError, IndexError):
        while packet is not None and packet.tag in (TAG_PKESK, TAG_SKESK, TAG_MARKER):
            if packet.tag == TAG_PKESK:
                named.append(parse_pkesk(packet.body))
            packet = next(stream, None)
    candidates = _session_key_candidates(named, keyring)
    if candidates:
        arrange(candidates)


def _decrypt(esks, seipd: Packet, keyring: Keyring, opened: Opened, check, arrange) -> bytes | None:
    """Open the SEIPD packet with a session key from the candidate keys ``arrange`` groups; None when none fits."""
    candidates = _session_key_candidates(esks, keyring)
    groups = arrange(candidates) if candidates else []
    if not groups:
        opened.key_not_found = True
        opened.keys_refused = bool(candidates)
        opened.failure = "decryption key not found"
        return None
    failure, cipher = NO_KEY_DECRYPTS, None

    def session_key(candidate):
        check()
        esk, subkey = candidate
        if not _fits(esk, subkey):
            return None
        # A key that fails to open the session key still decrypts the data, with a decoy (implicit
        # rejection): the work is then the same as for a right key on changed data (readers.DecoyKey).
        return _parse_session_key(_session_key_block(esk, subkey)) or _decoy_session_key()

    def open_content(session):
        nonlocal failure, cipher
        # implicit rejection (RSA) can hand back a random "session key" that passes the
        # checksum by chance; the quick check and MDC of the data settle it. A changed
        # ciphertext passes the quick check (its first blocks are intact) and fails the MDC:
        # go on with the other keys all the same, one of them may be the right one after all.
        algorithm, key = session
        if isinstance(key, readers.DecoyKey):  # the same work, and nothing of it reaches the outcome
            with contextlib.suppress(OpenPGPError):
                _decrypt_seipd_v1(seipd.body, algorithm, key)
            return None
        opened.cipher = CIPHERS[algorithm][0]
        try:
            return _decrypt_seipd_v1(seipd.body, algorithm, key)
        except IntegrityError:  # the session key is right, so is the cipher it names
            failure, cipher = INTEGRITY_FAILED, opened.cipher
            return None

    try:
        found = readers.open_agreeing(groups, session_key, open_content)
    except readers.Disagreement:  # a key of another recipient holds another session key
        found = None
    if found is not None:
        plain, (_esk, subkey) = found
        opened.decryption_key = subkey.keyid
        return plain
    opened.cipher = cipher
    opened.failure = failure
    return None


def open_message(
    data: bytes,
    keyring: Keyring,
    *,
    max_output: int | DecompressionBudget,
    max_nesting: int = DEFAULT_MAX_NESTING,
    max_recipients: int = DEFAULT_MAX_RECIPIENTS,
    check=lambda: None,
    arrange=lambda candidates: [candidates],
) -> Opened:
    """Open a binary OpenPGP message: decrypt it when it is encrypted, unwrap compression, verify signatures.

    ``max_output`` bounds what its compressed packets unpack to, all together:
    a number of bytes for this message alone, or a budget it shares with the
    other OpenPGP messages of one mail (what it unpacks is taken from it).
    Problems with the data itself are reported in ``Opened.failure``; only a
    limit raises (:class:`LimitExceeded`). ``check`` is called between
    expensive steps (the handler's deadline check). ``arrange`` groups the
    (PKESK, secret subkey) pairs that may open the session key, as
    :func:`readers.open_agreeing` takes them (an empty list refuses them:
    ``Opened.keys_refused``); by default every pair is tried in order.
    """
    opened = Opened()
    budget = max_output if isinstance(max_output, DecompressionBudget) else DecompressionBudget(max_output)
    esks: list[EncryptedSessionKey] = []
    signatures: list[bytes] = []
    try:
        stream = packets(data)
        for packet in stream:
            if packet.tag == TAG_PKESK:
                opened.encrypted = True
                if len(esks) >= max_recipients:
                    _name_held_keys(esks, packet, stream, keyring, arrange)
                    raise LimitExceeded(f"more than {max_recipients} recipients in one layer")
                esk = parse_pkesk(packet.body)
                esks.append(esk)
                opened.recipients.append(esk.keyid)
            elif packet.tag == TAG_SKESK:
                opened.encrypted = True
            elif packet.tag == TAG_MARKER:
                continue
            elif packet.tag == TAG_SEIPD:
                opened.encrypted = True
                if packet.body[:1] == b"\x02":
                    opened.cipher = _seipd_cipher_v2(packet.body)
                    raise UnsupportedFormat("unsupported packet format (SEIPDv2)")
                if packet.body[:1] != b"\x01":
                    raise OpenPGPError("unknown encrypted data version")
                plain = _decrypt(esks, packet, keyring, opened, check, arrange)
                if plain is None:
                    return opened
                _unwrap(plain, opened, signatures, budget, max_nesting, check)
                break
            elif packet.tag == TAG_OCB_AEAD:
                opened.encrypted = True
                raise UnsupportedFormat("unsupported packet format (OCB AEAD packet)")
            elif packet.tag == TAG_SED:
                # No integrity protection: the malleable CFB data is what EFAIL's gadgets exploit.
                opened.encrypted = True
                raise OpenPGPError("no integrity protection (SED packet)")
            else:  # a signed or compressed message that is not encrypted
                _unwrap(data, opened, signatures, budget, max_nesting, check)
                break
    except OpenPGPError as exc:
        opened.failure = str(exc)
        opened.plaintext = None  # never hand on part of a message that failed
        return opened
    if opened.plaintext is None and opened.failure is None:
        opened.failure = "no encrypted data packet" if opened.encrypted else "no OpenPGP message in the data"
    if opened.plaintext is not None:
        opened.signatures = [verify(opened.plaintext, sig, keyring) for sig in signatures]
    return opened


# --------------------------------------------------------------------------- signatures


def parse_signature(packet_body: bytes) -> pgpy.PGPSignature:
    """A pgpy signature from a signature packet body (re-framed with a new-format header)."""
    return pgpy.PGPSignature.from_blob(_frame(TAG_SIGNATURE, packet_body))


def _frame(tag: int, body: bytes) -> bytes:
    length = len(body)
    if length < 192:
        header = bytes([length])
    elif length < 8384:
        header = bytes([((length - 192) >> 8) + 192, (length - 192) & 0xFF])
    else:
        header = b"\xff" + length.to_bytes(4, "big")
    return bytes([0xC0 | tag]) + header + body


def signature_packets(data: bytes) -> list[bytes]:
    """The signature packet bodies of a (dearmored) detached signature."""
    return [p.body for p in packets(data) if p.tag == TAG_SIGNATURE]


def key_emails(key: pgpy.PGPKey) -> list[str]:
    """The addresses of the key's user IDs, lower case: "Name <addr>", and the bare "addr" or "<addr>" that
    gpg --quick-gen-key and Autocrypt clients write (pgpy 0.6 reads no address out of those)."""
    emails = []
    for uid in key.userids:
        bare = _BARE_ADDRESS.fullmatch((uid.userid or "").strip()) if not uid.email else None
        email = (bare.group(1) if bare else uid.email or "").strip().lower()
        if email and email not in emails:
            emails.append(email)
    return emails


def verify(data: bytes, packet_body: bytes, keyring: Keyring) -> SignatureResult:
    """Verify one signature packet over ``data`` (pgpy canonicalises line endings for text signatures)."""
    try:
        signature = parse_signature(packet_body)
        keyid = (signature.signer or WILDCARD_KEYID).upper()  # pgpy parses the subpackets lazily
    except Exception as exc:  # pgpy raises assorted errors on what it does not support
        return SignatureResult(WILDCARD_KEYID, False, f"unreadable signature ({type(exc).__name__})")
    keys = keyring.public_keys(keyid)
    if not keys:
        # A key that arrived in mail proves nothing about its user IDs: whoever made the signature made it too.
        return SignatureResult(keyid, False, KEY_NOT_IMPORTED if keyring.has_unvouched_key(keyid) else KEY_NOT_FOUND)
    result = SignatureResult(keyid, False, "bad signature", key_emails(keys[0]), key_found=True)
    for key in keys:
        try:
            if key.verify(data, signature):
                return SignatureResult(keyid, True, None, key_emails(key), key_found=True)
        except Exception as exc:  # pgpy: unsupported algorithm, expired key, ...
            result.reason = f"cannot verify ({exc})"[:120]
    return result


def verify_detached(data: bytes, signature_data: bytes, keyring: Keyring) -> list[SignatureResult]:
    """Verify every signature in a binary detached signature over ``data`` (PGP/MIME: the first part)."""
    try:
        bodies = signature_packets(signature_data)
    except OpenPGPError as exc:
        return [SignatureResult(WILDCARD_KEYID, False, f"unreadable signature ({exc})")]
    if not bodies:
        return [SignatureResult(WILDCARD_KEYID, False, "no signature packet")]
    return [verify(data, body, keyring) for body in bodies]


# --------------------------------------------------------------------------- cleartext signatures


@dataclass
class Cleartext:
    text: bytes  # as gpg outputs it: dash-unescaped lines without trailing white space, each ending in LF
    canonical: bytes  # what the signature covers (RFC 4880 section 7.1)
    signatures: list[SignatureResult]
    signature_headers: dict[str, str]  # the signature armor's own headers ("Comment:"): signed by nobody


def _cleartext_lines(block: bytes) -> tuple[list[bytes], int]:
    """The dash-unescaped text lines of a cleartext-signed block and where its signature armor starts."""
    lines = block.split(b"\n")
    index = 1
    while index < len(lines) and lines[index].rstrip(b"\r"):
        if not _CLEARTEXT_HASH_HEADER.fullmatch(lines[index].rstrip()):
            raise OpenPGPError(CLEARTEXT_BAD_HEADER)
        index += 1
    text: list[bytes] = []
    for offset, line in enumerate(lines[index + 1:], start=index + 1):
        line = line.rstrip(b"\r")
        if line.startswith(b"-----BEGIN PGP SIGNATURE-----"):
            return text, sum(len(x) + 1 for x in lines[:offset])
        text.append(line[2:] if line.startswith(b"- ") else line)
    raise OpenPGPError("cleartext signature without a signature block")


def read_cleartext(block: bytes, keyring: Keyring) -> Cleartext:
    """Verify a ``-----BEGIN PGP SIGNED MESSAGE-----`` block ourselves.

    pgpy 0.6 cannot read non-Latin-1 cleartext, so we apply RFC 4880
    section 7.1 here: dash-unescape, drop trailing white space per line, join
    with CRLF without the final line break, and verify over those bytes.
    """
    lines, signature_start = _cleartext_lines(block)
    lines = [line.rstrip(b" \t") for line in lines]
    canonical = b"\r\n".join(lines)
    signature = dearmor(block[signature_start:])
    text = b"".join(line + b"\n" for line in lines)
    return Cleartext(text, canonical, verify_detached(canonical, signature.data, keyring), signature.headers)
