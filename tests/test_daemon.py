"""The daemon's start-up pieces and the store holder, with real stores on disk."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import stat
import subprocess
import sys

import pytest
from click.testing import CliRunner

from ciphermilter.cli.main import main
from ciphermilter.config import ConfigError, DaemonConfig
from ciphermilter.daemon.serve import account, prepare_directory, setup_logging, unix_socket_path, write_pid_file
from ciphermilter.store.holder import StoreHolder, StoreUnavailable
from ciphermilter.store.keystore import KeyStore
from ciphermilter.store import admin as store_admin


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "store" / "ciphermilter.db"
    path.parent.mkdir()
    with KeyStore.create(str(path)) as store:
        store_admin.add_domain(store, "corp-pub.example")
    return path


def holder_for(path) -> StoreHolder:
    return StoreHolder(str(path), str(path) + ".key")


def test_missing_store_is_unavailable_with_the_reason(tmp_path):
    holder = holder_for(tmp_path / "absent.db")

    with pytest.raises(StoreUnavailable, match="absent.db: No such file or directory"):
        holder.current()


def test_the_same_store_serves_message_after_message(store_path):
    holder = holder_for(store_path)

    first = holder.current()

    assert holder.current() is first
    assert first.is_internal_domain("corp-pub.example")


def test_changes_by_another_process_are_seen_without_reopening(store_path):
    holder = holder_for(store_path)
    store = holder.current()
    with KeyStore.open(str(store_path)) as admin:
        store_admin.add_domain(admin, "new.example")

    assert holder.current() is store
    assert store.is_internal_domain("new.example")


def test_a_replaced_store_file_is_reopened(store_path, tmp_path):
    holder = holder_for(store_path)
    old = holder.current()
    replacement = tmp_path / "replacement.db"
    shutil.copyfile(store_path, replacement)
    with KeyStore.open(str(replacement), str(store_path) + ".key") as restored:
        store_admin.add_domain(restored, "restored.example")
    os.replace(replacement, store_path)

    new = holder.current()

    assert new is not old
    assert new.is_internal_domain("restored.example")


def test_a_corrupt_store_is_unavailable_and_service_recovers(store_path, tmp_path):
    holder = holder_for(store_path)
    holder.current()
    backup = tmp_path / "backup.db"
    shutil.copyfile(store_path, backup)
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not an SQLite database" * 100)
    os.replace(corrupt, store_path)

    with pytest.raises(StoreUnavailable, match="not a usable ciphermilter store"):
        holder.current()
    os.replace(backup, store_path)

    assert holder.current().is_internal_domain("corp-pub.example")


def test_unix_socket_path():
    assert unix_socket_path("unix:/run/x/m.sock") == "/run/x/m.sock"
    assert unix_socket_path("local:rel/m.sock") == "rel/m.sock"
    assert unix_socket_path("inet:8891@127.0.0.1") is None


def test_unknown_user_is_a_configuration_error():
    with pytest.raises(ConfigError, match="no-such-user-here"):
        account(DaemonConfig(user="no-such-user-here"))
    assert account(DaemonConfig()) is None


def test_account_defaults_to_the_users_primary_group():
    assert account(DaemonConfig(user="nobody")) == (65534, 65534)
    assert account(DaemonConfig(user="nobody", group="postfix"))[1] != 65534


def test_missing_directories_are_created_for_the_user_and_existing_ones_left_alone(tmp_path):
    existing = tmp_path / "shared"
    existing.mkdir(mode=0o1777)
    existing.chmod(0o1777)

    prepare_directory(str(tmp_path / "run" / "m.sock"), (65534, 65534))
    prepare_directory(str(existing / "m.sock"), (65534, 65534))

    created = (tmp_path / "run").stat()
    assert (stat.S_IMODE(created.st_mode), created.st_uid, created.st_gid) == (0o750, 65534, 65534)
    assert (stat.S_IMODE(existing.stat().st_mode), existing.stat().st_uid) == (0o1777, os.getuid())


def test_pid_file_belongs_to_the_user_so_it_can_remove_it(tmp_path):
    pid_file = tmp_path / "run" / "ciphermilter.pid"

    write_pid_file(str(pid_file), (65534, 65534))

    assert pid_file.read_text() == f"{os.getpid()}\n"
    assert pid_file.stat().st_uid == 65534


def test_run_refuses_a_bad_configuration_before_doing_anything(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('socket = "unix:/x"\non_error = "maybe"\n')

    result = CliRunner().invoke(main, ["run", "--config", str(config)])

    assert result.exit_code == 2
    assert result.output == f"ciphermilter: {config}:2: on_error: must be one of pass, tempfail\n"


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield
    for handler in root.handlers:
        handler.close()
    root.handlers[:], root.level = saved[0], saved[1]


def test_log_lines_go_to_syslog_facility_mail(tmp_path, restore_logging):
    dev_log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dev_log.bind(str(tmp_path / "log"))
    dev_log.settimeout(10)
    try:
        setup_logging("info", stderr=False, syslog_socket=str(tmp_path / "log"))
        logging.getLogger("ciphermilter.daemon.milter").info("queue 4ABC: hello")
        logging.getLogger("ciphermilter.daemon.milter").debug("not at level info")

        facility_mail_info = (2 << 3) | 6
        assert dev_log.recv(4096) == f"<{facility_mail_info}>ciphermilter[{os.getpid()}]: INFO queue 4ABC: hello\0".encode()
        dev_log.setblocking(False)  # emitting is synchronous: a debug line would be waiting already
        with pytest.raises(BlockingIOError):
            dev_log.recv(4096)
    finally:
        dev_log.close()


def test_a_socket_libmilter_cannot_open_is_one_line_and_exit_status_1(store_path, tmp_path):
    """The daemon raises ServeError, the run command (cli/run.py) turns it into the CLI's one-line failure.

    The port is bound but accepts nothing: a port that accepts is refused before libmilter is asked
    (tests/e2e/test_start_stop.py)."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    spec = f"inet:{taken.getsockname()[1]}@127.0.0.1"
    config = tmp_path / "taken.toml"
    config.write_text(f'socket = "{spec}"\nworkers = 1\n')
    try:
        result = subprocess.run([sys.executable, "-m", "ciphermilter", "--store", str(store_path), "run",
                                 "--config", str(config), "--no-stderr"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=120)
    finally:
        taken.close()
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == f"ciphermilter: cannot serve on {spec}: cannot opensocket"
