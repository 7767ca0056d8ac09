"""docs/metrics.md as data, and a check of a real `/metrics` page against it.

Used by the integration tier (a real `corral worker`) and the e2e tier (a real
`corral operator`): every metric the doc lists for that process must be
exported with its type and labels, and every `corral_*` metric the process
exports must be in the doc.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

DOC = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
_ROW = re.compile(r"^\| `(corral_[a-z0-9_]+)` \| (\w+) \| ([^|]*) \| (\w+) \| (.+) \|$")
# Samples a histogram family carries besides its own labels.
_HISTOGRAM_LABELS = {"le"}


@dataclass(frozen=True)
class Documented:
    name: str  # as queried: counters with _total, histograms without _bucket
    type: str  # counter, gauge, histogram
    labels: frozenset[str]
    source: str  # worker or operator

    @property
    def family(self) -> str:
        """The family name prometheus-client's parser reports."""
        return self.name.removesuffix("_total") if self.type == "counter" else self.name


def documented(source: str | None = None) -> list[Documented]:
    """The rows of the metrics table, optionally only those of one process."""
    rows = []
    for line in DOC.read_text().splitlines():
        match = _ROW.match(line)
        if match is None:
            continue
        name, kind, labels, origin, _meaning = match.groups()
        names = frozenset(re.findall(r"`(\w+)`", labels))
        rows.append(Documented(name, kind, names, origin))
    assert rows, f"no metric rows found in {DOC}"
    return [row for row in rows if source is None or row.source == source]


def problems(exposition: str, source: str) -> list[str]:
    """What is wrong between a /metrics page and the doc's rows for `source`."""
    families = {family.name: family for family in text_string_to_metric_families(exposition)}
    wanted = documented(source)
    found: list[str] = []
    for row in wanted:
        family = families.get(row.family)
        if family is None:
            found.append(f"{row.name}: documented, not exported")
            continue
        if family.type != row.type:
            found.append(f"{row.name}: documented as {row.type}, exported as {family.type}")
        for sample in family.samples:
            labels = set(sample.labels) - (_HISTOGRAM_LABELS if row.type == "histogram" else set())
            if labels != row.labels:
                found.append(
                    f"{sample.name}: labels {sorted(labels)}, documented {sorted(row.labels)}"
                )
                break
    known = {row.family for row in wanted}
    found += [
        f"{name}: exported, not in docs/metrics.md"
        for name in sorted(families)
        if name.startswith("corral_") and name not in known
    ]
    return found


def samples(exposition: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample called `name`: sorted label pairs -> value."""
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name
    }
