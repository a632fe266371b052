"""PixelM4TextRenderer: text -> a strip of grayscale patches (PangoCairo + Noto fonts).

Three render modes:

* ``bigram`` (PIXEL-M4 / PIXEL-BIGRAMS): words are cut into code-point pairs, every pair
  starts at a patch boundary, the two characters are shaped separately.
* ``continuous`` (original PIXEL): the whole text as one Pango layout.
* ``word_bigram`` (pixel fallback paper): per word, overlapping bigrams
  ``Happy -> [Ha][ap][pp][py]`` in 24x24 patches.

Decisions worth knowing (also in the class docstring):

* Fonts are isolated from the system: a private fontconfig configuration holds only the
  renderer's font files (no fonts.conf, no FONTCONFIG_FILE, no system fonts).
* The native libraries (fontconfig, cairo, pango) are loaded with cffi when the first renderer
  is constructed, so importing this module works on machines without Pango; constructing a
  renderer there raises one ImportError saying what to install.
* Nothing is clipped: as in the published renderer, every layout is drawn on one strip, so ink
  that overhangs a pair's patches (negative bearings, marks shaped alone with their dotted
  circle, wide glyphs) lands in the neighbouring patches. The caches store coverage (alpha)
  with all of its ink and composite it with pixman's own OVER arithmetic, or let cairo redraw
  where that could round differently, so cached strips equal the uncached ones byte for byte
  (see "The caches" below). Ink left of the strip is lost, ink on the separator / end patch is
  painted over, everything after the end patch is white.
* Control characters (Unicode Cc/Cf, except ZWJ/ZWNJ) are dropped before rendering; the
  whitespace ones (newline, tab, ...) act as word separators.
* Every mode ends with one black end patch, also ``word_bigram`` (so ``num_patches`` is always
  text patches [+ separator] + 1, and an empty text is just the end patch).
"""

from __future__ import annotations

import ctypes.util
import hashlib
import importlib
import json
import logging
import math
import os
import re
import shutil
import string
import struct
import sys
import threading
import unicodedata
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from transformers import BatchFeature
from transformers.image_processing_utils import ImageProcessingMixin

logger = logging.getLogger(__name__)

RENDER_MODES = ("bigram", "continuous", "word_bigram")
OUTPUT_FORMATS = ("float32", "uint8")  # pixel_values: [B, 3, P, W] in [0, 1], or [B, 1, P, W] 0-255
_DEFAULT_FONT_SIZE = {"bigram": 8, "continuous": 8, "word_bigram": 10}
_DEFAULT_PIXELS_PER_PATCH = {"bigram": 16, "continuous": 16, "word_bigram": 24}
_CONTINUOUS_MARGIN = 2  # px of white before and after a continuous text (original PIXEL)
CJK_FACES = ("JP", "KR", "SC", "TC", "HK")  # faces of the Noto Sans CJK collection
# Settings that change pixels and were added after the first release: a saved config without
# one of these keys was rendered with the value given here (hinting off, the SC face
# preferred, no right-to-left mirroring, continuous text re-spaced), so old folders keep
# rendering as they were saved.
_SETTINGS_BEFORE_SAVED = {
    "hint_style": "none",
    "hint_metrics": False,
    "cjk_face": "SC",
    "mirror_rtl": False,
    "keep_spaces": False,
}
_KEPT_FORMAT_CHARS = {"\u200c", "\u200d"}  # ZWNJ / ZWJ shape Indic and Arabic text
_WHITE = np.float32(255)  # uint8 pixel / _WHITE -> float32 in [0, 1]
# Limits checked up front. cairo image surfaces are at most 32,767 px on a side; a strip's
# surface has one extra column (see `_Canvas`).
_CAIRO_MAX_SIZE = 32767
MAX_STRIP_WIDTH = _CAIRO_MAX_SIZE - 1
MAX_PIXELS_PER_PATCH = 256
_MAX_FONT_PATCHES = 4  # glyphs taller than 4 patches are cut off by a one-patch-high strip
_MAX_FONT_BYTES = 256 << 20
# Pango measures in int32 units of 1/1024 px, so a layout wider than ~2.1 million px reports
# nonsense: a text handed to Pango in one layout is never longer than this (in code points).
_MAX_LAYOUT_CHARS = 65536
_MAX_MARGIN_DOUBLINGS = 8

_MISSING_LIBRARIES = (
    "pixel-m4 needs the system libraries Pango (>=1.44) and Cairo: sudo apt-get install "
    "libpango-1.0-0 libpangocairo-1.0-0 libpangoft2-1.0-0 libcairo2 (Debian/Ubuntu) / "
    "brew install pango (macOS)"
)

# --------------------------------------------------------------------------------------------
# Native libraries (cffi, ABI mode). One FFI for everything: pointers cannot cross FFI
# instances, so the few functions we need are declared here rather than mixed with
# pangocffi's objects.
# --------------------------------------------------------------------------------------------
_CDEF = """
typedef int gboolean;
typedef void *gpointer;
typedef unsigned char FcChar8;
typedef int FcBool;
typedef struct _FcConfig FcConfig;
typedef struct _FcPattern FcPattern;
typedef struct _FcBlanks FcBlanks;
FcConfig *FcConfigCreate(void);
FcBool FcConfigAppFontAddFile(FcConfig *config, const FcChar8 *file);
FcPattern *FcFreeTypeQuery(const FcChar8 *file, unsigned int id, FcBlanks *blanks, int *count);
int FcPatternGetString(const FcPattern *p, const char *object, int n, FcChar8 **s);
void FcPatternDestroy(FcPattern *p);

typedef struct _cairo cairo_t;
typedef struct _cairo_surface cairo_surface_t;
typedef struct _cairo_font_options cairo_font_options_t;
cairo_surface_t *cairo_image_surface_create(int format, int width, int height);
unsigned char *cairo_image_surface_get_data(cairo_surface_t *surface);
int cairo_image_surface_get_stride(cairo_surface_t *surface);
void cairo_surface_flush(cairo_surface_t *surface);
void cairo_surface_mark_dirty(cairo_surface_t *surface);
void cairo_surface_destroy(cairo_surface_t *surface);
cairo_t *cairo_create(cairo_surface_t *target);
void cairo_destroy(cairo_t *cr);
void cairo_move_to(cairo_t *cr, double x, double y);
void cairo_rectangle(cairo_t *cr, double x, double y, double width, double height);
void cairo_fill(cairo_t *cr);
cairo_font_options_t *cairo_font_options_create(void);
void cairo_font_options_set_antialias(cairo_font_options_t *options, int antialias);
void cairo_font_options_set_hint_style(cairo_font_options_t *options, int hint_style);
void cairo_font_options_set_hint_metrics(cairo_font_options_t *options, int hint_metrics);
void cairo_font_options_destroy(cairo_font_options_t *options);

typedef struct _PangoFontMap PangoFontMap;
typedef struct _PangoContext PangoContext;
typedef struct _PangoLayout PangoLayout;
typedef struct _PangoFontDescription PangoFontDescription;
typedef struct { int x; int y; int width; int height; } PangoRectangle;
int pango_version(void);
PangoContext *pango_font_map_create_context(PangoFontMap *fontmap);
void pango_context_set_base_dir(PangoContext *context, int direction);
void pango_context_set_round_glyph_positions(PangoContext *context, gboolean round_positions);
PangoFontDescription *pango_font_description_from_string(const char *str);
PangoLayout *pango_layout_new(PangoContext *context);
void pango_layout_set_text(PangoLayout *layout, const char *text, int length);
void pango_layout_set_font_description(PangoLayout *layout, const PangoFontDescription *desc);
void pango_layout_set_auto_dir(PangoLayout *layout, gboolean auto_dir);
void pango_layout_get_pixel_extents(PangoLayout *layout, PangoRectangle *ink, PangoRectangle *logical);
int pango_layout_get_unknown_glyphs_count(PangoLayout *layout);
void pango_layout_index_to_pos(PangoLayout *layout, int index, PangoRectangle *pos);
/* Leading fields only (read through pointers, never allocated here): a layout's glyph count. */
typedef struct _GSList GSList;
struct _GSList { gpointer data; GSList *next; };
typedef struct { int num_glyphs; } PangoGlyphString;
typedef struct { gpointer item; PangoGlyphString *glyphs; } PangoGlyphItem;
typedef struct { gpointer layout; int start_index; int length; GSList *runs; } PangoLayoutLine;
int pango_layout_get_line_count(PangoLayout *layout);
PangoLayoutLine *pango_layout_get_line_readonly(PangoLayout *layout, int line);
void pango_layout_line_get_x_ranges(PangoLayoutLine *line, int start_index, int end_index,
                                    int **ranges, int *n_ranges);
void g_free(gpointer mem);

PangoFontMap *pango_cairo_font_map_new_for_font_type(int fonttype);
void pango_cairo_context_set_font_options(PangoContext *context, const cairo_font_options_t *options);
void pango_cairo_context_set_resolution(PangoContext *context, double dpi);
void pango_cairo_show_layout(cairo_t *cr, PangoLayout *layout);

void pango_fc_font_map_set_config(PangoFontMap *fcfontmap, FcConfig *fcconfig);

void g_object_unref(gpointer object);
"""
_CAIRO_FORMAT_A8 = 2
_CAIRO_ANTIALIAS_GRAY = 2
# cairo_hint_style_t / cairo_hint_metrics_t values
HINT_STYLES = {"none": 1, "slight": 2, "medium": 3, "full": 4}
_CAIRO_HINT_METRICS = {False: 1, True: 2}
_CAIRO_FONT_TYPE_FT = 1
_PANGO_DIRECTION_WEAK_LTR = 4
_PANGO_SCALE = 1024
_MIN_PANGO_VERSION = 14400  # 1.44: HarfBuzz shaping, unknown-glyph counting as used here

