"""Third-round outsider attacks on issue 14 (attacker A: the deadline, on_limit, super-linear input).

Black box: every message goes through ``ciphermilter --store S [--config C] decrypt --explain --rcpt ADDR -``
as a subprocess, on a store with every corpus key (tests/conftest.py ``corpus_store_file``), and the tests
assert what ciphermilter.conf(5) (on_limit) and issue 14 promise: exit status 3 and ``rejected: 554 5.7.0
Encrypted content could not be inspected: REASON`` for content the gateway holds the key for that a limit
stopped, and the ordinary pass (exit 0, X-CipherMail-Info-Not-Processed) otherwise.

Vectors, built at test time with the real tools (tests/attack_messages.py ``Tools``):

  PGP, N recipients   gpg --armor -r bob.pgp@corp-pub.example --encrypt; its one PKESK packet (tag 1) is
                      repeated N times in front of the encrypted data (a sender may list a recipient more
                      than once; gpg decrypts it). N = 101 is one over max_recipient_infos (default 100),
                      N = 100 the control.
  S/MIME, N RIs       Tools.smime_with_decoys (openssl cms -encrypt for bob, plus N-1 decoy KeyTrans
                      RecipientInfos for bob's certificate).
  wrappings           the encrypted entity as the whole message in every shape the gateway decrypts (each
                      one checked by its control to be decrypted when within the limit): PGP/MIME, inline
                      armor in text/plain, inline armor without any Content-Type, application/octet-stream
                      name="m.pgp" (base64 binary), application/pgp-encrypted holding the armor,
                      multipart/mixed whose only part is PGP/MIME; application/pkcs7-mime, its x- form,
                      application/octet-stream name="smime.p7m", multipart/mixed whose only part is the
                      .p7m, multipart/signed (openssl cms -sign, detached) whose signed part is the .p7m.

# FAILS marks a test that fails on the code as merged (85005e5): the promise it breaks is in its docstring.
"""

from __future__ import annotations

import base64
import gc
import subprocess
import sys
import time
from pathlib import Path

import pytest
from asn1crypto import cms as asn1_cms

from support.attack_messages import SECRET, SECRET_ENTITY, SMIME_BOB, Tools, base64_lines, crlf, message, multipart
from ciphermilter.formats.openpgp import engine as openpgp
from conftest import corpus_store_file

CLI = Path(sys.executable).parent / "ciphermilter"
BOB = "bob@corp-pub.example"
BOB_PGP = "bob.pgp@corp-pub.example"
NO_KEY = "nokey@corp-pub.example"
EXIT_REFUSED = 3
HELD = "rejected: 554 5.7.0 Encrypted content could not be inspected: "
NOT_PROCESSED = b"X-CipherMail-Info-Not-Processed: "
TOO_MANY = "more than 100 recipients in one layer"


# ----------------------------------------------------------------------------------------- the black box

class Run:
    def __init__(self, sent: bytes, done: subprocess.CompletedProcess, seconds: float):
        self.sent, self.code, self.out, self.seconds = sent, done.returncode, done.stdout, seconds
        self.err = done.stderr.decode(errors="replace")
        self.head = self.out.partition(b"\r\n\r\n")[0]

    def header(self, prefix: bytes) -> bytes | None:
        for line in self.head.split(b"\r\n"):
            if line.startswith(prefix):
                return line[len(prefix):]
        return None

    @property
    def decrypted(self) -> bool:
        """The secret line is in the output, as written or base64-encoded by a rewritten part."""
        return SECRET in self.out or any(SECRET in _b64(chunk) for chunk in self.out.split(b"\r\n\r\n"))

    @property
    def refusal(self) -> str:
        lines = [line for line in self.err.splitlines() if line.startswith("ciphermilter: ")]
        return lines[-1][len("ciphermilter: "):] if lines else ""

    def __repr__(self):
        return (f"<exit {self.code} in {self.seconds:.2f}s, {self.refusal!r}, "
                f"Not-Processed={self.header(NOT_PROCESSED)!r}, decrypted={self.decrypted}>")


