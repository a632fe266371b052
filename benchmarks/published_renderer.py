"""Times the PUBLISHED renderers, unmodified, for bench_rendering.py (run in their environment).

The published renderers need PyGObject (Pango, PangoCairo) and pycairo, which this package does
not use: run this file with a Python that has them (Debian: /usr/bin/python3 with
python3-gi-cairo, gir1.2-pango-1.0, python3-cairo, python3-numpy), on a source checkout:

    /usr/bin/python3 benchmarks/published_renderer.py --source SRC --renderer bigram \\
        [--warm-up N] [--repeats K] --fonts FONT... < texts.json > result.json

SRC is the `src/` folder of ilkerkesen/pixel-m4 (renderer `bigram`:
`pixel/data/rendering/pangocairo_renderer_bigrams_iso_char.py`) or of xplip/pixel (`continuous`:
`pixel/data/rendering/pangocairo_renderer.py`). Only the renderer module is loaded; the few
names it imports from its package (`Encoding`, `TextRenderingMixin`, the defaults) and the
helper libraries it uses only to register fonts (`manimpango`, `fontTools`) are replaced by
minimal stand-ins below, so the timed code is the published drawing code. fontconfig sees only
the given font files plus its default rules (the setting of tests/data/golden/).
"""

import argparse
import ctypes
import dataclasses
import importlib.util
import json
import os
import resource
import sys
import tempfile
import time
import types

MODULES = {
    "bigram": "pixel/data/rendering/pangocairo_renderer_bigrams_iso_char.py",
    "continuous": "pixel/data/rendering/pangocairo_renderer.py",
}
FONTS_CONF = """<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">
<fontconfig><include ignore_missing="yes">/etc/fonts/conf.d</include>
<cachedir>{cache}</cachedir></fontconfig>
"""


def fontconfig():
    library = ctypes.CDLL("libfontconfig.so.1")
    library.FcConfigAppFontAddFile.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    library.FcFreeTypeQuery.restype = ctypes.c_void_p
    library.FcFreeTypeQuery.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p]
    library.FcFreeTypeQuery.argtypes += [ctypes.POINTER(ctypes.c_int)]
    library.FcPatternGetString.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    library.FcPatternGetString.argtypes += [ctypes.POINTER(ctypes.c_char_p)]
    return library


def install_stand_ins(library):
    """`manimpango.register_font` registers with fontconfig (what manimpango does);
    `fontTools.ttLib.TTFont(path)["name"].getDebugName(1)` is the file's family name."""

    def family(path):
        count, name = ctypes.c_int(0), ctypes.c_char_p()
        pattern = library.FcFreeTypeQuery(path.encode(), 0, None, ctypes.byref(count))
        library.FcPatternGetString(pattern, b"family", 0, ctypes.byref(name))
        return name.value.decode()

    manimpango = types.ModuleType("manimpango")
    manimpango.register_font = lambda path: library.FcConfigAppFontAddFile(None, path.encode())
    manimpango.list_fonts = lambda: []
    ttlib = types.ModuleType("fontTools.ttLib")
    names = types.SimpleNamespace

    def ttfont(path):
        return {"name": names(getDebugName=lambda index: family(path))}

    ttlib.TTFont = ttfont
    font_tools = types.ModuleType("fontTools")
    font_tools.ttLib = ttlib
    sys.modules.update(
        {"manimpango": manimpango, "fontTools": font_tools, "fontTools.ttLib": ttlib}
    )

    # the renderer's own package, reduced to the names the module imports
    for name in ("pub", "pub.utils", "pub.data", "pub.data.rendering"):
        package = sys.modules[name] = types.ModuleType(name)
        package.__path__ = []
    defaults = sys.modules["pub.utils.defaults"] = types.ModuleType("pub.utils.defaults")
    defaults.__dict__.update(DEFAULT_FONT_SIZE=8, DEFAULT_PAD_SIZE=3, DEFAULT_PPB=16)
    defaults.__dict__.update(MAX_SEQ_LENGTH=529, MAX_PIXELS_LEN=529 * 16)
    utils = types.ModuleType("pub.data.rendering.rendering_utils")

    @dataclasses.dataclass
    class Encoding:
        pixel_values: object
        sep_patches: list
        num_text_patches: int
        word_starts: list | None = None
        word_patch_map: dict | None = None
        offset_mapping: list | None = None
        overflowing_patches: list | None = None
        sequence_ids: list | None = None

    class TextRenderingMixin:
        def __init__(self, **kwargs):
            pass

    utils.Encoding, utils.TextRenderingMixin = Encoding, TextRenderingMixin
    sys.modules[utils.__name__] = utils


def load_published_renderer(source: str, renderer: str, fonts: list[str]):
    library = fontconfig()
    install_stand_ins(library)
    for path in fonts[1:]:  # fallbacks; the renderer registers the primary itself
        library.FcConfigAppFontAddFile(None, path.encode())
    name = "pub.data.rendering.renderer"
    spec = importlib.util.spec_from_file_location(name, os.path.join(source, MODULES[renderer]))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.PangoCairoTextRenderer(font_file=fonts[0], font_size=8, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", required=True)
    parser.add_argument("--renderer", choices=sorted(MODULES), required=True)
    parser.add_argument("--fonts", nargs="+", required=True, help="primary first")
    parser.add_argument("--repeats", type=int, default=1, help="passes over the texts (best kept)")
    parser.add_argument(
        "--warm-up",
        type=int,
        default=0,
        help="the first N texts of the input are rendered once, untimed, before the timed passes "
        "over the others (the state our renderer is timed in: same glyph and font caches)",
    )
    args = parser.parse_args()
    texts = json.load(sys.stdin)
    warm_up, texts = texts[: args.warm_up], texts[args.warm_up :]
    cache = tempfile.mkdtemp(prefix="fontconfig-")
    with open(os.path.join(cache, "fonts.conf"), "w") as handle:
        handle.write(FONTS_CONF.format(cache=cache))
    os.environ["FONTCONFIG_FILE"] = os.path.join(cache, "fonts.conf")
    renderer = load_published_renderer(args.source, args.renderer, args.fonts)
    for text in warm_up:
        renderer(text)
    best = 0.0
    for _ in range(args.repeats):
        start = time.perf_counter()
        for text in texts:
            renderer(text)
        best = max(best, len(texts) / (time.perf_counter() - start))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    json.dump({"texts_per_second": best, "peak_rss_mb": peak_mb}, sys.stdout)


if __name__ == "__main__":
    main()
