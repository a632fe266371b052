"""Native Pango / Cairo / fontconfig access for the PIXEL-M4 renderer, and its per-process state.

Separate from the renderer because it is the only place that talks to C: the cffi declarations,
loading the libraries, the private fontconfig configuration with only the renderer's fonts (a
`_FontSetup`: font map, context, layouts and what is measured on them), the cairo canvases (A8
`_Canvas` for the bigram modes, the reused A8 `_StripCanvas` for continuous mode), and
the state that must not cross a fork (one lock, the font setups and their canvases). Everything
else works on numpy arrays and Python strings.

* The libraries are loaded with cffi when the first renderer is constructed, so importing this
  module works on machines without Pango; constructing a renderer there raises one ImportError
  saying what to install.
* Fonts are isolated from the system: the fontconfig configuration holds only the renderer's
  font files (no fonts.conf, no FONTCONFIG_FILE, no system fonts).
"""

from __future__ import annotations

import ctypes.util
import os
import threading

import numpy as np

# cairo image surfaces are at most 32,767 px on a side
_CAIRO_MAX_SIZE = 32767

_MISSING_LIBRARIES = (
    "pixel-m4 needs the system libraries Pango (>=1.44) and Cairo: sudo apt-get install "
    "libpango-1.0-0 libpangocairo-1.0-0 libpangoft2-1.0-0 libcairo2 (Debian/Ubuntu) / "
    "brew install pango (macOS)"
)

# --------------------------------------------------------------------------------------------
# Native libraries (cffi, ABI mode). One FFI for everything, with only the functions the renderer
# calls. pangocffi / pangocairocffi / cairocffi objects draw the same pixels but render 0.77x
# (uncached bigram) / 0.87x (continuous) as fast, take 0.48 s instead of 0.03 s to load, still
# need raw declarations here (fontconfig, font map per font type, glyph counts), and Hub users
# would have to install them: measured in docs/rendering.md ("Native bindings").
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
void cairo_set_operator(cairo_t *cr, int op);
void cairo_paint(cairo_t *cr);
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
void pango_context_set_font_description(PangoContext *context, const PangoFontDescription *desc);
PangoFontDescription *pango_font_description_from_string(const char *str);
PangoLayout *pango_layout_new(PangoContext *context);
void pango_layout_set_text(PangoLayout *layout, const char *text, int length);
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
_CAIRO_OPERATOR_CLEAR, _CAIRO_OPERATOR_OVER = 0, 2
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


def process_lock() -> threading.RLock:
    """The lock every use of Pango, cairo and the caches holds: this process's (a forked child
    gets a new one, as a parent thread may have held the old one at the fork)."""
    return _lock


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
        # on the context, which every layout inherits (cheaper than a copy per layout)
        self.description = native.pango.pango_font_description_from_string(description.encode())
        native.pango.pango_context_set_font_description(context, self.description)
        # out-parameters, allocated once (used under the module lock only)
        self._rectangle, self._logical = ffi.new("PangoRectangle *"), ffi.new("PangoRectangle *")
        self._ranges, self._range_count = ffi.new("int **"), ffi.new("int *")
        self._strip_canvases: dict[tuple[int, int], _StripCanvas] = {}
        self._shared_layout = None

    def layout(self, text: str):
        """A layout of `text`; the caller must `free` it."""
        pango = self.native.pango
        layout = pango.pango_layout_new(self.context)  # auto_dir: on by default
        encoded = text.encode("utf-8")
        pango.pango_layout_set_text(layout, encoded, len(encoded))
        return layout

    def extents(self, layout) -> tuple[int, int, int, int]:
        """[left, right) ink columns relative to the origin, logical width and height."""
        ink, logical = self._rectangle, self._logical
        self.native.pango.pango_layout_get_pixel_extents(layout, ink, logical)
        return ink.x, ink.x + ink.width, logical.width, logical.height

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

    def shared_layout(self, text: str):
        """This setup's one reusable layout, now of `text` (not freed by the caller; used under
        `process_lock`): a text that needs no other layout alive at the same time skips
        creating and freeing one."""
        if self._shared_layout is None:
            self._shared_layout = self.native.pango.pango_layout_new(self.context)
        encoded = text.encode("utf-8")
        self.native.pango.pango_layout_set_text(self._shared_layout, encoded, len(encoded))
        return self._shared_layout

    def strip_canvas(self, width: int, height: int) -> _StripCanvas:
        """This setup's reusable, clear canvas of that size (continuous mode)."""
        canvas = self._strip_canvases.get((width, height))
        if canvas is None:
            canvas = self._strip_canvases[width, height] = _StripCanvas(self, width, height)
        return canvas

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


