"""The key store's cost per message, SQLite against PostgreSQL on a unix socket (issue 18).

Alone: ``.venv/bin/python bench/store_backends.py [--seconds S]``. The same
keys (bob's S/MIME and OpenPGP keys, erin's, gus's, a trust anchor, a domain)
go into a SQLite file and into a database of a private PostgreSQL 15
(``postgres_instance.py``: unix socket, fsync off); then, for each backend:

* ``freshness``: :meth:`KeyStore.refresh`, the one query each message makes
  of the store when nothing changed (``store_versions``);
* ``message, warm``: what an S/MIME message to bob asks of the store once the
  caches are warm: the freshness check, the internal-domain and reader
  checks, the recipient's private key, the signer's certificates by address,
  the OpenPGP public keys by key ID (the last two are queries every time);
* ``message, after a harvest``: the same after another gateway harvested a
  certificate, which drops the lookups' caches (not the decrypted keys), as
  the busiest gateways see it on many messages;
* ``S/MIME milter protocol``: the daemon (``ciphermilter run`` on a unix
  socket, 4 connections) decrypting a 20 KB S/MIME message to bob, msg/s.

Prints a table and writes ``store_backends.json`` beside ``latest.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as a file: the clone's root makes the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import milter_client, milter_daemon  # noqa: E402
from bench.postgres_instance import own_server  # noqa: E402
from bench.run import SENDER, openssl_message, plaintext_entity  # noqa: E402
from bench.shared import SHARED  # noqa: E402
from ciphermilter.core import harvest  # noqa: E402
from ciphermilter.core.settings import Settings  # noqa: E402
from ciphermilter.formats import keyfiles  # noqa: E402
from ciphermilter.store import admin, rows  # noqa: E402
from ciphermilter.store.keystore import KeyStore  # noqa: E402

KEYS = SHARED / "corpus" / "keys"
ROOT = Path(__file__).resolve().parents[1]
RECIPIENT = "bob@corp-pub.example"
PROTOCOL_CONNECTIONS = 4


def fill(store: KeyStore) -> None:
    for path in (KEYS / "smime" / "pub-bob.p12", KEYS / "smime" / "pub-erin-p256.p12"):
        admin.import_file(store, path.read_bytes(), password=b"corpus-public")
    for name in ("pub-pgp-bob-rsa3072.sec.asc", "pub-pgp-gus-sq-cv25519.sec.asc"):
        admin.import_file(store, (KEYS / "pgp" / name).read_bytes())
    admin.add_trust_anchors(store, keyfiles.parse((KEYS / "trust" / "pub-root-ca.cert.pem").read_bytes()).certificates)
    admin.add_domain(store, "corp-pub.example")


def message_lookups(store: KeyStore, bob: bytes, issuer_key: str, serial: int) -> None:
    """What one S/MIME message to bob asks of the store (see the module docstring)."""
    store.refresh()
    store.is_internal_domain("corp-pub.example")
    store.reader_addresses()
    store.certificate_readers(bob)
    store.smime_private_keys(issuer_key=issuer_key, serial=serial)
    store.certificates(email="alice@sender-pub.example")
    store.pgp_public_keys("8A351CCB200DA75B", imported_only=True)


def measure(fn, seconds: float, min_runs: int, before=lambda: None) -> dict:
    """Time ``fn`` (after an untimed ``before``) for ``seconds``, at least ``min_runs`` times."""
    before()
    fn()
    latencies: list[float] = []
    started = time.perf_counter()
    while len(latencies) < min_runs or time.perf_counter() - started < seconds:
        before()
        t0 = time.perf_counter()
        fn()
        latencies.append(time.perf_counter() - t0)
    return {"runs": len(latencies), "per_s": round(len(latencies) / sum(latencies), 1),
            **milter_client.percentiles(latencies)}


def bench_backend(store: KeyStore, other: KeyStore, seconds: float, min_runs: int) -> dict:
    bob = keyfiles.parse((KEYS / "smime" / "pub-bob.cert.pem").read_bytes()).certificates[0]
    row = rows.certificate_row(bob, "imported")[0]
    alice = keyfiles.parse((KEYS / "foreign" / "pub-alice.cert.pem").read_bytes()).certificates[0]

    def another_gateway_harvests() -> None:
        admin.expire_harvested(other, -1)  # "never used, harvested before tomorrow": alice's goes again
        batch = harvest.Batch()
        batch.certificate(alice, "bench")
        harvest.keep(other, batch, Settings())

    def message() -> None:
        message_lookups(store, bob, row["issuer_key"], int(row["serial"], 16))

    return {"freshness": measure(store.refresh, seconds, min_runs),
            "message, warm": measure(message, seconds, min_runs),
            "message, after a harvest": measure(message, seconds, min_runs, before=another_gateway_harvests)}


def bench_protocol(work: Path, name: str, key: Path, message: milter_client.EncodedMessage, seconds: float,
                   min_runs: int) -> dict:
    served = milter_daemon.start(work, f"milter-{len(list(work.iterdir()))}", name, master_key=key)
    try:
        return milter_client.load(served.socket, message, PROTOCOL_CONNECTIONS, seconds, min_runs)
    finally:
        served.stop()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--min-runs", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ciphermilter-bench-store-"))
    work.chmod(0o755)
    smime = milter_client.EncodedMessage.of(openssl_message(
        plaintext_entity(20 * 1024), work, ["-encrypt", "-aes256", "-recip", str(KEYS / "smime" / "pub-bob.cert.pem")]),
        SENDER, [RECIPIENT])
    results = {}
    with own_server() as server:
        for backend, name, key in (("SQLite", str(work / "s.db"), work / "s.db.key"),
                                   ("PostgreSQL, unix socket", server.url(), work / "pg.key")):
            with KeyStore.create(name, key) as made:
                fill(made)
            with KeyStore.open(name, key) as store, KeyStore.open(name, key) as other:
                results[backend] = bench_backend(store, other, args.seconds, args.min_runs)
            protocol = bench_protocol(work, name, key, smime, args.seconds, args.min_runs)
            results[backend]["S/MIME milter protocol"] = {"per_s": protocol["msgs_per_s"], **protocol}
    shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "store_backends.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'backend':26} {'what':26} {'per s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for backend, parts in results.items():
        for what, figures in parts.items():
            print(f"{backend:26} {what:26} {figures['per_s']:>9} {figures['p50_ms']:>8} {figures['p99_ms']:>8}")
    return results


if __name__ == "__main__":
    main()
