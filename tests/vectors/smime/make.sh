#!/bin/sh
# Regenerate the CMS test vectors of tests/test_cms.py and tests/test_trust.py with OpenSSL 3.0.
# Every file here is this script's output; the tests need no openssl at run time.
# Usage: sh make.sh   (run in this directory; it overwrites the outputs)
set -eu
cd "$(dirname "$0")"
rm -f ./*.pem ./*.der ./*.txt ./*.ext
DAYS=36500  # valid for a century: the tests check validity against the time of the run

printf 'Content-Type: text/plain\r\n\r\nCMS test vector content.\r\n' > content.txt

# --- keys and certificates: a root, an intermediate, leaves for each key type
printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n' > ca.ext
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment,keyAgreement\nextendedKeyUsage=emailProtection\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' > leaf.ext
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\n' > server.ext
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectKeyIdentifier=hash\n' > notca.ext

openssl req -x509 -newkey rsa:2048 -nodes -keyout root.key.pem -out root.cert.pem -days $DAYS \
    -subj "/O=Vector Org/CN=Vector Root CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

issue() {  # issue NAME KEYSPEC ISSUER EXTFILE SUBJECT
    case "$2" in
        rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1.key.pem" 2>/dev/null ;;
        ed25519) openssl genpkey -algorithm ED25519 -out "$1.key.pem" ;;
        P-*) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:"$2" -out "$1.key.pem" 2>/dev/null ;;
    esac
    openssl req -new -key "$1.key.pem" -subj "$5" -out "$1.csr" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA "$3.cert.pem" -CAkey "$3.key.pem" -set_serial "0x$(openssl rand -hex 8)" \
        -days $DAYS -extfile "$4" -out "$1.cert.pem" 2>/dev/null
    rm -f "$1.csr"
}
issue inter rsa root ca.ext "/O=Vector Org/CN=Vector Issuing CA"
issue rsa rsa inter leaf.ext "/O=Vector Org/CN=Rita RSA/emailAddress=rita@vector.example"
issue other rsa inter leaf.ext "/O=Vector Org/CN=Otto Other/emailAddress=otto@vector.example"
issue p256 P-256 inter leaf.ext "/O=Vector Org/CN=Pia P256/emailAddress=pia@vector.example"
issue p384 P-384 inter leaf.ext "/O=Vector Org/CN=Per P384/emailAddress=per@vector.example"
issue p521 P-521 inter leaf.ext "/O=Vector Org/CN=Pam P521/emailAddress=pam@vector.example"
issue ed25519 ed25519 inter leaf.ext "/O=Vector Org/CN=Eda Ed25519/emailAddress=eda@vector.example"
issue server rsa inter server.ext "/O=Vector Org/CN=Sid Server/emailAddress=sid@vector.example"
issue notca rsa inter notca.ext "/O=Vector Org/CN=Nora NotCA"
issue undernotca rsa notca leaf.ext "/O=Vector Org/CN=Ulf Under/emailAddress=ulf@vector.example"

enc() {  # enc NAME RECIPIENT CIPHER [openssl options...]
    name=$1 recip=$2 cipher=$3; shift 3
    openssl cms -encrypt -binary -in content.txt -recip "$recip.cert.pem" "$cipher" "$@" -outform DER -out "env-$name.der"
}
# --- key transport
enc rsa15-aes128 rsa -aes-128-cbc
enc rsa15-aes192 rsa -aes-192-cbc
enc rsa15-des3 rsa -des-ede3-cbc
enc rsa15-ski rsa -aes-256-cbc -keyid
for md in sha1 sha256 sha384 sha512; do
    enc "oaep-$md" rsa -aes-256-cbc -keyopt rsa_padding_mode:oaep -keyopt "rsa_oaep_md:$md" -keyopt "rsa_mgf1_md:$md"
done
enc oaep-sha256-mgf1-sha1 rsa -aes-256-cbc -keyopt rsa_padding_mode:oaep -keyopt rsa_oaep_md:sha256 \
    -keyopt rsa_mgf1_md:sha1
# --- key agreement (the KDF hash follows the curve unless set)
enc ecdh-p256 p256 -aes-128-cbc
enc ecdh-p384 p384 -aes-256-cbc -keyopt ecdh_kdf_md:sha384
enc ecdh-p521 p521 -aes-256-cbc -keyopt ecdh_kdf_md:sha512
enc ecdh-p256-cofactor p256 -aes-128-cbc -keyopt ecdh_cofactor_mode:1
enc ecdh-p256-wrap256 p256 -aes-128-cbc -wrap id-aes256-wrap
enc ecdh-p384-wrap-pad p384 -aes-256-cbc -wrap id-aes192-wrap-pad
# --- AuthEnvelopedData
enc gcm-aes128 rsa -aes-128-gcm
enc gcm-aes256 p256 -aes-256-gcm
# --- two recipients: one we hold, one we do not
enc two-recipients other -aes-256-cbc -recip rsa.cert.pem
# --- a plaintext that holds the "--efail" delimiter of the multipart tests/test_smime.py wraps it in
printf 'Content-Type: text/plain\r\n\r\n--efail\r\nboundary clash\r\n' > clash.txt
openssl cms -encrypt -binary -in clash.txt -recip rsa.cert.pem -aes-128-cbc -outform DER -out env-clash.der
# --- legacy ciphers the engine refuses
enc rc2 rsa -rc2-cbc -provider legacy -provider default
enc des rsa -des-cbc -provider legacy -provider default

sig() {  # sig NAME SIGNER [openssl options...]
    name=$1 signer=$2; shift 2
    openssl cms -sign -binary -in content.txt -signer "$signer.cert.pem" -inkey "$signer.key.pem" \
        -certfile inter.cert.pem "$@" -outform DER -out "sig-$name.der"
}
sig rsa-sha256 rsa -md sha256
sig rsa-sha1 rsa -md sha1
sig rsa-sha512 rsa -md sha512
sig rsa-pss rsa -md sha256 -keyopt rsa_padding_mode:pss
sig ecdsa-p256-sha384 p256 -md sha384
sig ecdsa-p521-sha512 p521 -md sha512
sig rsa-noattr rsa -md sha256 -noattr
sig rsa-opaque rsa -md sha256 -nodetach
sig rsa-keyid rsa -md sha256 -keyid
sig server server -md sha256
sig undernotca undernotca -md sha256 -certfile notca.cert.pem
# OpenSSL 3.0 cannot sign CMS with Ed25519: this vector is assembled by a short script (asn1crypto + cryptography).
../../../.venv/bin/python make_ed25519.py
rm -f ./*.ext
