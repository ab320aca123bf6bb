"""Several gateways, one key store (issue 18): the store's name, PostgreSQL behind the same API, freshness
across gateways, concurrent harvests, outages, schema upgrades and moving a store between backends.

Every PostgreSQL here is a real server the tests start (support/pg_fixtures.py); "a gateway" is a
KeyStore (or StoreHolder) of its own, with its own connection, as each daemon has.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import psycopg
import pytest
import sqlite_utils
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from ciphermilter import config
from ciphermilter.cli.main import main
from ciphermilter.core.settings import Settings
from ciphermilter.formats import keyfiles
from ciphermilter.store import admin, locator, postgres, rows
from ciphermilter.store.holder import StoreHolder, StoreUnavailable
from ciphermilter.store.keystore import KeyStore
from ciphermilter.store.schema import StoreError
from conftest import CORPUS, harvested, import_corpus_keys
from bench.postgres_instance import own_server, start

BOB_P12 = (CORPUS / "keys/smime/pub-bob.p12").read_bytes()
ALICE = (CORPUS / "keys/foreign/pub-alice.cert.pem").read_bytes()


def alice_der() -> bytes:
    return keyfiles.parse(ALICE).certificates[0]


# ---------------------------------------------------------------------------- the store's name


@pytest.mark.parametrize("name, backend, target", [
    ("var/ciphermilter.db", "sqlite", "var/ciphermilter.db"),
    ("keys:2026.db", "sqlite", "keys:2026.db"),
    ("sqlite:///var/lib/ciphermilter/keys.db", "sqlite", "/var/lib/ciphermilter/keys.db"),
    ("postgresql://milter@db1,db2/keys?target_session_attrs=read-write&connect_timeout=3", "postgresql",
     "postgresql://milter@db1,db2/keys?target_session_attrs=read-write&connect_timeout=3"),
    ("postgres:///keys?host=/run/postgresql", "postgresql", "postgres:///keys?host=/run/postgresql"),
])
def test_store_names(name, backend, target):
    assert locator.parse(name) == locator.Locator(backend, target)


def test_a_sqlite_store_loads_no_postgresql_driver(tmp_path):
    """psycopg and libpq cost every process about 8 MB (the daemon and each worker): a SQLite store's never
    load them. The daemon's and a worker's modules, and a store opened, in a fresh interpreter."""
    import subprocess
    import sys

    program = ("import sys; import ciphermilter.daemon.serve, ciphermilter.daemon.workers; "
               "from ciphermilter.store.keystore import KeyStore; "
               f"KeyStore.create({str(tmp_path / 'keys.db')!r}, {str(tmp_path / 'master.key')!r}); "
               "print(sorted(m for m in sys.modules if m.startswith('psycopg')))")
    loaded = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["mysql://db/keys", "https://db/keys", "postgresql:keys", "sqlite:keys.db",
                                  "sqlite://", "redis://:secret@cache/0"])
def test_other_urls_are_refused_in_one_line(name):
    with pytest.raises(locator.LocatorError) as refused:
        locator.parse(name)
    assert "\n" not in str(refused.value) and "secret" not in str(refused.value)


def test_passwords_never_show():
    where = locator.parse("postgresql://milter:s3cret@db1:5432,db2/keys?password=s3cret&sslmode=verify-full")
    assert "s3cret" not in where.display and where.display.startswith("postgresql://milter:***@db1:5432,db2/keys")


@pytest.mark.parametrize("args, message", [
    (["--store", "mysql://db/keys"], "mysql://db/keys: not a store this ciphermilter knows"),
    (["--store", "postgresql://db/keys"], "a PostgreSQL store needs its master key file named"),
])
def test_cli_refuses_a_store_url_and_creates_nothing(tmp_path, monkeypatch, args, message):
    """Once, `--store postgresql://…` quietly made a directory `postgresql:` holding a new SQLite store."""
    monkeypatch.chdir(tmp_path)
    for command in (["store", "init"], ["keys", "list"]):
        result = CliRunner().invoke(main, [*args, *command])
        assert result.exit_code == 1 and message in result.output and len(result.output.splitlines()) == 1
        assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_configuration_of_a_shared_store(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('socket = "unix:/run/m.sock"\nstore = "postgresql:///keys?host=/run/postgresql"\n')
    with pytest.raises(config.ConfigError, match=r"c.toml:2: store: a PostgreSQL store needs master_key"):
        config.load(str(path))
    path.write_text('store = "mysql://db/keys"\n')
    with pytest.raises(config.ConfigError, match=r"c.toml:1: store: not a store this ciphermilter knows"):
        config.load(str(path))
    path.write_text('store = "postgresql:///keys"\nmaster_key = "/etc/ciphermilter/master.key"\n')
    loaded = config.load(str(path))
    assert loaded.master_key_path == "/etc/ciphermilter/master.key"
    with pytest.raises(config.ConfigError, match="needs stats_file named"):
        _ = loaded.stats_path


# ---------------------------------------------------------------------------- one schema for both backends


def sqlite_schema(path: str) -> dict[str, object]:
    db = sqlite_utils.Database(path)
    tables = {}
    for table in db.tables:
        # a primary key's columns are NOT NULL on PostgreSQL by definition; SQLite does not say so
        columns = {column.name: bool(column.notnull) or column.name in table.pks for column in table.columns}
        indexes = sorted((index.name, tuple(index.columns)) for index in table.indexes
                         if not index.name.startswith("sqlite_autoindex"))
        tables[table.name] = (columns, tuple(table.pks) if table.use_rowid is False else (), indexes)
    return tables


def postgres_schema(url: str) -> dict[str, object]:
    with psycopg.connect(url) as conn:
        tables = {}
        for (table,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"):
            columns = {name: not nullable for name, nullable in conn.execute(
                "SELECT column_name, is_nullable = 'YES' FROM information_schema.columns WHERE table_schema = 'public'"
                " AND table_name = %s"
                " ORDER BY ordinal_position", (table,))}
            pk = tuple(row[0] for row in conn.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
                " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary"
                " ORDER BY array_position(i.indkey, a.attnum)", (table,)))
            indexes = sorted((name, _index_columns(definition)) for name, definition in conn.execute(
                "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x JOIN pg_class i"
                " ON i.oid = x.indexrelid WHERE x.indrelid = %s::regclass AND NOT x.indisprimary", (table,)))
            tables[table] = (columns, pk, indexes)
        return tables


def _index_columns(definition: str) -> tuple[str, ...]:
    """The columns of ``CREATE INDEX name ON public.t USING btree (a, b)``."""
    return tuple(definition.split("(", 1)[1].rstrip(")").split(", "))


def test_both_backends_have_the_same_tables_columns_keys_and_indexes(tmp_path, pg_url):
    KeyStore.create(tmp_path / "s.db").close()
    KeyStore.create(pg_url, tmp_path / "pg.key").close()
    on_sqlite, on_postgres = sqlite_schema(str(tmp_path / "s.db")), postgres_schema(pg_url)
    assert set(on_sqlite) == set(on_postgres) and len(on_sqlite) == 12
    for table, (columns, pk, indexes) in on_sqlite.items():
        pg_columns, pg_pk, pg_indexes = on_postgres[table]
        assert pg_columns == columns, table
        assert pg_pk == pk or (table == "schema_version" and pk == () and pg_pk == ()), table
        assert pg_indexes == indexes, table


def test_the_database_never_sees_a_private_key_in_the_clear(pg_url, tmp_path):
    with KeyStore.create(pg_url, tmp_path / "m.key") as store:
        admin.import_file(store, BOB_P12, password=b"corpus-public")
    (private_key,) = keyfiles.parse(BOB_P12, password=b"corpus-public").private_keys
    secret = private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
    with psycopg.connect(pg_url) as conn:
        (sealed,) = conn.execute("SELECT sealed FROM smime_keys").fetchone()
        everything = conn.execute("SELECT string_agg(encode(sealed, 'hex'), '') FROM smime_keys").fetchone()[0]
    assert secret not in sealed and secret.hex() not in everything


# ---------------------------------------------------------------------------- two gateways, one database


@pytest.fixture
def gateways(pg_url, tmp_path):
    """Two gateways' stores on one PostgreSQL database, sharing the master key file."""
    KeyStore.create(pg_url, tmp_path / "master.key").close()
    first, second = (KeyStore.open(pg_url, tmp_path / "master.key") for _ in range(2))
    yield first, second
    first.close()
    second.close()


