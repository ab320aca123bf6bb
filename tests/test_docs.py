"""The documentation cannot drift: man pages lint clean and name every config key, CLI command and
option and info header; the systemd unit verifies; the man pages are installed with the package."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ciphermilter import config
from ciphermilter.core import settings as settings_module
from ciphermilter.cli.main import main
from conftest import ROOT
from bench.shared import SHARED
from support.man import MAN, MAN_PAGES, page, rendered

SYSTEMD = ROOT / "systemd"
SPEC = SHARED / "spec" / "info-headers.md"
VENV_CIPHERMILTER = ROOT / ".venv" / "bin" / "ciphermilter"
# info.add("Name", ...), self.info.flag("Name"), info.boolean(NAME_CONSTANT, ...)
INFO_CALL = re.compile(r"\binfo\.(?:add|flag|boolean)\(\s*(?:\"([A-Za-z0-9-]+)\"|([A-Za-z_][A-Za-z0-9_.]*))")


def section(text: str, title: str) -> str:
    """The lines of one top-level section (``NAME``, ``OPTIONS``, ...) of a rendered page."""
    match = re.search(rf"^{re.escape(title)}\n(.*?)(?=^\S)", text, re.S | re.M)
    assert match, f"no section {title}"
    return match.group(1)


# --------------------------------------------------------------------------- lint


def test_there_is_a_page_for_each_part():
    assert [p.relative_to(MAN).as_posix() for p in MAN_PAGES] == [
        "man1/ciphermilter.1", "man5/ciphermilter.conf.5", "man7/ciphermilter-headers.7", "man8/ciphermilter.8"]


@pytest.mark.parametrize("man_page", MAN_PAGES, ids=lambda p: p.name)
def test_mandoc_lint_is_clean(man_page):
    result = subprocess.run(["mandoc", "-Tlint", "-W", "all", str(man_page)], capture_output=True, text=True)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize("man_page", MAN_PAGES, ids=lambda p: p.name)
def test_groff_has_no_warning(man_page):
    result = subprocess.run(["groff", "-ww", "-z", "-man", str(man_page)], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")


def test_pages_install_with_the_package():
    with open(ROOT / "pyproject.toml", "rb") as fh:
        data_files = tomllib.load(fh)["tool"]["setuptools"]["data-files"]
    installed = sorted(f for files in data_files.values() for f in files)
    assert installed == [p.relative_to(ROOT).as_posix() for p in MAN_PAGES]
    for target, files in data_files.items():
        assert all(target == f"share/man/{Path(f).parent.name}" for f in files)


# --------------------------------------------------------------------------- configuration keys


def config_keys() -> list[str]:
    daemon = [f.name for f in dataclasses.fields(config.DaemonConfig) if f.name != "settings"]
    settings = [f.name for f in dataclasses.fields(settings_module.Settings) if f.name != "limits"]
    return daemon + settings + [f.name for f in dataclasses.fields(settings_module.Limits)]


@pytest.mark.parametrize("key", config_keys())
def test_every_config_key_has_its_entry(key):
    source = page("ciphermilter.conf.5").read_text()
    entry = re.search(rf"^\.TP\n\.B {re.escape(key)}\n(.*?)(?=^\.(?:TP|SH)\b)", source, re.S | re.M)
    assert entry, f"no .TP entry for {key} in ciphermilter.conf.5"
    assert re.search(r"default", entry.group(1), re.I), f"the entry for {key} gives no default"


# --------------------------------------------------------------------------- the command line


def leaf_commands(group: click.Group = main, path: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


def long_options(command: click.Command) -> list[str]:
    names = []
    for param in command.params:
        if isinstance(param, click.Option):
            names += [o for o in (*param.opts, *param.secondary_opts) if o.startswith("--") and o != "--help"]
    return names


def command_entry(text: str, command: str) -> str:
    """The .TP entry of ``command`` in the rendered COMMANDS section: its tag line and its text."""
    commands = section(text, "COMMANDS")
    match = re.search(rf"^ {{7}}{re.escape(command)}\b.*?(?=^ {{3,7}}\S|\Z)", commands, re.S | re.M)
    assert match, f"no entry for '{command}' in ciphermilter.1"
    return match.group(0)


@pytest.mark.parametrize("command", [name for name, _ in leaf_commands()])
def test_every_command_and_option_is_in_ciphermilter_1(command):
    entry = command_entry(rendered(page("ciphermilter.1")), command)
    missing = [option for option in long_options(dict(leaf_commands())[command]) if option not in entry]
    assert not missing, f"'{command}' entry lacks {missing}"


def test_global_options_are_in_ciphermilter_1_and_8():
    global_options = section(rendered(page("ciphermilter.1")), "GLOBAL OPTIONS")
    daemon_options = section(rendered(page("ciphermilter.8")), "OPTIONS")
    for option in long_options(main):
        assert option in global_options and option in daemon_options


def test_run_options_are_in_ciphermilter_8():
    daemon_options = section(rendered(page("ciphermilter.8")), "OPTIONS")
    assert all(option in daemon_options for option in long_options(main.commands["run"]))


def test_every_listing_offers_json():
    listings = [name for name, _ in leaf_commands() if name.split()[-1] in ("list", "show", "info", "check", "stats")]
    assert len(listings) == 7
    assert all("--json" in long_options(dict(leaf_commands())[name]) for name in listings)


@pytest.mark.parametrize("command", [name for name, _ in leaf_commands()])
def test_every_command_shows_examples_in_its_help(command):
    help_text = CliRunner().invoke(main, [*command.split(), "--help"]).output
    examples = help_text.partition("Examples:\n")[2].partition("\n\n")[0].splitlines()
    assert examples and all(line.strip().startswith("ciphermilter ") for line in examples), help_text


def test_shell_completion_is_documented_as_click_provides_it():
    completion = section(rendered(page("ciphermilter.1")), "SHELL COMPLETION")
    assert 'eval "$(_CIPHERMILTER_COMPLETE=bash_source ciphermilter)"' in completion
    script = subprocess.run([str(VENV_CIPHERMILTER)], env={**os.environ, "_CIPHERMILTER_COMPLETE": "bash_source"},
                            capture_output=True, text=True, check=True).stdout
    assert "_ciphermilter_completion" in script


# --------------------------------------------------------------------------- info headers


def spec_headers() -> set[str]:
    """Every header name in the tables of the info header contract."""
    return set(re.findall(r"^\| ([A-Z][A-Za-z0-9-]+) \|", SPEC.read_text(), re.M)) - {"header"}


def source_headers() -> set[str]:
    """Every header name the code passes to InfoHeaders, constants resolved through their module."""
    import importlib

    names = set()
    for path in sorted((ROOT / "ciphermilter").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for literal, constant in INFO_CALL.findall(path.read_text()):
            if literal:
                names.add(literal)
            elif constant != "problem.value":
                value = importlib.import_module(module)
                for attribute in constant.split("."):
                    value = getattr(value, attribute)
                names.add(value)
    from ciphermilter.formats.smime.findings import Problem  # the S/MIME handler writes each through its Problem

    return names | {problem.value for problem in Problem}


def test_the_header_lists_are_complete():
    assert len(spec_headers()) == 25  # the contract's two tables
    assert {"Not-Processed", "PGP-Decryption-Failed", "PGP-Decryption-Withheld"} <= source_headers()


@pytest.mark.parametrize("name", sorted(spec_headers() | source_headers()))
def test_every_info_header_is_documented(name):
    text = rendered(page("ciphermilter-headers.7"))
    assert re.search(rf"^ {{7}}X-CipherMail-Info-{re.escape(name)}(-INDEX)?(-LEVEL)?$", text, re.M), name


def trust_reasons() -> set[str]:
    """Every Signer-Trusted-Info value the code can write."""
    from ciphermilter.formats.smime import trust

    validity = {f"{what} {problem}" for what in ("certificate", "issuer certificate")
                for problem in ("expired", "not yet valid")}
    return ({reason for _, reason in trust._ERROR_REASONS} | validity
            | {trust.NO_ANCHOR, trust.NAME_CONSTRAINTS, trust.INVALID_PATH, trust.ISSUER_USAGE, trust.SIGNING_USAGE,
               trust.EMAIL_PURPOSE, "unreadable certificate", "signer certificate not found"})


@pytest.mark.parametrize("reason", sorted(trust_reasons()))
def test_every_trust_reason_is_documented_beside_its_header(reason):
    entry = rendered(page("ciphermilter-headers.7")).partition("X-CipherMail-Info-Signer-Trusted-Info-")[2]
    assert reason in " ".join(entry.partition("X-CipherMail-Info-Signer-Mismatch")[0].split())


@pytest.mark.parametrize("reason", ["public key not found", "signer key not imported by an administrator"])
def test_signer_key_reasons_are_documented_beside_their_header(reason):
    from ciphermilter.formats.openpgp import engine as openpgp

    assert reason in (openpgp.KEY_NOT_FOUND, openpgp.KEY_NOT_IMPORTED)
    entry = rendered(page("ciphermilter-headers.7")).partition("X-CipherMail-Info-PGP-Signature-Failure")[2]
    assert reason in " ".join(entry.partition("X-CipherMail-Info-PGP-Signer-Email")[0].split())


# --------------------------------------------------------------------------- systemd


def unit_for_this_checkout(tmp_path) -> Path:
    """The unit with ExecStart pointing at this checkout's virtualenv (verify checks that it exists)."""
    text = (SYSTEMD / "ciphermilter.service").read_text()
    text, count = re.subn(r"^ExecStart=\S+", f"ExecStart={VENV_CIPHERMILTER}", text, flags=re.M)
    assert count == 1
    unit = tmp_path / "ciphermilter.service"
    unit.write_text(text)
    return unit


