"""Safe extraction of packages given as .tar.gz / .zip: crafted archives must be refused."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from neurofm.errors import NeuroFMError
from neurofm.packages.archive import extract_archive, open_package


def _tar(path: Path, members: list[tuple[str, str, bytes | str]]) -> Path:
    """members: (name, kind, data) with kind file | dir | symlink | hardlink | fifo."""
    with tarfile.open(path, "w:gz") as tf:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                assert isinstance(data, bytes)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
                continue
            info.type = {
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[kind]
            if kind in ("symlink", "hardlink"):
                assert isinstance(data, str)
                info.linkname = data
            tf.addfile(info)
    return path


def _zip(path: Path, members: list[tuple[str, str, bytes | str]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, kind, data in members:
            info = zipfile.ZipInfo(name)
            if kind == "symlink":
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, str(data))
            else:
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                zf.writestr(info, data)
    return path


MANIFEST = ("pkg/manifest.yaml", "file", b"id: x\n")


def test_good_tar_and_zip_open_as_package(tmp_path: Path) -> None:
    good = [MANIFEST, ("pkg/model/w.bin", "file", b"w"), ("pkg/alias", "symlink", "model/w.bin")]
    for archive in (_tar(tmp_path / "p.tar.gz", good), _zip(tmp_path / "p.zip", good)):
        with open_package(archive) as pkg:
            assert pkg.name == "pkg"
            assert (pkg / "model/w.bin").read_bytes() == b"w"
            assert (pkg / "alias").is_symlink() and (pkg / "alias").read_bytes() == b"w"
            extracted = pkg
        assert not extracted.exists()  # the private extraction is removed afterwards


@pytest.mark.parametrize("fmt", ["tar", "zip"])
@pytest.mark.parametrize(
    ("member", "message"),
    [
        (("/etc/evil", "file", b"x"), "absolute path refused"),
        (("pkg/../../evil", "file", b"x"), "'..' path refused"),
        (("pkg/link", "symlink", "/etc/passwd"), "symlink to absolute path '/etc/passwd'"),
        (("pkg/link", "symlink", "../../outside"), "symlink to '../../outside' leaves the folder"),
        (("pkg/sub/link", "symlink", "../../.."), "leaves the folder"),
    ],
)
def test_escaping_members_are_refused(
    tmp_path: Path, fmt: str, member: tuple[str, str, bytes | str], message: str
) -> None:
    make = _tar if fmt == "tar" else _zip
    archive = make(tmp_path / f"bad.{'tar.gz' if fmt == 'tar' else 'zip'}", [MANIFEST, member])
    dest = tmp_path / "dest"
    with pytest.raises(NeuroFMError, match=message) as err:
        extract_archive(archive, dest)
    assert str(err.value).startswith(str(archive))
    assert not (tmp_path / "evil").exists() and not (tmp_path / "outside").exists()
    assert not any(p.is_symlink() for p in dest.rglob("*"))


def test_tar_hardlinks_and_special_files(tmp_path: Path) -> None:
    bad = _tar(tmp_path / "h.tar.gz", [MANIFEST, ("pkg/h", "hardlink", "/etc/passwd")])
    with pytest.raises(NeuroFMError, match="hard link to absolute path"):
        extract_archive(bad, tmp_path / "d1")
    bad = _tar(tmp_path / "h2.tar.gz", [MANIFEST, ("pkg/h", "hardlink", "../x")])
    with pytest.raises(NeuroFMError, match="hard link to '../x' leaves the folder"):
        extract_archive(bad, tmp_path / "d2")
    fifo = _tar(tmp_path / "f.tar.gz", [MANIFEST, ("pkg/fifo", "fifo", b"")])
    with pytest.raises(NeuroFMError, match="device, FIFO or special file"):
        extract_archive(fifo, tmp_path / "d3")
    linked = [MANIFEST, ("pkg/a", "file", b"a"), ("pkg/b", "hardlink", "pkg/a")]
    ok = _tar(tmp_path / "ok.tar.gz", linked)
    root = extract_archive(ok, tmp_path / "d4")
    assert (root / "b").read_bytes() == b"a"


def test_link_planted_then_written_through_is_refused(tmp_path: Path) -> None:
    """A link that looks harmless lexically ('d' -> '.') but makes 'd/../x' land outside."""
    members = [MANIFEST, ("pkg/d", "symlink", "."), ("pkg/d/../../x", "file", b"x")]
    with pytest.raises(NeuroFMError, match="'..' path refused"):
        extract_archive(_tar(tmp_path / "p.tar.gz", members), tmp_path / "dest")
    top = [("manifest.yaml", "file", b"id: x\n"), ("a", "symlink", "."), ("b", "symlink", "a/..")]
    with pytest.raises(NeuroFMError, match="link leaves the folder"):
        extract_archive(_zip(tmp_path / "p.zip", top), tmp_path / "dest2")
    with pytest.raises(NeuroFMError, match="unsafe member refused"):
        extract_archive(_tar(tmp_path / "p2.tar.gz", top), tmp_path / "dest3")
    assert not (tmp_path / "x").exists()


def test_not_a_package_or_archive(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not gzip at all")
    with pytest.raises(NeuroFMError, match="not a readable tar archive"):
        extract_archive(junk, tmp_path / "d")
    (tmp_path / "junk.zip").write_bytes(b"PK nope")
    with pytest.raises(NeuroFMError, match="not a readable zip archive"):
        extract_archive(tmp_path / "junk.zip", tmp_path / "d2")
    empty = _tar(tmp_path / "e.tar.gz", [("readme.txt", "file", b"hi")])
    with pytest.raises(NeuroFMError, match="no manifest.yaml at the top"), open_package(empty):
        pass
    (tmp_path / "x.txt").write_text("x")
    not_pkg = tmp_path / "x.txt"
    with (
        pytest.raises(NeuroFMError, match="neither a folder nor an archive"),
        open_package(not_pkg),
    ):
        pass
