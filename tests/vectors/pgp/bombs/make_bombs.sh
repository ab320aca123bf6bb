#!/bin/sh
# Regenerates the compression bombs of issue 14 with real GnuPG and the corpus key of bob.pgp
# (pub-pgp-bob-rsa3072: it signs the signed-only bombs, and the encrypted ones are encrypted to it).
# Each is a few hundred bytes to ~350 KB of mail that inflates to 256 MiB (zip, ratio ~1000:1, the most
# deflate can reach) or 1 GiB (bzip2, ~400000:1) of zeros, streamed from /dev/zero: nothing large is written.
#   CORPUS=/work/shared/corpus sh make_bombs.sh      (takes about a minute: gpg hashes and compresses 2.5 GiB)
set -eu
cd "$(dirname "$0")"
CORPUS=${CORPUS:-$(cd ../../../../.. && pwd)/shared/corpus}
GNUPGHOME=$(mktemp -d)
export GNUPGHOME
trap 'gpgconf --kill gpg-agent; rm -rf "$GNUPGHOME"' EXIT
gpg="gpg --batch --yes --quiet --pinentry-mode loopback --passphrase= --trust-model always"
$gpg --import "$CORPUS/keys/pgp/pub-pgp-bob-rsa3072.sec.asc"
bob=bob.pgp@corp-pub.example

# bomb NAME SIZE ALGO MODE: MODE "sign" gives an inline signed-only message (text/plain body, the
# armored block alone in it), "encrypt" a PGP/MIME encrypted one (RFC 3156), both as a milter sees them (CRLF).
bomb() {
    name=$1 size=$2 algo=$3 mode=$4
    if [ "$mode" = sign ]; then
        head -c "$size" /dev/zero | $gpg --armor --compress-algo "$algo" -z 9 -u $bob --sign > "$name.asc"
    else
        head -c "$size" /dev/zero | $gpg --armor --compress-algo "$algo" -z 9 -r $bob --encrypt > "$name.asc"
    fi
    {
        printf 'From: Bob Pgp <%s>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@vectors.example>\r\n' \
            "$bob" "$bob" "$name" "$name"
        printf 'MIME-Version: 1.0\r\n'
        if [ "$mode" = sign ]; then
            printf 'Content-Type: text/plain; charset=us-ascii\r\n\r\n'
            sed 's/$/\r/' "$name.asc"
        else
            printf 'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="enc"\r\n\r\n'
            printf -- '--enc\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n'
            printf -- '--enc\r\nContent-Type: application/octet-stream\r\n\r\n'
            sed 's/$/\r/' "$name.asc"
            printf -- '--enc--\r\n'
        fi
    } > "$name.eml"
    rm "$name.asc"
}

bomb zip-256MiB-signed 268435456 zip sign
bomb zip-256MiB-encrypted 268435456 zip encrypt
bomb bzip2-1GiB-signed 1073741824 bzip2 sign
bomb bzip2-1GiB-encrypted 1073741824 bzip2 encrypt
