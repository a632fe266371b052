"""Continuous mode of the PIXEL-M4 renderer (original PIXEL): a whole text as one Pango layout.

Separate from the renderer because it shares nothing with the bigram modes but the strip: a
text that fits is shaped once, measured and drawn from the same layout, as the published
renderer does (a single text without word spans, the usual call, by a lean path of its own:
`_render_text_that_fits`); a text that does not fit is searched for its longest prefix of whole
words (or grapheme clusters of a word wider than a strip) without ever handing Pango much more
than a strip. `_ContinuousMode` holds the renderer's methods; they read its settings
(pixels_per_patch, max_seq_length).
"""

from __future__ import annotations

import math
import re

from .rendering_ink import RenderedText, _Strip
from .rendering_native import _FontSetup, _StripCanvas, layout_y, process_lock
from .rendering_text import _units

_CONTINUOUS_MARGIN = 2  # px of white before and after a continuous text (original PIXEL)
# Pango measures in int32 units of 1/1024 px, so a layout wider than ~2.1 million px reports
# nonsense: a text handed to Pango in one layout is never longer than this (in code points).
_MAX_LAYOUT_CHARS = 65536


class _ContinuousMode:
    """The renderer's continuous-mode methods."""

    def _render_continuous(self, texts: list[str], word_spans: bool = True) -> RenderedText:
        if len(texts) == 1 and not word_spans:
            rendered = self._render_text_that_fits(texts[0])
            if rendered is not None:
                return rendered
        patch = self.pixels_per_patch
        # str.split and `_word_char_ranges` cut at the same characters (str.isspace)
        total_words = sum(map(len, map(str.split, texts)))
        strip = _Strip(budget=self.max_seq_length - 1)
        with process_lock():
            setup = self._setup()
            canvas = setup.strip_canvas(patch * self.max_seq_length, patch)
            # Texts that fit (the usual case) are shaped once, measured and drawn from the same
            # layout, as the published renderer does; only the others are searched.
            shaped = self._shaped_if_they_fit(setup, texts)
            try:
                if shaped is not None:
                    parts = [
                        (text, _word_char_ranges(text) if word_spans else None) for text in texts
                    ]
                else:
                    word_ranges = [_word_char_ranges(text) for text in texts]
                    parts, strip.overflow = self._continuous_words_that_fit(
                        setup, texts, word_ranges
                    )
                    shaped = [None] * len(parts)
                for index, ((drawn, ranges), measured) in enumerate(
                    zip(parts, shaped, strict=True)
                ):
                    if index == 1:
                        strip.black.append(strip.cursor)
                        strip.cursor += 1
                    self._draw_continuous_segment(
                        setup, canvas, drawn, ranges if word_spans else None, strip, measured
                    )
            finally:  # also after an error: the canvas is reused
                pixels = canvas.take((strip.cursor + 1) * patch)  # white after the end patch
                for measured in shaped or ():
                    if measured is not None:
                        setup.free(measured[0])
        return self._finish(None, strip, total_words, pixels=pixels)

    def _render_text_that_fits(self, text: str) -> RenderedText | None:
        """One text without word spans (the published renderer's only call, and a batch
        call's), shaped, measured and drawn from one layout with nothing else to track; None if
        it is empty or does not fit (the general path then searches its longest prefix).

        The general path draws the same pixels (tested on the golden texts); this one is the
        hot loop of continuous rendering, where the general path's bookkeeping, a new layout and
        a full-width canvas to clear took ~10 of ~82 us per ~100-character text."""
        if not text or len(text) > _MAX_LAYOUT_CHARS:
            return None
        patch = self.pixels_per_patch
        with process_lock():
            setup = self._setup()
            layout = setup.shared_layout(text)
            width, height = setup.logical_size(layout)
            num_patches = _patches_for_width(width, patch)
            if num_patches + 1 > self.max_seq_length:  # + the end patch
                return None
            missing = setup.unknown_glyphs(layout)
            # Drawn on the smallest canvas of 2^k patches that holds text and end patch: clearing
            # it is the part of the time that grows with its width (everything after the end
            # patch is white whatever the canvas, and cairo clips each glyph on its own).
            columns, strip_width = (num_patches + 1) * patch, patch * self.max_seq_length
            canvas_width = min(strip_width, patch << num_patches.bit_length())
            canvas = setup.strip_canvas(canvas_width, patch)
            try:
                canvas.draw(layout, _CONTINUOUS_MARGIN, layout_y(height, patch))
            finally:  # the canvas is reused: clear again whatever happens
                pixels = canvas.take(columns, strip_width)
        # `_finish`'s work for this case, without its bookkeeping objects (measured: they cost
        # more here, between two native calls, than their own time suggests)
        pixels[:, num_patches * patch : (num_patches + 1) * patch] = 0  # the end patch
        if missing:
            self._warn_missing(missing, text.strip()[:20])
        return RenderedText(pixels, num_patches + 1, [], len(text.split()), 0, missing)

    def _shaped_if_they_fit(self, setup: _FontSetup, texts: list[str]) -> list | None:
        """(layout, logical width, height) of each text (None for an empty text) if text,
        [separator,] text_pair and the end patch fit the strip; else None (nothing kept)."""
        if max(map(len, texts)) > _MAX_LAYOUT_CHARS:
            return None
        shaped, patches = [], len(texts)
        for text in texts:
            if text:
                layout = setup.layout(text)
                shaped.append((layout, *setup.logical_size(layout)))
                patches += _patches_for_width(shaped[-1][1], self.pixels_per_patch)
            else:
                shaped.append(None)
        if patches <= self.max_seq_length:
            return shaped
        for measured in shaped:
            if measured is not None:
                setup.free(measured[0])
        return None

    def _continuous_patches(self, setup: _FontSetup, text: str) -> int:
        if not text:
            return 0
        layout = setup.layout(text)
        width, _ = setup.logical_size(layout)
        setup.free(layout)
        return _patches_for_width(width, self.pixels_per_patch)

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
        self, setup, canvas: _StripCanvas, text: str, ranges, strip: _Strip, measured=None
    ):
        """Draws `text` at the cursor (`measured`: its layout, logical width and height if
        already shaped); the patch spans of its words (character `ranges`) unless None."""
        if not text or len(text) > _MAX_LAYOUT_CHARS:  # nothing, or only spaces, too many to fit
            return
        patch = self.pixels_per_patch
        owned = measured is None
        if owned:
            layout = setup.layout(text)
            measured = (layout, *setup.logical_size(layout))
        layout, width, height = measured
        try:
            num_patches = _patches_for_width(width, patch)
            if strip.cursor + num_patches > strip.budget:  # only spaces, too many to fit
                return
            x = strip.cursor * patch + _CONTINUOUS_MARGIN
            canvas.draw(layout, x, layout_y(height, patch))
            missing = setup.unknown_glyphs(layout)
            if missing:
                strip.add_missing(missing, text.strip()[:20])
            if ranges:
                self._add_word_spans(setup, layout, text, ranges, strip, num_patches)
            strip.cursor += num_patches
        finally:
            if owned:
                setup.free(layout)

    def _add_word_spans(self, setup, layout, text: str, ranges, strip: _Strip, num_patches: int):
        """The patch span of each word (character `ranges` of `text`) drawn at the cursor."""
        patch, cursor, floor, ceil = self.pixels_per_patch, strip.cursor, math.floor, math.ceil
        for x0, x1 in setup.x_ranges(layout, _byte_ranges(text, ranges)):
            first = cursor + min(num_patches - 1, max(0, floor((x0 + _CONTINUOUS_MARGIN) / patch)))
            last = cursor + min(num_patches, ceil((x1 + _CONTINUOUS_MARGIN) / patch))
            strip.spans.append((first, max(first + 1, last)))


def _patches_for_width(width: int, patch: int) -> int:
    """Patches a text of logical `width` px fills, its white margins included."""
    return math.ceil((2 * _CONTINUOUS_MARGIN + width) / patch)


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