def _b64(chunk: bytes) -> bytes:
    try:
        return base64.b64decode(b"".join(chunk.split()), validate=False)
    except ValueError:
        return b""


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return corpus_store_file(tmp_path_factory.mktemp("round3-store"))


@pytest.fixture(scope="module")
def tools(tmp_path_factory) -> Tools:
    return Tools(tmp_path_factory.mktemp("round3-tools"))


@pytest.fixture
def decrypt(store, tmp_path):
    def run(msg: bytes, *rcpts: str, config: str = "") -> Run:
        args = [str(CLI), "--store", str(store)]
        if config:
            path = tmp_path / "ciphermilter.toml"
            path.write_text(config)
            args += ["--config", str(path)]
        args += ["decrypt", "--explain"]
        for rcpt in rcpts:
            args += ["--rcpt", rcpt]
        started = time.monotonic()
        done = subprocess.run([*args, "-"], input=msg, capture_output=True, timeout=600)
        return Run(msg, done, time.monotonic() - started)
    return run


# ----------------------------------------------------------------------------------------- builders

def armor(binary: bytes) -> bytes:
    return b"-----BEGIN PGP MESSAGE-----\r\n\r\n" + base64_lines(binary) + b"-----END PGP MESSAGE-----\r\n"


def pgp_with_recipients(tools: Tools, count: int) -> bytes:
    """The armored OpenPGP message of SECRET_ENTITY for bob.pgp, its PKESK packet listed ``count`` times."""
    binary = openpgp.dearmor(tools.pgp_armored(SECRET_ENTITY)).data
    found = list(openpgp.packets(binary))
    assert found[0].tag == 1 and found[1].tag != 1, [p.tag for p in found]
    pkesk, rest = binary[:found[1].start], binary[found[1].start:]
    return armor(pkesk * count + rest)


