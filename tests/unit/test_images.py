"""What worker-image/Dockerfile promises, read from the file (no Docker here):
two targets from one runtime stage, a base pinned by tag and digest, a
non-root user that exists, no build tools or sources in the images, OCI
labels, and the same entry points the node agent plays locally.

tests/integration/test_images.py builds the virtualenv the way the build
stage does and runs both entry points."""

from __future__ import annotations

import re

import yaml

from tests._dockerfile import ROOT, parse

TARGETS = {"worker": "worker", "operator": "operator"}  # target -> default sub-command


def test_one_file_builds_a_worker_and_an_operator_image_from_one_runtime_stage() -> None:
    dockerfile = parse()
    names = [stage.name for stage in dockerfile.stages]
    assert names == ["build", "runtime", "operator", "worker"]  # worker last: the default
    for target, command in TARGETS.items():
        assert [s.name for s in dockerfile.chain(target)] == ["runtime", target]
        entrypoint = dockerfile.effective(target, "ENTRYPOINT")
        cmd = dockerfile.effective(target, "CMD")
        assert entrypoint is not None and cmd is not None
        assert entrypoint.words() == ["corral"]
        assert cmd.words() == [command]


def test_every_base_image_is_pinned_by_a_precise_tag_and_a_digest() -> None:
    dockerfile = parse()
    bases = {s.base for s in dockerfile.stages if s.base not in {t.name for t in dockerfile.stages}}
    assert bases, "no external base image"
    for base in bases:
        assert re.fullmatch(r"[a-z0-9./-]+:\d+\.\d+\.\d+-[a-z-]+@sha256:[0-9a-f]{64}", base), (
            f"{base} is not pinned by tag (with the patch version) and digest"
        )


def test_the_images_run_as_a_non_root_user_that_has_a_passwd_entry() -> None:
    dockerfile = parse()
    for target in TARGETS:
        user = dockerfile.effective(target, "USER")
        assert user is not None, f"{target}: no USER, so it would run as root"
        uid, _, gid = user.args.partition(":")
        assert uid.isdigit() and int(uid) != 0, f"{target}: USER {user.args}"
        assert gid.isdigit() and int(gid) != 0, f"{target}: USER {user.args}"
        created = " ".join(r.args for s in dockerfile.chain(target) for r in s.all("RUN"))
        # kopf calls getpass.getuser(), which needs the uid in /etc/passwd.
        assert re.search(rf"useradd\b.*--uid {uid}\b", created), f"{target}: no passwd entry"


def test_no_build_tools_or_sources_reach_the_images() -> None:
    dockerfile = parse()
    for target in TARGETS:
        for stage in dockerfile.chain(target):
            for copy in stage.all("COPY"):
                # Only the build stage's virtualenv, never the build context.
                assert copy.words() == ["--from=build", "/opt/corral", "/opt/corral"], copy
            for run in stage.all("RUN"):
                assert not re.search(
                    r"apt-get|apk |pip install|gcc|build-essential|-dev\b", run.args
                ), f"{target}: {run.args}"


def test_the_images_carry_oci_labels() -> None:
    dockerfile = parse()
    for target in TARGETS:
        labels = " ".join(i.args for s in dockerfile.chain(target) for i in s.all("LABEL"))
        for key in ("title", "description", "version", "revision", "created", "source",
                    "licenses", "base.name"):  # fmt: skip
            assert f"org.opencontainers.image.{key}=" in labels, f"{target}: no {key} label"
        assert f'org.opencontainers.image.title="corral-{target}"' in labels


def test_the_node_agent_plays_the_same_entry_points_as_the_images() -> None:
    dockerfile = parse()
    mapping = yaml.safe_load(
        (ROOT / "localplatform" / "corral_local" / "nodeagent" / "images.yaml").read_text()
    )["images"]
    for target, command in TARGETS.items():
        (entry,) = [e for e in mapping if e["match"] == f"*corral-{target}:*"]
        entrypoint = dockerfile.effective(target, "ENTRYPOINT")
        assert entrypoint is not None
        assert [part.rsplit("/", 1)[-1] for part in entry["entrypoint"]] == entrypoint.words()
        assert entry["cmd"] == [command]


def test_the_build_context_is_only_what_the_build_stage_copies() -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", "the context should start from nothing"
    copied = {
        word
        for instruction in parse().stage("build").all("COPY")
        for word in instruction.words()[:-1]
    }
    assert {rule.removeprefix("!") for rule in rules if rule.startswith("!")} == copied