def verify(unit: Path) -> subprocess.CompletedProcess:
    # MANPATH makes the Documentation= man pages resolve from this checkout's man/
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                          env={**os.environ, "MANPATH": str(MAN)})


def test_systemd_unit_verifies(tmp_path):
    result = verify(unit_for_this_checkout(tmp_path))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_systemd_verify_catches_a_missing_man_page(tmp_path):
    unit = unit_for_this_checkout(tmp_path)
    unit.write_text(unit.read_text().replace("man:ciphermilter(8)", "man:ciphermilter-nonexistent(8)"))
    result = verify(unit)
    assert result.returncode != 0 and "ciphermilter-nonexistent(8)" in result.stderr


def test_unit_user_directories_and_example_configuration_agree():
    unit = (SYSTEMD / "ciphermilter.service").read_text()
    sysusers = (SYSTEMD / "ciphermilter.sysusers").read_text()
    tmpfiles = (SYSTEMD / "ciphermilter.tmpfiles").read_text()
    example = tomllib.loads((ROOT / "postfix" / "ciphermilter.toml.example").read_text())
    user = re.search(r"^User=(\S+)$", unit, re.M).group(1)
    assert re.search(rf"^u {user} ", sysusers, re.M)
    socket_dir = os.path.dirname(example["socket"].removeprefix("unix:"))
    assert re.search(rf"^d {socket_dir} 0750 {user} {user} -$", tmpfiles, re.M)
    assert f"ReadWritePaths={socket_dir}" in unit
    state = "/var/lib/" + re.search(r"^StateDirectory=(\S+)$", unit, re.M).group(1)
    runtime = "/run/" + re.search(r"^RuntimeDirectory=(\S+)$", unit, re.M).group(1)
    assert os.path.dirname(example["store"]) == state
    assert os.path.dirname(example["pid_file"]) == runtime
    documentation = re.search(r"^Documentation=(.*)$", unit, re.M).group(1).split()
    assert sorted(documentation) == sorted(f"man:{p.stem}({p.suffix[1:]})" for p in MAN_PAGES)


