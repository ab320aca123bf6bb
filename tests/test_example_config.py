"""The example configuration agrees with the code and with Debian: every value of
``postfix/ciphermilter.toml.example`` is the built-in default or says why not; the README's and
ciphermilter.conf(5)'s samples agree with it; the Postfix snippets name the sockets Debian's clamav-milter
and rspamd serve once moved into Postfix's queue directory as README.rst says."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from ciphermilter import config, files
from ciphermilter.cli import check
from ciphermilter.core.settings import Limits, Settings
from ciphermilter.store import masterkey
from conftest import ROOT
from support.man import page
from support.readme import README

EXAMPLE = ROOT / "postfix" / "ciphermilter.toml.example"
MAIN_CF = ROOT / "postfix" / "main.cf.snippet"
MASTER_CF = ROOT / "postfix" / "master.cf.snippet"
QUEUE_DIRECTORY = "/var/spool/postfix"  # Postfix's default (postconf -d), where a chrooted smtpd sees sockets
CLAMAV_TEMPLATES = Path("/var/lib/dpkg/info/clamav-milter.templates")  # the package's defaults, not /etc's edits
RSPAMD_CONF = Path("/etc/rspamd/rspamd.conf")
RSPAMD_PROXY = Path("/etc/rspamd/worker-proxy.inc")
# Keys whose default the code derives from the store's path, and how.
DERIVED = {"master_key": masterkey.default_path, "stats_file": files.default_stats_file}


def example_text() -> str:
    return EXAMPLE.read_text()


def toml_value(value: object) -> str:
    """A default as the example's comment writes it: TOML for a value, "none" for None."""
    if value is None:
        return "none"
    return f'"{value}"' if isinstance(value, str) else repr(value).lower()


def defaults() -> dict[tuple[str | None, str], object]:
    """(table, key) -> the built-in default of every key of the file."""
    daemon = config.DaemonConfig()
    keys: dict[tuple[str | None, str], object] = {
        (None, f.name): getattr(daemon, f.name) for f in dataclasses.fields(daemon) if f.name != "settings"}
    keys |= {(None, f.name): getattr(Settings(), f.name) for f in dataclasses.fields(Settings) if f.name != "limits"}
    keys |= {("limits", f.name): getattr(Limits(), f.name) for f in dataclasses.fields(Limits)}
    return keys


def loaded_value(loaded: config.DaemonConfig, table: str | None, key: str) -> object:
    if table == "limits":
        return getattr(loaded.settings.limits, key)
    return getattr(loaded, key) if hasattr(loaded, key) else getattr(loaded.settings, key)


def comment_of(text: str, key: str) -> str:
    """The comment lines right above ``key = ...`` and the comment at the end of its line."""
    lines = text.splitlines()
    number = next(i for i, line in enumerate(lines) if re.match(rf"{re.escape(key)} = ", line))
    above = []
    for line in reversed(lines[:number]):
        if not line.startswith("#") or re.match(r"# \w+ = ", line):  # a commented-out key is not a comment
            break
        above.insert(0, line)
    return "\n".join([*above, lines[number].partition("#")[2]])


def test_every_value_is_the_built_in_default_or_its_comment_says_which_and_why():
    loaded = config.load(str(EXAMPLE))
    data = tomllib.loads(example_text())
    written = {(None, k) for k in data if k != "limits"} | {("limits", k) for k in data["limits"]}
    differing = []
    for table, key in sorted(written, key=str):
        value, default = loaded_value(loaded, table, key), defaults()[(table, key)]
        if key in DERIVED:
            assert value == DERIVED[key](loaded.store), f"{key} is not the default derived from store"
        elif value != default:
            differing.append(key)
            comment = comment_of(example_text(), key)
            assert f"built-in default: {toml_value(default)}" in comment, f"{key}: {comment!r}"
            assert len(comment.partition("built-in default:")[2]) > len(toml_value(default)) + 10, "and why?"
    # What a system installation must differ in; anything else at its default.
    assert sorted(differing) == ["group", "pid_file", "socket", "store", "user"]


def test_commented_keys_hold_values_the_daemon_accepts(tmp_path):
    """``# key = value`` lines: keys without a fixed default, with a value an admin may uncomment."""
    uncommented = re.sub(r"^# (\w+ = )", r"\1", example_text(), flags=re.M)
    path = tmp_path / "uncommented.toml"
    path.write_text(uncommented)
    loaded = config.load(str(path))
    assert loaded.settings.limits.max_decompressed_size == 4 * Limits().max_message_size  # as its comment says
    assert (loaded.workers, loaded.metrics_port) == (2, 9899)


