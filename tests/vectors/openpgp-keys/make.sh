#!/bin/sh
# Makes the OpenPGP key vectors of tests/test_openpgp_keys.py and tests/test_openpgp_keyring.py with the real tools.
# The test suite reads the files; it needs none of the tools. Run from this directory:
#   apt-get install -y gnupg sq rnp  # gpg 2.2.40 (Debian 12), sq 0.27.0 (sequoia-openpgp 1.12), rnp 0.16.3
#   pip install pysequoia            # 0.1.35: v6 keys (RFC 9580), PKESKv6 + SEIPDv2
#   sh make.sh        (SKIP_GPG=1 sh make.sh: only the sq, rnp and pysequoia files)
# Every key is made anew (new fingerprints), so the tests read names and facts from the files, never constants.
# rfc9580-*.asc are not made here: they are the sample keys and message of RFC 9580 Appendix A.3 to A.5
# and A.8 (v6 Ed25519/X25519 key, unprotected and Argon2 + OCB protected with "correct horse battery staple",
# and an X25519 PKESKv6 + SEIPDv2 OCB message "Hello, world!"), copied from the RFC's text.
set -eu
PASSPHRASE="vector passphrase"
PLAIN="Hello from the key vectors"
export GNUPGHOME="$(mktemp -d)"
trap 'rm -rf "$GNUPGHOME"' EXIT

# gpg 2.2 (--full-gen-key's batch form, --expert curves): name, primary "TYPE:LENGTH-OR-CURVE", subkey the same,
# protected (a passphrase) or not.
gen() {
    name=$1; protect=$4
    {
        params Key "$2"
        params Subkey "$3"
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

# "RSA:2048" -> Key-Type: RSA, Key-Length: 2048; "ECDH:nistp256" -> Key-Type: ECDH, Key-Curve: nistp256
params() {
    kind=${2%%:*}; value=${2#*:}
    echo "$1-Type: $kind"
    if [ "$kind" = RSA ]; then echo "$1-Length: $value"; else echo "$1-Curve: $value"; fi
}

if [ -z "${SKIP_GPG:-}" ]; then
    while read -r name primary subkey protect; do
        gen "$name" "$primary" "$subkey" "$protect"
    done <<'KEYS'
rsa2048 RSA:2048 RSA:2048 yes
p256 ECDSA:nistp256 ECDH:nistp256 no
p384 ECDSA:nistp384 ECDH:nistp384 no
bp256 ECDSA:brainpoolP256r1 ECDH:brainpoolP256r1 yes
bp384 ECDSA:brainpoolP384r1 ECDH:brainpoolP384r1 no
bp512 ECDSA:brainpoolP512r1 ECDH:brainpoolP512r1 no
cv25519 EDDSA:ed25519 ECDH:cv25519 yes
KEYS
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

# rnp 0.16: its default key (RSA 2048, protected with the passphrase) and a message with its defaults.
RNPHOME="$GNUPGHOME/rnp"
mkdir -m 700 "$RNPHOME"
rnpkeys --homedir "$RNPHOME" --generate-key --userid "<rnp@corp-pub.example>" --password "$PASSPHRASE"
rnpkeys --homedir "$RNPHOME" --export-key --secret "<rnp@corp-pub.example>" > rnp-rsa2048.sec.asc
rnpkeys --homedir "$RNPHOME" --export-key "<rnp@corp-pub.example>" > rnp-rsa2048.pub.asc
printf '%s (rnp-rsa2048)\n' "$PLAIN" > "$GNUPGHOME/plain"
rnp --homedir "$RNPHOME" --encrypt -r "<rnp@corp-pub.example>" --armor --output rnp-rsa2048.msg.asc "$GNUPGHOME/plain"

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
