#!/bin/sh
# Regenerates the OpenPGP engine test vectors in this directory with real GnuPG.
# The keys are throwaway test keys without a passphrase; the corpus lacks these cases:
# ElGamal and NIST P-256 recipients, 3DES / Blowfish / Camellia / AES-192 / Twofish, BZip2,
# no-MDC (SED) data, a signed-only message and a cleartext signature needing dash-escaping.
set -eu
cd "$(dirname "$0")"
GNUPGHOME=$(mktemp -d)
export GNUPGHOME
trap 'gpgconf --kill gpg-agent; rm -rf "$GNUPGHOME"' EXIT
gpg="gpg --batch --yes --quiet --pinentry-mode loopback --passphrase= --trust-model always"

$gpg --quick-gen-key "Vector RSA <rsa@vectors.example>" rsa2048 sign,encr never
$gpg --quick-gen-key "Vector DSA <elg@vectors.example>" dsa2048 sign never
$gpg --quick-add-key "$($gpg --with-colons --list-keys elg@vectors.example | awk -F: '/^fpr/ {print $10; exit}')" elg2048 encr never
$gpg --quick-gen-key "Vector P256 <p256@vectors.example>" nistp256 sign never
$gpg --quick-add-key "$($gpg --with-colons --list-keys p256@vectors.example | awk -F: '/^fpr/ {print $10; exit}')" nistp256 encr never

for who in rsa elg p256; do
    $gpg --armor --export-secret-keys "$who@vectors.example" > "$who.sec.asc"
    $gpg --armor --export "$who@vectors.example" > "$who.pub.asc"
done

printf 'Vector plaintext: Gr\303\274\303\237e.\nSecond line.\n' > plain.txt
$gpg --armor -r elg@vectors.example -o elgamal.asc --encrypt plain.txt
$gpg --armor -r p256@vectors.example -o nistp256.asc --encrypt plain.txt
for cipher in 3DES BLOWFISH CAMELLIA256 AES192 TWOFISH; do
    $gpg --armor -r rsa@vectors.example --cipher-algo "$cipher" -o "cipher-$cipher.asc" --encrypt plain.txt
done
$gpg --armor -r rsa@vectors.example --compress-algo bzip2 -o bzip2.asc --encrypt plain.txt
$gpg --armor -r rsa@vectors.example --rfc2440 --cipher-algo AES -o no-mdc.asc --encrypt plain.txt || true
$gpg --armor -u rsa@vectors.example -o signed-only.asc --sign plain.txt

# RFC 4880 section 7.1: "- " escaping of lines starting with "-", trailing white space ignored.
printf -- '-- \nFrom the text\n- dash line   \ntrailing tab\t\n\nlast line' > clear.txt
$gpg -u rsa@vectors.example -o clearsigned.asc --clearsign clear.txt
$gpg --decrypt clearsigned.asc > clearsigned.out 2>/dev/null

# Encrypted, then signed (RFC 3156 section 6.1 nesting the other way round): multipart/signed around
# a multipart/encrypted entity; the signature covers the CRLF form of that entity.
printf 'Content-Type: text/plain; charset=utf-8\r\n\r\nInner text, encrypted then signed.\r\n' > inner.mime
$gpg --armor -r rsa@vectors.example -o inner.asc --encrypt inner.mime
{
    printf 'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="enc"\r\n\r\n'
    printf -- '--enc\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n'
    printf -- '--enc\r\nContent-Type: application/octet-stream\r\n\r\n'
    sed 's/$/\r/' inner.asc
    printf -- '--enc--\r\n'
} > signed-part.mime
$gpg --armor --detach-sign -u rsa@vectors.example -o signed-part.sig signed-part.mime
{
    printf 'From: Vector RSA <rsa@vectors.example>\r\nTo: bob@corp-pub.example\r\nSubject: encrypted then signed\r\n'
    printf 'MIME-Version: 1.0\r\n'
    printf 'Content-Type: multipart/signed; micalg=pgp-sha256; protocol="application/pgp-signature"; boundary="sig"\r\n\r\n'
    printf -- '--sig\r\n'
    cat signed-part.mime
    printf '\r\n--sig\r\nContent-Type: application/pgp-signature\r\n\r\n'
    sed 's/$/\r/' signed-part.sig
    printf -- '--sig--\r\n'
} > encrypted-then-signed.eml

# Encrypted twice: the decrypted entity is itself a PGP/MIME encrypted entity.
$gpg --armor -r rsa@vectors.example -o outer.asc --encrypt signed-part.mime
{
    printf 'From: Vector RSA <rsa@vectors.example>\r\nTo: bob@corp-pub.example\r\nSubject: encrypted twice\r\n'
    printf 'MIME-Version: 1.0\r\n'
    printf 'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="outer"\r\n\r\n'
    printf -- '--outer\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n'
    printf -- '--outer\r\nContent-Type: application/octet-stream\r\n\r\n'
    sed 's/$/\r/' outer.asc
    printf -- '--outer--\r\n'
} > encrypted-twice.eml
rm signed-part.mime signed-part.sig inner.asc outer.asc
