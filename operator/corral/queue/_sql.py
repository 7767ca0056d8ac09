"""Loads corral's SQL from the `.sql` files beside this module.

`queries.sql` holds named blocks (`-- name: claim_v1`); `migrations/` holds the
ordered schema changes. Everything in `corral.queue` that talks to
PostgreSQL reads its statements from here, once per process.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import LiteralString

_NAME = re.compile(r"^--\s*name:\s*([a-z][a-z0-9_]*)\s*$")
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class SqlFileError(ValueError):
    """A `.sql` file shipped with corral is malformed (a packaging bug)."""


def parse_named_queries(text: str, *, source: str = "queries.sql") -> dict[str, str]:
    """Split `text` into `{name: statement}` at `-- name: NAME` lines.

    Comment lines directly under a name line are kept (they document the
    query); a name used twice or a block without a statement is an error.
    """
    queries: dict[str, list[str]] = {}
    current: str | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        match = _NAME.match(line.strip())
        if match:
            current = match.group(1)
            if current in queries:
                raise SqlFileError(f"{source}:{lineno}: query {current!r} is defined twice")
            queries[current] = []
        elif current is not None:
            queries[current].append(line)
        elif line.strip() and not line.strip().startswith("--"):
            raise SqlFileError(f"{source}:{lineno}: SQL before the first '-- name:' line")
    result: dict[str, str] = {}
    for name, lines in queries.items():
        body = "\n".join(lines).strip()
        statement = "\n".join(
            line for line in body.splitlines() if not line.strip().startswith("--")
        ).strip()
        if not statement:
            raise SqlFileError(f"{source}: query {name!r} has no statement")
        result[name] = body.rstrip().rstrip(";")
    return result


def _read(name: str) -> str:
    return (
        resources.files("corral.queue").joinpath("sql").joinpath(name).read_text(encoding="utf-8")
    )


@functools.cache
def _queries() -> dict[str, str]:
    return parse_named_queries(_read("queries.sql"))


def query(name: str) -> LiteralString:
    """The statement named `name` in queries.sql (KeyError names the missing query)."""
    try:
        text = _queries()[name]
    except KeyError:
        raise KeyError(f"queries.sql has no query named {name!r}") from None
    # The text comes from a file shipped in the package, never from user input.
    return text


def privileges_sql() -> str:
    """The roles and grants (`sql/privileges.sql`), re-applied by every migrate."""
    return _read("privileges.sql")


_REPLACES = re.compile(r"^--\s*replaces:\s*(\d{4})-(\d{4})\s*$")


@dataclass(frozen=True)
class Migration:
    """One file of `sql/migrations/`.

    A squash (`0010_baseline.sql`) starts with `-- replaces: 0001-0010`: it
    stands for those versions, which a database migrated before the squash
    has recorded one by one. `covers` is every version it answers for,
    its own included.
    """

    version: int
    name: str
    sql: str

    @property
    def covers(self) -> frozenset[int]:
        first_line = self.sql.split("\n", 1)[0].strip()
        match = _REPLACES.match(first_line)
        if not match:
            return frozenset({self.version})
        low, high = int(match.group(1)), int(match.group(2))
        if not low <= self.version == high:
            raise SqlFileError(
                f"migration {self.version:04d}_{self.name}: '-- replaces: {low:04d}-{high:04d}'"
                f" must end at its own version {self.version:04d}"
            )
        return frozenset(range(low, high + 1))

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def parse_migration_names(names: list[str]) -> list[tuple[int, str, str]]:
    """Order migration file names by version; reject malformed or duplicate versions."""
    found: dict[int, tuple[int, str, str]] = {}
    for filename in names:
        if not filename.endswith(".sql"):
            continue
        match = _MIGRATION_FILE.match(filename)
        if not match:
            raise SqlFileError(
                f"migration file {filename!r} must be named NNNN_lower_snake_name.sql"
            )
        version = int(match.group(1))
        if version in found:
            raise SqlFileError(
                f"two migrations share version {version:04d}: "
                f"{found[version][2]!r} and {filename!r}"
            )
        found[version] = (version, match.group(2), filename)
    return [found[v] for v in sorted(found)]


@functools.cache
def migrations() -> tuple[Migration, ...]:
    """Every migration shipped with corral, in version order."""
    folder = resources.files("corral.queue").joinpath("sql").joinpath("migrations")
    names = [entry.name for entry in folder.iterdir()]
    return tuple(
        Migration(version, name, folder.joinpath(filename).read_text(encoding="utf-8"))
        for version, name, filename in parse_migration_names(names)
    )
