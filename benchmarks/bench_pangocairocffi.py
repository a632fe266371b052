"""Our private cdef against pangocffi / pangocairocffi / cairocffi objects (issue 17's question).

    python benchmarks/bench_pangocairocffi.py [--repeats 5]

The renderer's two native pieces, the font setup (fontconfig config + PangoCairo font map,
context and layouts) and the canvases (an A8 cairo surface; continuous mode's reused A8
surface), are rebuilt here on the packages' objects: `pangocairocffi.PangoCairoFontMap`, `pangocffi.Context` / `Layout` / `FontDescription`,
`cairocffi.ImageSurface` / `Context` / `FontOptions`, `pangocairocffi.show_layout`. Raw
declarations stay only for what the packages do not bind: the private FcConfig and
`pango_fc_font_map_set_config`, pixel extents and line x-ranges (declared in pangocffi's cdef but
not wrapped, called through `pangocffi.pango`), and a glyph string's length (opaque there).

The same renderer code then runs with either pair of classes (swapped in place, same process):
(a) every golden text (tests/data/golden) in bigram (uncached and cached) and continuous mode,
compared byte for byte; (b) texts/s of the uncached bigram path (cache_size=0: every unit shaped
with its own layout) and of continuous mode, alternating the two backends, best of --repeats;
(c) the import time of each backend in a fresh interpreter.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pixel_m4 import rendering_native
from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "data" / "golden"


def package_classes():
    """The font setup and canvas built on pangocffi / pangocairocffi / cairocffi objects."""
    import cairocffi
    import pangocairocffi
    import pangocffi
    from cffi import FFI

    ffi = FFI()
    ffi.include(pangocairocffi.ffi)  # shares pangocffi's types: its pointers are ours
    ffi.cdef(
        """
        typedef struct _FcConfig FcConfig;
        FcConfig *FcConfigCreate(void);
        int FcConfigAppFontAddFile(FcConfig *config, const unsigned char *file);
        void pango_fc_font_map_set_config(PangoFontMap *fcfontmap, FcConfig *fcconfig);
        typedef struct { int num_glyphs; } GlyphStringHead;
        """
    )
    fontconfig = ffi.dlopen("libfontconfig.so.1")
    pangoft2 = ffi.dlopen("libpangoft2-1.0.so.0")
    pango, glib = pangocffi.pango, pangocffi.glib
    # pangocairocffi 0.7.1 declares cairo_font_type_t as void, so its
    # pango_cairo_font_map_new_for_font_type takes no argument (PangoCairoFontMap.
    # from_cairo_font_type raises TypeError): called through a correctly typed pointer.
    new_font_map_for_font_type = ffi.cast(
        "PangoFontMap *(*)(int)", pangocairocffi.pangocairo.pango_cairo_font_map_new_for_font_type
    )

    class PackageFontSetup:
        def __init__(self, font_files, description, hint_style, hint_metrics):
            self.native = None
            config = fontconfig.FcConfigCreate()
            for path in font_files:
                if not fontconfig.FcConfigAppFontAddFile(config, os.fsencode(path)):
                    raise ValueError(path)
            font_map = new_font_map_for_font_type(cairocffi.FONT_TYPE_FT)
            pangoft2.pango_fc_font_map_set_config(font_map, config)
            # PangoCairoFontMap.create_context passes a PangoCairoFontMap * where
            # pango_font_map_create_context takes a PangoFontMap * (TypeError): called directly.
            context = pangocffi.Context.from_pointer(
                pango.pango_font_map_create_context(font_map), gc=True
            )
            options = cairocffi.FontOptions(
                antialias=cairocffi.ANTIALIAS_GRAY,
                hint_style=rendering_native.HINT_STYLES[hint_style],
                hint_metrics=cairocffi.HINT_METRICS_ON
                if hint_metrics
                else cairocffi.HINT_METRICS_OFF,
            )
            pangocairocffi.set_font_options(
                context, pangocairocffi.ffi.cast("cairo_font_options_t *", options._pointer)
            )
            pangocairocffi.set_resolution(context, 72.0)
            pango.pango_context_set_round_glyph_positions(context.pointer, True)
            pango.pango_context_set_base_dir(context.pointer, pango.PANGO_DIRECTION_WEAK_LTR)
            self.config, self.font_map, self.context, self._options = (
                config,
                font_map,
                context,
                options,
            )
            self.description = pangocffi.FontDescription.from_pointer(
                pango.pango_font_description_from_string(description.encode()), gc=True
            )
            self._rectangle, self._logical = (
                ffi.new("PangoRectangle *"),
                ffi.new("PangoRectangle *"),
            )
            self._ranges, self._range_count = ffi.new("int **"), ffi.new("int *")

        def layout(self, text):
            layout = pangocffi.Layout(self.context)
            layout.font_description = self.description
            pango.pango_layout_set_auto_dir(layout.pointer, True)
            layout.text = text
            return layout

        def extents(self, layout):
            ink, logical = self._rectangle, self._logical
            pango.pango_layout_get_pixel_extents(layout.pointer, ink, logical)
            return ink.x, ink.x + ink.width, logical.width, logical.height

        def logical_size(self, layout):
            logical = self._rectangle
            pango.pango_layout_get_pixel_extents(layout.pointer, ffi.NULL, logical)
            return logical.width, logical.height

        def glyph_count(self, layout):
            count, runs = 0, layout.get_iter()
            while True:
                run = runs.get_run()
                if run is not None:
                    count += ffi.cast("GlyphStringHead *", run.pointer.glyphs).num_glyphs
                if not runs.next_run():
                    return count

        def x_ranges(self, layout, byte_ranges):
            line = pango.pango_layout_get_line_readonly(layout.pointer, 0)
            result = []
            for start, end in byte_ranges:
                pango.pango_layout_line_get_x_ranges(
                    line, start, end, self._ranges, self._range_count
                )
                ranges = self._ranges[0]
                try:
                    xs = ffi.unpack(ranges, 2 * self._range_count[0])
                finally:
                    glib.g_free(ranges)
                result.append((min(xs) / 1024, max(xs) / 1024) if xs else (0.0, 0.0))
            return result

        def unknown_glyphs(self, layout):
            return pango.pango_layout_get_unknown_glyphs_count(layout.pointer)

        def free(self, layout):
            pass  # the Layout object unrefs its pointer when it is collected

        def strip_canvas(self, width, height):
            canvases = self.__dict__.setdefault("_strip_canvases", {})
            if (width, height) not in canvases:
                canvases[width, height] = PackageStripCanvas(width, height)
            return canvases[width, height]

    class PackageCanvas:
        def __init__(self, native, width, height):
            self.width, self.height = width, height
            self.surface = cairocffi.ImageSurface(cairocffi.FORMAT_A8, width + 1, height)
            self.cr = cairocffi.Context(self.surface)
            self.cr.rectangle(width, 0, 1, height)
            self.cr.fill()

        def draw(self, placed):
            for layout, x, y in placed:
                self.cr.move_to(x, y)
                pangocairocffi.show_layout(self.cr, layout)

        def _data(self):
            stride = self.surface.get_stride()
            data = np.frombuffer(self.surface.get_data(), dtype=np.uint8)
            return data.reshape(self.height, stride)[:, : self.width]

        def alpha(self):
            self.surface.flush()
            return self._data().copy()

        def set_alpha(self, alpha):
            self.surface.flush()
            self._data()[...] = alpha
            self.surface.mark_dirty()

        def close(self):
            self.surface.finish()

    class PackageStripCanvas:  # continuous mode's reused A8 surface, cleared after a strip
        def __init__(self, width, height):
            self.width, self.height = width, height
            self.surface = cairocffi.ImageSurface(cairocffi.FORMAT_A8, width, height)
            self.cr = cairocffi.Context(self.surface)
            data = np.frombuffer(self.surface.get_data(), dtype=np.uint8)
            self._alpha = data.reshape(height, -1)[:, :width]

        def draw(self, layout, x, y):
            self.cr.move_to(x, y)
            pangocairocffi.show_layout(self.cr, layout)

        def take(self, columns):
            self.surface.flush()
            pixels = np.empty((self.height, self.width), dtype=np.uint8)
            np.subtract(255, self._alpha[:, :columns], out=pixels[:, :columns])
            pixels[:, columns:] = 255
            self.cr.set_operator(cairocffi.OPERATOR_CLEAR)
            self.cr.paint()
            self.cr.set_operator(cairocffi.OPERATOR_OVER)
            return pixels

    return PackageFontSetup, PackageCanvas


def use(backend: tuple):
    """Swaps the renderer's font setup and canvas classes in every rendering module."""
    font_setup, canvas = backend
    for name, module in list(sys.modules.items()):
        if name.startswith("pixel_m4.rendering_"):
            if hasattr(module, "_FontSetup"):
                module._FontSetup = font_setup
            if hasattr(module, "_Canvas"):
                module._Canvas = canvas
    rendering_native._font_setups.clear()