_LIBRARY_NAMES = {
    "fontconfig": ("libfontconfig.so.1", "fontconfig"),
    "cairo": ("libcairo.so.2", "cairo"),
    "pango": ("libpango-1.0.so.0", "pango-1.0"),
    "pangocairo": ("libpangocairo-1.0.so.0", "pangocairo-1.0"),
    "pangoft2": ("libpangoft2-1.0.so.0", "pangoft2-1.0"),
    "gobject": ("libgobject-2.0.so.0", "gobject-2.0"),
    "glib": ("libglib-2.0.so.0", "glib-2.0"),
}


class _Native:
    """The cffi handle and the dlopened libraries (loaded once; valid across fork)."""

    def __init__(self):
        # In try/except: transformers' remote-code import check skips such imports, and a missing
        # package gets an error that says what to install.
        try:
            from cffi import FFI
        except ImportError as error:
            raise ImportError(
                "the PIXEL-M4 renderer needs the cffi package: pip install cffi"
            ) from error

        self.ffi = FFI()
        self.ffi.cdef(_CDEF)
        for attribute, names in _LIBRARY_NAMES.items():
            setattr(self, attribute, self._dlopen(names))
        if self.pango.pango_version() < _MIN_PANGO_VERSION:
            raise ImportError(_MISSING_LIBRARIES)

    def _dlopen(self, names):
        soname, short_name = names
        for candidate in (soname, ctypes.util.find_library(short_name)):
            if candidate is None:
                continue
            try:
                return self.ffi.dlopen(candidate)
            except OSError:
                continue
        raise ImportError(_MISSING_LIBRARIES)


_native: _Native | None = None


def _get_native() -> _Native:
    global _native
    if _native is None:
        try:
            _native = _Native()
        except OSError as error:
            raise ImportError(_MISSING_LIBRARIES) from error
    return _native


# --------------------------------------------------------------------------------------------
# Per-process Pango state. fontconfig / Pango objects must not be shared across fork: they are
# created lazily, remembered with the pid that made them, and forgotten in a forked child
# (never freed there: the parent's objects may be mid-use by a parent thread's lock).
# --------------------------------------------------------------------------------------------
_lock = threading.RLock()
_font_setups: dict[str, _FontSetup] = {}
_font_setups_pid = os.getpid()
_abandoned_after_fork: list = []  # parent objects kept alive (not freed) in a forked child


def _forget_parent_state():
    global _lock, _font_setups, _font_setups_pid
    _abandoned_after_fork.append(_font_setups)
    _font_setups = {}
    _font_setups_pid = os.getpid()
    _lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parent_state)


class _FontSetup:
    """A private fontconfig config with only our files, a PangoCairo font map and context."""

    def __init__(
        self, font_files: list[str], description: str, hint_style: str, hint_metrics: bool
    ):
        native = _get_native()
        ffi, fontconfig = native.ffi, native.fontconfig
        self.native = native
        config = fontconfig.FcConfigCreate()
        for path in font_files:
            if not fontconfig.FcConfigAppFontAddFile(config, os.fsencode(path)):
                raise ValueError(f"fontconfig cannot read the font file {path!r}")
        font_map = native.pangocairo.pango_cairo_font_map_new_for_font_type(_CAIRO_FONT_TYPE_FT)
        if font_map == ffi.NULL:
            raise ImportError(_MISSING_LIBRARIES + " (Pango built without FreeType/fontconfig)")
        native.pangoft2.pango_fc_font_map_set_config(font_map, config)
        context = native.pango.pango_font_map_create_context(font_map)
        options = native.cairo.cairo_font_options_create()
        native.cairo.cairo_font_options_set_antialias(options, _CAIRO_ANTIALIAS_GRAY)
        native.cairo.cairo_font_options_set_hint_style(options, HINT_STYLES[hint_style])
        native.cairo.cairo_font_options_set_hint_metrics(options, _CAIRO_HINT_METRICS[hint_metrics])
        native.pangocairo.pango_cairo_context_set_font_options(context, options)
        native.cairo.cairo_font_options_destroy(options)
        # 72 dpi: one point is one pixel, so the "<size>px" description means device pixels.
        native.pangocairo.pango_cairo_context_set_resolution(context, 72.0)
        native.pango.pango_context_set_round_glyph_positions(context, True)
        native.pango.pango_context_set_base_dir(context, _PANGO_DIRECTION_WEAK_LTR)
        self.config, self.font_map, self.context = config, font_map, context
        self.description = native.pango.pango_font_description_from_string(description.encode())
        # out-parameters, allocated once (used under the module lock only)
        self._rectangle = ffi.new("PangoRectangle *")
        self._ranges, self._range_count = ffi.new("int **"), ffi.new("int *")

    def layout(self, text: str):
        """A layout of `text`; the caller must `free` it."""
        pango = self.native.pango
        layout = pango.pango_layout_new(self.context)
        pango.pango_layout_set_font_description(layout, self.description)
        pango.pango_layout_set_auto_dir(layout, True)
        encoded = text.encode("utf-8")
        pango.pango_layout_set_text(layout, encoded, len(encoded))
        return layout

    def ink_columns(self, layout) -> tuple[int, int]:
        """[left, right) pixel columns of the layout's ink, relative to its origin."""
        ink = self._rectangle
        self.native.pango.pango_layout_get_pixel_extents(layout, ink, self.native.ffi.NULL)
        return ink.x, ink.x + ink.width

    def logical_size(self, layout) -> tuple[int, int]:
        logical = self._rectangle
        self.native.pango.pango_layout_get_pixel_extents(layout, self.native.ffi.NULL, logical)
        return logical.width, logical.height

    def glyph_count(self, layout) -> int:
        ffi, pango = self.native.ffi, self.native.pango
        count = 0
        for index in range(pango.pango_layout_get_line_count(layout)):
            runs = pango.pango_layout_get_line_readonly(layout, index).runs
            while runs != ffi.NULL:
                count += ffi.cast("PangoGlyphItem *", runs.data).glyphs.num_glyphs
                runs = runs.next
        return count

    def x_ranges(self, layout, byte_ranges) -> list[tuple[float, float]]:
        """Pixel x-range covered by the characters of each [start, end) byte range, whatever
        their direction: one call per range on the layout's single line (per-index look-ups
        walk the layout from its start every time), in one loop (continuous mode's word spans:
        per-call Python overhead was a third of rendering a text)."""
        pango, g_free = self.native.pango, self.native.glib.g_free
        unpack, out, count = self.native.ffi.unpack, self._ranges, self._range_count
        line = pango.pango_layout_get_line_readonly(layout, 0)
        get_x_ranges = pango.pango_layout_line_get_x_ranges
        result = []
        for start, end in byte_ranges:
            get_x_ranges(line, start, end, out, count)
            ranges = out[0]
            try:
                xs = unpack(ranges, 2 * count[0])
            finally:
                g_free(ranges)
            if xs:
                result.append((min(xs) / _PANGO_SCALE, max(xs) / _PANGO_SCALE))
            else:
                result.append((0.0, 0.0))
        return result

    def unknown_glyphs(self, layout) -> int:
        return self.native.pango.pango_layout_get_unknown_glyphs_count(layout)

    def free(self, layout):
        self.native.gobject.g_object_unref(layout)


def _font_setup(
    font_files: list[str], description: str, hint_style: str, hint_metrics: bool, key: str
) -> _FontSetup:
    global _font_setups, _font_setups_pid
    if _font_setups_pid != os.getpid():  # forked without the at-fork hook (e.g. os.fork in C)
        _forget_parent_state()
    setup = _font_setups.get(key)
    if setup is None:
        setup = _font_setups[key] = _FontSetup(font_files, description, hint_style, hint_metrics)
    return setup


class _Canvas:
    """An A8 cairo surface of height P (alpha = ink coverage, 0 = none); nothing is clipped.

    One extra column right of `width` is inked at once, so cairo never sees a clear surface:
    on a clear surface it composites a layout's glyphs differently (overlapping glyphs of one
    layout add up instead of going OVER each other), which would make the first layout of an
    A8 strip differ from the published renderer's white RGB surface and from the cache.
    """

    def __init__(self, native: _Native, width: int, height: int):
        if not (0 <= width < _CAIRO_MAX_SIZE and 0 < height <= _CAIRO_MAX_SIZE):
            raise ValueError(
                f"cannot draw {width} x {height} px: cairo surfaces are at most "
                f"{_CAIRO_MAX_SIZE} px on a side"
            )
        self.native, self.width, self.height = native, width, height
        cairo = native.cairo
        self.surface = cairo.cairo_image_surface_create(_CAIRO_FORMAT_A8, width + 1, height)
        self.cr = cairo.cairo_create(self.surface)
        cairo.cairo_rectangle(self.cr, width, 0, 1, height)
        cairo.cairo_fill(self.cr)

    def draw(self, placed: list[tuple]):
        """Draws (layout, x, y) triples in order, each with its own pango_cairo_show_layout."""
        for layout, x, y in placed:
            self.native.cairo.cairo_move_to(self.cr, x, y)
            self.native.pangocairo.pango_cairo_show_layout(self.cr, layout)

    def _data(self) -> np.ndarray:
        """The surface's memory as a writable uint8 [height, width] view."""
        cairo, ffi = self.native.cairo, self.native.ffi
        stride = cairo.cairo_image_surface_get_stride(self.surface)
        data = ffi.buffer(cairo.cairo_image_surface_get_data(self.surface), stride * self.height)
        return np.frombuffer(data, dtype=np.uint8).reshape(self.height, stride)[:, : self.width]

    def alpha(self) -> np.ndarray:
        """A copy of the coverage, uint8 [height, width]."""
        self.native.cairo.cairo_surface_flush(self.surface)
        return self._data().copy()

    def set_alpha(self, alpha: np.ndarray):
        """Starts from the coverage `alpha` (uint8 [height, width]) instead of an empty canvas."""
        self.native.cairo.cairo_surface_flush(self.surface)
        self._data()[...] = alpha
        self.native.cairo.cairo_surface_mark_dirty(self.surface)

    def close(self):
        self.native.cairo.cairo_destroy(self.cr)
        self.native.cairo.cairo_surface_destroy(self.surface)