# --------------------------------------------------------------------------- README's operations chapter

# How the chapter spells the CLI: `cm` (runuser ... ciphermilter --config ...), the installed path, the variable.
CLI_SPELLINGS = ("cm", "ciphermilter", '"$CIPHERMILTER"', "/opt/ciphermilter/bin/ciphermilter")
GLOBAL_VALUE_OPTIONS = {"--config", "--store", "--master-key"}
CRON_FIELDS = re.compile(r"^[\d*][\d*/,-]*(?:\s+[\d*][\d*/,-]*){4}\s+\S+\s+")  # m h dom mon dow user
SHELL_SEPARATOR = re.compile(r"&&|\|\||[|;]|\s#|\s[12]?>")  # the redirections too: not the command's words


def indentation(line: str) -> int:
    return len(line) - len(line.lstrip())


def code_lines(text: str) -> list[str]:
    """The lines of the literal blocks (``::``) and code blocks (``.. code-block::``) of RST ``text``."""
    code, block_indent = [], None
    for line in text.splitlines():
        if block_indent is not None and line.strip() and indentation(line) <= block_indent:
            block_indent = None
        if block_indent is not None and line.strip():
            code.append(line.strip())
        elif line.rstrip().endswith("::") or line.strip().startswith(".. code-block::"):
            block_indent = indentation(line)
    return code


