"""The ink caches of the PIXEL-M4 renderer's bigram modes and their pixman-exact compositing.

Separate from the renderer because it is the one subtle part: a strip is assembled from cached
coverage (units, pairs, words) so that it equals, byte for byte, the strip cairo draws unit by
unit (the reference path, `cache_size=0`). How that holds is explained below ("The caches").
`_InkPlacement` holds the renderer's methods that place cached ink on a strip; they read the
renderer's settings (pixels_per_patch, render_mode, group_graphemes, cache sizes, setup key).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .rendering_native import _Canvas, _FontSetup, process_lock
from .rendering_text import _word_pairs

_MAX_MARGIN_DOUBLINGS = 8

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
    with process_lock():
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


class _InkPlacement:
    """The renderer's bigram-mode methods that place ink: cached (`_place_word`) and drawn
    by cairo where compositing could round differently (see "The caches")."""

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
