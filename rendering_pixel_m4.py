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
* A pair's ink is clipped to its own patches. That makes a patch a function of its pair alone,
  which is what lets the cache reproduce the uncached rendering byte for byte. (The original
  renderer did not clip; the two only differ where a glyph's ink overhangs its logical box by
  more than the rest of the patch.)
* Control characters (Unicode Cc/Cf, except ZWJ/ZWNJ) are dropped before rendering; the
  whitespace ones (newline, tab, ...) act as word separators.
* Every mode ends with one black end patch, also ``word_bigram`` (so ``num_patches`` is always
  text patches [+ separator] + 1, and an empty text is just the end patch).
"""

from __future__ import annotations

import ctypes.util
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import threading
import unicodedata
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from transformers import BatchFeature
from transformers.image_processing_utils import ImageProcessingMixin

logger = logging.getLogger(__name__)

RENDER_MODES = ("bigram", "continuous", "word_bigram")
_DEFAULT_FONT_SIZE = {"bigram": 8, "continuous": 8, "word_bigram": 10}
_DEFAULT_PIXELS_PER_PATCH = {"bigram": 16, "continuous": 16, "word_bigram": 24}
_CONTINUOUS_MARGIN = 2  # px of white before and after a continuous text (original PIXEL)
_CJK_FAMILY = "Noto Sans CJK SC"  # preferred face of the CJK collection (Chinese)
_KEPT_FORMAT_CHARS = {"\u200c", "\u200d"}  # ZWNJ / ZWJ shape Indic and Arabic text

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
void cairo_surface_destroy(cairo_surface_t *surface);
cairo_t *cairo_create(cairo_surface_t *target);
void cairo_destroy(cairo_t *cr);
void cairo_save(cairo_t *cr);
void cairo_restore(cairo_t *cr);
void cairo_rectangle(cairo_t *cr, double x, double y, double width, double height);
void cairo_clip(cairo_t *cr);
void cairo_move_to(cairo_t *cr, double x, double y);
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

PangoFontMap *pango_cairo_font_map_new_for_font_type(int fonttype);
void pango_cairo_context_set_font_options(PangoContext *context, const cairo_font_options_t *options);
void pango_cairo_context_set_resolution(PangoContext *context, double dpi);
void pango_cairo_show_layout(cairo_t *cr, PangoLayout *layout);

void pango_fc_font_map_set_config(PangoFontMap *fcfontmap, FcConfig *fcconfig);

void g_object_unref(gpointer object);
"""
_CAIRO_FORMAT_A8 = 2
_CAIRO_ANTIALIAS_GRAY = 2
_CAIRO_HINT_STYLE_NONE = 1
_CAIRO_HINT_METRICS_OFF = 1
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
}


class _Native:
    """The cffi handle and the dlopened libraries (loaded once; valid across fork)."""

    def __init__(self):
        from cffi import FFI

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
        except (OSError, ModuleNotFoundError) as error:
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

    def __init__(self, font_files: list[str], description: str):
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
        native.cairo.cairo_font_options_set_hint_style(options, _CAIRO_HINT_STYLE_NONE)
        native.cairo.cairo_font_options_set_hint_metrics(options, _CAIRO_HINT_METRICS_OFF)
        native.pangocairo.pango_cairo_context_set_font_options(context, options)
        native.cairo.cairo_font_options_destroy(options)
        # 72 dpi: one point is one pixel, so the "<size>px" description means device pixels.
        native.pangocairo.pango_cairo_context_set_resolution(context, 72.0)
        native.pango.pango_context_set_round_glyph_positions(context, True)
        native.pango.pango_context_set_base_dir(context, _PANGO_DIRECTION_WEAK_LTR)
        self.config, self.font_map, self.context = config, font_map, context
        self.description = native.pango.pango_font_description_from_string(description.encode())

    def layout(self, text: str):
        """A layout of `text`; the caller must `free` it."""
        pango = self.native.pango
        layout = pango.pango_layout_new(self.context)
        pango.pango_layout_set_font_description(layout, self.description)
        pango.pango_layout_set_auto_dir(layout, True)
        encoded = text.encode("utf-8")
        pango.pango_layout_set_text(layout, encoded, len(encoded))
        return layout

    def logical_size(self, layout) -> tuple[int, int]:
        logical = self.native.ffi.new("PangoRectangle *")
        self.native.pango.pango_layout_get_pixel_extents(layout, self.native.ffi.NULL, logical)
        return logical.width, logical.height

    def unknown_glyphs(self, layout) -> int:
        return self.native.pango.pango_layout_get_unknown_glyphs_count(layout)

    def free(self, layout):
        self.native.gobject.g_object_unref(layout)