def rate(renderer, texts, repeats) -> float:
    best = math_inf = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for text in texts:
            renderer.render(text)
        best = min(best, time.perf_counter() - start)
    assert best < math_inf
    return len(texts) / best


def import_seconds(statement: str) -> float:
    """Seconds `statement` takes in a fresh interpreter that has imported the renderer's modules
    (numpy, transformers, ...) but not cffi, best of 3."""
    code = (
        "import time, pixel_m4.rendering_native as n; t = time.perf_counter(); "
        f"{statement}; print(time.perf_counter() - t)"
    )
    times = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        times.append(float(out.stdout))
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    ours = (rendering_native._FontSetup, rendering_native._Canvas)
    packages = package_classes()
    texts = [
        line for line in (GOLDEN / "sentences.txt").read_text(encoding="utf-8").split("\n") if line
    ]
    golden = np.load(GOLDEN / "published_renderers.npz")

    print("(a) golden texts, byte-identical strips (ours / packages / published):")
    for mode, options in [("bigram", {"cache_size": 0}), ("bigram", {}), ("continuous", {})]:
        strips = {}
        for label, backend in (("cdef", ours), ("packages", packages)):
            use(backend)
            renderer = PixelM4TextRenderer(render_mode=mode, **options)
            strips[label] = [renderer.render(text).pixels for text in texts]
        same = sum(
            np.array_equal(a, b) for a, b in zip(strips["cdef"], strips["packages"], strict=True)
        )
        published = sum(
            np.array_equal(b, golden[f"{mode}_pixels"][i]) for i, b in enumerate(strips["packages"])
        )
        print(f"  {mode} {options or ''}: packages == cdef {same}/{len(texts)}, "
              f"packages == published {published}/{len(texts)}")  # fmt: skip

    print(f"(b) texts/s, {len(texts)} golden texts, best of {args.repeats}, alternating:")
    for mode, options in [("bigram", {"cache_size": 0}), ("continuous", {})]:
        rates = {"cdef": [], "packages": []}
        for _ in range(2):
            for label, backend in (("cdef", ours), ("packages", packages)):
                use(backend)
                renderer = PixelM4TextRenderer(render_mode=mode, **options)
                rate(renderer, texts[:4], 1)  # warm-up: font loading, glyph caches
                rates[label].append(rate(renderer, texts, args.repeats))
        cdef, package = max(rates["cdef"]), max(rates["packages"])
        print(f"  {mode} {options or ''}: cdef {cdef:.0f}, packages {package:.0f} "
              f"(packages / cdef = {package / cdef:.2f})")  # fmt: skip
    use(ours)

    print("(c) loading the bindings, fresh interpreter, best of 3:")
    print(f"  our cdef (cffi, parse, dlopen): {import_seconds('n._get_native()'):.3f} s")
    packages_load = "import pangocairocffi"
    print(f"  pangocairocffi + pangocffi + cairocffi: {import_seconds(packages_load):.3f} s")
    print(f"load: {os.getloadavg()}")


if __name__ == "__main__":
    main()
