"""Messages built the way an attacker builds them, with the real tools and the corpus keys.

Shared by the attack tests (tests/test_efail.py) and the end-to-end tests behind a real Postfix
(tests/e2e/test_efail_chain.py). Every piece of cryptography comes from ``openssl cms`` or ``gpg``
(with a throwaway GNUPGHOME); the attacker's part is only MIME: wrapping, nesting, relabelling.

Keys (corpus, see shared/corpus/README.md): S/MIME bob (``bob@corp-pub.example``, chains to the corpus
root) encrypts and signs, erin (P-256) signs as a stranger; OpenPGP bob (RSA-3072) is the recipient
and gus (Ed25519, ``gus.sq@corp-pub.example``) the signer. The store of the tests holds all of them.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from random import Random

from asn1crypto import cms as asn1_cms

from ciphermilter.formats.openpgp import engine as openpgp
from conftest import CORPUS
from support.messages import EICAR

KEYS = CORPUS / "keys"
SMIME_BOB = (KEYS / "smime" / "pub-bob.cert.pem", KEYS / "smime" / "pub-bob.key.pem")
SMIME_ERIN = (KEYS / "smime" / "pub-erin-p256.cert.pem", KEYS / "smime" / "pub-erin-p256.key.pem")
SMIME_SIGNER = "bob@corp-pub.example"
PGP_RECIPIENT = "bob.pgp@corp-pub.example"
PGP_SIGNER = "gus.sq@corp-pub.example"
SECRET = b"launch code 0451, do not forward"
SECRET_ENTITY = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + SECRET + b"\r\n"
SIGNED_ENTITY = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nI approve the payment of 10 EUR.\r\n"
ATTACKER_TEXT = b"Content-Type: text/plain\r\n\r\nPlease reply and quote everything below.\r\n"


def crlf(data: bytes) -> bytes:
    """Every line end CRLF (openssl and gpg write LF around the bytes they keep exact)."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def base64_lines(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def message(body_entity: bytes, sender: str = "attacker@evil.example", extra: bytes = b"") -> bytes:
    """A message to bob whose content is ``body_entity`` (its content headers, a blank line, its body)."""
    return (f"From: {sender}\r\nTo: bob@corp-pub.example\r\nSubject: re: payment\r\n".encode() + extra
            + b"MIME-Version: 1.0\r\n" + body_entity)


def multipart(subtype: bytes, parts: list[bytes], boundary: bytes = b"attacker-b") -> bytes:
    """A multipart entity of ``parts`` (each with its headers), as the attacker lays it out."""
    out = [b"Content-Type: multipart/" + subtype + b'; boundary="' + boundary + b'"\r\n\r\n']
    for part in parts:
        out.append(b"--" + boundary + b"\r\n" + part + (b"" if part.endswith(b"\r\n") else b"\r\n"))
    out.append(b"--" + boundary + b"--\r\n")
    return b"".join(out)


def virus_with_parts(count: int = 1001) -> bytes:
    """Issue 14's payload: the EICAR test file, then ``count`` tiny parts (1,001: one over max_mime_parts)."""
    eicar = (b'Content-Type: application/octet-stream; name="eicar.com"\r\nContent-Transfer-Encoding: base64\r\n'
             b'Content-Disposition: attachment; filename="eicar.com"\r\n\r\n' + base64_lines(EICAR))
    return multipart(b"mixed", [eicar] + [b"Content-Type: text/plain\r\n\r\nx\r\n"] * count)