# --------------------------------------------------------------------------------------------
# Fonts
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# Text clean-up and segmentation
# --------------------------------------------------------------------------------------------
def clean_text(text: str) -> str:
    """`text` without control/format characters (not ZWJ/ZWNJ); whitespace controls (newline,
    tab, ...) and line/paragraph separators become spaces, so a layout is always one line."""
    if text.isprintable():  # fast path: no Cc/Cf/Z* characters except " "
        return text
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category in ("Cc", "Cf", "Zl", "Zp") and char not in _KEPT_FORMAT_CHARS:
            if char.isspace():  # newline, tab, ...: still separate words
                kept.append(" ")
            continue
        kept.append(char)
    return "".join(kept)


def clean_words(text: str) -> list[str]:
    """Whitespace-split words after dropping control/format characters (not ZWJ/ZWNJ)."""
    return clean_text(text).split()


# Every character of bidi class R or AL lies in these ranges (tests/test_rendering_fidelity.py
# checks all of Unicode): texts without any skip the vote at C speed.
_RTL_CHARACTER = re.compile(
    "[\u0590-\u08ff\u200f\ufb1d-\ufdff\ufe70-\ufeff\U00010800-\U00010fff\U0001e800-\U0001efff]"
)
_RTL_IGNORED = re.compile(
    "[" + re.escape(string.whitespace + string.punctuation + string.digits) + "]+"
)


