"""execution-environment.yml builds: `ansible-builder create` makes the context, and its galaxy
stage, replayed here without a container, installs the tarball `ansible-galaxy collection build`
made, by its real name; the builder stage's introspection finds no Python requirement of the
collection (none beyond ansible-core; the dev pins of requirements.txt never reach an EE)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import labkit

REPO = labkit.REPO


def ansible_builder() -> str:
    """ansible-builder from requirements.txt (make setup), or $ANSIBLE_BUILDER."""
    for candidate in (os.environ.get("ANSIBLE_BUILDER"), str(REPO / ".venv" / "bin" / "ansible-builder"),
                      shutil.which("ansible-builder")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("ansible-builder is not installed: run `make setup` (it is in requirements.txt), "
                "or point ANSIBLE_BUILDER at one")


def stage(containerfile: str, name: str) -> list[str]:
    """The instructions of one build stage (``FROM ... AS <name>``), continuation lines joined."""
    lines, inside = [], False
    for line in containerfile.replace("\\\n", " ").splitlines():
        if line.startswith("FROM "):
            inside = line.rstrip().endswith(f" AS {name}")
            continue
        if inside and line.strip() and not line.startswith("#"):
            lines.append(line.strip())
    assert lines, f"no stage {name} in the Containerfile:\n{containerfile}"
    return lines


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    """A copy of the EE definition with the built tarball next to it, and its build context."""
    work = tmp_path_factory.mktemp("ee")
    shutil.copy(REPO / "execution-environment.yml", work / "execution-environment.yml")
    tarball = labkit.build_collection(work)
    proc = subprocess.run([ansible_builder(), "create", "-f", "execution-environment.yml", "-c", "context",
                           "--output-filename", "Containerfile"], cwd=work, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return work, tarball


def replay(run: str, build_dir: Path, share: Path) -> subprocess.CompletedProcess:
    """One RUN instruction of the Containerfile, on this machine: /usr/share/ansible -> share."""
    command = run.removeprefix("RUN ").replace("/usr/share/ansible", str(share))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "SRE_"))}
    env.update(PATH=f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
               ANSIBLE_GALAXY_CLI_COLLECTION_OPTS="", ANSIBLE_GALAXY_CLI_ROLE_OPTS="", PYCMD=sys.executable,
               # only the image's path counts: a copy in ~/.ansible/collections must not make it "already installed"
               ANSIBLE_COLLECTIONS_PATH=str(share / "collections"))
    return subprocess.run(["/bin/sh", "-c", command.replace("$PYCMD", sys.executable)], cwd=build_dir, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_definition_pins_the_base_image_and_names_no_version():
    ee = yaml.safe_load((REPO / "execution-environment.yml").read_text())
    assert ee["version"] == 3
    image = ee["images"]["base_image"]["name"]
    # a digest, or a tag naming a release (a digit in it), never latest or a branch-like moving tag
    pinned = re.fullmatch(r"[^@]+@sha256:[0-9a-f]{64}", image) or re.fullmatch(r"[^@]+:[^:/@]*\d[^:/@]*", image)
    assert pinned and not image.endswith(":latest"), image
    # the tarball's version is galaxy.yml's, never written into the definition
    text = (REPO / "execution-environment.yml").read_text()
    assert labkit.galaxy_version() not in re.sub(r"#.*", "", text).replace(image, "")
    meta = yaml.safe_load((REPO / "meta" / "execution-environment.yml").read_text())
    assert meta["dependencies"] == {"python": "meta/ee-requirements.txt"}


def test_galaxy_stage_installs_the_built_tarball(context, tmp_path):
    work, tarball = context
    containerfile = (work / "context" / "Containerfile").read_text()
    build_dir = work / "context" / "_build"  # COPY _build /build, WORKDIR /build
    assert (build_dir / "collections" / tarball.name).is_file()
    share = tmp_path / "share"
    galaxy = stage(containerfile, "galaxy")
    workdir = galaxy.index("WORKDIR /build")
    assert galaxy.index("COPY _build /build") < workdir
    runs = [step for step in galaxy[workdir + 1:] if step.startswith("RUN ")]
    for run in runs:
        proc = replay(run, build_dir, share)
        assert proc.returncode == 0, f"{run}\n{proc.stdout}{proc.stderr}"
    manifest = json.loads((share / "collections" / "ansible_collections" / "sre" / "rollout" / "MANIFEST.json")
                          .read_text())
    assert manifest["collection_info"]["version"] == labkit.galaxy_version()
    assert tarball.name == f"sre-rollout-{labkit.galaxy_version()}.tar.gz"

    # the builder stage's introspection of what the galaxy stage installed
    [introspect] = [s for s in stage(containerfile, "builder") if "introspect.py introspect" in s]
    introspect = introspect.replace("/output/scripts/", f"{build_dir / 'scripts'}/").replace(
        "/tmp/src/", f"{tmp_path}/")
    proc = replay(introspect, build_dir, share)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "sre.rollout" not in proc.stdout, proc.stdout  # no Python requirement of the collection
    assert not (tmp_path / "requirements.txt").exists() or \
        (tmp_path / "requirements.txt").read_text().strip() == ""


def test_a_second_tarball_is_refused(context, tmp_path):
    """Two built tarballs next to the definition: the galaxy stage says so instead of guessing."""
    work, tarball = context
    build_dir = tmp_path / "build"
    shutil.copytree(work / "context" / "_build", build_dir)
    shutil.copy(tarball, build_dir / "collections" / "sre-rollout-0.0.1.tar.gz")
    galaxy = stage((work / "context" / "Containerfile").read_text(), "galaxy")
    [step] = [s for s in galaxy if s.startswith("RUN ") and "collections/sre-rollout-" in s]
    proc = replay(step, build_dir, tmp_path / "share")
    assert proc.returncode != 0
    assert "expected exactly one built sre.rollout tarball" in proc.stderr