class Tools:
    """The real tools, in a scratch directory with a throwaway GNUPGHOME holding the corpus keys we need."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.gnupg = workdir / "gnupg"
        self.gnupg.mkdir(mode=0o700)
        for name in ("pub-pgp-bob-rsa3072.pub.asc", "pub-pgp-gus-sq-cv25519.sec.asc"):
            self._gpg(["--import", str(KEYS / "pgp" / name)])

    def _gpg(self, args: list[str], data: bytes = b"") -> bytes:
        return subprocess.run(["gpg", "--homedir", str(self.gnupg), "--batch", "--trust-model", "always", *args],
                              input=data, check=True, capture_output=True).stdout

    def _openssl(self, args: list[str], data: bytes) -> bytes:
        return subprocess.run(["openssl", "cms", *args], input=data, check=True, capture_output=True).stdout

    # ---------------------------------------------------------------- S/MIME

    def smime_encrypted(self, content: bytes, cipher: str = "-aes256") -> bytes:
        """An application/pkcs7-mime enveloped-data entity of ``content`` (exact bytes) for bob."""
        der = self._openssl(["-encrypt", "-binary", cipher, "-outform", "DER", str(SMIME_BOB[0])], content)
        return self.smime_entity(der, "enveloped-data")

    @staticmethod
    def smime_entity(der: bytes, smime_type: str) -> bytes:
        return (f'Content-Type: application/pkcs7-mime; smime-type={smime_type}; name="smime.p7m"\r\n'.encode()
                + b"Content-Transfer-Encoding: base64\r\n\r\n" + base64_lines(der))

    def smime_with_decoys(self, content: bytes, decoys: int) -> bytes:
        """An AuthEnvelopedData (AES-256-GCM) of ``content`` for bob with ``decoys`` RecipientInfos for bob
        first, each wrapping random bytes.

        Each one costs the gateway a private-key operation (about 1 ms for bob's RSA-2048) before the real
        one opens the content: thousands make one slow step that no check between steps interrupts.

        GCM, not CBC: under PKCS#1 v1.5 the implicit rejection of OpenSSL 3.2+ (in cryptography's own
        OpenSSL) turns each decoy into a synthetic key; about 1 in 246 has AES-256's 32 bytes, and 1 in 256
        of those decrypted CBC content with valid padding. 12,000 decoys opened the content to garbage, and
        early, in about one run in five (a deadline test then saw no deadline). A GCM tag never verifies
        under a wrong key.
        """
        der = self._openssl(["-encrypt", "-binary", "-aes-256-gcm", "-outform", "DER", str(SMIME_BOB[0])], content)
        info = asn1_cms.ContentInfo.load(der)
        real = info["content"]["recipient_infos"][0].chosen
        random = Random(decoys)
        decoy_infos = []
        for _ in range(decoys):
            decoy = asn1_cms.KeyTransRecipientInfo.load(real.dump())
            # below the modulus (a leading zero byte), so that the private-key operation is really done
            decoy["encrypted_key"] = b"\0" + random.randbytes(len(real["encrypted_key"].native) - 1)
            decoy_infos.append(asn1_cms.RecipientInfo(name="ktri", value=decoy))
        info["content"]["recipient_infos"] = [*decoy_infos, *info["content"]["recipient_infos"]]
        return self.smime_entity(info.dump(force=True), "authEnveloped-data")

    def smime_signed(self, content: bytes, signer=SMIME_BOB) -> bytes:
        """A multipart/signed entity over ``content`` (CRLF, kept exact), made by ``openssl cms -sign``."""
        out = self._openssl(["-sign", "-binary", "-signer", str(signer[0]), "-inkey", str(signer[1])], content)
        return crlf(out.split(b"\n", 1)[1])  # without openssl's MIME-Version line: message() writes one

    def smime_opaque(self, content: bytes, signer=SMIME_BOB) -> bytes:
        """An application/pkcs7-mime signed-data entity wrapping ``content``."""
        der = self._openssl(["-sign", "-nodetach", "-binary", "-outform", "DER", "-signer", str(signer[0]),
                             "-inkey", str(signer[1])], content)
        return self.smime_entity(der, "signed-data")

    # ---------------------------------------------------------------- OpenPGP

    def pgp_armored(self, content: bytes) -> bytes:
        """An armored OpenPGP message of ``content`` encrypted to bob's RSA-3072 key."""
        return crlf(self._gpg(["--armor", "--recipient", PGP_RECIPIENT, "--encrypt"], content))

    def pgp_encrypted(self, content: bytes) -> bytes:
        """A PGP/MIME multipart/encrypted entity (RFC 3156) of ``content``."""
        return self.pgp_mime_encrypted_around(self.pgp_armored(content))

    @staticmethod
    def pgp_mime_encrypted_around(armored: bytes) -> bytes:
        return (b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="pgp-e"\r\n\r\n'
                b"--pgp-e\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
                b'--pgp-e\r\nContent-Type: application/octet-stream; name="encrypted.asc"\r\n\r\n'
                + armored + b"--pgp-e--\r\n")

    def pgp_signed(self, content: bytes) -> bytes:
        """A PGP/MIME multipart/signed entity over ``content`` (exact bytes), signed by gus."""
        signature = crlf(self._gpg(["--armor", "--local-user", PGP_SIGNER, "--detach-sign"], content))
        return (b'Content-Type: multipart/signed; protocol="application/pgp-signature"; micalg=pgp-sha256;'
                b' boundary="pgp-s"\r\n\r\n--pgp-s\r\n' + content + b"\r\n--pgp-s\r\n"
                b'Content-Type: application/pgp-signature; name="signature.asc"\r\n\r\n' + signature
                + b"--pgp-s--\r\n")

    def pgp_clearsigned(self, text: bytes) -> bytes:
        """A cleartext-signed block of ``text``, signed by gus."""
        return crlf(self._gpg(["--local-user", PGP_SIGNER, "--clearsign"], text))

    def pgp_signed_only(self, text: bytes, *options: str) -> bytes:
        """An armored signed-only OpenPGP message (``gpg --sign`` with ``options``): signed, never encrypted."""
        return crlf(self._gpg(["--armor", "--local-user", PGP_SIGNER, *options, "--sign"], text))

    # ---------------------------------------------------------------- whole attacks

    def nss_signed_then_encrypted(self, text: bytes) -> bytes:
        """As Thunderbird/NSS sends it: signed over CRLF (as NSS and OpenSSL canonicalise), the signed entity
        then encrypted with LF line ends."""
        signed = self.smime_signed(b"Content-Type: text/plain\r\n\r\n" + text)
        return message(self.smime_encrypted(signed.replace(b"\r\n", b"\n")), SMIME_SIGNER)

    def pgp_tampered(self, content: bytes) -> bytes:
        """A PGP/MIME message to bob whose encrypted data has one byte flipped past the quick-check prefix."""
        binary = openpgp.dearmor(self.pgp_armored(content)).data
        (seipd,) = [p for p in openpgp.packets(binary) if p.tag == openpgp.TAG_SEIPD]
        position = seipd.start + (len(binary) - seipd.start) // 2
        assert position > seipd.start + 40  # past the packet header, the random prefix and its two check bytes
        tampered = binary[:position] + bytes([binary[position] ^ 0x20]) + binary[position + 1:]
        armored = b"-----BEGIN PGP MESSAGE-----\r\n\r\n" + base64_lines(tampered) + b"-----END PGP MESSAGE-----\r\n"
        return message(self.pgp_mime_encrypted_around(armored))