def test_a_key_imported_or_removed_on_one_gateway_counts_on_the_other_at_its_next_message(gateways):
    one, other = gateways
    assert other.all_smime_private_keys() == [] and not other.is_internal_domain("corp-pub.example")
    admin.import_file(one, BOB_P12, password=b"corpus-public")
    admin.add_domain(one, "corp-pub.example")
    other.refresh()  # the daemon's once-per-message check (StoreHolder.current)
    ((der, key),) = other.all_smime_private_keys()
    assert other.is_internal_domain("corp-pub.example") and der in other.certificates()
    admin.remove_key(one, admin.list_keys(one)[0]["id"])
    other.refresh()
    assert other.all_smime_private_keys() == [] and other.certificates() == []


def test_a_harvest_on_one_gateway_leaves_the_others_decrypted_keys(gateways):
    one, other = gateways
    admin.import_file(one, BOB_P12, password=b"corpus-public")
    other.refresh()
    ((_, key),) = other.all_smime_private_keys()
    version = other.data_version()
    assert harvested(one, certificates=(alice_der(),)) == ["added"]
    assert other.refresh() == version  # the keys' version: the keyring keeps its unlocked keys too
    (address,) = rows.certificate_emails(alice_der())
    assert other.certificates(email=address) == [alice_der()]
    assert other.all_smime_private_keys()[0][1] is key  # not unsealed again


