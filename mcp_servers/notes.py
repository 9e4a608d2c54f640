"""The ``notes`` MCP server: read, write, list and search text notes confined to one root folder.

Every path is relative to the root; absolute paths, ``..`` components and symlinks that lead out of the
root are refused, as are files larger than the limits below. Run: ``python -m tierflow.mcp_servers.notes --root DIR``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import stat
from pathlib import Path, PurePosixPath, PureWindowsPath

from mcp.server.fastmcp import FastMCP

from tierflow.mcp_servers.serve import add_serve_arguments, serve_from_args
from tierflow.runtimes.errors import TierflowError

MAX_NOTE_CHARS = 100_000
MAX_PATH_CHARS = 300
MAX_NAME_BYTES = 200  # below the file system's 255, leaving room for the temp file's prefix and suffix
MAX_LISTED = 500
MAX_QUERY_CHARS = 200
MAX_MATCHES = 50


class NotesPathError(TierflowError, ValueError):
    """A path that is empty, absolute, climbs out of the root, or leads outside it through a symlink."""


class NotesRoot:
    """Path confinement and file operations under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def resolve(self, path: str) -> Path:
        """The real path of ``path`` under the root; raises NotesPathError for anything that escapes it."""
        if not isinstance(path, str) or not path.strip():
            raise NotesPathError("path is empty")
        if len(path) > MAX_PATH_CHARS or "\x00" in path:
            raise NotesPathError(f"path is longer than {MAX_PATH_CHARS} characters or contains NUL")
        if path.startswith(("/", "\\", "~")) or PurePosixPath(path).is_absolute() or PureWindowsPath(path).drive:
            raise NotesPathError(f"absolute paths are refused: {path!r}; use a path relative to the notes root")
        parts = PurePosixPath(path.replace("\\", "/")).parts
        if ".." in parts:
            raise NotesPathError(f"'..' is refused in paths: {path!r}")
        if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in parts):
            raise NotesPathError(f"a name in {path[:60]!r}… is longer than {MAX_NAME_BYTES} bytes")
        real = (self.root / Path(*parts)).resolve()
        if real != self.root and not real.is_relative_to(self.root):
            raise NotesPathError(f"{path!r} leads outside the notes root (through a symlink)")
        return real

    def relative(self, real: Path) -> str:
        return real.relative_to(self.root).as_posix()

    def read(self, path: str) -> str:
        real = self.resolve(path)
        try:
            if not real.is_file():
                raise FileNotFoundError(f"no note {path!r}")
            if real.stat().st_size > MAX_NOTE_CHARS * 4:
                raise ValueError(f"note {path!r} is larger than the {MAX_NOTE_CHARS}-character limit")
            return real.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) and exc.filename is None:
                raise
            raise NotesPathError(f"cannot read note {path!r}: {exc.strerror or type(exc).__name__}") from None

    def write(self, path: str, text: str, overwrite: bool) -> str:
        if len(text) > MAX_NOTE_CHARS:
            raise ValueError(f"text has {len(text)} characters; the limit is {MAX_NOTE_CHARS}")
        real = self.resolve(path)
        if real == self.root or real.is_dir():
            raise NotesPathError(f"{path!r} is a folder")
        parts = PurePosixPath(path.replace("\\", "/")).parts
        if (self.root / Path(*parts)).is_symlink():
            raise NotesPathError(f"{path!r} is a symlink; notes never replace links")
        if real.exists() and not overwrite:
            raise FileExistsError(f"note {path!r} exists; pass overwrite=true to replace it")
        try:
            real.parent.mkdir(parents=True, exist_ok=True)
            self.resolve(path)  # re-check after creating folders: a folder may have been swapped for a symlink
            self._write_in(real.parent, real.name, text.encode("utf-8"))
        except OSError as exc:  # strerror only: the message must not show the root's absolute path
            raise NotesPathError(f"cannot write note {path!r}: {exc.strerror or type(exc).__name__}") from None
        return f"wrote {len(text)} characters to {self.relative(real)}"

    def _write_in(self, folder: Path, name: str, data: bytes) -> None:
        """Write ``name`` in ``folder`` atomically without following any link: the folder is opened once
        (O_NOFOLLOW, checked inside the root) and the temp file is created exclusively in it (O_EXCL|O_NOFOLLOW)
        under a random name, then renamed over the note relative to the same folder handle."""
        folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            opened = Path(f"/proc/self/fd/{folder_fd}").resolve() if Path("/proc/self/fd").is_dir() else folder
            if opened != self.root and not opened.is_relative_to(self.root):
                raise NotesPathError("the note's folder leads outside the notes root")
            try:
                if stat.S_ISLNK(os.lstat(name, dir_fd=folder_fd).st_mode):
                    raise NotesPathError("the note is a symlink; notes never replace links")
            except FileNotFoundError:
                pass
            tmp = f".{name[:100]}.tmp-{secrets.token_hex(8)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=folder_fd)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=folder_fd)
                raise
        finally:
            os.close(folder_fd)

    def list(self, folder: str) -> list[str]:
        base = self.resolve(folder) if folder.strip() else self.root
        if not base.is_dir():
            raise FileNotFoundError(f"no folder {folder!r}")
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):  # os.walk does not follow symlinked folders
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                real = Path(dirpath, name)
                if real.is_symlink() and not real.resolve().is_relative_to(self.root):
                    continue
                found.append(self.relative(real))
                if len(found) >= MAX_LISTED:
                    return found
        return found

    def search(self, query: str, max_results: int) -> list[str]:
        needle = query.strip().lower()
        if not needle or len(needle) > MAX_QUERY_CHARS:
            raise ValueError(f"query must have 1 to {MAX_QUERY_CHARS} characters")
        hits: list[str] = []
        for rel in self.list(""):
            try:
                text = self.read(rel)
            except (OSError, ValueError):
                continue
            for number, line in enumerate(text.splitlines(), 1):
                if needle in line.lower():
                    hits.append(f"{rel}:{number}: {line.strip()[:200]}")
                    if len(hits) >= max_results:
                        return hits
        return hits

    def delete(self, path: str) -> str:
        real = self.resolve(path)
        if not real.is_file():
            raise FileNotFoundError(f"no note {path!r}")
        try:
            real.unlink()
        except OSError as exc:
            raise NotesPathError(f"cannot delete note {path!r}: {exc.strerror or type(exc).__name__}") from None
        return f"deleted {self.relative(real)}"


