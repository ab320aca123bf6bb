"""Pairs of messages that fail to decrypt in the two ways a sender must not tell apart by the reply's time.

In each pair the message is encrypted by the real tool (``openssl cms``, ``gpg``) to a corpus key the
store holds, then changed the way a padding-oracle attacker changes it:

* ``wrong_key``: the key transport / agreement step fails (random RSA ciphertext below the modulus, so
  PKCS#1 v1.5 gets OpenSSL's implicit rejection and OAEP its decoding error; a changed AES-wrapped key,
  so the key wrap integrity check fails);
* ``bad_tag``: the content key unwraps, but the content does not open (a flipped byte of the GCM tag,
  of the OpenPGP MDC).

Shared by the timing benchmark (bench/timing.py) and the tests that count the content decryptions
(tests/test_timing.py).
"""

from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import cms as asn1_cms
from cryptography import x509

from ciphermilter.formats.openpgp import engine as openpgp
from bench.shared import SHARED

KEYS = SHARED / "corpus" / "keys"
SENDER = "alice@sender-pub.example"


@dataclass
class Pair:
    name: str
    recipient: str  # the envelope recipient that reads the key (reader rule)
    wrong_key: bytes  # the whole message
    bad_tag: bytes


def content_entity(size: int) -> bytes:
    line = b"Quarterly numbers, confidential. 0123456789 abcdefghijklmnopqrstuvwxyz\r\n"
    return b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + (line * (size // len(line) + 1))[:size]


def _message(recipient: str, entity: bytes) -> bytes:
    return (f"From: {SENDER}\r\nTo: {recipient}\r\nSubject: timing\r\nMIME-Version: 1.0\r\n".encode() + entity)


def _smime_message(recipient: str, der: bytes) -> bytes:
    return _message(recipient, b'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"'
                               b"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                    + base64.encodebytes(der).replace(b"\n", b"\r\n"))


def _openssl_encrypt(entity: bytes, cert: Path, *recipient_options: str) -> bytes:
    return subprocess.run(["openssl", "cms", "-encrypt", "-binary", "-outform", "DER", "-aes-256-gcm",
                           "-recip", str(cert), *recipient_options],  # -keyopt applies to the -recip before it
                          input=entity, check=True, capture_output=True).stdout


def _flipped(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1:]


def _changed_smime(der: bytes, change) -> bytes:
    info = asn1_cms.ContentInfo.load(der)
    change(info["content"])
    return info.dump(force=True)


def _flip_mac(content) -> None:
    content["mac"] = _flipped(content["mac"].native, 0)


def _random_below(modulus: int) -> bytes:
    size = (modulus.bit_length() + 7) // 8
    return (int.from_bytes(os.urandom(size), "big") % modulus).to_bytes(size, "big")


def _random_key_transport(cert: Path):
    modulus = x509.load_pem_x509_certificate(cert.read_bytes()).public_key().public_numbers().n

    def change(content) -> None:
        content["recipient_infos"][0].chosen["encrypted_key"] = _random_below(modulus)
    return change


def _flip_wrapped_key(content) -> None:
    recipient = content["recipient_infos"][0].chosen["recipient_encrypted_keys"][0]
    recipient["encrypted_key"] = _flipped(recipient["encrypted_key"].native, 0)


def smime_pair(name: str, who: str, entity: bytes, *recipient_options: str) -> Pair:
    cert = KEYS / "smime" / f"pub-{who}.cert.pem"
    der = _openssl_encrypt(entity, cert, *recipient_options)
    recipient = f"{who.partition('-')[0]}@corp-pub.example"
    wrong = _flip_wrapped_key if "ECDH" in name else _random_key_transport(cert)
    return Pair(name, recipient, _smime_message(recipient, _changed_smime(der, wrong)),
                _smime_message(recipient, _changed_smime(der, _flip_mac)))


def _armored(binary: bytes) -> bytes:
    checksum = base64.b64encode(openpgp.crc24(binary).to_bytes(3, "big"))
    return (b"-----BEGIN PGP MESSAGE-----\r\n\r\n" + base64.encodebytes(binary).replace(b"\n", b"\r\n")
            + b"=" + checksum + b"\r\n-----END PGP MESSAGE-----\r\n")


def _pgp_mime_message(recipient: str, binary: bytes) -> bytes:
    return _message(recipient, b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; '
                               b'boundary="b"\r\n\r\n--b\r\nContent-Type: application/pgp-encrypted\r\n\r\n'
                               b"Version: 1\r\n\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\n"
                    + _armored(binary) + b"\r\n--b--\r\n")


def _with_pkesk_body(binary: bytes, change) -> bytes:
    """The message with its (only) PKESK packet's body changed, re-framed."""
    out = b""
    for packet in openpgp.packets(binary):
        body = change(packet.body) if packet.tag == openpgp.TAG_PKESK else packet.body
        out += openpgp.frame(packet.tag, body)
    return out


def _random_rsa_pkesk(body: bytes) -> bytes:
    """The RSA session key MPI replaced by a random number of one bit less (below any modulus of its size)."""
    bits = int.from_bytes(body[10:12], "big") - 1
    value = int.from_bytes(os.urandom((bits + 7) // 8), "big") % (1 << bits) | (1 << (bits - 1))
    return body[:10] + bits.to_bytes(2, "big") + value.to_bytes((bits + 7) // 8, "big")


def _flip_wrapped_session_key(body: bytes) -> bytes:
    return _flipped(body, len(body) - 1)  # the last byte of the AES-wrapped session key (RFC 6637)


def pgp_pair(name: str, key_file: str, recipient: str, entity: bytes, home: Path) -> Pair:
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--quiet", "--import", str(KEYS / "pgp" / key_file)], env=env,
                   check=True, capture_output=True)
    binary = subprocess.run(["gpg", "--batch", "--quiet", "--trust-model", "always", "--encrypt", "-r", recipient],
                            input=entity, env=env, check=True, capture_output=True).stdout
    wrong = _flip_wrapped_session_key if "Curve25519" in name else _random_rsa_pkesk
    # The last byte of the data is the MDC's: the quick check passes, the MDC fails (the tag of OpenPGP).
    return Pair(name, recipient, _pgp_mime_message(recipient, _with_pkesk_body(binary, wrong)),
                _pgp_mime_message(recipient, _flipped(binary, len(binary) - 1)))


def pairs(work: Path, size: int) -> list[Pair]:
    """One pair per key transport: S/MIME RSA PKCS#1 v1.5, RSA-OAEP, ECDH P-256; OpenPGP RSA-3072, Curve25519."""
    home = work / "gnupg"
    home.mkdir(mode=0o700, exist_ok=True)
    entity = content_entity(size)
    return [
        smime_pair("S/MIME RSA PKCS#1 v1.5, AES-256-GCM", "bob", entity),
        smime_pair("S/MIME RSA-OAEP, AES-256-GCM", "bob", entity, "-keyopt", "rsa_padding_mode:oaep"),
        smime_pair("S/MIME ECDH P-256 + AES key wrap, AES-256-GCM", "erin-p256", entity),
        pgp_pair("OpenPGP RSA-3072, SEIPD+MDC", "pub-pgp-bob-rsa3072.pub.asc", "bob.pgp@corp-pub.example",
                 entity, home),
        pgp_pair("OpenPGP Curve25519 ECDH + AES key wrap, SEIPD+MDC", "pub-pgp-gus-sq-cv25519.pub.asc",
                 "gus.sq@corp-pub.example", entity, home),
    ]
