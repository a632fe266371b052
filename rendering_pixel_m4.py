"""PixelM4TextRenderer: text -> a strip of grayscale patches (PangoCairo + Noto fonts).

Three render modes:

* ``bigram`` (PIXEL-M4 / PIXEL-BIGRAMS): words are cut into code-point pairs, every pair
  starts at a patch boundary, the two characters are shaped separately.
* ``continuous`` (original PIXEL): the whole text as one Pango layout.
* ``word_bigram`` (pixel fallback paper): per word, overlapping bigrams
  ``Happy -> [Ha][ap][pp][py]`` in 24x24 patches.

Decisions worth knowing (also in the class docstring):

* Nothing is clipped: as in the published renderer, every layout is drawn on one strip, so ink
  that overhangs a pair's patches (negative bearings, marks shaped alone with their dotted
  circle, wide glyphs) lands in the neighbouring patches. The caches store coverage (alpha)
  with all of its ink and composite it with pixman's own OVER arithmetic, or let cairo redraw
  where that could round differently, so cached strips equal the uncached ones byte for byte
  (see "The caches" in rendering_ink.py). Ink left of the strip is lost, ink on the separator /
  end patch is painted over, everything after the end patch is white.
* Every mode ends with one black end patch, also ``word_bigram`` (so ``num_patches`` is always
  text patches [+ separator] + 1, and an empty text is just the end patch).

The renderer is split by concern; this file holds the class (settings, saving and loading, the
batch call, how words are laid out on a bigram strip) and imports the rest relatively (a Hub
folder ships them all):

* rendering_native.py: cffi access to Pango, Cairo and fontconfig, per-process (fork) state;
* rendering_fonts.py: the shipped font set, font file checks, digests, saved font names;
* rendering_text.py: input checks, text clean-up, right-to-left, words cut into pairs;
* rendering_bigrams.py: bigram modes, words cut into pairs and laid out on the strip;
* rendering_ink.py: the unit / pair / word ink caches and their pixman-exact compositing;
* rendering_continuous.py: continuous mode (one Pango layout per text).
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import shutil
import sys
import warnings
from dataclasses import replace

import numpy as np
from transformers import BatchFeature
from transformers.image_processing_utils import ImageProcessingMixin

from .rendering_bigrams import _BigramModes
from .rendering_continuous import _ContinuousMode
from .rendering_fonts import (
    _font_families,
    _resolve_font_files,
    check_font_file,
    default_font_files,
    font_setup_hash,
    saved_font_name,
)
from .rendering_ink import RenderedText, _Strip, cache_info
from .rendering_native import (
    _CAIRO_MAX_SIZE,
    HINT_STYLES,
    _font_setup,
    _FontSetup,
    process_lock,
)
from .rendering_text import _as_batch, _check_input, clean_text, clean_words, is_rtl

# Public names, also those of the parts above that callers import from here.
__all__ = [
    "CJK_FACES",
    "HINT_STYLES",
    "MAX_PIXELS_PER_PATCH",
    "MAX_STRIP_WIDTH",
    "OUTPUT_FORMATS",
    "RENDER_MODES",
    "PixelM4TextRenderer",
    "RenderedText",
    "cache_info",
    "check_font_file",
    "clean_text",
    "clean_words",
    "default_font_files",
    "font_setup_hash",
    "is_rtl",
    "saved_font_name",
    "strip_to_grid",
]

logger = logging.getLogger(__name__)

RENDER_MODES = ("bigram", "continuous", "word_bigram")
OUTPUT_FORMATS = ("float32", "uint8")  # pixel_values: [B, 3, P, W] in [0, 1], or [B, 1, P, W] 0-255
_DEFAULT_FONT_SIZE = {"bigram": 8, "continuous": 8, "word_bigram": 10}
_DEFAULT_PIXELS_PER_PATCH = {"bigram": 16, "continuous": 16, "word_bigram": 24}
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
_WHITE = np.float32(255)  # uint8 pixel / _WHITE -> float32 in [0, 1]
# Limits checked up front. A strip's cairo surface has one extra column (see `_Canvas`).
MAX_STRIP_WIDTH = _CAIRO_MAX_SIZE - 1
MAX_PIXELS_PER_PATCH = 256
_MAX_FONT_PATCHES = 4  # glyphs taller than 4 patches are cut off by a one-patch-high strip


class PixelM4TextRenderer(_BigramModes, _ContinuousMode, ImageProcessingMixin):
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
        cache_size: entries of the process-wide caches of rendered units and pairs (bigram,
            word_bigram; the oldest entries go first); 0 draws every unit straight onto the
            strip (slow; the reference the caches are tested against byte for byte) and turns
            the word cache off too. About 0.8 KB per pair.
        word_cache_size: entries of the process-wide cache of rendered words (coverage + patch
            count), so a sentence of known words is assembled from about one block per word;
            0 assembles every word from its cached pairs. About 1.5 KB per 6-letter word.

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
        with process_lock():
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

    def render(
        self,
        text,
        text_pair=None,
        is_split_into_words: bool = False,
        return_word_spans: bool = True,
    ) -> RenderedText:
        """Renders one example (a text, optionally with a second text) to a numpy strip.

        `is_split_into_words=True`: `text` (and `text_pair`) are lists of words (the tokens of
        token classification and parsing). They are drawn as " ".join(words); in bigram mode,
        right-to-left words keep their order (only their pairs are mirrored), as the published
        renderer does for word lists.

        `return_word_spans=False`: continuous mode leaves `word_patch_spans` empty and skips
        measuring them (a quarter of its time; the published renderer returns none either);
        the bigram modes place word by word and return them anyway. Pixels are the same.
        """
        return self._render(text, text_pair, is_split_into_words, word_spans=return_word_spans)

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

    # ----------------------------------------------------------------------------- shared
    def _finish(self, alpha, strip: _Strip, num_words: int, pixels=None) -> RenderedText:
        """Coverage -> pixels (255 = white) of the used columns, white after the end patch,
        in place (`alpha` is the render's own array); or the `pixels` given, already white
        there (continuous mode draws black on white); black separator / end patch."""
        patch = self.pixels_per_patch
        if pixels is None:
            used = strip.cursor * patch  # text (+ separator) columns: the end patch follows
            pixels = alpha
            np.subtract(255, alpha[:, :used], out=pixels[:, :used])
            pixels[:, used + patch :] = 255  # also where ink spilled past the end patch
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
