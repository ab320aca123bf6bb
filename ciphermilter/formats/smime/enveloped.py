"""Enveloped CMS layers (RFC 5652 section 6, RFC 5083): describe one, then open its content with a stored key.

Every failure of a key that was actually tried is the one reason
``decryption failed`` (:mod:`errors`: no padding oracle), and it takes the
same steps whatever broke: a private key that fails yields a decoy content
key of the cipher's size, and the content decryption runs with it all the
same (implicit rejection, no timing oracle).

Keys come in through a callable (:data:`KeyFinder`), so the engine never
knows where they are stored; the S/MIME handler passes the store's
``smime_private_keys`` lookup (``core.seams.SmimeKeys``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from asn1crypto import cms, core
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from ciphermilter.formats import readers
from ciphermilter.formats.smime import asn1, recipients
from ciphermilter.formats.smime.algorithms import (AUTH_ENVELOPED_DATA, CONTENT_CIPHERS, ENVELOPED_DATA, CipherMode,
                                                   ContentCipher, cipher_name)
from ciphermilter.formats.smime.errors import (DecryptionFailed, KeyNotFound, KeysRefused, MalformedCms,
                                               UnsupportedAlgorithm)
from ciphermilter.formats.smime.recipients import Recipient

Ciphertext = Sequence[bytes | memoryview]  # the encrypted content in pieces


@dataclass
class EnvelopedLayer:
    authenticated: bool  # AuthEnvelopedData (RFC 5083)
    cipher: str  # the spec's name of the content cipher, or its dotted OID
    recipients: list[Recipient]
    _data: cms.EnvelopedData | cms.AuthEnvelopedData = field(repr=False)
    _encrypted: cms.EncryptedContentInfo = field(repr=False)
    _ciphertext: Ciphertext | None = field(repr=False)  # None when detached


def open_enveloped(info: cms.ContentInfo, *, max_recipients: int,
                   seen: recipients.Seen = lambda recipient: None) -> EnvelopedLayer:
    """Describe an EnvelopedData or AuthEnvelopedData without touching any key.

    ``seen`` is called with each recipient as it is parsed (40,000 RecipientInfos took 2.5 s): the caller
    may look up what each names while the parse goes on. More than ``max_recipients`` raise the handler
    contract's ``LimitExceeded``.
    """
    ctype = asn1.content_type(info)
    if ctype not in (ENVELOPED_DATA, AUTH_ENVELOPED_DATA):
        raise UnsupportedAlgorithm(f"not enveloped data: {ctype}")
    try:
        data = info["content"]
        if ctype == AUTH_ENVELOPED_DATA:
            encrypted = data["auth_encrypted_content_info"]
        else:
            encrypted = data["encrypted_content_info"]
        oid = asn1.dotted(encrypted["content_encryption_algorithm"]["algorithm"])
        found = recipients.parse_recipients(data["recipient_infos"], max_recipients, seen)
        ciphertext: Ciphertext | None = getattr(info, "encrypted_content", None)
        if ciphertext is None:
            inside = asn1.optional_octets(encrypted["encrypted_content"])
            ciphertext = None if inside is None else [inside]
    except asn1.PARSE_ERRORS:
        raise MalformedCms() from None
    return EnvelopedLayer(ctype == AUTH_ENVELOPED_DATA, cipher_name(oid), found, data, encrypted, ciphertext)


KeyFinder = Callable[[Recipient], list[tuple[bytes, PrivateKeyTypes]]]  # -> [(certificate DER, private key)]
Candidate = tuple[Recipient, bytes, PrivateKeyTypes]  # one key that may open a layer
# Orders the candidates into groups (see readers.open_agreeing); an empty list refuses them all.
Arranger = Callable[[list[Candidate]], list[list[Candidate]]]


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
    oid = asn1.dotted(layer._encrypted["content_encryption_algorithm"]["algorithm"])
    cipher = CONTENT_CIPHERS.get(oid)
    if cipher is None or (cipher.mode == "gcm") != layer.authenticated:
        raise UnsupportedAlgorithm(f"unsupported content cipher {cipher_name(oid)}")
    if layer._ciphertext is None:
        raise MalformedCms("detached encrypted content")  # before any key: no key could open what is not there
    candidates = [(recipient, cert, key) for recipient in layer.recipients if recipient.kind in ("ktri", "kari")
                  for cert, key in find_keys(recipient)]
    if not candidates:
        raise KeyNotFound()
    groups = arrange(candidates)
    if not groups:
        raise KeysRefused()
    attempts = _Attempts(layer, layer._ciphertext, cipher)
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

    def __init__(self, layer: EnvelopedLayer, ciphertext: Ciphertext, cipher: ContentCipher):
        self.layer, self.ciphertext, self.cipher = layer, ciphertext, cipher
        self.tried = False  # a real key was used and failed
        self.unsupported: UnsupportedAlgorithm | None = None  # a key that does not fit its scheme (no attempt)

    def content_key(self, candidate: Candidate) -> bytes | None:
        """The unwrapped content key; a decoy of the cipher's key size when the private key failed, so that
        the content decryption runs all the same (implicit rejection, no timing oracle); None when the key
        does not fit the recipient's scheme (a public fact: no private-key operation was made)."""
        recipient, _cert, key = candidate
        key_size = self.cipher.key_size
        try:
            cek = recipients.unwrap_content_key(recipient, key, key_size)
            # A key of another size runs another cipher than the one reported. OpenSSL >= 3.2 answers bad
            # PKCS#1 v1.5 padding with a synthetic message of random length (implicit rejection): it ends here.
            if len(cek) != key_size:
                raise ValueError("content key size")
            return cek
        except UnsupportedAlgorithm as exc:  # the key does not fit the scheme: no attempt was made
            self.unsupported = exc
            return None
        except Exception:  # noqa: BLE001  any failure of a real key looks the same (no oracle)
            self.tried = True
            return readers.DecoyKey.of_size(key_size)

    def open_content(self, cek: bytes) -> bytearray | None:
        try:
            content = _decrypt_content(self.layer, self.cipher.mode, cek)
        except Exception:  # noqa: BLE001  a wrong content key fails like a wrong private key (no oracle)
            self.tried = True
            return None
        # A decoy unpads CBC content by chance about once in 256: that garbage is never content.
        return None if isinstance(cek, readers.DecoyKey) else content


