#!/bin/sh
# Regenerate the S/MIME vectors of tests/test_smime_modern.py: what today's senders write by default.
# Tools: OpenSSL 3.0 (Debian 12) cms and smime, gpgsm 2.2, pyca/cryptography's PKCS7 builder (make_pyca.py),
# Bouncy Castle 1.72 (Debian's libbcpkix-java; MakeBc.java) for X25519/X448 and Ed25519/Ed448, which
# OpenSSL 3.0 cannot write. See README.md. The tests need none of these tools at run time.
# Usage: sh make.sh   (run in this directory; it overwrites every output)
set -eu
cd "$(dirname "$0")"
rm -f ./*.pem ./*.eml ./*.txt ./*.p12 ./*.pem12
DAYS=36500
DOMAIN=modern.example
FROM="Sam Sender <sam@sender.example>"

# The plaintext: a MIME entity in canonical form (CRLF), as a mail client hands it to its CMS library.
printf 'Content-Type: text/plain; charset=us-ascii\r\n\r\nModern sender vector, line one.\r\nLine two.\r\n' > content.txt

# --- a root CA and one leaf per key type (email = <name>@modern.example)
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key.pem -out ca.cert.pem -days $DAYS \
    -subj "/O=Modern Vectors/CN=Modern Root CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment,keyAgreement\nextendedKeyUsage=emailProtection\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\nsubjectAltName=email:copy\n' > leaf.ext
leaf() {  # leaf NAME GENPKEY-OPTIONS...
    name=$1; shift
    openssl genpkey "$@" -out "$name.key.pem" 2>/dev/null
    openssl pkey -in "$name.key.pem" -pubout -out "$name.pub.pem"
    # -force_pubkey: X25519/X448 keys cannot sign their own request
    openssl x509 -new -force_pubkey "$name.pub.pem" -subj "/O=Modern Vectors/CN=$name/emailAddress=$name@$DOMAIN" \
        -CA ca.cert.pem -CAkey ca.key.pem -set_serial "0x$(openssl rand -hex 8)" -days $DAYS \
        -extfile leaf.ext -out "$name.cert.pem"
    rm -f "$name.pub.pem"
}
leaf rsa -algorithm RSA -pkeyopt rsa_keygen_bits:2048
leaf p256 -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve
leaf p384 -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -pkeyopt ec_param_enc:named_curve
leaf bp256 -algorithm EC -pkeyopt ec_paramgen_curve:brainpoolP256r1 -pkeyopt ec_param_enc:named_curve
leaf bp384 -algorithm EC -pkeyopt ec_paramgen_curve:brainpoolP384r1 -pkeyopt ec_param_enc:named_curve
leaf x25519 -algorithm X25519
leaf x448 -algorithm X448
leaf ed25519 -algorithm ED25519
leaf ed448 -algorithm ED448
rm -f leaf.ext

# --- OpenSSL 3.0, cms and smime, defaults (DES-EDE3-CBC; ECDH with the 3DES key wrap for EC), then chosen ciphers
headers() {  # headers NAME: the mail headers openssl writes for -to/-from/-subject
    echo -from "$FROM" -to "$1@$DOMAIN" -subject "vector $2"
}
for key in rsa p256 p384 bp256 bp384; do
    # shellcheck disable=SC2046
    openssl cms -encrypt -in content.txt -recip "$key.cert.pem" $(true) -from "$FROM" -to "$key@$DOMAIN" \
        -subject "cms default" -out "cms-default-$key.eml"
    openssl cms -encrypt -in content.txt -recip "$key.cert.pem" -aes256 -from "$FROM" -to "$key@$DOMAIN" \
        -subject "cms aes256" -out "cms-aes256-$key.eml"
    openssl cms -encrypt -in content.txt -recip "$key.cert.pem" -aes-128-gcm -from "$FROM" -to "$key@$DOMAIN" \
        -subject "cms aes128-gcm" -out "cms-aes128gcm-$key.eml"
    openssl smime -encrypt -in content.txt -from "$FROM" -to "$key@$DOMAIN" -subject "smime default" \
        -out "smime-default-$key.eml" "$key.cert.pem" 2>"smime-$key.err" || true
    openssl smime -encrypt -aes256 -in content.txt -from "$FROM" -to "$key@$DOMAIN" -subject "smime aes256" \
        -out "smime-aes256-$key.eml" "$key.cert.pem" 2>>"smime-$key.err" || true
done
