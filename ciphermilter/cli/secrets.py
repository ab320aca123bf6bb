"""Secrets on the command line: passwords and passphrases from an option, a file or a prompt, and the
private files an export writes.

A secret given as ``--password TEXT`` shows in the process list, so every
such option has a ``--password-file`` twin (first line of the file), and a
person at a terminal is asked instead; a script without either gets one
clear line, never a prompt that hangs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO, TypeVar

import click

from ciphermilter.cli.common import fail
from ciphermilter.store import masterkey

F = TypeVar("F", bound=Callable[..., object])


def secret_options(name: str, what: str) -> Callable[[F], F]:
    """``--NAME TEXT`` and ``--NAME-file FILE`` (first line of the file)."""
    def decorate(command: F) -> F:
        command = click.option(f"--{name}-file", f"{name}_file", type=click.File("r", encoding="utf-8"),
                               help=f"Read the {what} from the first line of this file.")(command)
        return click.option(f"--{name}", name, metavar="TEXT",
                            help=f"The {what} (visible in the process list: prefer --{name}-file).")(command)
    return decorate


def secret_value(value: str | None, file: IO[str] | None) -> str | None:
    if value is not None and file is not None:
        fail("give the secret as a value or as a file, not both")
    if file is not None:
        return file.readline().rstrip("\r\n")
    return value


def interactive() -> bool:
    return sys.stdin.isatty()


def required_secret(value: str | None, file: IO[str] | None, what: str) -> str:
    """A password that must be there: the option, else a prompt (interactive only), else an error."""
    given = secret_value(value, file)
    if given is None and interactive():
        given = str(click.prompt(what.capitalize(), hide_input=True, confirmation_prompt=True))
    if not given:
        fail(f"give the {what} (--password or --password-file)")
    return given


def write_private_file(path: str, data: bytes) -> None:
    try:
        masterkey.write_private_file(path, data)
    except FileExistsError:
        fail(f"{path} exists already; refusing to overwrite it")
    except OSError as exc:
        fail(f"cannot create {path}: {exc.strerror}")