def build_notes_server(root: Path) -> FastMCP:
    """The notes server on ``root`` (created if missing)."""
    notes = NotesRoot(root)
    server = FastMCP("tierflow-notes", instructions=f"Text notes in one folder ({notes.root.name}); paths are "
                     "relative to it.", log_level="WARNING", json_response=True)  # no progress: see calculator

    @server.tool()
    def list_notes(folder: str = "") -> list[str]:
        """List the notes (relative paths) under a folder of the notes root; '' lists everything."""
        return notes.list(folder)

    @server.tool()
    def read_note(path: str) -> str:
        """Read one note by its path relative to the notes root."""
        return notes.read(path)

    @server.tool()
    def write_note(path: str, text: str, overwrite: bool = True) -> str:
        """Create or replace a note (folders are created); refuses paths outside the notes root."""
        return notes.write(path, text, overwrite)

    @server.tool()
    def search_notes(query: str, max_results: int = 20) -> list[str]:
        """Case-insensitive search of every note; returns 'path:line: text' for each matching line."""
        return notes.search(query, max(1, min(max_results, MAX_MATCHES)))

    @server.tool()
    def delete_note(path: str) -> str:
        """Delete one note."""
        return notes.delete(path)

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tierflow.mcp_servers.notes", description=__doc__)
    parser.add_argument("--root", type=Path, required=True, help="the folder notes live in")
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    serve_from_args(build_notes_server(args.root), args)


if __name__ == "__main__":
    main()
