#!/bin/sh
# Regenerate the S/MIME vectors of tests/test_smime_modern.py: what today's senders write by default.
# Tools: OpenSSL 3.0 (Debian 12) cms and smime, gpgsm 2.2, pyca/cryptography's PKCS7 builder (make_pyca.py),
# Bouncy Castle 1.72 (Debian's libbcpkix-java; MakeBc.java) for X25519/X448 and Ed25519/Ed448, which
# OpenSSL 3.0 cannot write. See README.md. The tests need none of these tools at run time.
# Usage: sh make.sh   (run in this directory; it overwrites every output)
set -eu
cd "$(dirname "$0")"
rm -f ./*.pem ./*.eml ./*.txt ./*.der ./*.mime ./*.pem12
DAYS=36500
DOMAIN=modern.example
FROM="Sam Sender <sam@sender.example>"  # of the encrypted-only messages; a signed one is from its signer
SIGNER="Rita RSA <rsa@$DOMAIN>"

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

# --- OpenSSL 3.0, cms and smime, defaults (DES-EDE3-CBC; ECDH with the 3DES key wrap for EC), then chosen ciphers.
# The content goes in as text (no -binary), as a user's mail does: it is already in canonical CRLF form.
for key in rsa p256 p384 bp256 bp384; do
    for cipher in default aes256 aes-128-gcm; do
        option=$([ $cipher = default ] && echo "" || echo "-$cipher")
        # shellcheck disable=SC2086  # $option is one word or none
        openssl cms -encrypt -in content.txt -recip "$key.cert.pem" $option -from "$FROM" -to "$key@$DOMAIN" \
            -subject "cms $cipher" -out "cms-$cipher-$key.eml"
    done
done
# openssl smime writes PKCS#7, which OpenSSL 3.0 encrypts to RSA only ("encryption not supported for this
# key type" for EC), and no AEAD cipher.
for cipher in default aes256; do
    option=$([ $cipher = default ] && echo "" || echo "-$cipher")
    # shellcheck disable=SC2086
    openssl smime -encrypt $option -in content.txt -from "$FROM" -to "rsa@$DOMAIN" -subject "smime $cipher" \
        -out "smime-$cipher-rsa.eml" rsa.cert.pem
done

# --- gpgsm 2.2.40: RSA only ("ksba_cms_set_enc_val failed: Invalid S-expression" for P-256 and brainpool)
export GNUPGHOME="$(mktemp -d)"
gpgsm --batch --import ca.cert.pem rsa.cert.pem 2>/dev/null
echo "$(openssl x509 -in ca.cert.pem -noout -fingerprint -sha1 | cut -d= -f2) S relax" > "$GNUPGHOME/trustlist.txt"
gpgsm --batch --disable-crl-checks -r "rsa@$DOMAIN" -o gpgsm-default-rsa.der --encrypt content.txt 2>/dev/null
rm -rf "$GNUPGHOME"; unset GNUPGHOME

# --- pyca/cryptography's PKCS7EnvelopeBuilder (RSA key transport only): defaults
../../../.venv/bin/python make_pyca.py

# --- sign, then encrypt, over content with bare LF line ends (as Thunderbird/NSS may write it)
printf 'Content-Type: text/plain; charset=us-ascii\n\nSigned with LF line ends.\nSecond line.\n' > lf.txt
# -binary: the signature covers the LF bytes exactly as they are (openssl cms -verify -binary checks it)
openssl cms -sign -binary -in lf.txt -signer rsa.cert.pem -inkey rsa.key.pem -md sha256 -out lf-signed.mime
openssl cms -sign -binary -nodetach -in lf.txt -signer p256.cert.pem -inkey p256.key.pem -md sha256 \
    -out lf-opaque.mime
# then encrypt the signed message as it is (-binary again: its LF stay LF inside the envelope)
openssl cms -encrypt -binary -in lf-signed.mime -recip rsa.cert.pem -aes256 -from "$SIGNER" -to "rsa@$DOMAIN" \
    -subject "signed LF, then encrypted" -out signed-lf-env-rsa.eml
openssl cms -encrypt -binary -in lf-signed.mime -recip p256.cert.pem -from "$SIGNER" -to "p256@$DOMAIN" \
    -subject "signed LF, then encrypted, defaults" -out signed-lf-env-p256.eml
openssl cms -encrypt -binary -in lf-opaque.mime -recip p256.cert.pem -from "Pia P256 <p256@$DOMAIN>" -to "p256@$DOMAIN" \
    -subject "opaque-signed LF, then encrypted, defaults" -out opaque-lf-env-p256.eml
# the canonical way for contrast: signed over CRLF (text mode turns lf.txt's LF into CRLF), then encrypted with LF
openssl cms -sign -in lf.txt -signer rsa.cert.pem -inkey rsa.key.pem -md sha256 -out crlf-signed.mime
tr -d '\r' < crlf-signed.mime > crlf-signed-sent-lf.mime  # what NSS hands its encryption: platform LF
openssl cms -encrypt -binary -in crlf-signed-sent-lf.mime -recip rsa.cert.pem -aes256 -from "$SIGNER" \
    -to "rsa@$DOMAIN" -subject "signed CRLF, encrypted with LF" -out signed-crlf-env-lf-rsa.eml
# an attacker's version: the LF-signed message with every LF made CRLF, encrypted to us again
sed 's/$/\r/' lf-signed.mime > lf-signed-made-crlf.mime
openssl cms -encrypt -binary -in lf-signed-made-crlf.mime -recip rsa.cert.pem -aes256 -from "$SIGNER" \
    -to "rsa@$DOMAIN" -subject "LF signature, content made CRLF" -out signed-lf-made-crlf-env-rsa.eml
# OpenSSL's own verdicts, kept with the vectors (README.md)
for f in lf-signed crlf-signed-sent-lf lf-signed-made-crlf; do
    for mode in -binary ""; do
        # shellcheck disable=SC2086
        if openssl cms -verify $mode -noverify -in "$f.mime" -out /dev/null 2>/dev/null; then v=ok; else v=fails; fi
        echo "$f ${mode:-text}: $v"
    done
done > openssl-verify.txt
rm -f lf-signed-made-crlf.mime crlf-signed.mime

# --- Bouncy Castle 1.72 (apt-get install libbcpkix-java): X25519/X448 key agreement, Ed25519/Ed448 signatures
CP=/usr/share/java/bcprov.jar:/usr/share/java/bcpkix.jar:/usr/share/java/bcutil.jar
CLASSES="$(mktemp -d)"
javac -d "$CLASSES" -cp "$CP" MakeBc.java
java -cp "$CLASSES:$CP" MakeBc
rm -rf "$CLASSES"

# --- a PEM-armoured PKCS#12 (-----BEGIN PKCS12-----, as gpgsm and some test suites ship them), password "vector"
openssl pkcs12 -export -inkey rsa.key.pem -in rsa.cert.pem -certfile ca.cert.pem -passout pass:vector -out rsa.p12
{ echo "-----BEGIN PKCS12-----"; base64 -w 64 rsa.p12; echo "-----END PKCS12-----"; } > rsa.pem12
rm -f rsa.p12 ca.key.pem
