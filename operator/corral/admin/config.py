"""Named database contexts for the admin commands, kubectl-style: `corral
config set-context|use-context|delete-context|get-contexts|view`.

Registered in `corral/cli.py` (`_COMMANDS`). The contexts live in
`$XDG_CONFIG_HOME/corral/config.toml` (else `~/.config/corral/config.toml`),
written with mode 0600 in a 0700 directory since the URLs may hold
passwords; nothing here prints one unmasked. `corral.admin.cli` reads the
current context (`current_database_url`) when a command gets neither
`--database-url` nor `CORRAL_DATABASE_URL`.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from corral.admin._output import emit
from corral.admin.cli import _CONTEXT, _BadInput, _handled, _NotFound, _output_option
from corral.queue.dsn import ENV_VAR, DsnError, check_dsn, mask_dsn

__all__ = [
    "Contexts",
    "config",
    "config_path",
    "current_context",
    "current_database_url",
    "read",
    "write",
]

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")
_CURRENT, _CONTEXTS, _URL = "current-context", "contexts", "database-url"
_HEADER = (
    "# corral's admin contexts (`corral config --help`). Keep this file private (mode 0600):\n"
    "# its database URLs may hold passwords.\n"
)


def config_path() -> Path:
    """Where the contexts live: $XDG_CONFIG_HOME/corral, else ~/.config/corral."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "corral" / "config.toml"


@dataclass
class Contexts:
    current: str | None = None
    urls: dict[str, str] = field(default_factory=dict)  # context name -> database URL


def read(path: Path) -> Contexts:
    """The file's contexts (none when it does not exist); DsnError names the
    file and what is wrong in it."""
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        return Contexts()
    except OSError as exc:
        raise DsnError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise DsnError(f"{path} is not valid TOML ({exc}): fix or delete it") from None
    unknown = set(document) - {_CURRENT, _CONTEXTS}
    if unknown:
        raise DsnError(f"{path}: unknown key {sorted(unknown)[0]!r}; the keys are {_CURRENT!r} "
                       f"and [{_CONTEXTS}.NAME] tables")  # fmt: skip
    contexts = Contexts(current=document.get(_CURRENT))
    tables = document.get(_CONTEXTS, {})
    if not isinstance(tables, dict):
        raise DsnError(f"{path}: {_CONTEXTS!r} must be tables such as [{_CONTEXTS}.prod]")
    for name, table in tables.items():
        if not isinstance(table, dict) or not isinstance(table.get(_URL), str):
            raise DsnError(f'{path}: context {name!r} needs {_URL} = "postgresql://..."')
        extra = set(table) - {_URL}
        if extra:
            raise DsnError(f"{path}: context {name!r}: unknown key {sorted(extra)[0]!r}; "
                           f"the only key is {_URL!r}")  # fmt: skip
        contexts.urls[name] = table[_URL]
    return contexts


def write(path: Path, contexts: Contexts) -> None:
    """Replace the file at once (a temporary file renamed over it), mode 0600."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lines = [_HEADER]
    if contexts.current is not None:
        lines.append(f"{_CURRENT} = {_toml_string(contexts.current)}\n")
    for name in sorted(contexts.urls):
        lines.append(f"\n[{_CONTEXTS}.{_toml_string(name)}]\n")
        lines.append(f"{_URL} = {_toml_string(contexts.urls[name])}\n")
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".config.", suffix=".toml")
    try:
        with os.fdopen(fd, "w") as handle:  # mkstemp creates it 0600
            handle.write("".join(lines))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _toml_string(text: str) -> str:
    # A JSON string without ASCII escaping is a valid TOML basic string.
    return json.dumps(text, ensure_ascii=False)


def current_context() -> tuple[str, str] | None:
    """The current context's name and URL, or None when no context is current."""
    path = config_path()
    contexts = read(path)
    if contexts.current is None:
        return None
    url = contexts.urls.get(contexts.current)
    if url is None:
        fix = (
            f"run `corral config use-context NAME` with one of: {', '.join(sorted(contexts.urls))}"
            if contexts.urls
            else "no contexts yet: corral config set-context NAME --database-url URL"
        )
        raise DsnError(f"{path}: the current context {contexts.current!r} does not exist; {fix}")
    _warn_if_shared(path)
    return contexts.current, url