def pgp_shapes(tools: Tools, armored: bytes) -> dict[str, bytes]:
    binary = openpgp.dearmor(armored).data
    return {
        "pgp-mime": tools.pgp_mime_encrypted_around(armored),
        "inline-text-plain": b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + armored,
        "inline-no-content-type": b"\r\n" + armored,
        "octet-stream-.pgp": (b'Content-Type: application/octet-stream; name="m.pgp"\r\n'
                              b"Content-Transfer-Encoding: base64\r\n\r\n" + base64_lines(binary)),
        "application-pgp-encrypted": b"Content-Type: application/pgp-encrypted\r\n\r\n" + armored,
        "mixed-around-pgp-mime": multipart(b"mixed", [tools.pgp_mime_encrypted_around(armored)]),
        "inline-quoted-printable": (b"Content-Type: text/plain; charset=us-ascii\r\n"
                                    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
                                    + b"".join(b"=%02X" % c if c in b"-=" else bytes([c]) for c in armored)),
        "inline-base64": (b"Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                          + base64_lines(armored)),
    }


def smime_shapes(tools: Tools, entity: bytes) -> dict[str, bytes]:
    label = b"application/pkcs7-mime; smime-type=enveloped-data"
    return {
        "pkcs7-mime": entity,
        "x-pkcs7-mime": entity.replace(b"application/pkcs7-mime", b"application/x-pkcs7-mime"),
        "octet-stream-.p7m": entity.replace(label, b"application/octet-stream"),
        "mixed-around-p7m": multipart(b"mixed", [entity]),
        "signed-around-p7m": tools.smime_signed(entity),
    }


# Shapes the man page's rule (b) names (the top-level Content-Type shows encrypted whole content): held today.
RULE_B = {"pgp-mime", "pkcs7-mime", "x-pkcs7-mime", "octet-stream-.p7m"}
PGP_SHAPES = ["pgp-mime", "inline-text-plain", "inline-no-content-type", "octet-stream-.pgp",
              "application-pgp-encrypted", "mixed-around-pgp-mime", "inline-quoted-printable", "inline-base64"]
SMIME_SHAPES = ["pkcs7-mime", "x-pkcs7-mime", "octet-stream-.p7m", "mixed-around-p7m", "signed-around-p7m"]
BYPASS = ("# FAILS: held only when the top-level Content-Type is application/pkcs7-mime, a .p7m or "
          "multipart/encrypted (rule b); this shape is decrypted as whole content, yet passes still encrypted")


def _marks(shapes: list[str]) -> list:
    return [pytest.param(s, id=s) if s in RULE_B else pytest.param(s, id=s + "-FAILS") for s in shapes]


@pytest.fixture(scope="module")
def pgp_at(tools):
    cache: dict[int, bytes] = {}

    def get(count: int) -> bytes:
        if count not in cache:
            cache[count] = pgp_with_recipients(tools, count)
        return cache[count]
    return get


@pytest.fixture(scope="module")
def smime_at(tools):
    cache: dict[int, bytes] = {}

    def get(count: int) -> bytes:
        if count not in cache:
            cache[count] = tools.smime_with_decoys(SECRET_ENTITY, count - 1)
        return cache[count]
    return get


# =========================================================================== A1. RecipientInfos limit

def assert_decrypted(run, kind: bytes) -> None:
    """A control: the shape was decrypted as whole content (``kind`` b"PGP" or b"SMIME"), with no limit met."""
    assert run.code == 0 and run.header(b"X-CipherMail-Info-" + kind + b"-Encrypted: ") == b"True", run
    assert run.header(NOT_PROCESSED) is None and run.decrypted, run


@pytest.mark.parametrize("shape", PGP_SHAPES)
def test_a1_control_pgp_with_100_recipients_is_decrypted(decrypt, tools, pgp_at, shape):
    """Control: every shape below is decrypted as whole content when within max_recipient_infos."""
    assert_decrypted(decrypt(message(pgp_shapes(tools, pgp_at(100))[shape]), BOB_PGP), b"PGP")


@pytest.mark.parametrize("shape", _marks(PGP_SHAPES))
def test_a1_pgp_with_101_recipients_is_held(decrypt, tools, pgp_at, shape):
    """on_limit (ciphermilter.conf(5)), issue 14 item 2: a message whose protected content the gateway holds
    the key for, but cannot finish inspecting, is not accepted as is by default: 554 5.7.0, exit 3.

    # FAILS for every shape but PGP/MIME: inline armor (in text/plain, or with no Content-Type at all), a .pgp
    # octet-stream, application/pgp-encrypted and a multipart/mixed around PGP/MIME are all decrypted for
    # bob.pgp when they list 100 recipients (control above), but with 101 they exit 0 with
    # "Not-Processed: more than 100 recipients in one layer", still encrypted, past the scanners: the
    # RecipientInfo limit is met before any key is looked for, and rule (b) reads only the top-level type.
    Reproduce: gpg -a -r bob.pgp@corp-pub.example -e, repeat the PKESK packet 101 times, put the armor in a
    text/plain message; ciphermilter decrypt --rcpt bob.pgp@corp-pub.example -; echo $?  -> 0.
    """
    run = decrypt(message(pgp_shapes(tools, pgp_at(101))[shape]), BOB_PGP)
    assert (run.code, run.refusal) == (EXIT_REFUSED, HELD + TOO_MANY), run


@pytest.mark.parametrize("shape", SMIME_SHAPES)
def test_a1_control_smime_with_100_recipient_infos_is_decrypted(decrypt, tools, smime_at, shape):
    assert_decrypted(decrypt(message(smime_shapes(tools, smime_at(100))[shape]), BOB), b"SMIME")


@pytest.mark.parametrize("shape", _marks(SMIME_SHAPES))
def test_a1_smime_with_101_recipient_infos_is_held(decrypt, tools, smime_at, shape):
    """As above for S/MIME.

    # FAILS for multipart/mixed around the .p7m and multipart/signed (detached S/MIME signature) around the
    # .p7m: both decrypted for bob with 100 RecipientInfos, but with 101 they exit 0, Not-Processed, still
    # encrypted (signed-then-encrypted by a partner's gateway is the ordinary multipart/signed case).
    """
    run = decrypt(message(smime_shapes(tools, smime_at(101))[shape]), BOB)
    assert (run.code, run.refusal) == (EXIT_REFUSED, HELD + TOO_MANY), run


# =========================================================================== A2. max_message_size

SIZE_LIMIT = 40_000
SIZE_CONFIG = f"[limits]\nmax_message_size = {SIZE_LIMIT}\n"
TOO_LARGE = f"message larger than {SIZE_LIMIT} bytes"


def padded(entity: bytes) -> bytes:
    """The message with a harmless header block of padding that takes it past SIZE_LIMIT."""
    pad = b"".join(b"X-Padding: " + b"p" * 70 + b"\r\n" for _ in range(SIZE_LIMIT // 80 + 1))
    msg = message(entity, extra=pad)
    assert len(msg) > SIZE_LIMIT
    return msg


@pytest.mark.parametrize("shape", PGP_SHAPES)
def test_a2_control_padded_pgp_is_decrypted_without_the_size_limit(decrypt, tools, pgp_at, shape):
    run = decrypt(padded(pgp_shapes(tools, pgp_at(1))[shape]), BOB_PGP)
    assert run.code == 0 and run.decrypted and run.header(NOT_PROCESSED) is None, run


@pytest.mark.parametrize("shape", _marks(PGP_SHAPES))
def test_a2_pgp_over_max_message_size_is_held(decrypt, tools, pgp_at, shape):
    """on_limit names "the message size" first among its limits.

    # FAILS for the same shapes as A1: over max_message_size a .pgp octet-stream, inline armor,
    # application/pgp-encrypted or multipart/mixed around PGP/MIME for a reader passes with exit 0 and
    # "Not-Processed: message larger than N bytes", still encrypted.
    """
    run = decrypt(padded(pgp_shapes(tools, pgp_at(1))[shape]), BOB_PGP, config=SIZE_CONFIG)
    assert (run.code, run.refusal) == (EXIT_REFUSED, HELD + TOO_LARGE), run


@pytest.mark.parametrize("shape", _marks(SMIME_SHAPES))
def test_a2_smime_over_max_message_size_is_held(decrypt, tools, smime_at, shape):
    """# FAILS for multipart/mixed around the .p7m and multipart/signed around the .p7m (as A1)."""
    run = decrypt(padded(smime_shapes(tools, smime_at(1))[shape]), BOB, config=SIZE_CONFIG)
    assert (run.code, run.refusal) == (EXIT_REFUSED, HELD + TOO_LARGE), run


# =========================================================================== A3. the opposite: nothing to hold

def test_a3_p7m_over_a_limit_to_an_internal_user_without_a_key_passes(decrypt, smime_at):
    run = decrypt(message(smime_at(101)), NO_KEY)
    assert run.code == 0 and run.header(NOT_PROCESSED) == TOO_MANY.encode(), run


def test_a3_p7m_over_a_limit_to_an_external_recipient_passes(decrypt, smime_at):
    run = decrypt(message(smime_at(101)), "zed@elsewhere-pub.example")
    assert run.code == 0 and run.header(NOT_PROCESSED) is None and run.out == run.sent, run


@pytest.fixture(scope="module")
def stranger_p7m(tmp_path_factory, tools) -> bytes:
    """S/MIME encrypted only to a stranger's certificate (not in the store), with 101 RecipientInfos for it:
    a list-wide encrypted message that reaches bob, who cannot read it."""
    work = tmp_path_factory.mktemp("stranger")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                    "-subj", "/CN=stranger/emailAddress=stranger@elsewhere-pub.example",
                    "-keyout", str(work / "k.pem"), "-out", str(work / "c.pem")], check=True, capture_output=True)
    der = tools._openssl(["-encrypt", "-binary", "-aes256", "-outform", "DER", str(work / "c.pem")], SECRET_ENTITY)
    info = asn1_cms.ContentInfo.load(der)
    real = info["content"]["recipient_infos"][0]
    info["content"]["recipient_infos"] = [asn1_cms.RecipientInfo.load(real.dump()) for _ in range(101)]
    return Tools.smime_entity(info.dump(force=True), "enveloped-data")


def test_a3_p7m_to_a_reader_is_held_over_a_limit_whoever_it_is_encrypted_to(decrypt, stranger_p7m):
    """Rule (b) of on_limit (ciphermilter.conf(5)), by design: an S/MIME message to a reader (bob holds a
    key) that a limit stopped before any key was looked for is held, whoever its RecipientInfos name.

    Changed from the attacker's version, which asserted that it passes (issue 14: "a message we hold no key
    for is unaffected"): whether we hold the key it is encrypted to cannot be known without reading what the
    limit forbade (here the 101st RecipientInfo and beyond), so the gateway cannot tell this message from
    one for bob's key listed past the limit, and must not let that one pass encrypted. A message to a
    recipient without a key (test_a3_p7m_over_a_limit_to_an_internal_user_without_a_key_passes) or to an
    external one passes.
    """
    run = decrypt(message(stranger_p7m), BOB)
    assert (run.code, run.refusal) == (EXIT_REFUSED, HELD + TOO_MANY), run
    assert run.header(NOT_PROCESSED) == TOO_MANY.encode(), run


# =========================================================================== A4. deadline offline

@pytest.fixture(scope="module")
def slow_smime(tools) -> bytes:
    return tools.smime_with_decoys(SECRET_ENTITY, 12_000)


def test_a4_decrypt_stops_at_the_deadline_inside_held_content(decrypt, slow_smime):
    """The CLI has no worker to kill: a step that overruns ends, then the deadline is a limit and on_limit
    applies (S/MIME for bob with 12,000 decoy RecipientInfos, 1.2-5 s of private-key operations in one step)."""
    raw = message(slow_smime)
    run = decrypt(raw, BOB, config="[limits]\ndeadline_seconds = 1\nmax_recipient_infos = 12001\n")
    assert (run.code, run.refusal) == (EXIT_REFUSED, HELD + "processing deadline exceeded"), run


def test_a4_the_same_slow_message_inside_multipart_mixed_is_held_too(decrypt, slow_smime):
    """The control for the daemon's kill path (tests/e2e/test_attacks_round3.py): offline, the worker is not
    killed, so the key found before the deadline holds the message (rule a)."""
    raw = message(multipart(b"mixed", [slow_smime]))
    run = decrypt(raw, BOB, config="[limits]\ndeadline_seconds = 1\nmax_recipient_infos = 12001\n")
    assert (run.code, run.refusal) == (EXIT_REFUSED, HELD + "processing deadline exceeded"), run


# =========================================================================== A5. other limits, other wrappings

def nested_mixed(entity: bytes, depth: int) -> bytes:
    """``entity`` as the only part of ``depth`` multipart/mixed, one inside the other."""
    for level in range(depth):
        entity = multipart(b"mixed", [entity], boundary=b"nest-%d" % level)
    return entity


def test_a5_control_p7m_under_50_single_part_multiparts_is_decrypted(decrypt, smime_at):
    run = decrypt(message(nested_mixed(smime_at(1), 50)), BOB)
    assert run.code == 0 and run.decrypted and run.header(NOT_PROCESSED) is None, run


def test_a5_p7m_under_51_single_part_multiparts_is_held(decrypt, smime_at):
    """on_limit names "MIME parts or depth".

    # FAILS: the .p7m for bob, alone in 50 nested multipart/mixed, is decrypted (control); one level more
    # and max_mime_depth (50) stops the walk before the S/MIME handler looks for a key: exit 0,
    # "Not-Processed: MIME nesting deeper than 50", still encrypted.
    Reproduce: wrap an openssl cms -encrypt entity for bob in 51 multipart/mixed, one part each.
    """
    run = decrypt(message(nested_mixed(smime_at(1), 51)), BOB)
    assert (run.code, run.refusal) == (EXIT_REFUSED, HELD + "MIME nesting deeper than 50"), run


@pytest.fixture(scope="module")
def opaque_layers(tools):
    """``get(k)``: the enveloped-data entity for bob inside ``k`` opaque signatures (openssl cms -sign -nodetach)."""
    layers = [tools.smime_encrypted(SECRET_ENTITY)]

    def get(count: int) -> bytes:
        while len(layers) <= count:
            der = tools._openssl(["-sign", "-nodetach", "-binary", "-outform", "DER", "-signer", str(SMIME_BOB[0]),
                                  "-inkey", str(SMIME_BOB[1])], layers[-1])
            layers.append(Tools.smime_entity(der, "signed-data"))
        return layers[count]
    return get


def test_a5_control_7_opaque_signatures_around_enveloped_in_mixed_are_decrypted(decrypt, opaque_layers):
    run = decrypt(message(multipart(b"mixed", [opaque_layers(7)])), BOB)
    assert run.code == 0 and run.decrypted and run.header(NOT_PROCESSED) is None, run


def test_a5_top_level_8_opaque_signatures_around_enveloped_are_held(decrypt, opaque_layers):
    run = decrypt(message(opaque_layers(8)), BOB)
    assert (run.code, run.refusal) == (EXIT_REFUSED, HELD + "more than 8 S/MIME layers"), run


def test_a5_8_opaque_signatures_around_enveloped_in_mixed_are_held(decrypt, opaque_layers):
    """on_limit names "S/MIME layers"; the issue names "opaque signed around enveloped".

    # FAILS: with 7 signatures the enveloped data inside is decrypted (control); with 8, max_cms_layers stops
    # the unwrapping of signatures before the enveloped layer's key is looked for, and the multipart/mixed
    # around it keeps rule (b) from holding it: exit 0, "Not-Processed: more than 8 S/MIME layers", still
    # encrypted. (Top-level, the same 8 layers are held: the test above.)
    """
    run = decrypt(message(multipart(b"mixed", [opaque_layers(8)])), BOB)
    assert (run.code, run.refusal) == (EXIT_REFUSED, HELD + "more than 8 S/MIME layers"), run


# =========================================================================== A6. no limit at all: armor in armor

@pytest.fixture(scope="module")
def armor_in_armor(tools) -> tuple[bytes, bytes]:
    """gpg -a -r bob.pgp -e of SECRET_ENTITY, then gpg -a -r bob.pgp -e of that armored text."""
    once = tools.pgp_armored(SECRET_ENTITY)
    return once, tools.pgp_armored(once)


def test_a6_control_one_layer_of_inline_armor_is_decrypted(decrypt, armor_in_armor):
    run = decrypt(message(b"Content-Type: text/plain\r\n\r\n" + armor_in_armor[0]), BOB_PGP)
    assert run.code == 0 and run.decrypted, run


def test_a6_inline_armor_inside_inline_armor_does_not_reach_the_scanners_encrypted(decrypt, armor_in_armor):
    """Issue 14, done-when: "no content we can decrypt reaches the scanners still encrypted by default".

    # FAILS: the outer armored message is decrypted (report: one block, action "replaced") and what it held,
    # another armored PGP MESSAGE for bob.pgp, is written as the new body still encrypted: exit 0, no
    # Not-Processed, no held reason, no report of the inner block. No limit is involved, so on_limit never
    # applies; PGP/MIME in PGP/MIME and S/MIME in S/MIME are both opened (checked by hand), inline in inline is
    # not. A virus encrypted twice with gpg -a walks past the scanners by default.
    Reproduce: gpg -a -r bob.pgp@corp-pub.example -e < virus | gpg -a -r bob.pgp@corp-pub.example -e, as the
    text/plain body; ciphermilter decrypt --rcpt bob.pgp@corp-pub.example -: body is "-----BEGIN PGP MESSAGE".
    """
    run = decrypt(message(b"Content-Type: text/plain\r\n\r\n" + armor_in_armor[1]), BOB_PGP)
    assert run.decrypted or (run.code, run.refusal[:len(HELD)]) == (EXIT_REFUSED, HELD), run


# =========================================================================== A7. recipients spelled otherwise

@pytest.mark.parametrize("rcpt, held", [("BOB@CORP-PUB.EXAMPLE", True), ("Bob@corp-pub.example", True),
                                        ("bob@Corp-Pub.Example", True), ("bob@corp-pub.example.", True),
                                        ('"bob"@corp-pub.example', False)])
def test_a7_rule_b_and_the_reader_rule_agree_on_a_recipient_spelled_otherwise(decrypt, smime_at, rcpt, held):
    """A spelling the reader rule decrypts for (control: one RecipientInfo) is held at 101; one it does not
    decrypt for passes. Passes: the two agree for case, a trailing dot and a quoted local part."""
    control = decrypt(message(smime_at(1)), rcpt)
    assert control.decrypted is held, control
    run = decrypt(message(smime_at(101)), rcpt)
    assert (run.code == EXIT_REFUSED) is held and run.header(NOT_PROCESSED) == TOO_MANY.encode(), run


# =========================================================================== A8. cost grows linearly

def _h(body_headers: bytes, body: bytes) -> bytes:
    return (b"From: a@evil.example\r\nTo: bob@corp-pub.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
            + body_headers + b"\r\n" + body)


_P7M = b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n"
_ENVELOPED_INDEFINITE = (b"\x30\x80\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x03\xa0\x80\x30\x80\x02\x01\x00\x31\x00"
                         b"\x30\x80\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x01\x30\x00\xa0\x80\x24\x80")
_BEGIN = b"-----BEGIN PGP MESSAGE-----\r\n"
SCALING = {
    # BER: an indefinite-length constructed OCTET STRING of 3-byte segments in an EnvelopedData
    "ber-indefinite-segments": lambda n: _h(_P7M, base64_lines(_ENVELOPED_INDEFINITE + b"\x04\x01A" * (30 * n)
                                                               + b"\0\0" * 6)),
    # one base64 line of a whole CMS object
    "p7m-one-base64-line": lambda n: _h(_P7M, base64.b64encode(b"\x30\x80" + b"\x04\x01A" * (30 * n) + b"\0\0")),
    # OpenPGP partial body lengths of one byte each
    "pgp-one-byte-partial-lengths": lambda n: _h(b"Content-Type: text/plain\r\n", _BEGIN + b"\r\n"
                                                 + base64_lines(b"\xcb" + b"\xe0A" * (20 * n) + b"\x01A")
                                                 + b"-----END PGP MESSAGE-----\r\n"),
    # armored blocks of garbage, each closed
    "armor-blocks-closed": lambda n: _h(b"Content-Type: text/plain\r\n",
                                        (_BEGIN + b"\r\nAAAA\r\n-----END PGP MESSAGE-----\r\n") * n),
    # cleartext-signed headers without their signature
    "cleartext-headers": lambda n: _h(b"Content-Type: text/plain\r\n",
                                      b"-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\nx\r\n" * n),
    # light: many header fields, RFC 2231 continuations, quoted-pair escapes
    "many-header-fields": lambda n: _h(b"X-A: b\r\n" * n, b"body\r\n"),
    "rfc2231-continuations": lambda n: _h(b"Content-Type: text/plain; name*0=a"
                                          + b"".join(b"; name*%d=a" % i for i in range(1, 3 * n)) + b"\r\n",
                                          b"body\r\n"),
    "quoted-pairs-in-a-parameter": lambda n: _h(b'Content-Type: text/plain; name="' + b'\\"' * (5 * n) + b'"\r\n',
                                                b"body\r\n"),
}


@pytest.fixture(scope="module")
def open_store(store):
    from ciphermilter.store.keystore import KeyStore
    opened = KeyStore.open_read_only(str(store))
    yield opened
    opened.close()


@pytest.mark.parametrize("shape", SCALING)
def test_a8_cost_grows_linearly(open_store, shape):
    """CPU time of the whole pipeline (core.process, what the worker and the connection thread run) at x1 and
    x8 of each shape, median of five: linear gives 8, quadratic 64; the bound is 20. Passes for all shapes."""
    from ciphermilter.core import pipeline as core
    from ciphermilter.core.settings import Settings

    settings = Settings(harvest_certificates=False, harvest_pgp_keys=False)
    envelope = core.Envelope(recipients=[BOB_PGP])

    def cost(n: int) -> float:
        raw = SCALING[shape](n)
        costs = []
        for _ in range(5):
            started = time.process_time()
            core.process(raw, envelope, open_store, settings)
            costs.append(time.process_time() - started)
        return sorted(costs)[2]  # the median: a lone fast or slow run on a shared machine does not decide

    # Without the cyclic collector: a full collection walks every object the whole test session keeps alive,
    # so its cost belongs to the suite, not to the shape (16,000 header fields measured x34 in a full CI run,
    # x8.4 to x8.6 here with it off, alone or beside 3 million live objects).
    gc.collect()
    gc.disable()
    try:
        small, large = cost(2000), cost(16000)
    finally:
        gc.enable()
    assert large <= max(20 * small, 0.05), (shape, small, large)


# =========================================================================== A9. opaque signed, nothing encrypted

def test_a9_control_8_opaque_signatures_to_a_keyless_user_are_unwrapped_for_the_scanners(decrypt, _opaque_only_chain):
    """opaque_to_detached (default true) shows the content of opaque signatures to the scanners, whoever the
    recipient: 8 layers (max_cms_layers) are unwrapped for nokey@, an internal user without a key."""
    run = decrypt(message(_OPAQUE_ONLY[8]), NO_KEY)
    assert run.code == 0 and SECRET in run.out and run.header(NOT_PROCESSED) is None, run


_OPAQUE_ONLY: dict[int, bytes] = {}  # k: SECRET_ENTITY inside k opaque signatures (no encryption at all)


@pytest.fixture(scope="module")
def _opaque_only_chain(tools):
    layers = [SECRET_ENTITY]
    for _ in range(9):
        der = tools._openssl(["-sign", "-nodetach", "-binary", "-outform", "DER", "-signer", str(SMIME_BOB[0]),
                              "-inkey", str(SMIME_BOB[1])], layers[-1])
        layers.append(Tools.smime_entity(der, "signed-data"))
    _OPAQUE_ONLY.update(enumerate(layers))


def test_a9_9_opaque_signatures_to_a_keyless_user_pass_with_their_reason(decrypt, _opaque_only_chain):
    """9 opaque signatures (one over max_cms_layers) around plain content, to an internal user without a key.

    Changed from the attacker's version, which asked for the content or a 554: on_limit is for content the
    gateway holds a key for and could not finish inspecting (issue 14 item 2: "a message we hold no key for is
    unaffected"); nothing here is encrypted, and nokey@ reads no key, so it passes as any message over a
    limit does, with its reason. To a reader (bob) rule (b) holds the same message, since an
    application/pkcs7-mime is taken for encrypted whatever its smime-type says (the label is the sender's,
    and the S/MIME handler goes by the CMS type inside, which the limit kept us from reading): the refusal
    then reads "Encrypted content could not be inspected" although the layers are signatures.
    """
    run = decrypt(message(_OPAQUE_ONLY[9]), NO_KEY)
    assert run.code == 0 and run.header(NOT_PROCESSED) == b"more than 8 S/MIME layers", run
    assert run.out.endswith(run.sent.partition(b"\r\n\r\n")[2]), run  # the body as received
    held = decrypt(message(_OPAQUE_ONLY[9]), BOB)
    assert (held.code, held.refusal) == (EXIT_REFUSED, HELD + "more than 8 S/MIME layers"), held
