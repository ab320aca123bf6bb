"""v6 (RFC 9580) keys and signatures by pysequoia (Sequoia 2), for make_vectors.sh: python3 make_v6.py BOB.pub.asc

v6: Ed25519 (algorithm 27, the RFC 9580 default) in every shape; v6-ed448 (algorithm 28) and v6-p384 (ECDSA in
a v6 signature) detached only.
"""

import sys
from pathlib import Path

import pysequoia

here = Path(__file__).parent
part, plain = (here / "part.mime").read_bytes(), (here / "plain.txt").read_bytes()
suites = {"v6": pysequoia.CipherSuite.Cv25519, "v6-ed448": pysequoia.CipherSuite.Cv448,
          "v6-p384": pysequoia.CipherSuite.P384}
for name, suite in suites.items():
    key = pysequoia.Tsk.generate(f"Signer {name} <{name}@sig.example>", profile=pysequoia.Profile.RFC9580,
                                 cipher_suite=suite)
    (here / f"{name}.pub.asc").write_text(str(key.extract_certificate()))
    signature = pysequoia.sign(key.signer(), part, mode=pysequoia.SignatureMode.DETACHED)
    (here / f"{name}.detached.asc").write_bytes(signature)
    if name == "v6":
        (here / "v6.inline.asc").write_bytes(pysequoia.sign(key.signer(), plain, mode=pysequoia.SignatureMode.INLINE))
        (here / "v6.clear.asc").write_bytes(pysequoia.sign(key.signer(), plain, mode=pysequoia.SignatureMode.CLEAR))
        bob = pysequoia.Cert.from_file(sys.argv[1])  # a v4 recipient: SEIPDv1 around a v6 one-pass signature
        (here / "v6.signenc.asc").write_bytes(pysequoia.encrypt(plain, [bob], signer=key.signer()))
