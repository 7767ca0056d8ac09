"""worker-image/Dockerfile as data: its stages and their instructions.

Just enough of Dockerfile syntax for the image tests (unit: what the file
promises; integration: building its virtualenv the way the build stage does):
comments, line continuations, global ARG defaults, `FROM x AS name`, and JSON
or shell forms. Not a general parser.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "worker-image" / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: RUN, COPY, USER...
    args: str  # the rest of the (joined) line

    def words(self) -> list[str]:
        """JSON form as a list, shell form split like a shell would."""
        if self.args.startswith("["):
            value: list[str] = json.loads(self.args)
            return value
        return shlex.split(self.args)


@dataclass
class Stage:
    base: str  # FROM's image or stage name, ARGs expanded
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    args: dict[str, str]  # ARGs declared before the first FROM, with defaults
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        (found,) = [s for s in self.stages if s.name == name]
        return found

    def chain(self, name: str) -> list[Stage]:
        """The stage and the stages it is built FROM, base first."""
        stages = [self.stage(name)]
        names = {s.name for s in self.stages}
        while stages[0].base in names:
            stages.insert(0, self.stage(stages[0].base))
        return stages

    def effective(self, name: str, keyword: str) -> Instruction | None:
        """The instruction of that kind in force in the image of stage `name`."""
        found = [i for s in self.chain(name) for i in s.all(keyword)]
        return found[-1] if found else None

    def env(self, name: str) -> dict[str, str]:
        """ENV of the image of stage `name` (KEY=VALUE form only)."""
        env: dict[str, str] = {}
        for stage in self.chain(name):
            for instruction in stage.all("ENV"):
                for word in instruction.words():
                    key, _, value = word.partition("=")
                    env[key] = value
        return env


def _lines(text: str) -> list[str]:
    joined: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    if current:
        joined.append(current)
    return joined


def parse(path: Path = DOCKERFILE) -> Dockerfile:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), re.sub(r"\s+", " ", rest.strip())
        if keyword == "FROM":
            words = rest.split()
            base = re.sub(
                r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], words[0]
            )
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages and keyword == "ARG":
            key, _, default = rest.partition("=")
            args[key] = default
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, rest))
    return Dockerfile(args, stages)