def _font_setup(font_files: list[str], description: str, key: str) -> _FontSetup:
    global _font_setups, _font_setups_pid
    if _font_setups_pid != os.getpid():  # forked without the at-fork hook (e.g. os.fork in C)
        _forget_parent_state()
    setup = _font_setups.get(key)
    if setup is None:
        setup = _font_setups[key] = _FontSetup(font_files, description)
    return setup


class _Canvas:
    """An A8 cairo surface of height P; pixels come out as 255 - alpha (white background)."""

    def __init__(self, native: _Native, width: int, height: int):
        self.native, self.width, self.height = native, width, height
        self.surface = native.cairo.cairo_image_surface_create(_CAIRO_FORMAT_A8, width, height)
        self.cr = native.cairo.cairo_create(self.surface)

    def draw(self, setup: _FontSetup, placed: list[tuple], clip: tuple[int, int]):
        """Draw (layout, x, y) triples, clipped to the columns [clip[0], clip[1])."""
        cairo = self.native.cairo
        cairo.cairo_save(self.cr)
        cairo.cairo_rectangle(self.cr, clip[0], 0, clip[1] - clip[0], self.height)
        cairo.cairo_clip(self.cr)
        for layout, x, y in placed:
            cairo.cairo_move_to(self.cr, x, y)
            self.native.pangocairo.pango_cairo_show_layout(self.cr, layout)
        cairo.cairo_restore(self.cr)

    def pixels(self) -> np.ndarray:
        cairo, ffi = self.native.cairo, self.native.ffi
        cairo.cairo_surface_flush(self.surface)
        stride = cairo.cairo_image_surface_get_stride(self.surface)
        data = ffi.buffer(cairo.cairo_image_surface_get_data(self.surface), stride * self.height)
        alpha = np.frombuffer(data, dtype=np.uint8).reshape(self.height, stride)[:, : self.width]
        return 255 - alpha  # a copy, independent of the surface

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
    import manimgx_fonts
    import manimgx_fonts_cjk

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
def _clean_words(text: str) -> list[str]:
    """Whitespace-split words after dropping control/format characters (not ZWJ/ZWNJ)."""
    if text.isprintable():  # fast path: no Cc/Cf characters (isprintable is False for them)
        return text.split()
    kept = []
    for char in text:
        if unicodedata.category(char) in ("Cc", "Cf") and char not in _KEPT_FORMAT_CHARS:
            if char.isspace():  # newline, tab, ...: still separate words
                kept.append(" ")
            continue
        kept.append(char)
    return "".join(kept).split()


def _units(word: str, group_graphemes: bool) -> list[str]:
    """The shaping units of a word: code points, or grapheme clusters."""
    if group_graphemes:
        import regex

        return regex.findall(r"\X", word)
    return list(word)


def _word_pairs(word: str, mode: str, group_graphemes: bool) -> list[tuple[str, ...]]:
    units = _units(word, group_graphemes)
    if mode == "word_bigram":
        if len(units) == 1:
            return [tuple(units)]
        return [tuple(units[i : i + 2]) for i in range(len(units) - 1)]
    return [tuple(units[i : i + 2]) for i in range(0, len(units), 2)]


# --------------------------------------------------------------------------------------------
# The patch cache: a pair's rendering depends only on (font setup, size, dpi, P, pair).
# Process-wide, bounded LRU; inherited by forked workers (plain numpy data).
# --------------------------------------------------------------------------------------------
@dataclass
class _PairPatch:
    pixels: np.ndarray  # uint8 [P, P * num_patches]
    num_patches: int
    missing: int
    text: str