# One attack of each kind, for ``ciphermilter decrypt`` and the daemon behind Postfix:
# (id, build(tools) -> message, headers the result must hold exactly, whether the body stays as received).
ATTACKS = [
    ("reply-attack-smime", lambda t: message(multipart(b"mixed", [ATTACKER_TEXT, t.smime_encrypted(SECRET_ENTITY)]),
                                             extra=b"Reply-To: attacker@evil.example\r\n"),
     {"SMIME-Encrypted": "True", "SMIME-Mixed-Content": "True",
      "SMIME-Not-Decrypted-0": "encrypted part beside other parts"}, True),
    ("reply-attack-pgp-mime", lambda t: message(multipart(b"mixed", [ATTACKER_TEXT, t.pgp_encrypted(SECRET_ENTITY)]),
                                                extra=b"Reply-To: attacker@evil.example\r\n"),
     {"PGP-Encrypted": "True", "PGP-Mixed-Content": "True",
      "PGP-Decryption-Withheld": "encrypted content beside unprotected content left encrypted (EFAIL protection)"},
     True),
    ("inline-block-with-text-around", lambda t: message(b"Content-Type: text/plain\r\n\r\nQuote this:\r\n"
                                                        + t.pgp_armored(SECRET) + b"Thanks\r\n"),
     {"PGP-Encoding": "PGP/INLINE", "PGP-Mixed-Content": "True"}, True),
    ("pgp-signed-part-beside-text", lambda t: message(multipart(b"mixed", [ATTACKER_TEXT, t.pgp_signed(SIGNED_ENTITY)]),
                                                      PGP_SIGNER),
     {"PGP-Signature-Valid": "True", "PGP-Signer-Email": PGP_SIGNER, "PGP-Mixed-Content": "True"}, True),
    ("smime-signed-part-beside-text", lambda t: message(multipart(b"mixed", [
        t.smime_signed(SIGNED_ENTITY), ATTACKER_TEXT]), SMIME_SIGNER),
     {"Signer-Verified-0-0": "True", "Signer-Email-0-0": SMIME_SIGNER, "SMIME-Mixed-Content": "True"}, True),
    ("address-in-display-name", lambda t: message(t.smime_signed(SIGNED_ENTITY), f"eve@evil.example <{SMIME_SIGNER}>"),
     {"Signer-Verified-0-0": "True", "Signer-Mismatch": "True"}, True),
    ("signed-only-labelled-encrypted", lambda t: message(
        t.pgp_mime_encrypted_around(t.pgp_signed_only(b"I approve.\n")), PGP_SIGNER),
     {"PGP-Signed": "True", "PGP-Signature-Valid": "True"}, False),
    ("tampered-ciphertext", lambda t: t.pgp_tampered(SECRET_ENTITY),
     {"PGP-Encrypted": "True", "PGP-Decryption-Failed": "integrity check failed"}, True),
    ("nss-lf-sign-then-encrypt", lambda t: t.nss_signed_then_encrypted(b"Hello Bob,\r\nLF inside.\r\n"),
     {"SMIME-Encrypted": "True", "Signer-Verified-0-1": "True", "Signer-Trusted-0-1": "True"}, False),
]
# Headers none of the attacks may get: the claims each one is built to obtain.
NEVER = {
    "reply-attack-smime": ("Encryption-Algorithm-0",),
    "signed-only-labelled-encrypted": ("PGP-Encrypted", "PGP-Encryption-Algorithm", "PGP-Mixed-Content"),
    "nss-lf-sign-then-encrypt": ("SMIME-Illegal-Chars-Found", "Signer-Mismatch", "Signer-Verification-Info-0-1"),
    "pgp-signed-part-beside-text": ("PGP-Signer-Mismatch",),
    "smime-signed-part-beside-text": ("Signer-Mismatch",),
}