# --------------------------------------------------------------------------- the other samples


def walkthrough_locations(readme: str) -> dict[str, str]:
    """The walkthrough's ``: "${NAME:=default}"`` locations."""
    return dict(re.findall(r'^   : "\$\{(\w+):=([^}]*)\}"', readme, re.M))


def walkthrough_configuration(readme: str) -> dict[str, object]:
    """The TOML the walkthrough writes, with Debian's locations for its variables."""
    heredoc = re.search(r'cat > "\$CM_ETC/ciphermilter.toml" <<EOF\n(.*?)\n   EOF\n', readme, re.S).group(1)
    variables = {**walkthrough_locations(readme), "QUEUE_DIR": QUEUE_DIRECTORY}
    text = re.sub(r"\$(\w+)", lambda m: variables[m.group(1)], re.sub(r"^   ", "", heredoc, flags=re.M))
    return tomllib.loads(text)


def test_the_readme_walkthrough_writes_the_example_values_at_debians_locations():
    written = walkthrough_configuration(README.read_text())
    example = tomllib.loads(example_text())

    assert written == {key: example[key] for key in written}
    assert set(written) == {"socket", "store", "user", "group", "umask", "pid_file"}


def man5_example() -> tuple[str, dict[str, object]]:
    """(the text before the example, the example) of ciphermilter.conf(5)'s EXAMPLES."""
    examples = page("ciphermilter.conf.5").read_text().partition(".SH EXAMPLES\n")[2].partition(".SH ")[0]
    intro, _, rest = examples.partition(".EX\n")
    return intro, tomllib.loads(rest.partition(".EE\n")[0].replace("\\-", "-"))


def flat(data: dict[str, object]) -> dict[str, object]:
    """Top-level keys and [limits] keys in one mapping (no key is in both)."""
    limits = data.get("limits", {})
    assert isinstance(limits, dict)
    return {**{key: value for key, value in data.items() if key != "limits"}, **limits}


def test_the_man5_example_is_the_example_file_but_for_the_choices_it_names():
    intro, sample = man5_example()
    example = tomllib.loads(re.sub(r"^# (\w+ = )", r"\1", example_text(), flags=re.M))  # commented keys too
    chosen = {key for key, value in flat(sample).items() if flat(example)[key] != value}

    assert chosen == {"internal_domains", "on_error", "max_message_size"}
    assert all(re.search(rf"^\.RB \( {key} ", intro, re.M) for key in chosen), intro


def test_the_man5_example_loads(tmp_path):
    path = tmp_path / "man5.toml"
    path.write_text(page("ciphermilter.conf.5").read_text().partition(".SH EXAMPLES\n")[2]
                    .partition(".EX\n")[2].partition(".EE\n")[0].replace("\\-", "-"))
    assert config.load(str(path)).settings.limits.max_message_size == 33554432


# --------------------------------------------------------------------------- Postfix and Debian's scanners


def milter_entries(text: str) -> list[str]:
    """The socket of each ``{ socket, default_action=... }`` entry of a smtpd_milters value."""
    value = re.search(r"smtpd_milters =\n((?:[ \t]+\{.*\n)+)", text).group(1)
    return re.findall(r"\{ (\S+), default_action=\w+ \}", value)


def test_the_readme_man8_and_the_snippet_list_the_same_milters():
    snippet = milter_entries(MAIN_CF.read_text())
    assert milter_entries(README.read_text()) == snippet
    man8 = re.sub(r"\\-", "-", page("ciphermilter.8").read_text())
    assert milter_entries(man8) == snippet[:3]
    ciphermilter = tomllib.loads(example_text())["socket"].removeprefix("unix:")
    assert f"unix:{os.path.relpath(ciphermilter, QUEUE_DIRECTORY)}" == snippet[1]


def debian_default(templates: str, name: str) -> str:
    return re.search(rf"^Template: {re.escape(name)}\nType: \w+\nDefault: (.*)$", templates, re.M).group(1)


