"""The files a bootstrap writes: streamed writes under a size limit, with write errors reported as one-line
RouterErrors, and the safe extraction of the CLIProxyAPI binary from a release archive.

Extraction is fail-closed: every entry of the archive is checked first (no absolute path, no `..`, no link, device
or other special file, nothing absurdly large, not too many entries) and one bad entry refuses the whole archive;
only the binary, a regular file at the archive's root, is then copied out.
"""
from __future__ import annotations

import contextlib
import os
import re
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from .errors import CHECK_FAILED, USAGE, RouterError

CHUNK = 256 * 1024
MAX_BINARY = 256 * 1024 * 1024  # real archives (~20 MB) hold a ~50 MB binary
MAX_MEMBERS = 1000
FS_HINT = "check that the folder is writable and the disk is not full"

Progress = Callable[[int, int | None], None]


@contextlib.contextmanager
def writing(path: Path):
    """Report an OSError raised inside as a local file-system problem with `path`."""
    try:
        yield
    except OSError as exc:
        raise RouterError(f"cannot write {path}: {exc.strerror or exc}", hint=FS_HINT, exit_code=USAGE) from None


def write_chunks(chunks: Iterable[bytes], dest: Path, limit: int, progress: Progress | None = None,
                 total: int | None = None) -> int:
    """Stream `chunks` into `dest`; read errors pass through, write errors become RouterErrors."""
    with writing(dest):
        out = open(dest, "wb")
    done = 0
    with out:
        for chunk in chunks:
            done += len(chunk)
            if done > limit:
                raise RouterError(f"{dest.name} is larger than {limit // 2**20} MiB: refusing it",
                                  exit_code=CHECK_FAILED)
            with writing(dest):
                out.write(chunk)
            if progress:
                progress(done, total)
        with writing(dest):
            out.flush()
            os.fsync(out.fileno())
    return done


def extract_binary(archive: Path, dest: Path, member: str | Iterable[str]) -> tuple[Path, str]:
    """Copy only the binary out of a .tar.gz or .zip into `dest` (0755), after checking every entry is safe.
    `member` is its name, or its possible names in order of preference; returns (dest, the name found)."""
    wanted = (member,) if isinstance(member, str) else tuple(member)
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as package:
                infos = package.infolist()
                index = _check_entries(archive.name, [(i.filename, _zip_kind(i), i.file_size) for i in infos], wanted)
                found = infos[index].filename
                with package.open(infos[index]) as src:
                    write_chunks(iter(lambda: src.read(CHUNK), b""), dest, MAX_BINARY)
        else:
            with tarfile.open(archive, "r:gz") as package:
                members = package.getmembers()
                index = _check_entries(archive.name, [(m.name, _tar_kind(m), m.size) for m in members], wanted)
                found = members[index].name
                src = package.extractfile(members[index])
                write_chunks(iter(lambda: src.read(CHUNK), b""), dest, MAX_BINARY)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:  # OSError: BadGzipFile
        raise RouterError(f"{archive.name} is not a valid archive: {exc}", exit_code=CHECK_FAILED,
                          hint="the file is damaged or not a release archive: download it again") from None
    os.chmod(dest, 0o755)
    return dest, PurePosixPath(found).as_posix()


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.issym() or member.islnk():
        return "link"
    if member.isdev():
        return "device"
    return "file" if member.isfile() else "folder" if member.isdir() else "special file"


def _zip_kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return "device"
    return "folder" if info.is_dir() else "file"


def _check_entries(archive: str, entries: list[tuple[str, str, int]], wanted: tuple[str, ...]) -> int:
    """Refuse the whole archive if any entry is unsafe; return the index of the first name of `wanted` that is a
    regular file at the archive's root."""
    if len(entries) > MAX_MEMBERS:
        raise RouterError(f"unsafe archive {archive}: {len(entries)} entries", exit_code=CHECK_FAILED)
    for name, kind, size in entries:
        path = PurePosixPath(name.replace("\\", "/"))
        if path.is_absolute() or re.match(r"^[A-Za-z]:", name):
            problem = "an absolute path"
        elif ".." in path.parts:
            problem = "a path with '..'"
        elif kind not in ("file", "folder"):
            problem = f"a {kind}"
        elif size > MAX_BINARY:
            problem = f"absurdly large ({size} bytes)"
        else:
            continue
        raise RouterError(f"unsafe archive {archive}: entry {name!r} is {problem}", exit_code=CHECK_FAILED,
                          hint="refusing to extract anything from it; get the archive from a source you trust")
    for member in wanted:
        for index, (name, kind, _) in enumerate(entries):
            if PurePosixPath(name).as_posix() == member and kind == "file":
                return index
    names = ", ".join(name for name, _, _ in entries) or "nothing"
    raise RouterError(f"{archive} does not contain {' or '.join(wanted)} (it holds: {names})", exit_code=CHECK_FAILED,
                      hint="this is not a CLIProxyAPI or CLIProxyAPIPlus release archive")