STRANGER = (CORPUS / "keys/foreign/pub-pgp-stranger-rsa2048.pub.asc").read_bytes()


@pytest.mark.parametrize("kind", ["certificate", "openpgp"])
def test_concurrent_harvests_of_one_key_keep_one_row(pg_url, tmp_path, kind):
    """Two gateways harvest the same certificate or OpenPGP key at the same moment: no error, one row (five
    rounds)."""
    KeyStore.create(pg_url, tmp_path / "master.key").close()
    stores = [KeyStore.open(pg_url, tmp_path / "master.key") for _ in range(2)]
    offer = {"certificates": (alice_der(),)} if kind == "certificate" else {"pgp": STRANGER}
    table = "certificates" if kind == "certificate" else "pgp_keys"
    try:
        for _ in range(5):
            for key in admin.list_keys(stores[0]):
                admin.remove_key(stores[0], key["id"])
            barrier, verdicts = threading.Barrier(2), []

            def harvest(store: KeyStore) -> None:
                barrier.wait()
                verdicts.extend(harvested(store, **offer))

            threads = [threading.Thread(target=harvest, args=(store,)) for store in stores]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert sorted(verdicts) == ["added", "known"], verdicts
            assert stores[0].rows(f"SELECT count(*) FROM {table}")[0][0] == 1
    finally:
        for store in stores:
            store.close()


# ---------------------------------------------------------------------------- outages


def test_a_database_outage_costs_the_message_on_error_and_service_comes_back_without_a_restart(tmp_path, caplog):
    with own_server() as server:
        url = server.url()
        KeyStore.create(url, tmp_path / "m.key").close()
        holder = StoreHolder(url, str(tmp_path / "m.key"))
        admin.import_file(first := holder.current(), BOB_P12, password=b"corpus-public")
        assert len(first.all_smime_private_keys()) == 1
        server.stop()
        for _ in range(3):  # each message: StoreUnavailable, which the milter turns into on_error
            with pytest.raises(StoreUnavailable, match="PostgreSQL store postgresql:///postgres"):
                holder.current()
        restarted = start(server.root, server.data)
        try:
            store = holder.current()  # the same holder: no restart of the daemon
            assert store is not first and len(store.all_smime_private_keys()) == 1
        finally:
            restarted.stop()
    assert "key store unavailable, on_error policy applies" in caplog.text


def test_a_hung_server_costs_a_bounded_wait_then_on_error(tmp_path, monkeypatch):
    """A stopped (SIGSTOP) server enforces no statement_timeout and its kernel still acknowledges: the client's
    own watchdog cuts the connection; the holder reconnects once the server runs again."""
    monkeypatch.setattr(postgres, "CLIENT_TIMEOUT_S", 1.0)
    with own_server() as server:
        url = server.url()
        KeyStore.create(url, tmp_path / "m.key").close()
        holder = StoreHolder(url, str(tmp_path / "m.key"))
        store = holder.current()
        backend = store.rows("SELECT pg_backend_pid()")[0][0]
        os.kill(backend, signal.SIGSTOP)
        try:
            with pytest.raises(StoreError, match="PostgreSQL store .*(closed|lost|terminat|EOF|unexpected)"):
                store.refresh()
        finally:
            os.kill(backend, signal.SIGCONT)
        assert holder.current() is not store and holder.current().refresh() == 0


def test_cli_commands_fail_in_one_line_when_the_database_is_down(tmp_path):
    with own_server() as server:
        url = server.url()
        KeyStore.create(url, tmp_path / "m.key").close()
        server.stop()
        for command in (["keys", "list"], ["domains", "add", "example.org"], ["store", "info"]):
            result = CliRunner().invoke(main, ["--store", url, "--master-key", str(tmp_path / "m.key"), *command])
            assert result.exit_code == 1 and len(result.output.splitlines()) == 1, result.output
            assert result.output.startswith("ciphermilter: PostgreSQL store postgresql:///postgres")


# ---------------------------------------------------------------------------- schema upgrades, backups, moving