def test_clamav_milter_listens_under_debians_own_name_moved_into_the_queue_directory():
    debian_socket = debian_default(CLAMAV_TEMPLATES.read_text(), "clamav-milter/MilterSocket")
    assert debian_socket == "/var/run/clamav/clamav-milter.ctl"
    clamav = milter_entries(MAIN_CF.read_text())[2]
    moved = f"{QUEUE_DIRECTORY}/{clamav.removeprefix('unix:')}"

    assert os.path.basename(moved) == os.path.basename(debian_socket)
    assert f"{{ {clamav}, default_action=tempfail }}" in MASTER_CF.read_text()
    readme = " ".join(README.read_text().split())
    assert f"``{debian_socket}``" in readme and f"``MilterSocket {moved}``" in readme
    assert "MilterSocket unix:$QUEUE_DIR/clamav/clamav-milter.ctl" in readme  # the walkthrough's


def readme_rspamd_local_worker_proxy() -> str:
    """What README.rst writes into /etc/rspamd/local.d/worker-proxy.inc."""
    match = re.search(r"echo '(bind_socket = [^']*)' \\\n\s+> /etc/rspamd/local\.d/worker-proxy\.inc", README.read_text())
    assert match, "no local.d/worker-proxy.inc in README.rst"
    return match.group(1) + "\n"


def proxy_worker(local_confdir: Path) -> str:
    """rspamd's own view of its proxy worker with Debian's configuration and ``local_confdir``."""
    dump = subprocess.run(["rspamadm", f"--var=LOCAL_CONFDIR={local_confdir}", "configdump", "-c", str(RSPAMD_CONF),
                           "worker"], capture_output=True, text=True, check=True, timeout=120).stdout
    return re.search(r"^rspamd_proxy \{\n(.*?)^\}", dump, re.S | re.M).group(1)


def test_debians_rspamd_milter_is_its_proxy_worker_as_the_readme_says(tmp_path):
    debian = proxy_worker(tmp_path)  # an empty local.d: Debian's configuration as shipped
    assert 'bind_socket = "localhost:11332";' in debian and "milter = true;" in debian
    assert re.search(r"^milter = yes;", RSPAMD_PROXY.read_text(), re.M)
    assert check.DEFAULT_PORTS["11332"] == "rspamd"  # `check` knows Debian's rspamd entry as it stands
    readme = " ".join(README.read_text().split())
    assert all(f"``{fact}``" in readme for fact in ('bind_socket = "localhost:11332"', "milter = yes",
                                                     "inet:localhost:11332", "/etc/rspamd/local.d/worker-proxy.inc"))


def test_the_readmes_local_worker_proxy_moves_rspamds_milter_to_the_snippets_socket(tmp_path):
    (tmp_path / "local.d").mkdir()
    (tmp_path / "local.d" / "worker-proxy.inc").write_text(readme_rspamd_local_worker_proxy())
    rspamd = milter_entries(MAIN_CF.read_text())[3].removeprefix("unix:")

    worker = proxy_worker(tmp_path)

    assert re.findall(r"bind_socket = \"(\S+)", worker) == [f"{QUEUE_DIRECTORY}/{rspamd}"]  # Debian's TCP one replaced
    assert "milter = true;" in worker
    assert f"install -d -o _rspamd -g postfix -m 0750 {os.path.dirname(f'{QUEUE_DIRECTORY}/{rspamd}')}" in README.read_text()


def test_the_systemd_unit_sets_the_example_umask():
    """systemd starts the daemon as its user with UMask=; the file's umask then applies the same mode."""
    unit = (ROOT / "systemd" / "ciphermilter.service").read_text()
    assert re.search(r"^UMask=(\d+)$", unit, re.M).group(1) == tomllib.loads(example_text())["umask"]
    assert config.load(str(EXAMPLE)).umask == config.DaemonConfig().umask


def test_the_example_textfile_directory_is_one_the_unit_lets_the_daemon_write_or_its_comment_says_how():
    """ProtectSystem=strict: the daemon writes only the unit's ReadWritePaths= and its StateDirectory=."""
    unit = (ROOT / "systemd" / "ciphermilter.service").read_text()
    writable = re.findall(r"^ReadWritePaths=(\S+)$", unit, re.M) + [
        "/var/lib/" + re.search(r"^StateDirectory=(\S+)$", unit, re.M).group(1)]
    assert re.search(r"^ProtectSystem=strict$", unit, re.M)
    line = re.search(r'^# prometheus_textfile = "([^"]+)"(.*)$', example_text(), re.M)
    assert os.path.dirname(line.group(1)) in writable or "ReadWritePaths=" in line.group(2)
