"""Open a package given as a folder or an archive (.tar.gz/.tgz/.tar/.tar.xz/.tar.bz2/.zip).

Extraction is where a hostile package would strike first, so every member is checked before
anything is written: absolute names, ``..`` components, links (symbolic or hard) whose target
leaves the destination, device files and FIFOs are refused with the member's name. Tar archives are
then extracted with the standard library's ``data`` filter as a second line (it also checks the
real path of every write, so a link planted earlier cannot redirect a later member); the standard
``zipfile`` writes no links, so zip symlinks are created here, each checked after creation. Sizes
are bounded to stop decompression bombs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from neurofm.errors import NeuroFMError
from neurofm.packages.manifest import MANIFEST_NAME

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.xz", ".tar.bz2", ".zip")
MAX_TOTAL_BYTES = 32 << 30  # 32 GiB uncompressed
MAX_MEMBERS = 200_000


def is_archive(path: Path) -> bool:
    return Path(path).name.lower().endswith(ARCHIVE_SUFFIXES)


def _check_name(archive: Path, name: str) -> PurePosixPath:
    """A member name must be relative and free of '..' (checked before the library sees it)."""
    if not name or "\x00" in name:
        raise NeuroFMError(archive, f"member {name!r}: empty or invalid name")
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        raise NeuroFMError(archive, f"member {name!r}: absolute path refused")
    p = PurePosixPath(norm)
    if ".." in p.parts:
        raise NeuroFMError(archive, f"member {name!r}: '..' path refused")
    return p


def _check_link(archive: Path, name: PurePosixPath, target: str, *, hard: bool) -> None:
    """A link target must stay inside the archive's folder (lexically; real paths checked later)."""
    t = target.replace("\\", "/")
    kind = "hard link" if hard else "symlink"
    if not t or t.startswith("/"):
        raise NeuroFMError(archive, f"member {str(name)!r}: {kind} to absolute path {target!r}")
    joined = PurePosixPath(t) if hard else name.parent / t
    parts: list[str] = []
    for part in joined.parts:
        if part == "..":
            if not parts:
                raise NeuroFMError(
                    archive, f"member {str(name)!r}: {kind} to {target!r} leaves the folder"
                )
            parts.pop()
        elif part != ".":
            parts.append(part)


def _inside(root: Path, path: Path) -> bool:
    real = Path(os.path.realpath(path))
    return real == root or root in real.parents


def _extract_tar(archive: Path, dest: Path) -> None:
    try:
        tf = tarfile.open(archive)  # noqa: SIM115 (closed by the with below; open errors differ)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise NeuroFMError(archive, f"not a readable tar archive ({exc})") from exc
    with tf:
        try:
            members = tf.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise NeuroFMError(archive, f"corrupt tar archive ({exc})") from exc
        if len(members) > MAX_MEMBERS:
            raise NeuroFMError(archive, f"{len(members)} members (limit {MAX_MEMBERS})")
        total = 0
        for m in members:
            name = _check_name(archive, m.name)
            if m.issym() or m.islnk():
                _check_link(archive, name, m.linkname, hard=m.islnk())
            elif not (m.isfile() or m.isdir()):
                raise NeuroFMError(archive, f"member {m.name!r}: device, FIFO or special file")
            total += m.size
        if total > MAX_TOTAL_BYTES:
            raise NeuroFMError(archive, f"{total} bytes uncompressed (limit {MAX_TOTAL_BYTES})")
        try:
            tf.extractall(dest, filter="data")
        except tarfile.FilterError as exc:
            raise NeuroFMError(archive, f"unsafe member refused ({exc})") from exc
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise NeuroFMError(archive, f"corrupt tar archive ({exc})") from exc


def _extract_zip(archive: Path, dest: Path) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise NeuroFMError(archive, f"not a readable zip archive ({exc})") from exc
    root = dest.resolve()
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise NeuroFMError(archive, f"{len(infos)} members (limit {MAX_MEMBERS})")
        total = sum(i.file_size for i in infos)
        if total > MAX_TOTAL_BYTES:
            raise NeuroFMError(archive, f"{total} bytes uncompressed (limit {MAX_TOTAL_BYTES})")
        links: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
        for info in infos:
            name = _check_name(archive, info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                _check_link(archive, name, zf.read(info).decode("utf-8", "replace"), hard=False)
                links.append((info, name))
            elif mode and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise NeuroFMError(archive, f"member {info.filename!r}: special file")
        try:
            for info, name in links:
                link = dest / name
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(zf.read(info).decode("utf-8"), link)
                if not _inside(root, link):
                    raise NeuroFMError(archive, f"member {info.filename!r}: link leaves the folder")
            link_names = {i.filename for i, _ in links}
            for info in infos:
                if info.filename in link_names:
                    continue
                target = dest / _check_name(archive, info.filename)
                if not _inside(root, target.parent if not info.is_dir() else target):
                    raise NeuroFMError(archive, f"member {info.filename!r}: written through a link")
                zf.extract(info, dest)
        except (zipfile.BadZipFile, OSError, RuntimeError) as exc:
            raise NeuroFMError(archive, f"corrupt zip archive ({exc})") from exc


def _sweep(archive: Path, dest: Path) -> None:
    """After extraction nothing may point outside ``dest`` and nothing may be a special file."""
    root = dest.resolve()
    for dirpath, dirnames, filenames in os.walk(dest, followlinks=False):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            if p.is_symlink() and not _inside(root, p):
                raise NeuroFMError(archive, f"{p.relative_to(dest)}: link leaves the folder")
            if not p.is_symlink() and not (p.is_file() or p.is_dir()):
                raise NeuroFMError(archive, f"{p.relative_to(dest)}: special file")


def package_root(folder: Path, where: Path) -> Path:
    """The folder holding manifest.yaml: the folder itself or its single sub-folder."""
    if (folder / MANIFEST_NAME).is_file():
        return folder
    subs = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if len(subs) == 1 and subs[0].is_dir() and (subs[0] / MANIFEST_NAME).is_file():
        return subs[0]
    raise NeuroFMError(where, f"no {MANIFEST_NAME} at the top (or in a single top folder)")


def extract_archive(archive: Path, dest: Path) -> Path:
    """Safely extract ``archive`` into the empty folder ``dest``; returns the package root."""
    archive = Path(archive)
    if not archive.is_file():
        raise NeuroFMError(archive, "archive does not exist")
    dest.mkdir(parents=True, exist_ok=True)
    if archive.name.lower().endswith(".zip"):
        _extract_zip(archive, dest)
    else:
        _extract_tar(archive, dest)
    _sweep(archive, dest)
    return package_root(dest, archive)


@contextlib.contextmanager
def open_package(path: Path) -> Iterator[Path]:
    """Yield the package folder: ``path`` itself, or a private extraction of the archive."""
    path = Path(path)
    if path.is_dir():
        yield package_root(path, path)
        return
    if not path.exists():
        raise NeuroFMError(path, "package does not exist")
    if not is_archive(path):
        raise NeuroFMError(path, f"neither a folder nor an archive ({', '.join(ARCHIVE_SUFFIXES)})")
    tmp = Path(tempfile.mkdtemp(prefix="neurofm-pkg-"))
    try:
        yield extract_archive(path, tmp / "pkg")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