def layout_y(height: int, patch: int) -> float:
    """The y at which a layout of logical `height` px is drawn on a strip `patch` px high:
    centred, 2 px up (both published renderers: xplip/pixel `_render_single_sentence`,
    ilkerkesen/pixel-m4 `_render_single_word`)."""
    return patch / 2 - height / 2 - 2


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


class _StripCanvas:
    """The continuous renderer's A8 surface, kept and reused: clear before every strip.

    The published continuous renderer draws each text on a new A8 surface (xplip/pixel
    pangocairo_renderer.py, `get_empty_surface` with its default rgb=False) and returns 255 -
    coverage (`get_image_from_surface`: np.invert). This surface is the same, made once per font
    setup and size in a process (forgotten after a fork with the setup) and used under
    `process_lock`: `take` reads the coverage and clears the whole surface with one
    CAIRO_OPERATOR_CLEAR paint, which also tells cairo it is clear again, exactly the state of a
    new surface (cairo then composites a layout onto it with its fast path; an A8 surface that
    cairo does not know to be clear has no fast OVER path in pixman, ~1.5x slower to draw on).
    """

    def __init__(self, setup: _FontSetup, width: int, height: int):
        if not (0 < width <= _CAIRO_MAX_SIZE and 0 < height <= _CAIRO_MAX_SIZE):
            raise ValueError(
                f"cannot draw {width} x {height} px: cairo surfaces are at most "
                f"{_CAIRO_MAX_SIZE} px on a side"
            )
        native = setup.native
        cairo, ffi = native.cairo, native.ffi
        self.native, self.width, self.height = native, width, height
        self.surface = cairo.cairo_image_surface_create(_CAIRO_FORMAT_A8, width, height)
        self.cr = cairo.cairo_create(self.surface)
        stride = cairo.cairo_image_surface_get_stride(self.surface)
        memory = ffi.buffer(cairo.cairo_image_surface_get_data(self.surface), stride * height)
        self._alpha = np.frombuffer(memory, dtype=np.uint8).reshape(height, stride)[:, :width]

    def draw(self, layout, x: int, y: float):
        """Draws `layout` with its origin at (x, y)."""
        self.native.cairo.cairo_move_to(self.cr, x, y)
        self.native.pangocairo.pango_cairo_show_layout(self.cr, layout)

    def take(self, columns: int, width: int | None = None) -> np.ndarray:
        """The drawing's first `columns` columns as uint8 [height, width] pixels (255 = white;
        `width`: the canvas's by default, or more), white after them; the canvas clear again."""
        cairo = self.native.cairo
        cairo.cairo_surface_flush(self.surface)
        pixels = np.empty((self.height, width or self.width), dtype=np.uint8)
        np.subtract(255, self._alpha[:, :columns], out=pixels[:, :columns])
        pixels[:, columns:] = 255
        cairo.cairo_set_operator(self.cr, _CAIRO_OPERATOR_CLEAR)
        cairo.cairo_paint(self.cr)
        cairo.cairo_set_operator(self.cr, _CAIRO_OPERATOR_OVER)
        return pixels

    def close(self):
        self.native.cairo.cairo_destroy(self.cr)
        self.native.cairo.cairo_surface_destroy(self.surface)
