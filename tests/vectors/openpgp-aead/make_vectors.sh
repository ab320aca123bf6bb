#!/bin/sh
# Regenerates the OpenPGP AEAD test vectors in this directory with the real tools (see README.md):
#   GnuPG 2.2 (Debian 12) makes the v4 keys rnp encrypts to; rnp 0.16.3 (Debian package `rnp`) writes the
#   LibrePGP AEAD packet (tag 20, OCB or EAX) GnuPG 2.4 sends; pysequoia 0.1.35 (Sequoia 2, PyPI) writes
#   RFC 9580 SEIPDv2 (a v6 PKESK to a v4 key whose features advertise SEIPDv2, AEAD OCB).
# Throwaway keys without a passphrase. PYTHON must have pysequoia (the worktree's .venv does:
# `.venv/bin/pip install pysequoia`); the test suite itself needs none of these tools.
set -eu
cd "$(dirname "$0")"
PYTHON=${PYTHON:-../../../.venv/bin/python}
GNUPGHOME=$(mktemp -d)
RNPHOME=$(mktemp -d)
export GNUPGHOME
trap 'gpgconf --kill gpg-agent; rm -rf "$GNUPGHOME" "$RNPHOME"' EXIT
gpg="gpg --batch --yes --quiet --pinentry-mode loopback --passphrase= --trust-model always"
rnp="rnp --homedir $RNPHOME --notty --overwrite --armor"

# v4 keys from GnuPG: RSA-3072 (sign and encrypt), Ed25519 with a Curve25519 encryption subkey.
$gpg --quick-gen-key "AEAD RSA <aead-rsa@vectors.example>" rsa3072 sign,encr never
$gpg --quick-gen-key "AEAD Curve25519 <aead-cv25519@vectors.example>" ed25519 sign never
$gpg --quick-add-key "$($gpg --with-colons --list-keys aead-cv25519@vectors.example | awk -F: '/^fpr/ {print $10; exit}')" cv25519 encr never
for who in rsa cv25519; do
    $gpg --armor --export-secret-keys "aead-$who@vectors.example" > "$who.sec.asc"
    $gpg --armor --export "aead-$who@vectors.example" > "$who.pub.asc"
    rnpkeys --homedir "$RNPHOME" --notty --import "$who.sec.asc" > /dev/null
done

# The plaintext: a MIME entity (CRLF) with non-ASCII text, for PGP/MIME and inline alike; long enough
# for 42 chunks at the smallest chunk size (64 octets).
{
    printf 'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n'
    printf 'AEAD vector plaintext: Gr\303\274\303\237e, \316\261\316\262\316\263.\r\n'
    i=1
    while [ $i -le 40 ]; do printf 'line %02d of the text that spans many small chunks\r\n' $i; i=$((i + 1)); done
} > inner.mime

# rnp: LibrePGP AEAD packet, each mode with each compression (rnp's default chunk size octet 12: one chunk).
for mode in ocb eax; do
    $rnp -e -r aead-rsa@vectors.example --aead=$mode -z 0 --output "rnp-$mode-rsa-none.asc" inner.mime
    for compression in zip zlib bzip2; do
        $rnp -e -r aead-rsa@vectors.example --aead=$mode --$compression --output "rnp-$mode-rsa-$compression.asc" inner.mime
    done
done
$rnp -e -r aead-cv25519@vectors.example --aead=ocb --output rnp-ocb-cv25519.asc inner.mime
$rnp -e -r aead-cv25519@vectors.example --aead=eax --cipher AES128 --output rnp-eax-cv25519-aes128.asc inner.mime
# Signed and encrypted, each key signing for the other.
$rnp -s -e -u aead-cv25519@vectors.example -r aead-rsa@vectors.example --aead=ocb --output rnp-ocb-signed.asc inner.mime
$rnp -s -e -u aead-rsa@vectors.example -r aead-cv25519@vectors.example --aead=eax --output rnp-eax-signed.asc inner.mime
# Two recipients; and the same message with both key IDs zeroed (hidden recipients, RFC 4880 section 5.1):
# rnp 0.16 cannot hide recipients, so the key IDs are replaced here, as gpg --throw-keyids writes them.
$rnp -e -r aead-rsa@vectors.example -r aead-cv25519@vectors.example --aead=ocb --output rnp-ocb-two.asc inner.mime
$rnp -e -r aead-rsa@vectors.example -r aead-cv25519@vectors.example --aead=eax --output rnp-eax-two.asc inner.mime
rnp --dearmor --notty --overwrite --output rnp-eax-two.pgp rnp-eax-two.asc
for who in rsa cv25519; do
    $gpg --with-colons --list-keys "aead-$who@vectors.example" | awk -F: '/^sub|^pub/ {print $5}'
done | "$PYTHON" -c '
import sys
data = open("rnp-eax-two.pgp", "rb").read()
for keyid in sys.stdin.read().split():
    data = data.replace(b"\x03" + bytes.fromhex(keyid), b"\x03" + bytes(8))
