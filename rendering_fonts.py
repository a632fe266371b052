"""Font files of the PIXEL-M4 renderer: the shipped Noto set, checks, digests and saved names.

Separate from the renderer because fonts are files with their own rules, independent of
drawing: which files make the default set, the sfnt integrity check that runs before fontconfig
or FreeType read a file, the digest that identifies a font setup across processes, and the
plain file names a saved folder may name.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np

from .rendering_native import _get_native

_MAX_FONT_BYTES = 256 << 20


def default_font_files() -> list[str]:
    """Absolute paths of the shipped Noto fonts, primary first.

    NotoSans (Latin, Cyrillic, Greek), then every Noto Sans script font of `manimgx_fonts`
    (Arabic, Armenian, Bengali, Devanagari, Ethiopic, Georgian, ..., and NotoSansSymbols for
    arrows / math / dingbats), then Noto Sans CJK. Left out: the italic face, and NotoEmoji:
    emoji are not language, and leaving them out makes them show up as counted missing glyphs
    rather than as monochrome pictures a text model was never meant to read.
    """
    # Only renderers built without font_file need the font packages (a saved folder names its
    # own font files); in try/except so that transformers' remote-code import check skips them.
    try:
        import manimgx_fonts
        import manimgx_fonts_cjk
    except ImportError as error:
        raise ImportError(
            "the default fonts come from the manimgx-fonts packages: pip install manimgx-fonts "
            "manimgx-fonts-cjk, or pass font_file= (a saved renderer folder carries its fonts)"
        ) from error

    latin_dir = Path(manimgx_fonts.__file__).parent
    primary = latin_dir / "NotoSans[wght].ttf"
    scripts = sorted(
        path
        for path in latin_dir.glob("NotoSans*.ttf")
        if path != primary and "Italic" not in path.name
    )
    cjk = Path(manimgx_fonts_cjk.__file__).parent / "NotoSansCJK-VF.otf.ttc"
    return [str(path.resolve()) for path in [primary, *scripts, cjk]]


_file_digests: dict[tuple, str] = {}


def _file_digest(path: str) -> str:
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key not in _file_digests:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _file_digests[key] = digest.hexdigest()
    return _file_digests[key]


def font_setup_hash(font_files: list[str], **settings) -> str:
    """sha256 over the font files' bytes (in order) and the rendering settings."""
    digest = hashlib.sha256()
    for path in font_files:
        digest.update(_file_digest(path).encode())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


def _font_families(path: str) -> list[str]:
    """Family names of every face in a font file (a .ttc holds several); [] if unreadable."""
    native = _get_native()
    ffi, fontconfig = native.ffi, native.fontconfig
    families, face_count, face = [], ffi.new("int *", 1), 0
    while face < face_count[0]:
        pattern = fontconfig.FcFreeTypeQuery(os.fsencode(path), face, ffi.NULL, face_count)
        if pattern == ffi.NULL:
            return families
        name = ffi.new("FcChar8 **")
        if fontconfig.FcPatternGetString(pattern, b"family", 0, name) == 0:
            families.append(ffi.string(name[0]).decode("utf-8"))
        fontconfig.FcPatternDestroy(pattern)
        face += 1
    return families


def _resolve_font_files(font_file) -> list[str]:
    if font_file is None:
        return default_font_files()
    if isinstance(font_file, (str, os.PathLike)):
        paths = [font_file]
    elif isinstance(font_file, (list, tuple)):
        paths = list(font_file)
    else:
        raise TypeError(
            "font_file must be a path (str or os.PathLike) or a list of paths, got "
            f"{type(font_file).__name__}"
        )
    if not paths:
        raise ValueError("font_file must name at least one font file")
    resolved = []
    for path in paths:
        if not isinstance(path, (str, os.PathLike)) or isinstance(os.fspath(path), bytes):
            raise TypeError(
                f"font_file entries must be paths (str or os.PathLike), got {type(path).__name__}"
            )
        if not os.path.exists(path):
            raise FileNotFoundError(f"font_file {os.fspath(path)!r} does not exist")
        if not os.path.isfile(path):
            raise ValueError(f"font_file {os.fspath(path)!r} is not a regular file")
        path = os.path.abspath(path)
        check_font_file(path)
        resolved.append(path)
    return resolved


