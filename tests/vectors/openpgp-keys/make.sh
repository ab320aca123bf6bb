#!/bin/sh
# Makes the OpenPGP key vectors of tests/test_openpgp_keys.py and tests/test_openpgp_keyring.py with the real tools.
# The test suite reads the files; it needs none of the tools. Run from this directory:
#   apt-get install -y gnupg sq      # gpg 2.2.40 (Debian 12), sq 0.27.0 (sequoia-openpgp 1.12)
#   pip install pysequoia            # 0.1.35: v6 keys (RFC 9580), PKESKv6 + SEIPDv2
#   sh make.sh        (SKIP_GPG=1 sh make.sh: only the sq and pysequoia files)
# Every key is made anew (new fingerprints), so the tests read names and facts from the files, never constants.
# rfc9580-*.asc are not made here: they are the sample keys and message of RFC 9580 Appendix A.3 to A.5
# and A.8 (v6 Ed25519/X25519 key, unprotected and Argon2 + OCB protected with "correct horse battery staple",
# and an X25519 PKESKv6 + SEIPDv2 OCB message "Hello, world!"), copied from the RFC's text.
set -eu
PASSPHRASE="vector passphrase"
PLAIN="Hello from the key vectors"
export GNUPGHOME="$(mktemp -d)"
trap 'rm -rf "$GNUPGHOME"' EXIT

# gpg 2.2 (--full-gen-key's batch form, --expert curves): name, primary type and curve, subkey type and curve,
# protected (a passphrase) or not.
gen() {
    name=$1; primary=$2; subkey=$3; protect=$4
    {
        echo "$primary"
        echo "$subkey"
        echo "Name-Real: Vector $name"
        echo "Name-Email: $name@corp-pub.example"
        echo "Expire-Date: 0"
        if [ "$protect" = yes ]; then echo "Passphrase: $PASSPHRASE"; else echo "%no-protection"; fi
        echo "%commit"
    } > "$GNUPGHOME/params"
    gpg --batch --expert --pinentry-mode loopback --passphrase "$PASSPHRASE" --gen-key "$GNUPGHOME/params"
    gpg --batch --armor --export "$name@corp-pub.example" > "gpg-$name.pub.asc"
    gpg --batch --armor --pinentry-mode loopback --passphrase "$PASSPHRASE" \
        --export-secret-keys "$name@corp-pub.example" > "gpg-$name.sec.asc"
    printf '%s (%s)\n' "$PLAIN" "$name" > "$GNUPGHOME/plain"
    # one message to the named recipient, one to a hidden recipient (wildcard key ID: every key is tried)
    gpg --batch --yes --trust-model always --armor -r "$name@corp-pub.example" -o "gpg-$name.msg.asc" \
        -e "$GNUPGHOME/plain"
    gpg --batch --yes --trust-model always --armor -R "$name@corp-pub.example" -o "gpg-$name.hidden.asc" \
        -e "$GNUPGHOME/plain"
    # the session key gpg recovers, "ALGO:HEX", for the test to compare ours with
    gpg --batch --pinentry-mode loopback --passphrase "$PASSPHRASE" --show-session-key -d "gpg-$name.msg.asc" \
        2>&1 >/dev/null | sed -n 's/^gpg: session key: .\(.*\).$/\1/p' > "gpg-$name.sessionkey"
}

if [ -z "${SKIP_GPG:-}" ]; then
gen rsa2048 "Key-Type: RSA
Key-Length: 2048" "Subkey-Type: RSA
Subkey-Length: 2048" yes
gen p256 "Key-Type: ECDSA
Key-Curve: nistp256" "Subkey-Type: ECDH
Subkey-Curve: nistp256" no
gen p384 "Key-Type: ECDSA
Key-Curve: nistp384" "Subkey-Type: ECDH
Subkey-Curve: nistp384" no
gen bp256 "Key-Type: ECDSA
Key-Curve: brainpoolP256r1" "Subkey-Type: ECDH
Subkey-Curve: brainpoolP256r1" yes
gen bp384 "Key-Type: ECDSA
Key-Curve: brainpoolP384r1" "Subkey-Type: ECDH
Subkey-Curve: brainpoolP384r1" no
gen bp512 "Key-Type: ECDSA
Key-Curve: brainpoolP512r1" "Subkey-Type: ECDH
Subkey-Curve: brainpoolP512r1" no
gen cv25519 "Key-Type: EDDSA
Key-Curve: ed25519" "Subkey-Type: ECDH
Subkey-Curve: cv25519" yes
fi

# sq 0.27 (Sequoia 1.x): its default cipher suite (cv25519) and RSA (it offers no other); messages with its defaults.
for suite in cv25519 rsa3k; do
    sq key generate --userid "<sq-$suite@corp-pub.example>" --cipher-suite "$suite" --export "sq-$suite.sec.asc" \
        --rev-cert "$GNUPGHOME/sq-$suite.rev"
    sq key extract-cert -o "sq-$suite.pub.asc" "sq-$suite.sec.asc"
    printf '%s (sq-%s)\n' "$PLAIN" "$suite" | sq encrypt --recipient-cert "sq-$suite.pub.asc" -o "sq-$suite.msg.asc"
    sq decrypt --recipient-key "sq-$suite.sec.asc" --dump-session-key "sq-$suite.msg.asc" 2>&1 >/dev/null \
        | sed -n 's/^Session key: //p' > "sq-$suite.sessionkey"
done

# pysequoia: v6 keys (RFC 9580 profile) X25519 and X448, messages as it sends them (PKESKv6, SEIPDv2).
python3 - "$PLAIN" <<'EOF'
import sys
import pysequoia as sequoia

for suite in ("Cv25519", "Cv448"):
    name = f"pysequoia-v6-{suite.lower()}"
    tsk = sequoia.Tsk.generate(f"<{name}@corp-pub.example>", profile=sequoia.Profile.RFC9580,
                               cipher_suite=getattr(sequoia.CipherSuite, suite))
    open(f"{name}.sec.asc", "w").write(str(tsk))
    cert = tsk.extract_certificate()
    open(f"{name}.pub.asc", "w").write(str(cert))
    open(f"{name}.msg.asc", "wb").write(sequoia.encrypt(f"{sys.argv[1]} ({name})\n".encode(), recipients=[cert]))
EOF