def _decrypt_content(layer: EnvelopedLayer, mode: CipherMode, cek: bytes) -> bytearray:
    if layer._ciphertext is None:
        raise ValueError("detached encrypted content")
    params = layer._encrypted["content_encryption_algorithm"]["parameters"]
    if mode == "gcm":
        return _decrypt_gcm(layer, layer._ciphertext, params, cek)
    iv = params.native  # asn1crypto types the parameters of each CBC cipher above as an OCTET STRING
    if not isinstance(iv, bytes):
        raise TypeError("initialization vector")
    algorithm = TripleDES(cek) if mode == "3des" else algorithms.AES(cek)
    if mode != "3des" and len(cek) * 8 not in (128, 192, 256):
        raise ValueError("content key size")
    padded = _decrypt_pieces(Cipher(algorithm, modes.CBC(iv)).decryptor(), layer._ciphertext)
    _strip_pkcs7_padding(padded, algorithm.block_size // 8)
    return padded


def _decrypt_gcm(layer: EnvelopedLayer, ciphertext: Ciphertext, params: core.Asn1Value,
                 cek: bytes) -> bytearray:
    gcm = asn1.GcmParameters.load(params.dump())
    tag = asn1.octets(layer._data["mac"])
    # RFC 5084 section 3.2 allows 12 to 16 bytes; the length is not authenticated, and a shorter
    # tag cut from the real one would verify, with each forgery attempt far likelier to succeed.
    if not 12 <= len(tag) <= 16 or len(tag) != gcm["icv_len"].native:
        raise ValueError("tag length")
    auth_attrs = layer._data["auth_attrs"]
    decryptor = Cipher(algorithms.AES(cek), modes.GCM(asn1.octets(gcm["nonce"]), tag, min_tag_length=len(tag))).decryptor()
    # RFC 5083 section 2.1: the AAD is the DER of the authAttrs as a SET OF.
    if auth_attrs.contents:
        decryptor.authenticate_additional_data(b"\x31" + auth_attrs.dump()[1:])
    return _decrypt_pieces(decryptor, ciphertext)


def _decrypt_pieces(decryptor: CipherContext, pieces: Ciphertext) -> bytearray:
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