def is_rtl(text: str) -> bool:
    """The published renderers' right-to-left test (`PangoCairoTextRenderer.is_rtl`): after
    dropping whitespace, ASCII punctuation and digits, at least two of the first, middle and
    last characters are strong right-to-left (bidi class R or AL)."""
    if not _RTL_CHARACTER.search(text):
        return False
    text = _RTL_IGNORED.sub("", text)
    if not text:
        return False
    votes = (text[0], text[len(text) // 2], text[-1])
    return sum(unicodedata.bidirectional(char) in ("R", "AL") for char in votes) >= 2


def _units(word: str, group_graphemes: bool) -> list[str]:
    """The shaping units of a word: code points, or grapheme clusters."""
    if group_graphemes:
        import regex

        return regex.findall(r"\X", word)
    return list(word)


def _word_pairs(
    word: str, mode: str, group_graphemes: bool, mirrored: bool = False
) -> list[tuple[str, ...]]:
    """The units of a word, pair by pair, in drawing order (left to right).

    `mirrored` (right-to-left text in bigram mode): the pairs are cut from the word's start as
    usual, then drawn in reverse order with each pair's units swapped, so the word reads
    right to left (`string_to_ngrams(..., rtl=True)` in the published PIXEL-M4 renderer).
    """
    units = _units(word, group_graphemes)
    if mode == "word_bigram":
        if len(units) == 1:
            return [tuple(units)]
        return [tuple(units[i : i + 2]) for i in range(len(units) - 1)]
    pairs = [tuple(units[i : i + 2]) for i in range(0, len(units), 2)]
    if mirrored:
        return [pair[::-1] for pair in reversed(pairs)]
    return pairs


# --------------------------------------------------------------------------------------------
# The caches. A pair's rendering depends only on (font setup, size, dpi, P, pair), a word's on
# that and the pairing rule. Both are process-wide bounded LRUs of coverage (alpha) arrays,
# inherited by forked workers (plain numpy data).
#
# Why cached == uncached byte for byte: cairo draws a one-glyph layout as one OVER composite of
# its coverage m onto the A8 strip, d' = m + MUL_UN8(d, 255 - m) (pixman). The unit drawn alone
# on an empty (but not "clear", see `_Canvas`) surface yields m itself, so replaying composites
# in the same order with the same arithmetic (`_over_into`) reproduces the strip exactly. A
# piece made of several composites (a pair, a word) can be composited as one wherever the
# surface below is empty or exactly one one-glyph composite of the piece inked the pixel (then
# the piece's coverage is that m). Its other pixels are "fragile": two units met there, or a
# unit with several glyphs / a tofu box, whose parts cairo composites one by one, so rounding
# could differ. Where a fragile pixel would land on existing ink, cairo itself draws the piece
# onto a copy of what is below (`_draw_placed`), which is cairo's result by construction.
# --------------------------------------------------------------------------------------------
# Cache entries are plain tuples of numbers, strings and numpy arrays (unpacked where used, in
# the field order below). Python's garbage collector stops tracking such tuples, but not named
# tuples or dataclass instances: a long run adds entries by the thousand, each tracked one brings
# the next full collection closer, and one full collection walks the whole heap (~0.2 s with
# torch and transformers imported: more than rendering 500 texts of unseen words).
#   ink:  (offset, alpha, fragile): coverage drawn at origin + offset, alpha uint8 [P, width]
#         cropped to inked columns; fragile bool [P, width] (see above), None if no pixel is
#   unit: (ink, width, missing): ink offset from the unit's origin, advance width in px
#   pair: (ink, num_patches, missing, text): ink offset from the pair's first column
#   word: (ink, num_patches, missing, missing_text): ink offset from the word's first column

_unit_cache: OrderedDict[tuple, tuple] = OrderedDict()
_pair_cache: OrderedDict[tuple, tuple] = OrderedDict()
_word_cache: OrderedDict[tuple, tuple] = OrderedDict()
_seen_words: OrderedDict[tuple, bool] = OrderedDict()  # words seen once (word cache admission)


def cache_info() -> dict[str, int]:
    """Entries and array bytes of this process's unit, pair and word caches.

    Python objects add about 0.7 KB per entry on top of the arrays (see docs/rendering.md).
    """
    with _lock:
        unit_bytes = sum(_ink_bytes(unit[0]) for unit in _unit_cache.values())
        pair_bytes = sum(_ink_bytes(pair[0]) for pair in _pair_cache.values())
        word_bytes = sum(_ink_bytes(word[0]) for word in _word_cache.values())
        return {
            "units": len(_unit_cache),
            "unit_array_bytes": unit_bytes,
            "pairs": len(_pair_cache),
            "pair_array_bytes": pair_bytes,
            "words": len(_word_cache),
            "word_array_bytes": word_bytes,
        }


def _ink_bytes(ink: tuple) -> int:
    _, alpha, fragile = ink
    return alpha.nbytes + (0 if fragile is None else fragile.nbytes)


def _lru_get(cache: OrderedDict, key):
    value = cache.get(key)
    if value is not None:
        cache.move_to_end(key)
    return value


def _lru_put(cache: OrderedDict, key, value, size: int):
    cache[key] = value
    while len(cache) > size:
        cache.popitem(last=False)


def _over_into(dest: np.ndarray, alpha: np.ndarray, x: int):
    """dest[:, x : x + width] = alpha OVER dest (clipped to dest), in pixman's A8 arithmetic.

    OVER with an opaque source through coverage s: d' = s + MUL_UN8(d, 255 - s), where
    MUL_UN8(a, b) = (t + (t >> 8)) >> 8 with t = a * b + 0x80 (round(a * b / 255) exactly).
    The sum never exceeds 255, so pixman's saturating add never saturates here.
    """
    start, stop = max(x, 0), min(x + alpha.shape[1], dest.shape[1])
    if start >= stop:
        return
    source = alpha[:, start - x : stop - x]
    region = dest[:, start:stop]
    t = region.astype(np.uint16) * (255 - source) + 128  # <= 65153: fits uint16
    region[...] = source + ((t + (t >> 8)) >> 8)


def _assemble(pieces: list[tuple], height: int) -> tuple[tuple, bool]:
    """Composites pieces (offsets in one frame) in order onto an empty buffer.

    Returns the coverage with its fragile pixels, and whether it is exact: False if a piece's
    fragile pixel landed on ink of an earlier piece (then cairo must draw it, see above).
    """
    pieces = [piece for piece in pieces if piece[1].shape[1]]
    left = min((offset for offset, _, _ in pieces), default=0)
    right = max((offset + alpha.shape[1] for offset, alpha, _ in pieces), default=0)
    coverage = np.zeros((height, right - left), dtype=np.uint8)
    fragile = np.zeros(coverage.shape, dtype=bool)
    exact, ink_end = True, 0  # no ink right of ink_end yet
    for offset, alpha, piece_fragile in pieces:
        x, width = offset - left, alpha.shape[1]
        if x >= ink_end:  # nothing below: a copy
            coverage[:, x : x + width] = alpha
            if piece_fragile is not None:
                fragile[:, x : x + width] |= piece_fragile
        else:
            below = coverage[:, x : x + width] > 0
            if piece_fragile is not None:
                exact = exact and not (below & piece_fragile).any()
                fragile[:, x : x + width] |= piece_fragile
            fragile[:, x : x + width] |= below & (alpha > 0)
            _over_into(coverage, alpha, x)
        ink_end = max(ink_end, x + width)
    return (left, coverage, fragile if fragile.any() else None), exact


@dataclass
class RenderedText:
    """One rendered example: a uint8 strip [P, P * max_seq_length] (255 = white) + metadata."""

    pixels: np.ndarray
    num_patches: int
    word_patch_spans: list[tuple[int, int]]
    num_words: int
    overflow: int
    missing_glyphs: int
    word_patch_counts: list[int] | None = None


@dataclass
class _Strip:
    """Bookkeeping while a strip is assembled."""

    budget: int  # patches available for text (+ separator); the end patch is reserved
    cursor: int = 0
    spans: list[tuple[int, int]] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    black: list[int] = field(default_factory=list)  # separator / end patch indices
    overflow: int = 0
    missing: int = 0
    missing_sample: str = ""
    ink_end: int = 0  # the strip holds no ink right of this column (cached path)

    def add_missing(self, count: int, text: str):
        self.missing += count
        self.missing_sample = self.missing_sample or text


class PixelM4TextRenderer(ImageProcessingMixin):
    """Renders text to a strip of P x P patches for pixel language models.

    Args:
        render_mode: "bigram" (PIXEL-M4 default), "continuous" (original PIXEL) or
            "word_bigram" (pixel fallback: overlapping bigrams per word; punctuation stays
            attached to its word; words packed back to back, one end patch after the last).
        font_file: None for the shipped Noto set (`default_font_files()`), a path, or a list
            of paths (primary first, then fallbacks). Resolved to absolute paths.
        font_size: points; None -> 8 (bigram, continuous) or 10 (word_bigram).
        dpi: rendering resolution; the font is set at dpi / 72 * font_size pixels.
        pixels_per_patch: None -> 16 (bigram, continuous) or 24 (word_bigram).
        max_seq_length: patches per strip, the end patch included.
        group_graphemes: pair grapheme clusters instead of code points (bigram, word_bigram);
            keeps Devanagari conjuncts and Thai vowels whole. Off: reproduces the checkpoints.
        hint_style: glyph hinting, "slight" (fontconfig's default, which the published
            renderers inherit), "none", "medium" or "full".
        hint_metrics: round glyph metrics to whole pixels (True: what the published renderers
            get from their cairo image surface).
        cjk_face: None draws Han with the face fontconfig's fallback picks from the CJK
            collection ("Noto Sans CJK JP", as the published renderers), or one of
            `CJK_FACES` ("SC" for Simplified Chinese glyph shapes) to prefer that face.
        mirror_rtl: bigram mode draws right-to-left text (see `is_rtl`) as the published
            PIXEL-M4 renderer: pairs mirrored, and a text's words in reverse order (a word list
            given with `is_split_into_words=True` keeps its order). False: left to right.
        keep_spaces: continuous mode draws the text as written, leading, trailing and
            repeated spaces included (original PIXEL); False joins its words by single spaces.
        cache_size: entries of the process-wide LRU of rendered pairs (bigram, word_bigram);
            0 draws every unit straight onto the strip (slow; the reference the caches are
            tested against byte for byte) and turns the word cache off too.
        word_cache_size: entries of the process-wide LRU of rendered words (coverage + patch
            count), so a sentence is assembled from about one copy per word; 0 assembles every
            word from its cached pairs. About 2.6 KB per word (a pair: 1 KB).

    Text pairs: text, one black separator patch, text_pair, the black end patch. Truncation
    drops whole words from the end of the sequence (text_pair's first) until the strip fits
    (mirrored right-to-left text: from its start, as the published renderer).
    Settings missing from a saved config mean the values folders were saved with before they
    existed (`_SETTINGS_BEFORE_SAVED`), so old folders render as before.
    A wide pair (two CJK characters at 8 pt) spans two patches, in word_bigram mode too.
    """

    model_input_names = ["pixel_values", "attention_mask"]

    def __init__(
        self,
        render_mode: str = "bigram",
        font_file: str | list[str] | None = None,
        font_size: float | None = None,
        dpi: float = 120,
        pixels_per_patch: int | None = None,
        max_seq_length: int = 529,
        group_graphemes: bool = False,
        hint_style: str = "slight",
        hint_metrics: bool = True,
        cjk_face: str | None = None,
        mirror_rtl: bool = True,
        keep_spaces: bool = True,
        cache_size: int = 65536,
        word_cache_size: int = 16384,
        **kwargs,
    ):
        kwargs.pop("image_processor_type", None)
        super().__init__(**kwargs)
        if render_mode not in RENDER_MODES:
            raise ValueError(f"render_mode must be one of {RENDER_MODES}, got {render_mode!r}")
        self.render_mode = render_mode
        self.font_size = _positive_number(
            "font_size", _DEFAULT_FONT_SIZE[render_mode] if font_size is None else font_size
        )
        self.dpi = _positive_number("dpi", dpi)
        self.pixels_per_patch = _positive_int(
            "pixels_per_patch",
            _DEFAULT_PIXELS_PER_PATCH[render_mode]
            if pixels_per_patch is None
            else pixels_per_patch,
        )
        self.max_seq_length = _positive_int("max_seq_length", max_seq_length)
        self.group_graphemes = _flag("group_graphemes", group_graphemes)
        if hint_style not in HINT_STYLES:
            raise ValueError(f"hint_style must be one of {tuple(HINT_STYLES)}, got {hint_style!r}")
        self.hint_style = hint_style
        self.hint_metrics = _flag("hint_metrics", hint_metrics)
        if cjk_face is not None and cjk_face not in CJK_FACES:
            raise ValueError(f"cjk_face must be None or one of {CJK_FACES}, got {cjk_face!r}")
        self.cjk_face = cjk_face
        self.mirror_rtl = _flag("mirror_rtl", mirror_rtl)
        self.keep_spaces = _flag("keep_spaces", keep_spaces)
        self.cache_size = _non_negative_int("cache_size", cache_size)
        self.word_cache_size = _non_negative_int("word_cache_size", word_cache_size)
        _check_sizes(self.pixels_per_patch, self.max_seq_length, self.font_size_px)
        self.font_file = _resolve_font_files(font_file)
        self._family = self._families_for_description()
        self._description = f"{self._family} {self.font_size_px!r}px"
        self._setup_key = font_setup_hash(
            self.font_file,
            description=self._description,
            pixels_per_patch=self.pixels_per_patch,
            hint_style=self.hint_style,
            hint_metrics=self.hint_metrics,
        )
        # word cache keys: (this, word), indexed by `mirrored` (a word's rendering also depends
        # on how it is cut into pairs and on their order); strings hash once
        self._word_keys = tuple(
            f"{self._setup_key}|{self.render_mode}|{self.group_graphemes}|{mirrored}"
            for mirrored in (False, True)
        )
        self._warned_missing = False
        # Build the Pango state now, so a corrupt font fails at construction.
        with _lock:
            self._setup()

    # ----------------------------------------------------------------------------- config
    @property
    def font_size_px(self) -> float:
        return self.dpi / 72 * self.font_size

    def _families_for_description(self) -> str:
        families = []
        for path in self.font_file:
            names = _font_families(path)
            if not names:
                raise ValueError(f"fontconfig cannot read the font file {path!r}")
            preferred = f"Noto Sans CJK {self.cjk_face}"
            if not families:
                families.append(names[0])
            elif self.cjk_face and preferred in names and preferred not in families:
                # The CJK collection holds JP/KR/SC/TC/HK faces; fontconfig's fallback (what the
                # published renderers get) draws Han with JP, the first face; cjk_face picks one.
                families.append(preferred)
        return ",".join(families)

    def _setup(self) -> _FontSetup:
        return _font_setup(
            self.font_file, self._description, self.hint_style, self.hint_metrics, self._setup_key
        )

    def to_dict(self) -> dict:
        output = {key: value for key, value in self.__dict__.items() if not key.startswith("_")}
        output = json.loads(json.dumps(output))  # a deep copy of plain data
        output["image_processor_type"] = self.__class__.__name__
        return output

    def __getstate__(self) -> dict:
        """What pickling (DataLoader workers, `datasets` with num_proc) and `datasets`'
        fingerprinting see: the public settings and a digest of the font bytes, no per-process
        state, so equal renderers hash equally in every process and `.map` hits its cache."""
        settings = {key: value for key, value in self.to_dict().items() if key != "auto_map"}
        return {**settings, "font_setup_hash": self._setup_key}

    def __setstate__(self, state: dict):
        state = dict(state)
        state.pop("font_setup_hash", None)
        self.__init__(**state)

    def to_json_file(self, json_file_path):
        """Writes the config with font files as basenames: they are copied next to it."""
        config = self.to_dict()
        config["font_file"] = [os.path.basename(path) for path in self.font_file]
        auto_map = config.get("auto_map")
        if isinstance(auto_map, dict) and auto_map:
            # AutoProcessor then loads the renderer itself, so its errors (a missing or corrupt
            # font) reach the user instead of AutoProcessor's "Unrecognized processing class".
            target = auto_map.get("AutoImageProcessor") or auto_map.get("AutoProcessor")
            config["auto_map"] = {"AutoImageProcessor": target, "AutoProcessor": target}
        with open(json_file_path, "w", encoding="utf-8") as writer:
            writer.write(json.dumps(config, indent=2, sort_keys=True) + "\n")

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        os.makedirs(save_directory, exist_ok=True)
        basenames = [os.path.basename(path) for path in self.font_file]
        if len(set(basenames)) != len(basenames):
            raise ValueError(f"font files must have distinct basenames to be saved: {basenames}")
        for path in self.font_file:
            target = os.path.join(save_directory, os.path.basename(path))
            if not (os.path.exists(target) and os.path.samefile(path, target)):
                shutil.copyfile(path, target)
        return super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Loads `preprocessor_config.json` and the font files named in it (local dir or hub)."""
        from transformers.utils import cached_file

        hub_kwargs = {
            key: kwargs.pop(key)
            for key in ("cache_dir", "force_download", "local_files_only", "token", "revision")
            if key in kwargs
        }
        kwargs.pop("trust_remote_code", None)  # AutoProcessor passes it on
        config, _ = cls.get_image_processor_dict(pretrained_model_name_or_path, **hub_kwargs)
        config = {key: value for key, value in config.items() if key != "auto_map"}
        config = {**_SETTINGS_BEFORE_SAVED, **config}
        names = config.get("font_file")
        if names is not None and "font_file" not in kwargs:
            names = [names] if isinstance(names, str) else names
            if not isinstance(names, list) or not names:
                raise ValueError(
                    f"{pretrained_model_name_or_path}: preprocessor_config.json font_file must "
                    f"be a file name or a list of them, got {names!r}"
                )
            config["font_file"] = [
                cached_file(
                    pretrained_model_name_or_path,
                    saved_font_name(name, pretrained_model_name_or_path),
                    **hub_kwargs,
                )
                for name in names
            ]
        config.update(kwargs)
        return cls(**config)

    @classmethod
    def from_dict(cls, image_processor_dict, **kwargs):
        return_unused_kwargs = kwargs.pop("return_unused_kwargs", False)
        renderer = cls(**{**_SETTINGS_BEFORE_SAVED, **image_processor_dict, **kwargs})
        return (renderer, {}) if return_unused_kwargs else renderer

    # ----------------------------------------------------------------------------- API
    def __call__(
        self,
        text,
        text_pair=None,
        return_tensors=None,
        return_word_spans=False,
        is_split_into_words=False,
        padding="max_length",
        pad_to_multiple_of=None,
        output_format="float32",
        **kwargs,
    ) -> BatchFeature:
        """Render a text or a batch of texts (with optional pairs) to model inputs.

        `padding="max_length"` (default, what the checkpoints were trained on) makes every strip
        max_seq_length patches wide; `"longest"` (or True) pads only to the batch's longest
        text, rounded up to a multiple of `pad_to_multiple_of` patches (capped at
        max_seq_length). Truncation is the same either way: at max_seq_length.

        `output_format` "float32" (default, the checkpoints' convention): `pixel_values`
        [B, 3, P, W] in [0, 1]. "uint8": the compact batch format, [B, 1, P, W] with
        255 = white, 12x smaller; every model class converts it on its device (use it in
        DataLoader workers and to pre-render a corpus with `datasets`).
        """
        if return_tensors not in (None, "np", "pt"):
            raise ValueError(f"return_tensors must be None, 'np' or 'pt', got {return_tensors!r}")
        if padding is True:
            padding = "longest"
        if padding not in ("max_length", "longest"):
            raise ValueError(f"padding must be 'max_length' or 'longest' (True), got {padding!r}")
        if pad_to_multiple_of is not None:
            _positive_int("pad_to_multiple_of", pad_to_multiple_of)
        if output_format not in OUTPUT_FORMATS:
            raise ValueError(
                f"output_format must be one of {OUTPUT_FORMATS}, got {output_format!r}"
            )
        if kwargs:  # a misspelt option must not silently do nothing
            raise TypeError(
                f"PixelM4TextRenderer() got unexpected keyword argument(s) {sorted(kwargs)}; it "
                "takes text, text_pair, return_tensors, return_word_spans, is_split_into_words, "
                "padding, pad_to_multiple_of and output_format"
            )
        texts, pairs = _as_batch(text, text_pair, is_split_into_words)
        patch = self.pixels_per_patch
        examples = (
            self._render(one, pair, is_split_into_words, word_spans=return_word_spans)
            for one, pair in zip(texts, pairs, strict=True)
        )
        if padding == "max_length":
            length = self.max_seq_length  # known: strips are copied in as they are rendered
        else:  # the width needs every text first: keep only their attended patches meanwhile
            examples = [
                replace(e, pixels=e.pixels[:, : patch * e.num_patches].copy()) for e in examples
            ]
            length = self.padded_length([e.num_patches for e in examples], pad_to_multiple_of)
        compact = output_format == "uint8"
        # filled in place, one example at a time: memory is the output plus one strip; every
        # value is written once (no pre-fill: the float32 batch is memory-bound)
        pixel_values = np.empty(
            (len(texts), 1 if compact else 3, patch, patch * length),
            dtype=np.uint8 if compact else np.float32,
        )
        kept = []
        for index, example in enumerate(examples):
            strip = example.pixels[:, : patch * length]  # after the text there is only white
            width = strip.shape[1]
            if compact:
                pixel_values[index, 0, :, :width] = strip
                pixel_values[index, 0, :, width:] = 255  # padding="longest": white
            else:
                np.divide(strip, _WHITE, out=pixel_values[index, 0, :, :width], dtype=np.float32)
                pixel_values[index, 0, :, width:] = 1.0  # padding="longest": white
                pixel_values[index, 1:] = pixel_values[index, 0]
            kept.append(replace(example, pixels=None))
        examples = kept
        num_patches = np.array([example.num_patches for example in examples], dtype=np.int64)
        overflow = [example.overflow for example in examples]
        missing = [example.missing_glyphs for example in examples]
        spans = [example.word_patch_spans for example in examples]
        counts = [example.word_patch_counts for example in examples]
        data = {
            "pixel_values": pixel_values,
            "attention_mask": (np.arange(length)[None, :] < num_patches[:, None]).astype(np.int64),
            "num_patches": num_patches,
            "overflow": np.array(overflow, dtype=np.int64),
            "missing_glyphs": np.array(missing, dtype=np.int64),
        }
        batch = BatchFeature(data=data, tensor_type=return_tensors)
        if return_word_spans:
            # ragged python lists, kept out of the tensor conversion
            batch["word_patch_spans"] = spans
            if self.render_mode == "word_bigram":
                batch["word_patch_counts"] = counts
        return batch

    def padded_length(self, num_patches: list[int], pad_to_multiple_of: int | None) -> int:
        """padding="longest": strip width in patches for texts of `num_patches` patches each."""
        length = max(num_patches, default=1)
        if pad_to_multiple_of is not None:
            length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
        return min(length, self.max_seq_length)

    def render(self, text, text_pair=None, is_split_into_words: bool = False) -> RenderedText:
        """Renders one example (a text, optionally with a second text) to a numpy strip.

        `is_split_into_words=True`: `text` (and `text_pair`) are lists of words (the tokens of
        token classification and parsing). They are drawn as " ".join(words); in bigram mode,
        right-to-left words keep their order (only their pairs are mirrored), as the published
        renderer does for word lists.
        """
        return self._render(text, text_pair, is_split_into_words, word_spans=True)

    def _render(self, text, text_pair, is_split_into_words: bool, word_spans: bool) -> RenderedText:
        """`render`; `word_spans=False` (a batch call that does not return them) may leave
        `word_patch_spans` empty where measuring them costs time (continuous mode)."""
        texts = [_check_input("text", text, is_split_into_words)]
        if text_pair is not None:
            texts.append(_check_input("text_pair", text_pair, is_split_into_words))
        if len(texts) == 2 and self.max_seq_length < 2:
            raise ValueError(
                "max_seq_length must be >= 2 to render a text pair (separator + end patch), "
                f"got {self.max_seq_length}"
            )
        texts = [clean_text(one) for one in texts]
        if self.render_mode == "continuous":
            if not self.keep_spaces:
                texts = [" ".join(one.split()) for one in texts]
            return self._render_continuous(texts, word_spans)
        segments = [one.split() for one in texts]
        # Right-to-left (published PIXEL-M4 renderer, `_render_text_to_surface` /
        # `_render_as_list_text_to_surface` / `_render_text_pair_to_surface`): a text (a pair:
        # both texts) that `is_rtl` is drawn with mirrored pairs, and, unless it is a word list,
        # with its words in reverse order.
        mirrored = (
            self.mirror_rtl
            and self.render_mode == "bigram"
            and all(is_rtl(" ".join(words)) for words in segments)
        )
        return self._render_pairs(
            segments, mirrored, reverse_words=mirrored and not is_split_into_words
        )

    # ----------------------------------------------------------------------------- bigrams
    def _render_pairs(
        self, segments: list[list[str]], mirrored: bool = False, reverse_words: bool = False
    ) -> RenderedText:
        patch = self.pixels_per_patch
        # the end patch and a pair's separator are reserved
        strip = _Strip(budget=self.max_seq_length - len(segments))
        with _lock:
            setup = self._setup()
            if self.cache_size:
                alpha = np.zeros((patch, patch * self.max_seq_length), dtype=np.uint8)
                self._place_segments(
                    setup,
                    segments,
                    strip,
                    lambda word: self._place_word(setup, word, mirrored, strip, alpha),
                    reverse_words,
                    mirrored,
                )
            else:
                canvas = _Canvas(setup.native, patch * self.max_seq_length, patch)
                try:
                    self._place_segments(
                        setup,
                        segments,
                        strip,
                        lambda word: self._draw_word_on_strip(setup, word, mirrored, strip, canvas),
                        reverse_words,
                        mirrored,
                    )
                    alpha = canvas.alpha()
                finally:
                    canvas.close()
        return self._finish(alpha, strip, sum(len(words) for words in segments))

    def _place_segments(
        self, setup, segments, strip: _Strip, place_word, reverse_words=False, mirrored=False
    ):
        """Places words left to right; `place_word(word)` is False if the word does not fit.

        `reverse_words`: each text's words are placed last word first (right-to-left text);
        their spans are still listed in text order. Truncation then drops words from the start
        of the text, as in the published renderer (it reverses the words before truncating).

        A word that does not fit drops with all words after it (the published rule), except a
        word wider than a whole strip (text without spaces: Chinese, Thai, ...): its longest
        prefix of whole pairs that fits is placed, so the strip is never left blank. Either way
        `overflow` counts the words not rendered whole (a cut word included).
        """
        words_left = sum(len(words) for words in segments)
        strip_budget = self.max_seq_length - len(segments)  # text patches of an empty strip
        for index, words in enumerate(segments):
            if index == 1:  # separator between text and text_pair, placed even after overflow
                strip.black.append(strip.cursor)
                strip.cursor += 1
                strip.budget += 1  # its patch was reserved in the budget
            first_span = len(strip.spans)
            if reverse_words:
                words = words[::-1]
            for word in words:
                if strip.overflow:
                    break
                start = strip.cursor
                prefix, placed = None, False
                # A word of at most strip_budget characters has at most that many pairs to
                # measure, and if it is placed it fits an empty strip: try it first. Only a word
                # that is not placed is searched for a prefix (placing draws nothing on failure).
                if len(word) <= strip_budget:
                    placed = place_word(word)
                if not placed:
                    prefix = self._prefix_if_too_wide(
                        setup, word, mirrored, strip_budget, strip.budget - start
                    )
                    if prefix is None:
                        placed = len(word) > strip_budget and place_word(word)
                    else:
                        placed = bool(prefix) and place_word(prefix)
                if placed:
                    strip.spans.append((start, strip.cursor))
                    strip.counts.append(strip.cursor - start)
                if prefix is not None or not placed:
                    strip.overflow = words_left
                    break
                words_left -= 1
            if reverse_words:
                strip.spans[first_span:] = strip.spans[first_span:][::-1]

    def _prefix_if_too_wide(
        self, setup, word: str, mirrored: bool, strip_budget: int, space: int
    ) -> str | None:
        """None if `word` fits an empty strip; else its longest prefix of whole pairs that fits
        in `space` patches ("" if none does). Measures at most `strip_budget` + 1 patches of
        pairs, so a word of any length costs no more than one strip. The prefix is the word's
        start in text order (a mirrored right-to-left word keeps its first pairs too)."""
        cached = _word_cache.get((self._word_keys[mirrored], word))
        if cached is not None and cached[1] <= strip_budget:
            return None  # a cached word knows its width
        pairs = _word_pairs(word, self.render_mode, self.group_graphemes)
        used, fitting = 0, 0
        for pair in pairs:
            used += self._pair_patches(setup, pair)
            if used > strip_budget:
                break
            if used <= space:
                fitting += 1
        else:
            return None
        kept = pairs[:fitting]
        if self.render_mode == "word_bigram" and kept:  # overlapping pairs share a unit
            return "".join(kept[0]) + "".join(pair[-1] for pair in kept[1:])
        return "".join("".join(pair) for pair in kept)

    def _pair_patches(self, setup, pair: tuple[str, ...]) -> int:
        if self.cache_size:
            return self._pair_ink(setup, pair)[1]
        layouts, num_patches, _ = self._measure_pair(setup, pair)
        self._free_layouts(setup, layouts)
        return num_patches

    def _draw_word_on_strip(
        self, setup, word: str, mirrored: bool, strip: _Strip, canvas: _Canvas
    ) -> bool:
        """The reference path: every unit shaped with its own layout and drawn on the strip."""
        pairs = _word_pairs(word, self.render_mode, self.group_graphemes, mirrored)
        measured = [self._measure_pair(setup, pair) for pair in pairs]
        try:
            if strip.cursor + sum(num_patches for _, num_patches, _ in measured) > strip.budget:
                return False
            for pair, (layouts, num_patches, missing) in zip(pairs, measured, strict=True):
                canvas.draw(self._placements(layouts, strip.cursor * self.pixels_per_patch))
                strip.cursor += num_patches
                if missing:
                    strip.add_missing(missing, "".join(pair))
            return True
        finally:
            for layouts, _, _ in measured:
                self._free_layouts(setup, layouts)

    def _place_word(
        self, setup, word: str, mirrored: bool, strip: _Strip, alpha: np.ndarray
    ) -> bool:
        """The cached path: composites the word's coverage at the cursor (see "The caches").

        A word seen for the first time is composed on the strip pair by pair from the pair
        cache (itself composed from cached units); the word cache takes a word the second time
        it is seen, so a stream of rare words never pays for building and evicting entries.
        """
        key = (self._word_keys[mirrored], word)
        word_ink = _lru_get(_word_cache, key)
        if word_ink is None:
            if not (self.word_cache_size and _lru_get(_seen_words, key)):
                if self.word_cache_size:  # remembers 4x as many words as the cache holds
                    _lru_put(_seen_words, key, True, 4 * self.word_cache_size)
                return self._place_pairs(setup, word, mirrored, strip, alpha)
            word_ink = self._word_ink(setup, word, mirrored)
        ink, num_patches, missing, missing_text = word_ink
        if strip.cursor + num_patches > strip.budget:
            return False
        origin = strip.cursor * self.pixels_per_patch
        region = self._composite(ink, origin, strip, alpha)
        if region is not None:
            start, stop = region
            alpha[:, start:stop] = self._draw_word_over(
                setup, word, mirrored, alpha[:, start:stop], origin - start
            )
        strip.cursor += num_patches
        if missing:
            strip.add_missing(missing, missing_text)
        return True

    def _place_pairs(
        self, setup, word: str, mirrored: bool, strip: _Strip, alpha: np.ndarray
    ) -> bool:
        """Composites a word's pairs one by one at their patch boundaries."""
        pairs = _word_pairs(word, self.render_mode, self.group_graphemes, mirrored)
        inks = [self._pair_ink(setup, pair) for pair in pairs]
        if strip.cursor + sum(pair_ink[1] for pair_ink in inks) > strip.budget:
            return False
        patch = self.pixels_per_patch
        for pair, (ink, num_patches, missing, text) in zip(pairs, inks, strict=True):
            origin = strip.cursor * patch
            region = self._composite(ink, origin, strip, alpha)
            if region is not None:
                start, stop = region
                layouts, _, _ = self._measure_pair(setup, pair)
                try:
                    placed = self._placements(layouts, origin - start)
                    alpha[:, start:stop] = self._draw_placed(setup, alpha[:, start:stop], placed)
                finally:
                    self._free_layouts(setup, layouts)
            strip.cursor += num_patches
            if missing:
                strip.add_missing(missing, text)
        return True

    def _composite(self, ink: tuple, origin: int, strip: _Strip, alpha: np.ndarray):
        """Composites `ink` (a word's or a pair's, at `origin`) onto the strip's coverage: a
        copy where nothing is below, else pixman's OVER. Where fragile pixels would land on
        ink it returns the [start, stop) columns for cairo to draw instead (see "The
        caches")."""
        offset, coverage, fragile = ink
        x, width = origin + offset, coverage.shape[1]
        if not width:
            return None
        if strip.ink_end <= x and x + width <= alpha.shape[1]:
            alpha[:, x : x + width] = coverage  # nothing drawn there yet: a copy is exact
        elif self._fragile_pixels_inked(alpha, x, fragile, strip.ink_end):
            strip.ink_end = max(strip.ink_end, x + width)
            return max(x, 0), min(x + width, alpha.shape[1])
        else:
            _over_into(alpha, coverage, x)
        strip.ink_end = max(strip.ink_end, x + width)
        return None

    @staticmethod
    def _fragile_pixels_inked(alpha: np.ndarray, x: int, fragile, ink_end: int) -> bool:
        if fragile is None:
            return False
        start, stop = max(x, 0), min(x + fragile.shape[1], ink_end, alpha.shape[1])
        if start >= stop:
            return False
        return bool(((alpha[:, start:stop] > 0) & fragile[:, start - x : stop - x]).any())

    def _draw_placed(self, setup, background: np.ndarray, placed: list[tuple]) -> np.ndarray:
        """Cairo draws (layout, x, y) onto a copy of `background` (coverage [P, w])."""
        canvas = _Canvas(setup.native, background.shape[1], self.pixels_per_patch)
        try:
            canvas.set_alpha(background)
            canvas.draw(placed)
            return canvas.alpha()
        finally:
            canvas.close()

    def _draw_word_over(
        self, setup, word: str, mirrored: bool, background: np.ndarray, origin: int
    ):
        """Cairo draws the word's units onto a copy of `background`, the word at `origin`."""
        measured = []
        try:
            placed = []
            for pair in _word_pairs(word, self.render_mode, self.group_graphemes, mirrored):
                measured.append(self._measure_pair(setup, pair))
                layouts, num_patches, _ = measured[-1]
                placed += self._placements(layouts, origin)
                origin += num_patches * self.pixels_per_patch
            return self._draw_placed(setup, background, placed)
        finally:
            for layouts, _, _ in measured:
                self._free_layouts(setup, layouts)

    def _word_ink(self, setup: _FontSetup, word: str, mirrored: bool) -> tuple:
        key = (self._word_keys[mirrored], word)
        cached = _lru_get(_word_cache, key)
        if cached is not None:
            return cached
        pieces, num_patches, missing, missing_text = [], 0, 0, ""
        for pair in _word_pairs(word, self.render_mode, self.group_graphemes, mirrored):
            (offset, alpha, fragile), pair_patches, pair_missing, text = self._pair_ink(setup, pair)
            pieces.append((num_patches * self.pixels_per_patch + offset, alpha, fragile))
            num_patches += pair_patches
            missing += pair_missing
            missing_text = missing_text or (text if pair_missing else "")
        (offset, alpha, fragile), exact = _assemble(pieces, self.pixels_per_patch)
        if not exact:
            alpha = self._draw_word_over(setup, word, mirrored, np.zeros_like(alpha), -offset)
        word_ink = ((offset, alpha, fragile), num_patches, missing, missing_text)
        if self.word_cache_size:
            _lru_put(_word_cache, key, word_ink, self.word_cache_size)
        return word_ink

    def _pair_ink(self, setup: _FontSetup, pair: tuple[str, ...]) -> tuple:
        """A pair composed from its units' cached ink, side by side by advance width (the
        published rule); cairo draws it only where units overlap on fragile pixels."""
        key = (self._setup_key, pair)
        cached = _lru_get(_pair_cache, key)
        if cached is not None:
            return cached
        pieces, x, missing = [], 0, 0
        for unit in pair:
            (offset, alpha, fragile), width, unit_missing = self._unit(setup, unit)
            pieces.append((x + offset, alpha, fragile))
            x += width
            missing += unit_missing
        (offset, alpha, fragile), exact = _assemble(pieces, self.pixels_per_patch)
        if not exact:
            layouts, _, _ = self._measure_pair(setup, pair)
            try:
                placed = self._placements(layouts, -offset)
                alpha = self._draw_placed(setup, np.zeros_like(alpha), placed)
            finally:
                self._free_layouts(setup, layouts)
        num_patches = max(1, math.ceil(x / self.pixels_per_patch))
        pair_ink = ((offset, alpha, fragile), num_patches, missing, "".join(pair))
        _lru_put(_pair_cache, key, pair_ink, self.cache_size)
        return pair_ink

    def _unit(self, setup: _FontSetup, unit: str) -> tuple:
        """One unit shaped alone: its ink drawn at x = 0 (glyphs land on whole pixels, so
        it is the same at any integer x), advance width and missing glyphs."""
        key = (self._setup_key, unit)
        cached = _lru_get(_unit_cache, key)
        if cached is not None:
            return cached
        layout = setup.layout(unit)
        try:
            width, height = setup.logical_size(layout)
            y = self.pixels_per_patch / 2 - height / 2 - 2
            unit_ink = (self._unit_ink(setup, layout, 0, y), width, setup.unknown_glyphs(layout))
        finally:
            setup.free(layout)
        _lru_put(_unit_cache, key, unit_ink, self.cache_size)
        return unit_ink

    def _unit_ink(self, setup: _FontSetup, layout, x: int, y: float) -> tuple:
        """The coverage of `layout` drawn alone at (x, y), cropped to its inked columns."""
        left, right = setup.ink_columns(layout)
        margin = 4  # px around Pango's ink box; doubled while ink touches the canvas edge
        for _ in range(_MAX_MARGIN_DOUBLINGS):  # bounded: ink never runs far past Pango's box
            origin = x + left - margin  # canvas column 0 in the caller's coordinates
            empty = np.zeros((self.pixels_per_patch, right - left + 2 * margin), dtype=np.uint8)
            alpha = self._draw_placed(setup, empty, [(layout, x - origin, y)])  # integer shift
            if not (alpha[:, 0].any() or alpha[:, -1].any()):
                break
            margin *= 2
        columns = np.flatnonzero(alpha.any(axis=0))
        if not columns.size:
            return (0, alpha[:, :0].copy(), None)
        first, last = int(columns[0]), int(columns[-1])
        alpha = alpha[:, first : last + 1].copy()
        one_composite = setup.glyph_count(layout) <= 1 and not setup.unknown_glyphs(layout)
        return (origin + first, alpha, None if one_composite else alpha > 0)

    def _measure_pair(self, setup: _FontSetup, pair: tuple[str, ...]):
        """Layouts of a pair's units with their logical sizes; the pair's width in patches."""
        layouts = []
        total_width, missing = 0, 0
        for unit in pair:
            layout = setup.layout(unit)
            width, height = setup.logical_size(layout)
            layouts.append((layout, width, height))
            total_width += width
            missing += setup.unknown_glyphs(layout)
        num_patches = max(1, math.ceil(total_width / self.pixels_per_patch))
        return layouts, num_patches, missing

    def _placements(self, layouts, x: int) -> list[tuple]:
        """(layout, x, y): units side by side by advance width, centred like the original."""
        placed = []
        for layout, width, height in layouts:
            placed.append((layout, x, self.pixels_per_patch / 2 - height / 2 - 2))
            x += width
        return placed

    @staticmethod
    def _free_layouts(setup: _FontSetup, layouts):
        for layout, _, _ in layouts:
            setup.free(layout)

    # ----------------------------------------------------------------------------- continuous
    def _render_continuous(self, texts: list[str], word_spans: bool = True) -> RenderedText:
        patch = self.pixels_per_patch
        word_ranges = [_word_char_ranges(text) for text in texts]
        total_words = sum(len(ranges) for ranges in word_ranges)
        with _lock:
            setup = self._setup()
            # Texts that fit (the usual case) are shaped once, measured and drawn from the same
            # layout, as the published renderer does; only the others are searched.
            layouts = self._layouts_if_they_fit(setup, texts)
            if layouts is not None:
                parts, overflow = list(zip(texts, word_ranges, strict=True)), 0
            else:
                parts, overflow = self._continuous_words_that_fit(setup, texts, word_ranges)
                layouts = [None] * len(parts)
            strip = _Strip(budget=self.max_seq_length - 1, overflow=overflow)
            canvas = _Canvas(setup.native, patch * self.max_seq_length, patch)
            try:
                for index, ((drawn, ranges), layout) in enumerate(zip(parts, layouts, strict=True)):
                    if index == 1:
                        strip.black.append(strip.cursor)
                        strip.cursor += 1
                    self._draw_continuous_segment(
                        setup, canvas, drawn, ranges if word_spans else [], strip, layout
                    )
                alpha = canvas.alpha()
            finally:
                canvas.close()
                for layout in layouts:
                    if layout is not None:
                        setup.free(layout)
        return self._finish(alpha, strip, total_words)

    def _layouts_if_they_fit(self, setup: _FontSetup, texts: list[str]) -> list | None:
        """The texts' layouts (None for an empty text) if text, [separator,] text_pair and the
        end patch fit the strip; else None (nothing kept)."""
        if any(len(text) > _MAX_LAYOUT_CHARS for text in texts):
            return None
        layouts = [setup.layout(text) if text else None for text in texts]
        patches = 0
        for layout in layouts:
            if layout is not None:
                width, _ = setup.logical_size(layout)
                patches += math.ceil((2 * _CONTINUOUS_MARGIN + width) / self.pixels_per_patch)
        if patches + len(texts) <= self.max_seq_length:
            return layouts
        for layout in layouts:
            if layout is not None:
                setup.free(layout)
        return None

    def _continuous_patches(self, setup: _FontSetup, text: str) -> int:
        if not text:
            return 0
        layout = setup.layout(text)
        width, _ = setup.logical_size(layout)
        setup.free(layout)
        return math.ceil((2 * _CONTINUOUS_MARGIN + width) / self.pixels_per_patch)

    def _continuous_words_that_fit(self, setup: _FontSetup, texts, word_ranges):
        """What to draw of each text (text, then text_pair) and its word ranges, for the
        largest number of leading words whose strip fits; and the overflow (words not drawn
        whole).

        As in the bigram modes, a word wider than a whole strip is cut to its longest prefix of
        grapheme clusters that fits instead of being dropped. Searches gallop (1, 2, 4, ...
        words or clusters, then bisect), so Pango never measures much more than a strip: a
        layout past ~2.1 million px reports nonsense widths, and shaping a huge text is slow.
        """

        def first_words(count: int) -> list[tuple[str, list]]:
            parts = []
            for text, ranges in zip(texts, word_ranges, strict=True):
                kept = min(len(ranges), max(0, count))
                count -= len(ranges)
                parts.append((_continuous_prefix(text, ranges, kept), ranges[:kept]))
            return parts

        def fits(parts) -> bool:
            if any(len(text) > _MAX_LAYOUT_CHARS for text, _ in parts):
                return False
            patches = sum(self._continuous_patches(setup, text) for text, _ in parts)
            return patches + len(texts) - 1 + 1 <= self.max_seq_length

        total = sum(len(ranges) for ranges in word_ranges)
        count = _longest_prefix(lambda n: fits(first_words(n)), total)
        parts = first_words(count)
        if count < total:  # is the first word that does not fit wider than an empty strip?
            index = next(i for i in range(len(texts)) if len(parts[i][1]) < len(word_ranges[i]))
            text, (start, end) = texts[index], word_ranges[index][len(parts[index][1])]
            clusters = _units(text[start:end], group_graphemes=True)

            def with_prefix(parts, n: int):
                stop = start + sum(len(cluster) for cluster in clusters[:n])
                cut = list(parts)
                cut[index] = (text[:stop], [*parts[index][1], (start, stop)])
                return cut

            def alone(n: int):  # the word's first n clusters on an empty strip
                cut = [("", [])] * len(texts)
                word = "".join(clusters[:n])
                cut[index] = (word, [(0, len(word))])
                return cut

            if _longest_prefix(lambda n: fits(alone(n)), len(clusters)) < len(clusters):
                kept = _longest_prefix(lambda n: fits(with_prefix(parts, n)), len(clusters))
                if kept:
                    parts = with_prefix(parts, kept)
        return parts, total - count

    def _draw_continuous_segment(
        self, setup, canvas: _Canvas, text: str, ranges, strip: _Strip, layout=None
    ):
        """Draws `text` (with its `layout` if already shaped) at the cursor; word spans."""
        if not text or len(text) > _MAX_LAYOUT_CHARS:  # nothing, or only spaces, too many to fit
            return
        patch = self.pixels_per_patch
        owned = layout is None
        if owned:
            layout = setup.layout(text)
        try:
            width, height = setup.logical_size(layout)
            num_patches = math.ceil((2 * _CONTINUOUS_MARGIN + width) / patch)
            if strip.cursor + num_patches > strip.budget:  # only spaces, too many to fit
                return
            left = strip.cursor * patch
            y = patch / 2 - height / 2 - 2
            canvas.draw([(layout, left + _CONTINUOUS_MARGIN, y)])
            missing = setup.unknown_glyphs(layout)
            if missing:
                strip.add_missing(missing, text.strip()[:20])
            cursor, floor, ceil = strip.cursor, math.floor, math.ceil
            for x0, x1 in setup.x_ranges(layout, _byte_ranges(text, ranges)):
                first = cursor + min(
                    num_patches - 1, max(0, floor((x0 + _CONTINUOUS_MARGIN) / patch))
                )
                last = cursor + min(num_patches, ceil((x1 + _CONTINUOUS_MARGIN) / patch))
                strip.spans.append((first, max(first + 1, last)))
            strip.cursor += num_patches
        finally:
            if owned:
                setup.free(layout)

    # ----------------------------------------------------------------------------- shared
    def _finish(self, alpha: np.ndarray, strip: _Strip, num_words: int) -> RenderedText:
        """Coverage -> pixels (255 = white); black separator / end patch, white after it."""
        patch = self.pixels_per_patch
        pixels = np.subtract(255, alpha, dtype=np.uint8)
        strip.black.append(strip.cursor)  # the end patch
        for index in strip.black:
            pixels[:, index * patch : (index + 1) * patch] = 0
        pixels[:, (strip.cursor + 1) * patch :] = 255  # also where ink spilled past the end patch
        if strip.missing:
            self._warn_missing(strip.missing, strip.missing_sample)
        return RenderedText(
            pixels=pixels,
            num_patches=strip.cursor + 1,
            word_patch_spans=strip.spans,
            num_words=num_words,
            overflow=strip.overflow,
            missing_glyphs=strip.missing,
            word_patch_counts=strip.counts if self.render_mode == "word_bigram" else None,
        )

    def _warn_missing(self, count: int, sample: str):
        if self._warned_missing:
            return
        self._warned_missing = True
        codepoints = " ".join(f"U+{ord(char):04X}" for char in sample)
        warnings.warn(
            f"{count} glyph(s) missing from the fonts (drawn as tofu boxes), e.g. in "
            f"{sample!r} ({codepoints}); further missing glyphs of this renderer are only "
            "counted (see `missing_glyphs`)",
            stacklevel=4,
        )


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------
def _flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _positive_number(name: str, value) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not value > 0
    ):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def _non_negative_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return value


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _check_sizes(pixels_per_patch: int, max_seq_length: int, font_size_px: float):
    """Sizes that reach cairo and Pango, checked against their limits before anything is drawn."""
    if pixels_per_patch > MAX_PIXELS_PER_PATCH:
        raise ValueError(
            f"pixels_per_patch must be at most {MAX_PIXELS_PER_PATCH}, got {pixels_per_patch}"
        )
    if pixels_per_patch * max_seq_length > MAX_STRIP_WIDTH:
        raise ValueError(
            f"the strip (pixels_per_patch * max_seq_length = {pixels_per_patch} * "
            f"{max_seq_length} px) must be at most {MAX_STRIP_WIDTH} px wide (cairo's image "
            f"limit is {_CAIRO_MAX_SIZE} px): lower max_seq_length to at most "
            f"{MAX_STRIP_WIDTH // pixels_per_patch}"
        )
    if not 1 <= font_size_px <= _MAX_FONT_PATCHES * pixels_per_patch:
        raise ValueError(
            f"the font size in pixels (dpi / 72 * font_size = {font_size_px:g}) must lie in "
            f"[1, {_MAX_FONT_PATCHES * pixels_per_patch}] ({_MAX_FONT_PATCHES} patch heights): "
            "glyphs outside it are invisible or cut off"
        )


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


def _check_input(name: str, text, is_split_into_words: bool) -> str:
    """A text, or a list of words joined by spaces (`is_split_into_words`)."""
    if not is_split_into_words:
        return _check_text(name, text)
    if not isinstance(text, (list, tuple)):
        raise TypeError(
            f"{name} must be a list of words with is_split_into_words=True, "
            f"got {type(text).__name__}"
        )
    return " ".join(_check_text(f"{name} words", word) for word in text)


def _check_text(name: str, text) -> str:
    if isinstance(text, (bytes, bytearray)):
        try:
            bytes(text).decode("utf-8")
        except UnicodeDecodeError as error:
            raise TypeError(
                f"{name} must be str; got bytes that are not valid UTF-8 ({error})"
            ) from error
        raise TypeError(f"{name} must be str, got bytes: decode it first (text.decode('utf-8'))")
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str or a list of str, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:  # lone surrogates ("\ud800") cannot reach Pango
        raise ValueError(
            f"{name} holds a lone surrogate U+{ord(text[error.start]):04X} at character "
            f"{error.start}; it is not text (decode with errors='replace' to drop it)"
        ) from None
    return text


def _as_batch(text, text_pair, is_split_into_words: bool = False) -> tuple[list, list]:
    one_word_list = isinstance(text, (list, tuple)) and not (
        text and isinstance(text[0], (list, tuple))
    )
    if is_split_into_words and one_word_list:  # a batch is a list of word lists
        text = [text]
        text_pair = None if text_pair is None else [text_pair]
    if isinstance(text, (list, tuple)):
        if not text:
            raise ValueError("text is an empty list: give at least one text")
        texts = list(text)
        if text_pair is None:
            return texts, [None] * len(texts)
        if not isinstance(text_pair, (list, tuple)) or len(text_pair) != len(texts):
            length = len(text_pair) if isinstance(text_pair, (list, tuple)) else "a single text"
            raise ValueError(
                f"text_pair must be a list as long as text ({len(texts)}), got {length}"
            )
        return texts, list(text_pair)
    if isinstance(text_pair, (list, tuple)):
        raise ValueError("text_pair is a list but text is a single text")
    return [text], [text_pair]


def _longest_prefix(fits, limit: int) -> int:
    """The largest n in [0, limit] with fits(n), for a monotone `fits` with fits(0) assumed
    true: gallops 1, 2, 4, ... then bisects, so fits is never asked about more than twice the
    answer (+1) and at most ~2 log2(answer) + 2 times."""
    low, high = 0, 1
    while high <= limit and fits(high):
        low, high = high, high * 2
    high = min(high, limit + 1)  # fits(high) is false or high is past the limit
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low


def _word_char_ranges(text: str) -> list[tuple[int, int]]:
    """[start, end) character ranges of the whitespace-separated words of `text`."""
    return [match.span() for match in re.finditer(r"\S+", text)]


def _continuous_prefix(text: str, ranges: list[tuple[int, int]], count: int) -> str:
    """What continuous mode draws of `text` when its first `count` words fit: all of it
    (spaces included) if every word fits, else up to the end of the last word kept."""
    if count == len(ranges):
        return text
    return text[: ranges[count - 1][1]] if count else ""


def _byte_ranges(text: str, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Character ranges -> UTF-8 byte ranges in `text` (Pango indexes bytes)."""
    if text.isascii():
        return ranges
    result, position, offset = [], 0, 0
    for start, end in ranges:
        offset += len(text[position:start].encode("utf-8"))
        length = len(text[start:end].encode("utf-8"))
        result.append((offset, offset + length))
        offset, position = offset + length, end
    return result


def strip_to_grid(pixels, grid: int = 23):
    """[..., P, P*N] strip -> [..., P*rows, P*grid] image (patch k at row k // grid), for viewing.

    Works on numpy arrays and torch tensors; missing cells are white (255 for uint8, else 1.0).
    """
    height = pixels.shape[-2]
    num_patches = pixels.shape[-1] // height
    rows = math.ceil(num_patches / grid)
    white = 255 if str(pixels.dtype) in ("uint8", "torch.uint8") else 1.0
    if isinstance(pixels, np.ndarray):
        padded = np.full((*pixels.shape[:-1], rows * grid * height), white, dtype=pixels.dtype)
    else:
        padded = pixels.new_full((*pixels.shape[:-1], rows * grid * height), white)
    padded[..., : num_patches * height] = pixels[..., : num_patches * height]
    lead = padded.shape[:-2]
    cells = padded.reshape(*lead, height, rows, grid, height)
    order = (*range(len(lead)), len(lead) + 1, len(lead), len(lead) + 2, len(lead) + 3)
    cells = cells.transpose(order) if isinstance(cells, np.ndarray) else cells.permute(order)
    return cells.reshape(*lead, rows * height, grid * height)


PixelM4TextRenderer.register_for_auto_class("AutoImageProcessor")


def _attach_to_parent_package():
    """transformers loads remote code as `transformers_modules.<repo>.<hash>.rendering_pixel_m4`
    without setting it as an attribute of its parent package. dill (used by `datasets` to
    fingerprint `.map` functions) looks classes up through that attribute and, not finding
    them, pickles the class by value, with its cffi handles. Attach it, so the class pickles by
    reference as it does when installed."""
    package, _, name = __name__.rpartition(".")
    if not package:
        return
    try:
        parent = importlib.import_module(package)
    except ImportError:
        return
    if getattr(parent, name, None) is None:
        setattr(parent, name, sys.modules[__name__])


_attach_to_parent_package()

if __name__ == "__main__":  # quick look: python rendering_pixel_m4.py "some text"
    example = PixelM4TextRenderer().render(" ".join(sys.argv[1:]) or "Hello world")
    print(example.num_patches, example.word_patch_spans, example.missing_glyphs)