_checked_fonts: set[tuple] = set()
_SFNT_VERSIONS = (b"\x00\x01\x00\x00", b"OTTO", b"true")


def check_font_file(path: str) -> None:
    """Raises ValueError unless `path` is an intact TrueType / OpenType font or collection.

    Checked before fontconfig or FreeType read it: the sfnt header, every table lying inside the
    file, and every table's checksum (the sfnt format's own integrity check), so truncated and
    bit-flipped files and non-fonts (/etc/passwd, /dev/null) are rejected by name.
    """
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key in _checked_fonts:
        return
    with open(path, "rb") as handle:
        data = handle.read(_MAX_FONT_BYTES + 1)
    if len(data) > _MAX_FONT_BYTES:
        raise ValueError(f"font file {path!r} is larger than {_MAX_FONT_BYTES >> 20} MiB")
    problem = _sfnt_problem(data)
    if problem:
        raise ValueError(f"font file {path!r} is not a valid TrueType/OpenType font: {problem}")
    _checked_fonts.add(key)


def _sfnt_problem(data: bytes) -> str | None:
    if data[:4] == b"ttcf":
        if len(data) < 12:
            return "truncated collection header"
        (count,) = struct.unpack_from(">I", data, 8)
        if not 0 < count <= 1024 or len(data) < 12 + 4 * count:
            return f"collection header names {count} fonts"
        offsets = struct.unpack_from(f">{count}I", data, 12)
    else:
        offsets = (0,)
    checked = set()
    for offset in offsets:
        if len(data) < offset + 12:
            return f"truncated font header at byte {offset}"
        if data[offset : offset + 4] not in _SFNT_VERSIONS:
            return f"unknown sfnt version {data[offset : offset + 4]!r} at byte {offset}"
        (num_tables,) = struct.unpack_from(">H", data, offset + 4)
        if num_tables == 0 or len(data) < offset + 12 + 16 * num_tables:
            return f"truncated table directory ({num_tables} tables)"
        for index in range(num_tables):
            tag, checksum, start, length = struct.unpack_from(
                ">4sIII", data, offset + 12 + 16 * index
            )
            if start + length > len(data):
                return f"table {tag!r} runs past the end of the file (truncated?)"
            if (start, length) in checked:
                continue  # tables shared by the faces of a collection
            if _table_checksum(data, start, length, tag == b"head") != checksum:
                return f"table {tag!r} fails its checksum (corrupted)"
            checked.add((start, length))
    return None


def _table_checksum(data: bytes, start: int, length: int, is_head: bool) -> int:
    """The sfnt table checksum: the sum of big-endian uint32s (zero-padded), mod 2**32; the
    head table's checkSumAdjustment (its third uint32) is left out."""
    table = data[start : start + length]
    table += b"\0" * (-len(table) % 4)
    words = np.frombuffer(table, dtype=">u4")
    total = int(words.sum(dtype=np.uint64))
    if is_head and len(words) > 2:
        total -= int(words[2])
    return total & 0xFFFFFFFF


def saved_font_name(name, folder) -> str:
    """A font entry of a saved config: a plain file name inside the model folder.

    Saved configs name fonts by file name only (`to_json_file`); absolute paths and paths with
    directories (``../``) would make loading a folder read files outside it, so they are
    rejected. A `font_file=` argument given in code may still point anywhere.
    """
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or os.path.basename(name) != name
        or "\\" in name
        or "\0" in name
    ):
        raise ValueError(
            f"{folder}: the saved config names font file {name!r}; saved font entries must be "
            "plain file names inside the model folder (no absolute paths, no directories, no '..')"
        )
    return name
