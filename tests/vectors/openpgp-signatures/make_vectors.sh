#!/bin/sh
# Regenerates the OpenPGP signature vectors in this directory (issue 16) with the real tools:
#   GnuPG 2.2 (Debian): v4 signatures by RSA, DSA, ECDSA P-256/P-384, brainpool P-256/P-384, EdDSA (legacy)
#   sq 0.27 (Debian package `sq`, Sequoia 1.x): v4 Ed25519 (legacy EdDSA) signatures
#   pysequoia (PyPI, Sequoia 2): v6 Ed25519 keys (RFC 9580 profile) and v6 salted signatures (make_v6.py)
# The RFC 9580 Appendix A vectors (rfc9580-*.asc) are copied from the RFC's text, not made here.
# Run it from a venv with pysequoia installed (`pip install pysequoia`): ./make_vectors.sh
# The keys are throwaway test keys without a passphrase. Files per signer NAME:
#   NAME.pub.asc          the public key (imported by the tests)
#   NAME.detached.asc     detached signature over part.mime (a PGP/MIME signed part, CRLF line ends)
#   NAME.text.asc         detached text-mode (type 0x01) signature over plain.txt (LF line ends)
#   NAME.inline.asc       inline signed message of plain.txt (one-pass signature, literal, signature)
#   NAME.clear.asc        cleartext signed plain.txt
#   NAME.signenc.asc      signed and encrypted to bob (shared corpus key pub-pgp-bob-rsa3072)
set -eu
cd "$(dirname "$0")"
BOB=../../../../shared/corpus/keys/pgp/pub-pgp-bob-rsa3072.pub.asc
[ -f "$BOB" ] || BOB=/work/shared/corpus/keys/pgp/pub-pgp-bob-rsa3072.pub.asc
GNUPGHOME=$(mktemp -d)
export GNUPGHOME
trap 'gpgconf --kill gpg-agent; rm -rf "$GNUPGHOME"' EXIT
gpg="gpg --batch --yes --quiet --pinentry-mode loopback --passphrase= --trust-model always"

printf 'Content-Type: text/plain; charset=utf-8\r\n\r\nSigned text: Gr\303\274\303\237e.\r\nSecond line.\r\n' > part.mime
printf 'Signed text: Gr\303\274\303\237e.\nSecond line.\n' > plain.txt

$gpg --import "$BOB"
for spec in rsa:rsa3072 dsa:dsa2048 p256:nistp256 p384:nistp384 bp256:brainpoolP256r1 bp384:brainpoolP384r1 \
            ed25519:ed25519; do
    name=${spec%%:*}
    algo=${spec#*:}
    uid="gpg-$name@sig.example"
    $gpg --quick-gen-key "Signer $name <$uid>" "$algo" sign never
    $gpg --armor --export "$uid" > "gpg-$name.pub.asc"
    $gpg --armor -u "$uid" -o "gpg-$name.detached.asc" --detach-sign part.mime
done
# the other shapes for two of them; SHA-1 (accepted in v4, as pgpy accepted it) for RSA once
for name in rsa ed25519; do
    uid="gpg-$name@sig.example"
    $gpg --armor -u "$uid" -o "gpg-$name.text.asc" --textmode --detach-sign plain.txt
    $gpg --armor -u "$uid" -o "gpg-$name.inline.asc" --sign plain.txt
    $gpg -u "$uid" -o "gpg-$name.clear.asc" --clearsign plain.txt
    $gpg --armor -u "$uid" -r bob.pgp@corp-pub.example -o "gpg-$name.signenc.asc" --sign --encrypt plain.txt
done
$gpg --armor -u gpg-rsa@sig.example --digest-algo SHA1 -o gpg-rsa.sha1.asc --detach-sign part.mime
# a second RSA key holding the same user ID's domain: the "issuer swapped to another held key" attack
$gpg --quick-gen-key "Other <other@sig.example>" rsa2048 sign never
$gpg --armor --export other@sig.example > gpg-other.pub.asc
# expired: a key made two days ago, expiring after one day, signing back then (gpg --faked-system-time)
then=$(($(date +%s) - 172800))
$gpg --faked-system-time "$then!" --quick-gen-key "Expired <expired@sig.example>" ed25519 sign 1d
$gpg --armor --export expired@sig.example > gpg-expired.pub.asc
$gpg --faked-system-time "$then!" --armor -u expired@sig.example -o gpg-expired.detached.asc --detach-sign part.mime

# sq 0.27
sq key generate --userid "Signer sq <sq@sig.example>" --export sq.sec.pgp
sq key extract-cert sq.sec.pgp > sq.pub.asc
sq sign --detached --signer-key sq.sec.pgp part.mime > sq.detached.asc
sq sign --signer-key sq.sec.pgp plain.txt > sq.inline.asc
sq sign --cleartext-signature --signer-key sq.sec.pgp plain.txt > sq.clear.asc
sq encrypt --recipient-cert "$BOB" --signer-key sq.sec.pgp plain.txt > sq.signenc.asc
rm sq.sec.pgp sq.sec.pgp.rev

# pysequoia: v6
python3 make_v6.py "$BOB"