def test_a_shared_store_is_migrated_only_on_request(pg_url, tmp_path):
    key = tmp_path / "m.key"
    KeyStore.create(pg_url, key).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:  # a store of schema 3, as if made before issue 18
        conn.execute("DROP TABLE store_versions")
        conn.execute("UPDATE schema_version SET version = 3")
    with pytest.raises(StoreError, match="schema version 3, older than this ciphermilter .4.: run 'ciphermilter"
                                         " store migrate' once"):
        KeyStore.open(pg_url, key)
    run = CliRunner().invoke(main, ["--store", pg_url, "--master-key", str(key), "store", "migrate"])
    assert run.exit_code == 0 and run.output == "schema version 4 (was 3)\n"
    with KeyStore.open(pg_url, key) as store:
        assert admin.info(store)["schema_version"] == 4 and store.refresh() == 0
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = 5")
    with pytest.raises(StoreError, match="schema version 5, newer than this ciphermilter supports .4.; upgrade"):
        KeyStore.open(pg_url, key)


def test_backup_and_restore_point_to_pg_dump(pg_url, tmp_path):
    key = str(tmp_path / "m.key")
    KeyStore.create(pg_url, key).close()
    for command in (["store", "backup", str(tmp_path / "b.db")], ["store", "restore", __file__, "--force"]):
        result = CliRunner().invoke(main, ["--store", pg_url, "--master-key", key, *command])
        assert result.exit_code == 1 and len(result.output.splitlines()) == 1
        assert "is a PostgreSQL database: back it up with pg_dump" in result.output or (
            "restore it with pg_restore" in result.output)
    assert not (tmp_path / "b.db").exists()


def comparable(store: KeyStore) -> tuple[object, ...]:
    keys = [{name: value for name, value in key.items() if name != "added"} for key in admin.list_keys(store)]
    return keys, [anchor["id"] for anchor in admin.list_trust_anchors(store)], admin.list_domains(store)


def test_export_moves_a_store_from_sqlite_to_postgresql_and_back(tmp_path, pg_url):
    with KeyStore.create(tmp_path / "s.db") as sqlite_store:
        assert import_corpus_keys(sqlite_store) == {}
        data = admin.export_all(sqlite_store, "move")
        original = comparable(sqlite_store)
    with KeyStore.create(pg_url, tmp_path / "pg.key") as pg_store:
        admin.import_export(pg_store, data, "move")
        assert comparable(pg_store) == original and len(original[0]) > 20 and original[1] and original[2]
        back = admin.export_all(pg_store, "back")
    with KeyStore.create(tmp_path / "back.db") as again:
        admin.import_export(again, back, "back")
        assert comparable(again) == original


# ---------------------------------------------------------------------------- check


def test_check_names_the_server_it_reached_and_whether_it_takes_writes(tmp_path, pg_url, postgres):
    key = str(tmp_path / "m.key")
    KeyStore.create(pg_url, key).close()
    result = CliRunner().invoke(main, ["--store", pg_url, "--master-key", key, "check", "--no-postfix", "--json"])
    assert f"store server {postgres.socket_dir}:5432 (primary, writable)" in result.output
    assert "pg_dump" in result.output


# ---------------------------------------------------------------------------- the README's grants


def readme_grants() -> str:
    """The SQL block of README.rst's "Several gateways" that grants the milter's role what it needs."""
    text = (Path(__file__).parent.parent / "README.rst").read_text()
    block = text.split("Those are all the grants it\nneeds:\n\n.. code-block:: sql\n\n", 1)[1].split("\n\n", 1)[0]
    return "\n".join(line.strip() for line in block.splitlines())


def test_the_milter_role_of_the_readme_reads_and_harvests_and_imports_nothing(pg_url, tmp_path):
    key = tmp_path / "m.key"
    with KeyStore.create(pg_url, key) as admin_store:
        admin.import_file(admin_store, BOB_P12, password=b"corpus-public")
    role = f"milter_{os.getpid()}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(readme_grants().replace("milter", role))
    with KeyStore.open(pg_url.replace("user=postgres", f"user={role}"), key) as milter:
        assert len(milter.all_smime_private_keys()) == 1
        assert harvested(milter, certificates=(alice_der(),)) == ["added"]
        with psycopg.connect(pg_url, autocommit=True) as conn:  # harvested long ago, never used since
            conn.execute("UPDATE certificates SET added = '2000-01-01T00:00:00+00:00' WHERE origin = 'harvested'")
        carol = keyfiles.parse((CORPUS / "keys/foreign/pub-carol.cert.pem").read_bytes()).certificates[0]
        # the next harvest write removes alice's expired certificate, with the milter's grants alone
        assert harvested(milter, certificates=(carol,), settings=Settings(harvest_expiry_days=1)) == ["added"]
        assert {info["origin"] for info in admin.list_keys(milter)} == {"imported", "harvested"}
        assert milter.certificates(email=rows.certificate_emails(alice_der())[0]) == []
        with pytest.raises(StoreError, match="permission denied for table domains"):
            admin.add_domain(milter, "corp-pub.example")
        with pytest.raises(StoreError, match="permission denied for table"):
            admin.import_file(milter, (CORPUS / "keys/smime/pub-erin-p256.p12").read_bytes(),
                              password=b"corpus-public")
