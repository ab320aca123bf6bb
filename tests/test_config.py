"""The daemon's TOML file: every key known, every mistake refused with file, line and reason."""

from __future__ import annotations

import dataclasses
import re
import tomllib

import pytest

from ciphermilter.store import masterkey
from ciphermilter.config import ConfigError, DaemonConfig, load
from ciphermilter.core.settings import Limits, Settings
from conftest import ROOT

EXAMPLE = ROOT / "postfix" / "ciphermilter.toml.example"


def write(tmp_path, text: str) -> str:
    path = tmp_path / "ciphermilter.toml"
    path.write_text(text)
    return str(path)


def test_no_file_gives_the_embedded_defaults():
    config = load(None)

    assert config == DaemonConfig()
    assert config.socket == "unix:./var/ciphermilter.sock"
    assert config.master_key_path == "var/ciphermilter.db.key"


def test_example_file_names_every_key_with_its_default():
    """Keys without a default value (None) appear commented out; the others are set to their default."""
    text = EXAMPLE.read_text()
    data = tomllib.loads(text)
    commented = set(re.findall(r"^# (\w+) = ", text, re.MULTILINE))
    daemon_keys = {f.name for f in dataclasses.fields(DaemonConfig)} - {"settings"}
    settings_keys = {f.name for f in dataclasses.fields(Settings)} - {"limits"}

    limits_keys = {f.name for f in dataclasses.fields(Limits)}

    assert (set(data) - {"limits"}) | set(data["limits"]) | commented == daemon_keys | settings_keys | limits_keys
    assert not (set(data) | set(data["limits"])) & commented
    assert load(str(EXAMPLE)).settings == Settings()


def test_values_are_read_and_normalised(tmp_path):
    config = load(write(tmp_path, (
        'socket = "inet:8891@127.0.0.1"\nstore = "/srv/keys.db"\nuser = "ciphermilter"\numask = "0027"\n'
        'internal_domains = ["Corp.Example.", "*.sub.example"]\non_error = "tempfail"\n'
        'harvest_pgp_keys = false\n[limits]\ndeadline_seconds = 5\nmax_mime_depth = 12\n')))

    assert (config.socket, config.store, config.user, config.umask) == (
        "inet:8891@127.0.0.1", "/srv/keys.db", "ciphermilter", 0o027)
    assert config.master_key_path == "/srv/keys.db.key"
    assert config.settings.internal_domains == ["corp.example", "*.sub.example"]
    assert (config.settings.on_error, config.settings.harvest_pgp_keys) == ("tempfail", False)
    assert config.settings.limits.deadline_seconds == 5.0
    assert isinstance(config.settings.limits.deadline_seconds, float)
    assert config.settings.limits.max_mime_depth == 12


REFUSED = [
    ("foo = 1\n", 1, "foo: unknown key"),
    ("log_level = 'info'\n\n[limits]\nnope = 3\n", 4, "limits.nope: unknown key"),
    ("# comment\n\n[limits]\n  max_mime_depth = 0\n", 4, "limits.max_mime_depth: must be a positive integer"),
    ("[limits]\ndeadline_seconds = -1.5\n", 2, "limits.deadline_seconds: must be a positive number"),
    ('on_error = "drop"\n', 1, "on_error: must be one of pass, tempfail"),
    ('log_level = "info"\nsocket = "tcp:25"\n', 2, "socket: must be unix:/path/to/socket or inet:PORT@HOST"),
    ('socket = "inet:70000@localhost"\n', 1, "socket: must be unix:/path/to/socket or inet:PORT@HOST"),
    ('umask = "0999"\n', 1, 'umask: must be an octal mode such as "0007" or 0o007'),
    ('internal_domains = ["ok.example", "bad domain"]\n', 1, "internal_domains: not a domain name: 'bad domain'"),
    ('internal_domains = "corp.example"\n', 1, "internal_domains: must be a list of domain names"),
    ('header_protection = "yes"\n', 1, "header_protection: must be true or false"),
    ("limits = 3\n", 1, "limits: must be a table: [limits]"),
    ("store = 'x'\n[extra]\nx = 1\n", 2, "extra: unknown key"),
    ('user = "root; rm"\n', 1, "user: must be a user or group name"),
    ("metrics_port = 0\n", 1, "metrics_port: must be a TCP port (1-65535)"),
    ("stats_interval = false\n", 1, "stats_interval: must be a positive number"),
]


@pytest.mark.parametrize("text,line,reason", REFUSED, ids=[r[2] for r in REFUSED])
def test_mistakes_are_refused_with_file_line_and_reason(tmp_path, text, line, reason):
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as refused:
        load(path)

    assert str(refused.value) == f"{path}:{line}: {reason}"


def test_syntax_error_names_the_position(tmp_path):
    path = write(tmp_path, 'socket = "unix:/x"\nstore = \n')

    with pytest.raises(ConfigError, match=re.escape(f"{path}: ") + r".*line 2"):
        load(path)


def test_unreadable_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load(str(tmp_path / "absent.toml"))


def test_a_store_named_on_the_command_line_comes_with_its_own_master_key():
    configured = DaemonConfig(store="/srv/a.db", master_key="/etc/ciphermilter/a.key")
    assert configured.with_store("/srv/b.db", None).master_key_path == masterkey.default_path("/srv/b.db")
    assert configured.with_store("/srv/b.db", "/k").master_key_path == "/k"
    both_kept = configured.with_store(None, None)
    assert (both_kept.store, both_kept.master_key_path) == ("/srv/a.db", "/etc/ciphermilter/a.key")
    key_only = configured.with_store(None, "/k")
    assert (key_only.store, key_only.master_key_path) == ("/srv/a.db", "/k")
    assert configured.master_key == "/etc/ciphermilter/a.key"  # the loaded configuration is left as it was


def test_decompressed_size_follows_the_message_size_unless_set(tmp_path):
    derived = load(write(tmp_path, "[limits]\nmax_message_size = 1048576\n")).settings.limits
    assert (derived.max_decompressed_size, derived.decompressed_limit) == (None, 4 * 1048576)
    explicit = load(write(tmp_path, "[limits]\nmax_message_size = 1048576\nmax_decompressed_size = 5\n"))
    assert explicit.settings.limits.decompressed_limit == 5
    with pytest.raises(ConfigError, match=r":2: limits\.max_decompressed_size: must be a positive integer"):
        load(write(tmp_path, "[limits]\nmax_decompressed_size = 0\n"))