def current_database_url() -> str | None:
    """The current context's URL, or None when no context is current."""
    current = current_context()
    return None if current is None else current[1]


def _warn_if_shared(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        click.echo(
            f"warning: {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`",
            err=True,
        )


def _checked_name(name: str) -> str:
    if not _NAME.match(name):
        raise _BadInput(
            f"context name {name!r} may only use letters, digits and _ . - (1 to 63 characters)"
        )
    return name


@click.group(context_settings=_CONTEXT)
def config() -> None:
    """Named database contexts for the admin commands (like kubectl's).

    \b
    The admin commands take their database URL from:
      1. --database-url
      2. the CORRAL_DATABASE_URL environment variable
      3. the current context, in $XDG_CONFIG_HOME/corral/config.toml
         (else ~/.config/corral/config.toml), written with mode 0600
    """


@config.command("set-context")
@click.argument("name")
@click.option("--database-url", required=True, metavar="URL", help="PostgreSQL URL or conninfo.")
@_handled
def set_context(name: str, database_url: str) -> None:
    """Create context NAME, or change its database URL. The first context
    becomes the current one; `use-context` switches."""
    _checked_name(name)
    try:
        check_dsn(database_url)
    except DsnError as exc:
        raise _BadInput(f"--database-url: {exc}") from None
    path = config_path()
    contexts = read(path)
    verb = "modified" if name in contexts.urls else "created"
    contexts.urls[name] = database_url
    if contexts.current is None:
        contexts.current = name
    write(path, contexts)
    click.echo(f'context "{name}" {verb} in {path}')


def _existing(name: str) -> tuple[Path, Contexts]:
    """The file and its contexts, NAME among them (else exit 3 saying how to
    create it)."""
    path = config_path()
    contexts = read(path)
    if name not in contexts.urls:
        known = ", ".join(sorted(contexts.urls)) or "none yet"
        raise _NotFound(f"no context {name!r} in {path} (contexts: {known}); create it with "
                        f"`corral config set-context {name} --database-url URL`")  # fmt: skip
    return path, contexts


@config.command("use-context")
@click.argument("name")
@_handled
def use_context(name: str) -> None:
    """Make NAME the context the admin commands use."""
    path, contexts = _existing(name)
    contexts.current = name
    write(path, contexts)
    click.echo(f'switched to context "{name}"')


@config.command("delete-context")
@click.argument("name")
@_handled
def delete_context(name: str) -> None:
    """Forget context NAME (if it was current, no context is)."""
    path, contexts = _existing(name)
    del contexts.urls[name]
    if contexts.current == name:
        contexts.current = None
    write(path, contexts)
    click.echo(f'deleted context "{name}" from {path}')


@config.command("get-contexts")
@_output_option
@_handled
def get_contexts(output: str) -> None:
    """List the contexts; * marks the current one. Passwords are masked."""
    contexts = read(config_path())
    records = [
        {"name": name, "current": name == contexts.current, _URL: mask_dsn(url)}
        for name, url in sorted(contexts.urls.items())
    ]
    rows = [["*" if r["current"] else "", r["name"], r[_URL]] for r in records]
    emit(output, records, ["CURRENT", "NAME", "DATABASE-URL"], rows)


@config.command("view")
@click.option(
    "-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml",
    help="Output format.",
)  # fmt: skip
@_handled
def view(output: str) -> None:
    """Show the contexts file, passwords masked, and where the URL of the
    next admin command will come from."""
    path = config_path()
    contexts = read(path)
    if os.environ.get(ENV_VAR):
        source = f"{ENV_VAR} (overrides the current context)"
    elif contexts.current is not None:
        source = f"context {contexts.current}"
    else:
        source = "none: pass --database-url, set CORRAL_DATABASE_URL or use a context"
    document: dict[str, Any] = {
        "file": str(path),
        _CURRENT: contexts.current,
        _CONTEXTS: [{"name": n, _URL: mask_dsn(u)} for n, u in sorted(contexts.urls.items())],
        "database-url-from": source,
    }
    emit(output, document, [], [])
