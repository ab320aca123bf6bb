"""Opening an OpenPGP message: session keys, the encrypted data (SEIPDv1 here, AEAD in :mod:`.aead`), decompression.

pgpy 0.6's decryption path could not be used as is: it refuses wildcard
("hidden") recipients, inflates compressed data without a bound (a 2 KB
message can expand to 1 GiB) and rebuilds and re-validates an RSA private key
on every call. So the session key is decrypted (:mod:`.sessionkeys`) with the
cached ``cryptography`` key objects of the :class:`.keyring.Keyring`, the
SEIPDv1 data with ``cryptography`` directly (CFB plus the MDC check), the
AEAD packets (SEIPDv2, LibrePGP's tag 20) by :mod:`.aead` once their header
is read, and compressed packets are inflated incrementally up to a byte budget.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives.ciphers import Cipher

from ciphermilter.core.contract import DecompressionBudget, LimitExceeded
from ciphermilter.formats import ids, inflate, readers
from ciphermilter.formats.openpgp import aead, sessionkeys
from ciphermilter.formats.openpgp.algorithms import CIPHERS
from ciphermilter.formats.openpgp.keyring import Keyring, SecretSubkey
from ciphermilter.formats.openpgp.packets import (INTEGRITY_FAILED, TAG_COMPRESSED,
                                                  TAG_LITERAL, TAG_MARKER, TAG_OCB_AEAD, TAG_ONE_PASS, TAG_PADDING,
                                                  TAG_PKESK, TAG_SED, TAG_SEIPD, TAG_SIGNATURE, TAG_SKESK,
                                                  WILDCARD_KEYID, EncryptedSessionKey, IntegrityError, OpenPGPError,
                                                  Packet, UnsupportedFormat, looks_binary_openpgp, packets, parse_pkesk)
from ciphermilter.formats.openpgp.verify import SignatureResult, verify

DEFAULT_MAX_NESTING = 8
DEFAULT_MAX_RECIPIENTS = 100  # PKESK packets: each one may cost a private-key operation per secret key

COMPRESSION = {0: "uncompressed", 1: "ZIP", 2: "ZLIB", 3: "BZIP2"}
MDC_LENGTH = 22  # 0xD3 0x14 + SHA-1
NO_KEY_DECRYPTS = "no key in the store decrypts the session key"

Check = Callable[[], None]  # the handler's deadline check, called between expensive steps
Candidate = tuple[EncryptedSessionKey, SecretSubkey]  # a (PKESK, secret subkey) pair that may open the session key
Arrange = Callable[[list[Candidate]], list[list[Candidate]]]  # groups candidates as readers.open_agreeing takes them
SessionKey = tuple[int, bytes]  # (symmetric algorithm, key); the key is a readers.DecoyKey after a failed unwrap


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


# Every failed unwrap decrypts the whole data with AES-256 (what gpg and Sequoia choose by default), whatever
# cipher the sender named: the algorithm of a SEIPDv1 session key is inside the encrypted PKESK, so after a
# failure it is unknown. Nor would it help to know it: a tampered PKESK -- what a padding-oracle attack sends,
# good padding or bad -- unwraps to a block whose checksum fails (1 in 65,536 passes it by chance), so every
# tampered PKESK runs this decoy. Only an untampered one reaches the real cipher (a bad MDC then runs it, 3DES
# 14 times slower than AES-256 per byte), and its sender chose that cipher: the time tells him nothing new.
_DECOY_ALGORITHM = 9


def _decoy_session_key() -> tuple[int, readers.DecoyKey]:
    return _DECOY_ALGORITHM, readers.DecoyKey.of_size(CIPHERS[_DECOY_ALGORITHM][2])


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
    cipher = cipher_class(key)
    block = cipher.block_size // 8
    data = body[1:]
    if len(data) < block + 2 + MDC_LENGTH:
        raise OpenPGPError("truncated encrypted data")
    decryptor = Cipher(cipher, CFB(bytes(block))).decryptor()
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


_COMPRESSION_KINDS = {1: inflate.RAW_DEFLATE, 2: inflate.ZLIB, 3: inflate.BZIP2}
_COMPRESSED_DATA = "OpenPGP data"  # what the budget's reason names


def _inflate(algorithm: int, data: bytes, budget: DecompressionBudget, check: Check) -> bytes:
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
            check: Check, depth: int = 0) -> None:
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


EncryptedData = Packet | aead.AeadData  # a SEIPDv1 packet, or an AEAD packet whose header was read


def _content_key(encrypted: EncryptedData, session: SessionKey) -> SessionKey:
    """The session key as the data takes it; a decoy (the same work) for a key that cannot be the data's.

    The cipher of AEAD data is public (its header): a session key that names
    another one, or has another size, is not its key. SEIPDv1 data takes the
    cipher its session key names; a v6 PKESK's key names none (a SEIPDv2 retyped as v1).
    """
    algorithm, key = session
    if isinstance(encrypted, aead.AeadData):
        size = encrypted.key_size
        fits = algorithm in (encrypted.cipher, sessionkeys.NAMED_BY_DATA) and len(key) == size
        if not fits or isinstance(key, readers.DecoyKey):
            key = readers.DecoyKey.of_size(size)
        return encrypted.cipher, key
    return session if algorithm in CIPHERS else _decoy_session_key()


def decrypt_data(encrypted: EncryptedData, session: SessionKey, check: Check = lambda: None) -> bytes | None:
    """The packets inside encrypted data, given a session key: the one step after the session key is known.

    None when the key does not open SEIPDv1 data (its quick check);
    :class:`IntegrityError` when the data was changed (MDC) or, for AEAD data,
    when a tag does not match; :class:`UnsupportedFormat` for a cipher we do not have.
    """
    algorithm, key = _content_key(encrypted, session)
    if isinstance(encrypted, aead.AeadData):
        return aead.decrypt(encrypted, key, check)
    return _decrypt_seipd_v1(encrypted.body, algorithm, key)


def _session_key_candidates(esks: list[EncryptedSessionKey], keyring: Keyring) -> list[Candidate]:
    """(PKESK, subkey) pairs to try: named recipients first, then every key for wildcard recipients."""
    named: list[Candidate] = []
    wildcard: list[Candidate] = []
    for esk in esks:
        if esk.keyid == WILDCARD_KEYID:
            wildcard += [(esk, subkey) for subkey in keyring.all_secret_subkeys()]
        else:
            # a PKESKv6 names a whole fingerprint: a key that only shares its key ID is not the recipient
            named += [(esk, subkey) for subkey in keyring.secret_subkeys(esk.keyid)
                      if not esk.fingerprint or esk.fingerprint == subkey.fingerprint]
    return named + wildcard


def _name_held_keys(esks: list[EncryptedSessionKey], packet: Packet | None, stream: Iterator[Packet], keyring: Keyring,
                    arrange: Arrange) -> None:
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


def _decrypt(esks: list[EncryptedSessionKey], encrypted: EncryptedData, keyring: Keyring, opened: Opened, check: Check,
             arrange: Arrange) -> bytes | None:
    """Open the encrypted data with a session key from the candidate keys ``arrange`` groups; None when none fits."""
    candidates = _session_key_candidates(esks, keyring)
    groups = arrange(candidates) if candidates else []
    if not groups:
        opened.key_not_found = True
        opened.keys_refused = bool(candidates)
        opened.failure = "decryption key not found"
        return None
    failure, cipher = NO_KEY_DECRYPTS, opened.cipher  # AEAD data names its cipher, SEIPDv1's is in the PKESK

    def session_key(candidate: Candidate) -> SessionKey | None:
        check()
        esk, subkey = candidate
        if not sessionkeys.fits(esk, subkey):
            return None
        # A key that fails to open the session key still decrypts the data, with a decoy (implicit
        # rejection): the work is then the same as for a right key on changed data (readers.DecoyKey).
        return sessionkeys.session_key(esk, subkey) or _decoy_session_key()

    def open_content(session: SessionKey) -> bytes | None:
        nonlocal failure, cipher
        # implicit rejection (RSA) can hand back a random "session key" that passes the
        # checksum by chance; the quick check and MDC of the data settle it (AEAD data: its
        # first tag). A changed ciphertext passes the quick check (its first blocks are intact)
        # and fails the MDC or a later tag: go on with the other keys all the same, one of them
        # may be the right one after all.
        session = algorithm, key = _content_key(encrypted, session)
        if isinstance(key, readers.DecoyKey):  # the same work, and nothing of it reaches the outcome
            with contextlib.suppress(OpenPGPError):
                decrypt_data(encrypted, session, check)
            return None
        opened.cipher = CIPHERS[algorithm][0]
        try:
            return decrypt_data(encrypted, session, check)
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


def _encrypted_data(packet: Packet, opened: Opened) -> EncryptedData:
    """The SEIPDv1 packet as it is, or the checked header of an AEAD packet (its cipher is then known)."""
    if aead.is_aead(packet):
        data = aead.read_header(packet)
        opened.cipher = CIPHERS[data.cipher][0] if data.cipher in CIPHERS else str(data.cipher)
        if data.cipher not in aead.AES_KEY_SIZES:  # cryptography has OCB and GCM for AES only
            raise UnsupportedFormat(f"unsupported cipher {opened.cipher} ({data.format})")
        return data
    if packet.tag != TAG_SEIPD or packet.body[:1] != b"\x01":
        raise OpenPGPError("unknown encrypted data version")
    return packet


def open_message(
    data: bytes,
    keyring: Keyring,
    *,
    max_output: int | DecompressionBudget,
    max_nesting: int = DEFAULT_MAX_NESTING,
    max_recipients: int = DEFAULT_MAX_RECIPIENTS,
    check: Check = lambda: None,
    arrange: Arrange = lambda candidates: [candidates],
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
            elif packet.tag in (TAG_MARKER, TAG_PADDING):  # padding may stand anywhere (RFC 9580 section 5.14)
                continue
            elif packet.tag in (TAG_SEIPD, TAG_OCB_AEAD):
                opened.encrypted = True
                plain = _decrypt(esks, _encrypted_data(packet, opened), keyring, opened, check, arrange)
                if plain is None:
                    return opened
                _unwrap(plain, opened, signatures, budget, max_nesting, check)
                break
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