_pair_cache: OrderedDict[tuple, _PairPatch] = OrderedDict()


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
        cache_size: entries of the process-wide LRU of rendered pairs; 0 renders every pair
            straight into the strip (slow; the reference the cache is tested against).

    Text pairs: text, one black separator patch, text_pair, the black end patch. Truncation
    drops whole words from the end of the sequence (text_pair's first) until the strip fits.
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
        cache_size: int = 65536,
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
        self.group_graphemes = bool(group_graphemes)
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f"cache_size must be an int >= 0, got {cache_size!r}")
        self.cache_size = cache_size
        self.font_file = _resolve_font_files(font_file)
        self._family = self._families_for_description()
        self._description = f"{self._family} {self.font_size_px!r}px"
        self._setup_key = font_setup_hash(
            self.font_file,
            description=self._description,
            pixels_per_patch=self.pixels_per_patch,
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
            if not families:
                families.append(names[0])
            elif _CJK_FAMILY in names and _CJK_FAMILY not in families:
                # The CJK collection holds JP/KR/SC/TC/HK faces; prefer the Chinese one.
                families.append(_CJK_FAMILY)
        return ",".join(families)

    def _setup(self) -> _FontSetup:
        return _font_setup(self.font_file, self._description, self._setup_key)

    def to_dict(self) -> dict:
        output = {key: value for key, value in self.__dict__.items() if not key.startswith("_")}
        output = json.loads(json.dumps(output))  # a deep copy of plain data
        output["image_processor_type"] = self.__class__.__name__
        return output

    def to_json_file(self, json_file_path):
        """Writes the config with font files as basenames: they are copied next to it."""
        config = self.to_dict()
        config["font_file"] = [os.path.basename(path) for path in self.font_file]
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
        config, _ = cls.get_image_processor_dict(pretrained_model_name_or_path, **hub_kwargs)
        config = {key: value for key, value in config.items() if key != "auto_map"}
        names = config.get("font_file")
        if names is not None:
            names = [names] if isinstance(names, str) else names
            config["font_file"] = [
                path
                if os.path.isabs(path)
                else cached_file(pretrained_model_name_or_path, path, **hub_kwargs)
                for path in names
            ]
        config.update(kwargs)
        return cls(**config)

    @classmethod
    def from_dict(cls, image_processor_dict, **kwargs):
        return_unused_kwargs = kwargs.pop("return_unused_kwargs", False)
        renderer = cls(**{**image_processor_dict, **kwargs})
        return (renderer, {}) if return_unused_kwargs else renderer

    # ----------------------------------------------------------------------------- API
    def __call__(
        self, text, text_pair=None, return_tensors=None, return_word_spans=False, **kwargs
    ) -> BatchFeature:
        if return_tensors not in (None, "np", "pt"):
            raise ValueError(f"return_tensors must be None, 'np' or 'pt', got {return_tensors!r}")
        if kwargs:
            logger.warning("PixelM4TextRenderer ignores the arguments %s", sorted(kwargs))
        texts, pairs = _as_batch(text, text_pair)
        rendered = [self.render(one, pair) for one, pair in zip(texts, pairs, strict=True)]
        strips = np.stack([example.pixels for example in rendered]).astype(np.float32) / 255.0
        num_patches = np.array([example.num_patches for example in rendered], dtype=np.int64)
        positions = np.arange(self.max_seq_length)[None, :]
        data = {
            "pixel_values": np.repeat(strips[:, None], 3, axis=1),
            "attention_mask": (positions < num_patches[:, None]).astype(np.int64),
            "num_patches": num_patches,
            "overflow": np.array([example.overflow for example in rendered], dtype=np.int64),
            "missing_glyphs": np.array(
                [example.missing_glyphs for example in rendered], dtype=np.int64
            ),
        }
        batch = BatchFeature(data=data, tensor_type=return_tensors)
        if return_word_spans:
            # ragged python lists, kept out of the tensor conversion
            batch["word_patch_spans"] = [example.word_patch_spans for example in rendered]
            if self.render_mode == "word_bigram":
                batch["word_patch_counts"] = [example.word_patch_counts for example in rendered]
        return batch

    def render(self, text, text_pair=None) -> RenderedText:
        """Renders one example (a text, optionally with a second text) to a numpy strip."""
        words = _clean_words(_check_text("text", text))
        pair_words = (
            None if text_pair is None else _clean_words(_check_text("text_pair", text_pair))
        )
        if pair_words is not None and self.max_seq_length < 2:
            raise ValueError(
                "max_seq_length must be >= 2 to render a text pair (separator + end patch), "
                f"got {self.max_seq_length}"
            )
        segments = [words] if pair_words is None else [words, pair_words]
        if self.render_mode == "continuous":
            rendered = self._render_continuous(segments)
        else:
            rendered = self._render_pairs(segments)
        return rendered

    # ----------------------------------------------------------------------------- bigrams
    def _render_pairs(self, segments: list[list[str]]) -> RenderedText:
        patch = self.pixels_per_patch
        # the end patch and a pair's separator are reserved
        strip = _Strip(budget=self.max_seq_length - len(segments))
        pixels = np.full((patch, patch * self.max_seq_length), 255, dtype=np.uint8)
        with _lock:
            setup = self._setup()
            canvas = None if self.cache_size else _Canvas(setup.native, pixels.shape[1], patch)
            try:
                self._place_segments(setup, segments, strip, pixels, canvas)
                if canvas is not None:
                    pixels = canvas.pixels()
            finally:
                if canvas is not None:
                    canvas.close()
        return self._finish(pixels, strip, sum(len(words) for words in segments))

    def _place_segments(self, setup, segments, strip: _Strip, pixels, canvas):
        words_left = sum(len(words) for words in segments)
        for index, words in enumerate(segments):
            if index == 1:  # separator between text and text_pair, placed even after overflow
                strip.black.append(strip.cursor)
                strip.cursor += 1
                strip.budget += 1  # its patch was reserved in the budget
            for word in words:
                if strip.overflow:
                    break
                if not self._place_word(setup, word, strip, pixels, canvas):
                    strip.overflow = words_left
                    break
                words_left -= 1

    def _place_word(self, setup, word: str, strip: _Strip, pixels, canvas) -> bool:
        """Places a word's pairs at the cursor; False (nothing placed) if it does not fit."""
        pairs = _word_pairs(word, self.render_mode, self.group_graphemes)
        start = strip.cursor
        if canvas is None:
            placed = self._place_cached_pairs(setup, pairs, strip, pixels)
        else:
            placed = self._draw_pairs(setup, pairs, strip, canvas)
        if placed:
            strip.spans.append((start, strip.cursor))
            strip.counts.append(strip.cursor - start)
        return placed

    def _place_cached_pairs(self, setup, pairs, strip: _Strip, pixels) -> bool:
        items = [self._cached_pair(setup, pair) for pair in pairs]
        if strip.cursor + sum(item.num_patches for item in items) > strip.budget:
            return False
        x = strip.cursor * self.pixels_per_patch
        for item in items:
            width = item.pixels.shape[1]
            pixels[:, x : x + width] = item.pixels
            x += width
            strip.cursor += item.num_patches
            if item.missing:
                strip.add_missing(item.missing, item.text)
        return True

    def _draw_pairs(self, setup, pairs, strip: _Strip, canvas: _Canvas) -> bool:
        """The uncached path: every character shaped with its own layout, drawn in the strip."""
        patch = self.pixels_per_patch
        measured = [self._measure_pair(setup, pair) for pair in pairs]
        try:
            if strip.cursor + sum(num_patches for _, num_patches, _ in measured) > strip.budget:
                return False
            for pair, (layouts, num_patches, missing) in zip(pairs, measured, strict=True):
                x = strip.cursor * patch
                canvas.draw(setup, self._placements(layouts, x), (x, x + num_patches * patch))
                strip.cursor += num_patches
                if missing:
                    strip.add_missing(missing, "".join(pair))
            return True
        finally:
            for layouts, _, _ in measured:
                self._free_layouts(setup, layouts)

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

    def _cached_pair(self, setup: _FontSetup, pair: tuple[str, ...]) -> _PairPatch:
        key = (self._setup_key, pair)
        cached = _pair_cache.get(key)
        if cached is not None:
            _pair_cache.move_to_end(key)
            return cached
        layouts, num_patches, missing = self._measure_pair(setup, pair)
        width = num_patches * self.pixels_per_patch
        canvas = _Canvas(setup.native, width, self.pixels_per_patch)
        try:
            canvas.draw(setup, self._placements(layouts, 0), (0, width))
            cached = _PairPatch(canvas.pixels(), num_patches, missing, "".join(pair))
        finally:
            canvas.close()
            self._free_layouts(setup, layouts)
        cached.pixels.setflags(write=False)
        _pair_cache[key] = cached
        while len(_pair_cache) > self.cache_size:
            _pair_cache.popitem(last=False)
        return cached

    # ----------------------------------------------------------------------------- continuous
    def _render_continuous(self, segments: list[list[str]]) -> RenderedText:
        patch = self.pixels_per_patch
        total_words = sum(len(words) for words in segments)
        with _lock:
            setup = self._setup()
            kept = self._continuous_words_that_fit(setup, segments)
            strip = _Strip(budget=self.max_seq_length - 1, overflow=total_words - kept)
            canvas = _Canvas(setup.native, patch * self.max_seq_length, patch)
            try:
                for index, words in enumerate(segments):
                    if index == 1:
                        strip.black.append(strip.cursor)
                        strip.cursor += 1
                    segment_words = words[: max(0, kept)]
                    kept -= len(words)
                    self._draw_continuous_segment(setup, canvas, segment_words, strip)
                pixels = canvas.pixels()
            finally:
                canvas.close()
        return self._finish(pixels, strip, total_words)

    def _continuous_patches(self, setup: _FontSetup, words: list[str]) -> int:
        if not words:
            return 0
        layout = setup.layout(" ".join(words))
        width, _ = setup.logical_size(layout)
        setup.free(layout)
        return math.ceil((2 * _CONTINUOUS_MARGIN + width) / self.pixels_per_patch)

    def _continuous_words_that_fit(self, setup: _FontSetup, segments) -> int:
        """The largest number of leading words (text, then text_pair) whose strip fits."""
        flat = [(index, word) for index, words in enumerate(segments) for word in words]

        def fits(count: int) -> bool:
            kept = [
                [word for index, word in flat[:count] if index == i] for i in range(len(segments))
            ]
            patches = sum(self._continuous_patches(setup, words) for words in kept)
            return patches + len(segments) - 1 + 1 <= self.max_seq_length

        low, high = 0, len(flat)  # fits(0) holds: only separator + end patch
        while low < high:
            middle = (low + high + 1) // 2
            if fits(middle):
                low = middle
            else:
                high = middle - 1
        return low

    def _draw_continuous_segment(self, setup, canvas: _Canvas, words: list[str], strip: _Strip):
        if not words:
            return
        patch = self.pixels_per_patch
        text = " ".join(words)
        layout = setup.layout(text)
        try:
            width, height = setup.logical_size(layout)
            num_patches = math.ceil((2 * _CONTINUOUS_MARGIN + width) / patch)
            left = strip.cursor * patch
            y = patch / 2 - height / 2 - 2
            canvas.draw(
                setup, [(layout, left + _CONTINUOUS_MARGIN, y)], (left, left + num_patches * patch)
            )
            missing = setup.unknown_glyphs(layout)
            if missing:
                strip.add_missing(missing, text[:20])
            for start, end in _word_byte_ranges(words):
                x0, x1 = self._word_extent(setup, layout, text, start, end)
                first = strip.cursor + min(
                    num_patches - 1, max(0, math.floor((x0 + _CONTINUOUS_MARGIN) / patch))
                )
                last = strip.cursor + min(num_patches, math.ceil((x1 + _CONTINUOUS_MARGIN) / patch))
                strip.spans.append((first, max(first + 1, last)))
            strip.cursor += num_patches
        finally:
            setup.free(layout)

    @staticmethod
    def _word_extent(setup, layout, text: str, start: int, end: int) -> tuple[float, float]:
        """Pixel x-range of the characters in byte range [start, end) (any direction)."""
        ffi, pango = setup.native.ffi, setup.native.pango
        position = ffi.new("PangoRectangle *")
        encoded = text.encode("utf-8")
        last_char_start = end - 1
        while last_char_start > start and (encoded[last_char_start] & 0xC0) == 0x80:
            last_char_start -= 1
        xs = []
        for index in (start, last_char_start):
            pango.pango_layout_index_to_pos(layout, index, position)
            xs += [position.x / _PANGO_SCALE, (position.x + position.width) / _PANGO_SCALE]
        return min(xs), max(xs)

    # ----------------------------------------------------------------------------- shared
    def _finish(self, pixels: np.ndarray, strip: _Strip, num_words: int) -> RenderedText:
        patch = self.pixels_per_patch
        strip.black.append(strip.cursor)  # the end patch
        for index in strip.black:
            pixels[:, index * patch : (index + 1) * patch] = 0
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
def _positive_number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _resolve_font_files(font_file) -> list[str]:
    if font_file is None:
        return default_font_files()
    paths = [font_file] if isinstance(font_file, (str, os.PathLike)) else list(font_file)
    if not paths:
        raise ValueError("font_file must name at least one font file")
    resolved = []
    for path in paths:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"font_file entries must be paths, got {type(path).__name__}")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"font_file {os.fspath(path)!r} does not exist")
        resolved.append(os.path.abspath(path))
    return resolved


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
    return text


def _as_batch(text, text_pair) -> tuple[list, list]:
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


def _word_byte_ranges(words: list[str]) -> list[tuple[int, int]]:
    """Byte ranges of the words in " ".join(words)."""
    ranges, offset = [], 0
    for word in words:
        length = len(word.encode("utf-8"))
        ranges.append((offset, offset + length))
        offset += length + 1
    return ranges


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

if __name__ == "__main__":  # quick look: python rendering_pixel_m4.py "some text"
    example = PixelM4TextRenderer().render(" ".join(sys.argv[1:]) or "Hello world")
    print(example.num_patches, example.word_patch_spans, example.missing_glyphs)
