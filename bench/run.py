"""ciphermilter benchmarks: ``./bootstrap bench`` (or ``make bench``).

Measures, side by side in one run on one machine:

* the pure core (``core.process``) per scenario and message size;
* the per-message subprocess peers that content-filter scripts use
  (``openssl cms -decrypt``, ``gpg --decrypt``, one process per message);
* the raw in-process ceiling: cryptography's own PKCS#7 decrypt of the same
  S/MIME message in a loop.

Writes ``bench/results/latest.json`` and ``bench/results/latest.md``. Ratios
within one run are what counts: these machines are noisy, absolute times are
not comparable between runs.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from ciphermilter import core
from ciphermilter.config import Settings
from ciphermilter.store import KeyStore

ROOT = Path(__file__).resolve().parents[1]
KEYS = ROOT.parent / "shared" / "corpus" / "keys"
RECIPIENT = "bob@corp-pub.example"
SIZES = {"20KB": 20 * 1024, "2MB": 2 * 1024 * 1024}


@dataclass
class Sample:
    name: str
    size: str
    message: bytes


def plaintext_entity(size: int) -> bytes:
    """A text/plain MIME entity of about ``size`` bytes, CRLF lines as Postfix hands them over."""
    line = b"The quarterly numbers are attached; please keep them confidential. 0123456789\r\n"
    body = line * (size // len(line) + 1)
    return b"Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n" + body[:size]


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def run(cmd: list[str], data: bytes | None = None, env=None) -> bytes:
    return subprocess.run(cmd, input=data, capture_output=True, check=True, env=env).stdout


def openssl_message(entity: bytes, work: Path, args: list[str]) -> bytes:
    src = work / "entity.mime"
    src.write_bytes(entity)
    out = run(["openssl", "cms", *args, "-binary", "-in", str(src),
               "-from", "Alice <alice@sender-pub.example>", "-to", f"Bob <{RECIPIENT}>", "-subject", "bench"])
    return crlf(out)


def gpg_env(work: Path) -> dict:
    home = work / "gnupg"
    if not home.exists():
        home.mkdir(mode=0o700)
        env = {**os.environ, "GNUPGHOME": str(home)}
        keys = [KEYS / "pgp" / name for name in ("pub-pgp-bob-rsa3072.sec.asc", "pub-pgp-gus-sq-cv25519.sec.asc")]
        run(["gpg", "--batch", "--quiet", "--import", *map(str, keys)], env=env)
    return {**os.environ, "GNUPGHOME": str(home)}


def pgp_mime_message(entity: bytes, work: Path, fingerprint: str) -> bytes:
    armored = run(["gpg", "--batch", "--quiet", "--trust-model", "always", "--armor", "--encrypt", "-r", fingerprint],
                  entity, env=gpg_env(work))
    boundary = b"bench-pgp-boundary"
    return crlf(
        b"From: Alice <alice@sender-pub.example>\nTo: Bob <" + RECIPIENT.encode() + b">\nSubject: bench\n"
        b"MIME-Version: 1.0\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; "
        b"boundary=\"" + boundary + b"\"\n\n--" + boundary + b"\nContent-Type: application/pgp-encrypted\n\n"
        b"Version: 1\n\n--" + boundary + b"\nContent-Type: application/octet-stream\n\n" + armored
        + b"\n--" + boundary + b"--\n"
    )


def samples(work: Path, sizes: dict[str, int]) -> list[Sample]:
    smime = KEYS / "smime"
    bob_cert, bob_key, erin_cert = smime / "pub-bob.cert.pem", smime / "pub-bob.key.pem", smime / "pub-erin-p256.cert.pem"
    out = []
    for label, size in sizes.items():
        entity = plaintext_entity(size)
        out += [
            Sample("S/MIME RSA-2048 AES-256-CBC", label, openssl_message(entity, work, ["-encrypt", "-aes256", "-recip", str(bob_cert)])),
            Sample("S/MIME RSA-2048 AES-256-GCM", label,
                   openssl_message(entity, work, ["-encrypt", "-aes-256-gcm", "-recip", str(bob_cert)])),
            Sample("S/MIME ECDH P-256 AES-128-CBC", label,
                   openssl_message(entity, work, ["-encrypt", "-aes128", "-recip", str(erin_cert)])),
            Sample("OpenPGP RSA-3072", label,
                   pgp_mime_message(entity, work, "E97C6CC22ACC850FFBCF941C7135474EBE209041")),
            Sample("OpenPGP Curve25519", label, pgp_mime_message(entity, work, gus_fingerprint(work))),
            Sample("S/MIME signed (detached)", label,
                   openssl_message(entity, work, ["-sign", "-signer", str(bob_cert), "-inkey", str(bob_key)])),
            Sample("plain", label, crlf(b"From: a@b.example\nTo: " + RECIPIENT.encode() + b"\nSubject: bench\n"
                                        b"MIME-Version: 1.0\n") + entity),
        ]
    return out


def gus_fingerprint(work: Path) -> str:
    listing = run(["gpg", "--batch", "--with-colons", "--list-keys", "gus.sq@corp-pub.example"], env=gpg_env(work))
    return next(line.split(":")[9] for line in listing.decode().splitlines() if line.startswith("fpr:"))


def build_store(work: Path) -> KeyStore:
    store = KeyStore.create(str(work / "bench.db"))
    for path in (KEYS / "smime" / "pub-bob.p12", KEYS / "smime" / "pub-erin-p256.p12"):
        store.import_file(path.read_bytes(), filename=path.name, password=b"corpus-public")
    for name in ("pub-pgp-bob-rsa3072.sec.asc", "pub-pgp-gus-sq-cv25519.sec.asc"):
        path = KEYS / "pgp" / name
        store.import_file(path.read_bytes(), filename=path.name)
    store.add_trust_anchor(certificate_der(KEYS / "trust" / "pub-root-ca.cert.pem"))
    store.add_domain("corp-pub.example")
    return store


def certificate_der(path: Path) -> bytes:
    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(serialization.Encoding.DER)


def measure(fn, seconds: float, min_runs: int) -> dict:
    """Call ``fn`` repeatedly for ``seconds`` (at least ``min_runs`` times); rate and latency percentiles."""
    fn()  # warm caches (key unlock, imports) outside the measurement, as a long-running daemon would have them
    latencies = []
    started = time.perf_counter()
    while len(latencies) < min_runs or time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        fn()
        latencies.append(time.perf_counter() - t0)
    total = sum(latencies)
    latencies.sort()
    return {
        "runs": len(latencies),
        "msgs_per_s": round(len(latencies) / total, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 3),
    }


def bench_core(store: KeyStore, sample: Sample, seconds: float, min_runs: int) -> dict:
    envelope = core.Envelope(recipients=[RECIPIENT])
    settings = Settings()
    outcome = core.process(sample.message, envelope, store, settings)
    result = measure(lambda: core.process(sample.message, envelope, store, settings), seconds, min_runs)
    result["decrypted"] = outcome.plan.body is not None
    return result


def smime_der(message: bytes) -> bytes:
    """The DER of an openssl-made application/pkcs7-mime message (base64 body)."""
    body = message.split(b"\r\n\r\n", 1)[1]
    return base64.b64decode(b"".join(body.split()))


def bench_peers(sample: Sample, work: Path, seconds: float, min_runs: int) -> dict:
    """The per-message subprocess peer and, for S/MIME, the raw in-process ceiling."""
    smime = KEYS / "smime"
    path = work / "peer-input.eml"
    path.write_bytes(sample.message)
    if sample.name.startswith("S/MIME RSA"):
        cmd = ["openssl", "cms", "-decrypt", "-in", str(path), "-recip", str(smime / "pub-bob.cert.pem"),
               "-inkey", str(smime / "pub-bob.key.pem")]
        key = serialization.load_pem_private_key((smime / "pub-bob.key.pem").read_bytes(), None)
        certificate = x509.load_pem_x509_certificate((smime / "pub-bob.cert.pem").read_bytes())
        der = smime_der(sample.message)
        peers = {"openssl cms -decrypt per message": measure(lambda: run(cmd), seconds, min_runs)}
        if "GCM" not in sample.name:  # cryptography's PKCS#7 decrypt knows no AuthEnvelopedData
            peers["cryptography pkcs7_decrypt_der (ceiling)"] = measure(
                lambda: pkcs7.pkcs7_decrypt_der(der, certificate, key, []), seconds, min_runs)
        return peers
    if sample.name.startswith("OpenPGP"):
        armored = sample.message.split(b"Content-Type: application/octet-stream\r\n\r\n", 1)[1]
        env = gpg_env(work)
        cmd = ["gpg", "--batch", "--quiet", "--decrypt"]
        return {"gpg --decrypt per message": measure(lambda: run(cmd, armored, env), seconds, min_runs)}
    return {}


def markdown(results: dict) -> str:
    lines = [
        f"Machine: {results['machine']}; Python {results['python']}; {results['date']}",
        "",
        "| scenario | size | ciphermilter core msg/s | p50 ms | p99 ms | peer | peer msg/s | core ÷ peer |",
        "|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for row in results["rows"]:
        ours = row["core"]
        peers = row["peers"] or {"—": None}
        for peer, figures in peers.items():
            rate = figures["msgs_per_s"] if figures else None
            ratio = f"{ours['msgs_per_s'] / rate:.2f}" if rate else "—"
            lines.append(f"| {row['scenario']} | {row['size']} | {ours['msgs_per_s']} | {ours['p50_ms']} | "
                         f"{ours['p99_ms']} | {peer} | {rate if rate else '—'} | {ratio} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--min-runs", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and one run each (what the tests run)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    sizes = {"2KB": 2048} if args.smoke else SIZES
    seconds, min_runs = (0.0, 1) if args.smoke else (args.seconds, args.min_runs)
    work = Path(tempfile.mkdtemp(prefix="ciphermilter-bench-"))
    try:
        store = build_store(work)
        rows = []
        for sample in samples(work, sizes):
            rows.append({
                "scenario": sample.name,
                "size": sample.size,
                "core": bench_core(store, sample, seconds, min_runs),
                "peers": bench_peers(sample, work, seconds, min_runs),
            })
            print(f"{sample.name:32} {sample.size:5} {rows[-1]['core']['msgs_per_s']:>9} msg/s", file=sys.stderr)
        results = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "rows": rows,
        }
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
        (args.out / "latest.md").write_text(markdown(results))
        print(markdown(results))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
