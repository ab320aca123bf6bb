#!/bin/sh
# The harvest flood of issue 14, made with gpg in a throwaway GNUPGHOME:
#   signer.sec.asc  a partner's Ed25519 signing key (the tests import its public half as an administrator would)
#   flood.pub.asc   300 more Ed25519 public keys with the partner's own address, one armored block
# A message signed by the partner with flood.pub.asc attached is vouched for, key by key (openpgp_mime
# harvests keys in content signed by an imported key that name only the signer's addresses): before the
# caps, it added 300 rows to the store. The tests sign their messages at run time with signer.sec.asc.
set -eu
cd "$(dirname "$0")"
home=$(mktemp -d)
trap 'gpgconf --homedir "$home" --kill gpg-agent; rm -rf "$home"' EXIT
g() { gpg --homedir "$home" --batch --yes --pinentry-mode loopback --passphrase "" "$@"; }
address=partner@sender-pub.example
g --quick-gen-key "Partner <$address>" ed25519 sign never
g --armor --export-secret-keys > signer.sec.asc
signer=$(g --with-colons --list-keys | awk -F: '/^fpr:/ { print $10; exit }')
i=0
while [ $i -lt 300 ]; do
    g --quick-gen-key "$address" ed25519 sign never
    i=$((i + 1))
done
g --with-colons --list-keys | awk -F: -v signer="$signer" '/^pub:/ { want = 1 } /^fpr:/ && want { if ($10 != signer) print $10; want = 0 }' > fingerprints
g --armor --export $(cat fingerprints) > flood.pub.asc
rm fingerprints