def shell_lines(text: str) -> list[str]:
    """Every line of the chapter's code blocks and every inline literal, whitespace folded: where commands are."""
    literals = [" ".join(literal.split()) for literal in re.findall(r"``(.+?)``", text, re.S)]
    return literals + code_lines(text)


def cli_invocations(text: str) -> list[list[str]]:
    """The words of every ciphermilter command in ``text`` that stands where a shell runs a command."""
    found = []
    for line in shell_lines(text):
        line = re.sub(r"\$\([^()]*\)", "X", CRON_FIELDS.sub("", line))  # $(date +%F) is one argument
        for segment in SHELL_SEPARATOR.split(line):
            words = segment.split()
            if words[:1] == ["runuser"] and "--" in words:
                words = words[words.index("--") + 1:]
            if words and words[0] in CLI_SPELLINGS and len(words) > 1 and not words[1].startswith('"$@'):
                found.append(words[1:])
    return found


def resolve_invocation(words: list[str]) -> tuple[tuple[str, ...], click.Command, list[str]]:
    """(command path, its click command, the long options given) of one invocation's words."""
    command: click.Command = main
    path: list[str] = []
    options: list[str] = []
    rest = iter(words)
    for word in rest:
        if word in GLOBAL_VALUE_OPTIONS and command is main:
            next(rest)
        elif word.startswith("--"):
            options.append(word.partition("=")[0])
        elif isinstance(command, click.Group) and not word.startswith("-"):
            assert word in command.commands, f"'{' '.join(words)}': no command {word!r} in {' '.join(path) or 'ciphermilter'}"
            command = command.commands[word]
            path.append(word)
    return tuple(path), command, options


def operations_invocations() -> list[list[str]]:
    readme = (ROOT / "README.rst").read_text()
    chapter = readme.partition("\nOperations\n==========\n")[2].partition("\nThe info headers\n=====")[0]
    return [list(words) for words in dict.fromkeys(tuple(words) for words in cli_invocations(chapter))]


def test_the_operations_chapter_runs_many_commands():
    paths = {" ".join(resolve_invocation(words)[0]) for words in operations_invocations()}
    assert {"store backup", "store restore", "store info", "keys import", "keys export", "keys remove", "keys bind",
            "keys list", "decrypt", "check"} <= paths, paths


def test_a_misspelt_command_or_option_is_found():
    with pytest.raises(AssertionError, match="no command 'restor'"):
        resolve_invocation(["store", "restor", "x.db"])
    path, command, options = resolve_invocation(["--config", "x", "keys", "export", "ID", "--formt", "pem"])
    assert path == ("keys", "export") and "--formt" not in long_options(command) and options == ["--formt"]


@pytest.mark.parametrize("words", operations_invocations(), ids=" ".join)
def test_every_command_of_the_operations_chapter_is_a_real_command_with_real_options(words):
    path, command, options = resolve_invocation(words)
    assert not isinstance(command, click.Group), f"'{' '.join(words)}' names a group, not a command"
    assert set(options) <= set(long_options(command)) | set(long_options(main)), (options, long_options(command))
    result = subprocess.run([str(VENV_CIPHERMILTER), *path, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith(f"Usage: ciphermilter {' '.join(path)} ")


def _exposed_metrics() -> set[str]:
    """Every metric name the exporter writes, with a store probed and a key that expires."""
    from ciphermilter.daemon import stats
    counters = stats.Counters()
    counters.store = {"reachable": True, "earliest_key_expiry": 1.0}
    return set(re.findall(r"^# TYPE (\S+)", stats.prometheus(counters.snapshot()), re.MULTILINE))


def test_the_readme_names_only_metrics_and_results_the_daemon_has():
    """The operations chapter's monitoring advice (alerts, greps) names real metrics and result words."""
    from ciphermilter.core.result import Result
    readme = (ROOT / "README.rst").read_text()
    named = {re.sub(r"_(bucket|count|sum)$", "", name) for name in re.findall(r"ciphermilter_\w+", readme)}
    assert named and named <= _exposed_metrics(), named - _exposed_metrics()
    words = set(re.findall(r"result=([a-z-]+)", readme))
    assert words and words <= {result.value for result in Result}, words - {result.value for result in Result}