open("rnp-eax-hidden.pgp", "wb").write(data)
'
rnp --enarmor=msg --notty --overwrite --output rnp-eax-hidden.asc rnp-eax-hidden.pgp
rm rnp-eax-two.pgp rnp-eax-hidden.pgp
# The smallest chunks (chunk size octet 0, 64 octets): many chunks, for the attacks on chunk order and length.
$rnp -e -r aead-rsa@vectors.example --aead=ocb --aead-chunk-bits 0 -z 0 --output rnp-ocb-chunks.asc inner.mime
$rnp -e -r aead-rsa@vectors.example --aead=eax --aead-chunk-bits 0 -z 0 --output rnp-eax-chunks.asc inner.mime
# Four times the plaintext (8,468 octets): rnp streams the packet in partial body lengths; 4 KiB chunks.
for i in 1 2 3 4; do cat inner.mime; done > inner4.mime
$rnp -e -r aead-rsa@vectors.example --aead=ocb --aead-chunk-bits 6 -z 0 --output rnp-ocb-partial.asc inner4.mime
# A cipher cryptography has no OCB for: a reason naming it, not a decryption.
$rnp -e -r aead-rsa@vectors.example --aead=ocb --cipher CAMELLIA256 --output rnp-ocb-camellia.asc inner.mime
# RFC 9788 protected headers inside the AEAD packet (the tests add an outer placeholder Subject and an
# Autocrypt header with cv25519's public key); plain and signed.
printf 'Content-Type: text/plain; charset=utf-8; protected-headers="v1"\r\nSubject: The real subject, protected\r\nFrom: AEAD Sender <aead-rsa@vectors.example>\r\nTo: bob@corp-pub.example\r\nCc: carol@corp-pub.example\r\n\r\nProtected-header vector: the outer Subject is "...".\r\n' > inner-protected.mime
$rnp -e -r aead-rsa@vectors.example --aead=ocb --output rnp-ocb-protected-headers.asc inner-protected.mime
$rnp -s -e -u aead-cv25519@vectors.example -r aead-rsa@vectors.example --aead=eax --output rnp-eax-signed-protected-headers.asc inner-protected.mime

# pysequoia (Sequoia 2): v4 keys (RSA-3072, Curve25519) that advertise SEIPDv2, so Sequoia sends a
# v6 PKESK and SEIPDv2 with AEAD OCB; one signed message, one to both keys.
"$PYTHON" - <<'EOF'
import pysequoia as sq

plain = open("inner.mime", "rb").read()
keys = {}
for name, suite in (("seq-rsa", sq.CipherSuite.RSA3k), ("seq-cv25519", sq.CipherSuite.Cv25519)):
    tsk = sq.Tsk.generate(f"AEAD {name} <aead-{name}@vectors.example>", profile=sq.Profile.RFC4880, cipher_suite=suite)
    open(f"{name}.sec.asc", "w").write(str(tsk))
    open(f"{name}.pub.asc", "w").write(str(tsk.extract_certificate()))
    keys[name] = tsk
certs = {name: tsk.extract_certificate() for name, tsk in keys.items()}
messages = {
    "seq-seipdv2-rsa": sq.encrypt(plain, recipients=[certs["seq-rsa"]]),
    "seq-seipdv2-cv25519": sq.encrypt(plain, recipients=[certs["seq-cv25519"]]),
    "seq-seipdv2-signed": sq.encrypt(plain, recipients=[certs["seq-rsa"]], signer=keys["seq-cv25519"].signer()),
    "seq-seipdv2-two": sq.encrypt(plain, recipients=[certs["seq-rsa"], certs["seq-cv25519"]]),
}
for name, armored in messages.items():
    open(f"{name}.asc", "wb").write(armored)
EOF

# The reference decryptions: each message opens to inner.mime with the tool that made it (rnp finds no
# key for the hidden recipients: it does not try its keys on them).
for message in rnp-*.asc; do
    [ "$message" = rnp-eax-hidden.asc ] && continue
    expected=inner.mime
    [ "$message" = rnp-ocb-partial.asc ] && expected=inner4.mime
    rnp --homedir "$RNPHOME" --notty --decrypt --output - "$message" 2>/dev/null | cmp -s - $expected \
        || { echo "rnp does not decrypt $message to $expected" >&2; exit 1; }
done
rm inner4.mime
"$PYTHON" - <<'EOF'
import glob
import pysequoia as sq

keys = [sq.Tsk.from_file(f"{name}.sec.asc") for name in ("seq-rsa", "seq-cv25519")]
plain = open("inner.mime", "rb").read()
for message in sorted(glob.glob("seq-seipdv2-*.asc")):
    data = open(message, "rb").read()
    opened = []
    for key in keys:
        try:
            opened.append(sq.decrypt(data, decryptor=key.decryptor()).bytes)
        except Exception:  # not encrypted to this key
            pass
    assert opened and all(p == plain for p in opened), message
EOF

# What each message holds: rnp's packet dump; rnp 0.16 cannot read Sequoia's v6 PKESK, so for those the
# packet tags and lengths and the first octets of each body (SEIPDv2: version, cipher, AEAD, chunk size).
for message in rnp-*.asc; do
    echo "== $message"
    rnp --list-packets --notty "$message" 2>/dev/null | grep -E 'packet header|version|key id|algorithm|chunk size'
done > packets.txt
"$PYTHON" - >> packets.txt <<'EOF'
import base64
import glob

for message in sorted(glob.glob("seq-seipdv2-*.asc")):
    lines = open(message).read().split("\n")
    data = base64.b64decode("".join(line for line in lines[lines.index("") + 1:] if line and line[0] not in "-="))
    print("==", message)
    pos = 0
    while pos < len(data):
        tag, first = data[pos] & 0x3F, data[pos + 1]
        if first < 192:
            length, head = first, 2
        elif first < 224:
            length, head = ((first - 192) << 8) + data[pos + 2] + 192, 3
        elif first == 255:
            length, head = int.from_bytes(data[pos + 2:pos + 6], "big"), 6
        else:
            print(f"tag {tag}, partial body lengths")
            break
        body = data[pos + head:pos + head + length]
        print(f"tag {tag}, length {length}, first octets {body[:4].hex(' ')}")
        pos += head + length
EOF
