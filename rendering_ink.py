"""The ink caches of the PIXEL-M4 renderer's bigram modes and their pixman-exact compositing.

Separate from the renderer because it is the one subtle part: a strip is assembled from cached
coverage (units, pairs, words) so that it equals, byte for byte, the strip cairo draws unit by
unit (the reference path, `cache_size=0`). How that holds is explained below ("The caches").
`_InkPlacement` holds the renderer's methods that place cached ink on a strip; they read the
renderer's settings (pixels_per_patch, render_mode, group_graphemes, cache sizes, setup key).
"""

from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import dataclass, field
from itertools import accumulate, pairwise
from operator import itemgetter

import numpy as np

from .rendering_native import _Canvas, _FontSetup, layout_y, process_lock
from .rendering_text import _text_pairs

_MAX_MARGIN_DOUBLINGS = 8

# --------------------------------------------------------------------------------------------
# The caches. A pair's rendering depends only on (font setup, size, dpi, P, pair), a word's on
# that and the pairing rule. Both are process-wide bounded caches of coverage (alpha) arrays,
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
#
# Boxed pieces. Most pairs (98% of those of the unseen-word benchmark) keep all their ink
# inside their own patches. Such a pair is stored also as a block, its coverage on the
# [P, num_patches * P] columns it occupies. Consecutive blocks do not share a pixel, and where
# the strip holds no ink yet (left of `ink_end` nothing reaches them), compositing them one by
# one onto it is copying each: so a run of boxed pieces is written as one concatenation of
# their blocks (`_write_run`). A piece whose ink leaves its patches, or a block that would land
# where earlier ink reaches, goes through the exact path above, in drawing order: runs are
# written before the next piece that could overlap them is composited.
# A block is stored patch by patch (bytes of [num_patches, P, P]): a run is then one
# `bytes.join`, and one strided copy of P-byte patch rows puts it in the strip's [P, width]
# layout (a numpy concatenation of [P, w] arrays copies every row of every block on its own,
# four times slower for a text's 46 pairs).
# --------------------------------------------------------------------------------------------
# Cache entries are plain tuples of numbers, strings and numpy arrays (unpacked where used, in
# the field order below). Python's garbage collector stops tracking such tuples, but not named
# tuples or dataclass instances: a long run adds entries by the thousand, each tracked one brings
# the next full collection closer, and one full collection walks the whole heap (~0.2 s with
# torch and transformers imported: more than rendering 500 texts of unseen words).
#   ink:   (offset, alpha, fragile): coverage drawn at origin + offset, alpha uint8 [P, width]
#          cropped to inked columns; fragile bool [P, width] (see above), None if no pixel is
#   unit:  (ink, width, missing): ink offset from the unit's origin, advance width in px
#   piece: (block, ink, num_patches, missing, pairs, boxed): a pair or a word, ink offset from
#          its first column; block (bytes, patch by patch, see above) if the piece is boxed,
#          else None; a boxed piece's ink is (offset, width, fragile), its alpha being cut
#          from the block where needed (`_ink_of`), so its coverage is stored once;
#          pairs: the pairs drawn (one for a pair), for cairo to redraw the piece; boxed: block
#          is not None (a flag, so that `all` checks a text's pieces at C speed)


class _Cache:
    """Entries of several configurations, one table (a dict) each, bounded as a whole.

    Past `size` entries the oldest one goes (insertion order): a hit is one dict look-up with
    no bookkeeping, which matters as a text looks up every one of its pairs. Evicting never
    changes a pixel, only what must be rebuilt.
    """

    def __init__(self):
        self.tables: dict[str, dict] = {}
        self._order: deque[tuple] = deque()  # (table name, key), oldest first

    def table(self, name: str) -> dict:
        table = self.tables.get(name)
        if table is None:
            table = self.tables[name] = {}
        return table

    def put(self, name: str, key, value, size: int):
        table = self.table(name)
        if key not in table:
            self._order.append((name, key))
        table[key] = value
        while len(self._order) > size:
            old_name, old_key = self._order.popleft()
            del self.tables[old_name][old_key]

    def values(self):
        for table in self.tables.values():
            yield from table.values()

    def __len__(self) -> int:
        return len(self._order)


_unit_cache = _Cache()  # tables by font setup key, keys: units
_pair_cache = _Cache()  # tables by font setup key, keys: pairs
_word_cache = _Cache()  # tables by word key (`_word_keys`), keys: words
# words seen (the word cache's admission), per word key: dicts used as sets, emptied when they
# exceed 4 x word_cache_size words (forgetting them never changes a pixel either)
_seen_words: dict[str, dict[str, None]] = {}


def cache_info() -> dict[str, int]:
    """Entries and array bytes of this process's unit, pair and word caches.

    Python objects add about 0.7 KB per entry on top of the arrays (see docs/rendering.md).
    """
    with process_lock():
        return {
            "units": len(_unit_cache),
            "unit_array_bytes": sum(_ink_bytes(unit[0]) for unit in _unit_cache.values()),
            "pairs": len(_pair_cache),
            "pair_array_bytes": sum(_piece_bytes(pair) for pair in _pair_cache.values()),
            "words": len(_word_cache),
            "word_array_bytes": sum(_piece_bytes(word) for word in _word_cache.values()),
        }


def _ink_bytes(ink: tuple) -> int:
    _, alpha, fragile = ink
    return alpha.nbytes + (0 if fragile is None else fragile.nbytes)


def _piece_bytes(piece: tuple) -> int:
    block, ink = piece[:2]
    if block is None:
        return _ink_bytes(ink)
    fragile = ink[2]
    return len(block) + (0 if fragile is None else fragile.nbytes)


@functools.cache
def _patch_row(patch: int) -> np.dtype:
    """One row of one patch (P bytes) as a numpy type: strips and blocks viewed as such."""
    return np.dtype((np.void, patch))


def _by_patch(coverage: np.ndarray, patch: int) -> bytes:
    """A block's storage: coverage [P, n * P] as bytes of [n, P, P] (see "Boxed pieces")."""
    rows = coverage.view(_patch_row(patch))  # [P, n]
    return rows.T.tobytes()


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


def _piece(ink: tuple, num_patches: int, missing: int, pairs: tuple, patch: int) -> tuple:
    """A cache entry for a pair or word: with its block if its ink stays inside its patches."""
    offset, alpha, fragile = ink
    width = alpha.shape[1]
    if not (offset >= 0 and offset + width <= num_patches * patch):
        return (None, ink, num_patches, missing, pairs, False)
    coverage = np.zeros((patch, num_patches * patch), dtype=np.uint8)
    coverage[:, offset : offset + width] = alpha
    block = _by_patch(coverage, patch)
    return (block, (offset, width, fragile), num_patches, missing, pairs, True)


def _ink_of(piece: tuple, patch: int) -> tuple:
    """(offset, alpha, fragile) of a piece; a boxed piece's alpha is cut from its block."""
    block, ink, num_patches = piece[:3]
    if block is None:
        return ink
    offset, width, fragile = ink
    rows = np.frombuffer(block, _patch_row(patch)).reshape(num_patches, patch)
    coverage = rows.T.copy().view(np.uint8)  # [P, num_patches * P]
    return (offset, coverage[:, offset : offset + width], fragile)


def _side_by_side(pieces: list[tuple], num_patches: int, patch: int) -> tuple | None:
    """(block, ink) of pieces (offset, alpha, fragile) that need no compositing: inked columns
    apart, inside the [0, num_patches * patch) columns, no fragile pixels. Then each is a copy
    onto an empty block, and the ink is what `_assemble` makes of them. Else None."""
    inked = [piece for piece in pieces if piece[1].shape[1]]
    end = 0
    for offset, alpha, fragile in inked:
        if fragile is not None or offset < end:
            return None
        end = offset + alpha.shape[1]
    if end > num_patches * patch:
        return None
    coverage = np.zeros((patch, num_patches * patch), dtype=np.uint8)
    for offset, alpha, _ in inked:
        coverage[:, offset : offset + alpha.shape[1]] = alpha
    left = inked[0][0] if inked else 0
    return _by_patch(coverage, patch), (left, end - left, None)


_patch_counts = itemgetter(2)
_missing = itemgetter(3)
_boxed = itemgetter(5)


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


class _InkPlacement:
    """The renderer's bigram-mode methods that place ink: cached (`_place_text`,
    `_place_word`) and drawn by cairo where compositing could round differently (see "The
    caches")."""

    # ------------------------------------------------------------------------- placing pieces
    def _plan_text(self, setup, words: list[str], mirrored: bool) -> tuple[list, list[int]]:
        """The pieces of `words` in drawing order, and where each word's pieces start (and the
        last one ends). Nothing is drawn yet.

        A word in the word cache is one piece, any other word its pairs (built where new). The
        word cache takes a word the second time it is seen, so a stream of rare words never
        pays for building and evicting entries; a text of new words costs one look-up per
        word and one per pair.
        """
        name = self._word_keys[mirrored]
        word_table = _word_cache.table(name) if self.word_cache_size else {}
        cached = list(map(word_table.get, words))
        if None not in cached:
            return cached, list(range(len(words) + 1))
        new = [word for word, entry in zip(words, cached, strict=True) if entry is None]
        pairs, counts = _text_pairs(new, self.render_mode, self.group_graphemes, mirrored)
        entries = self._pair_entries(setup, pairs)
        again = set()
        if self.word_cache_size:
            seen = _seen_words.setdefault(name, {})
            again = {word for word in new if word in seen}
            if len(seen) > 4 * self.word_cache_size:  # bounded: start over
                seen.clear()
            seen.update(dict.fromkeys(new))
        if len(new) == len(words) and not again:  # a text of new words: its pairs
            return entries, list(accumulate(counts, initial=0))
        pieces, starts, first = [], [0], 0
        pair_counts = iter(counts)
        for word, entry in zip(words, cached, strict=True):
            if entry is None:
                last = first + next(pair_counts)
                if word in again:
                    pieces.append(self._word_ink(setup, word, mirrored, entries[first:last]))
                else:
                    pieces += entries[first:last]
                first = last
            else:
                pieces.append(entry)
            starts.append(len(pieces))
        return pieces, starts

    def _place_text(self, setup, plan, strip: _Strip, alpha: np.ndarray):
        """The cached path for words that all fit (checked by the caller): spans from the
        patch counts of the pieces, then every piece at its place (see "Boxed pieces")."""
        pieces, starts = plan
        columns = list(accumulate(map(_patch_counts, pieces), initial=strip.cursor))
        spans = [(columns[start], columns[stop]) for start, stop in pairwise(starts)]
        strip.spans += spans
        strip.counts += [stop - start for start, stop in spans]
        self._count_missing(setup, pieces, strip)
        self._place_pieces(setup, pieces, strip, alpha)

    def _place_word(
        self, setup, word: str, mirrored: bool, strip: _Strip, alpha: np.ndarray
    ) -> bool:
        """The cached path word by word (texts that do not fit whole): the word at the cursor,
        False (nothing drawn) if it does not fit."""
        pieces, _ = self._plan_text(setup, [word], mirrored)
        if strip.cursor + sum(map(_patch_counts, pieces)) > strip.budget:
            return False
        self._count_missing(setup, pieces, strip)
        self._place_pieces(setup, pieces, strip, alpha)
        return True

    def _count_missing(self, setup, pieces: list[tuple], strip: _Strip):
        """Adds the pieces' missing glyphs; the sample is the first pair that has some."""
        missing = sum(map(_missing, pieces))
        if missing:
            pairs = next(piece[4] for piece in pieces if piece[3])
            sample = next(pair for pair in pairs if self._pair_ink(setup, pair)[3])
            strip.add_missing(missing, "".join(sample))

    def _place_pieces(self, setup, pieces: list[tuple], strip: _Strip, alpha: np.ndarray):
        """Pieces at consecutive patch boundaries from the cursor, in drawing order: runs of
        boxed pieces as one copy, the others composited one by one."""
        if all(map(_boxed, pieces)):  # most texts: one run
            self._write_run(setup, pieces, strip, alpha)
            return
        start = 0
        for index, piece in enumerate(pieces):
            if not piece[5]:
                self._write_run(setup, pieces[start:index], strip, alpha)
                self._place_piece(setup, piece, strip, alpha)
                start = index + 1
        self._write_run(setup, pieces[start:], strip, alpha)

    def _write_run(self, setup, pieces: list[tuple], strip: _Strip, alpha: np.ndarray):
        """Boxed pieces at the cursor: those where earlier ink reaches are composited, the rest
        is written as one concatenation of their blocks (nothing below it, see "Boxed pieces")."""
        patch = self.pixels_per_patch
        index = 0
        while index < len(pieces) and strip.cursor * patch < strip.ink_end:
            self._place_piece(setup, pieces[index], strip, alpha)
            index += 1
        if index == len(pieces):
            return
        run = b"".join([piece[0] for piece in pieces[index:]])
        num_patches = len(run) // (patch * patch)
        start, stop = strip.cursor * patch, (strip.cursor + num_patches) * patch
        row = _patch_row(patch)
        alpha[:, start:stop].view(row)[...] = np.frombuffer(run, row).reshape(num_patches, patch).T
        strip.cursor += num_patches
        strip.ink_end = stop

    def _place_piece(self, setup, piece: tuple, strip: _Strip, alpha: np.ndarray):
        """One piece at the cursor by the exact path: composited, or drawn by cairo where its
        fragile pixels land on ink (see "The caches")."""
        num_patches, pairs = piece[2], piece[4]
        origin = strip.cursor * self.pixels_per_patch
        region = self._composite(_ink_of(piece, self.pixels_per_patch), origin, strip, alpha)
        if region is not None:
            start, stop = region
            alpha[:, start:stop] = self._draw_pairs_over(
                setup, pairs, alpha[:, start:stop], origin - start
            )
        strip.cursor += num_patches

    def _composite(self, ink: tuple, origin: int, strip: _Strip, alpha: np.ndarray):
        """Composites `ink` (a word's or a pair's, at `origin`) onto the strip's coverage: a
        copy where nothing is below, else pixman's OVER. Where fragile pixels would land on
        ink it returns the [start, stop) columns for cairo to draw instead (see "The
        caches")."""
        offset, coverage, fragile = ink
        x, width = origin + offset, coverage.shape[1]
        start, stop = max(x, 0), min(x + width, alpha.shape[1])
        if start >= stop:
            return None
        below = min(strip.ink_end, stop)  # only columns left of ink_end can hold ink
        strip.ink_end = max(strip.ink_end, x + width)
        if below <= start or not alpha[:, start:below].any():
            alpha[:, start:stop] = coverage[:, start - x : stop - x]  # nothing below: a copy
        elif self._fragile_pixels_inked(alpha, x, fragile, below):
            return start, stop
        else:
            _over_into(alpha, coverage, x)
        return None

    @staticmethod
    def _fragile_pixels_inked(alpha: np.ndarray, x: int, fragile, ink_end: int) -> bool:
        if fragile is None:
            return False
        start, stop = max(x, 0), min(x + fragile.shape[1], ink_end, alpha.shape[1])
        if start >= stop:
            return False
        return bool(((alpha[:, start:stop] > 0) & fragile[:, start - x : stop - x]).any())

    # ------------------------------------------------------------------------- drawn by cairo
    def _draw_placed(self, setup, background: np.ndarray, placed: list[tuple]) -> np.ndarray:
        """Cairo draws (layout, x, y) onto a copy of `background` (coverage [P, w])."""
        canvas = _Canvas(setup.native, background.shape[1], self.pixels_per_patch)
        try:
            canvas.set_alpha(background)
            canvas.draw(placed)
            return canvas.alpha()
        finally:
            canvas.close()

    def _draw_pairs_over(self, setup, pairs: tuple, background: np.ndarray, origin: int):
        """Cairo draws the units of `pairs` (a pair's or a word's, each pair at the next patch
        boundary) onto a copy of `background`, the first pair at `origin`."""
        measured = []
        try:
            placed = []
            for pair in pairs:
                measured.append(self._measure_pair(setup, pair))
                layouts, num_patches, _ = measured[-1]
                placed += self._placements(layouts, origin)
                origin += num_patches * self.pixels_per_patch
            return self._draw_placed(setup, background, placed)
        finally:
            for layouts, _, _ in measured:
                self._free_layouts(setup, layouts)

    # ------------------------------------------------------------------------- cache entries
    def _word_ink(self, setup: _FontSetup, word: str, mirrored: bool, entries: list[tuple]):
        """A word's cache entry from its pairs' entries: their blocks joined where all are
        boxed without fragile pixels (nothing to composite), else composed by `_assemble`
        (and drawn by cairo where that is not exact)."""
        patch = self.pixels_per_patch
        num_patches = sum(map(_patch_counts, entries))
        missing = sum(map(_missing, entries))
        pairs = tuple(entry[4][0] for entry in entries)
        if all(map(_boxed, entries)) and all(entry[1][2] is None for entry in entries):
            inked, column = [], 0  # the pairs' inked columns in the word
            for _, (offset, width, _), pair_patches, _, _, _ in entries:
                if width:
                    inked.append((column + offset, column + offset + width))
                column += pair_patches * patch
            left, right = (inked[0][0], inked[-1][1]) if inked else (0, 0)
            block = b"".join([entry[0] for entry in entries])
            word_entry = (block, (left, right - left, None), num_patches, missing, pairs, True)
        else:
            pieces, column = [], 0
            for entry in entries:
                offset, alpha, fragile = _ink_of(entry, patch)
                pieces.append((column + offset, alpha, fragile))
                column += entry[2] * patch
            (offset, alpha, fragile), exact = _assemble(pieces, patch)
            if not exact:
                alpha = self._draw_pairs_over(setup, pairs, np.zeros_like(alpha), -offset)
            word_entry = _piece((offset, alpha, fragile), num_patches, missing, pairs, patch)
        _word_cache.put(self._word_keys[mirrored], word, word_entry, self.word_cache_size)
        return word_entry

    def _pair_entries(self, setup: _FontSetup, pairs: list) -> list[tuple]:
        """The cache entries of `pairs`, built where new: one dict look-up per cached pair."""
        entries = list(map(_pair_cache.table(self._setup_key).get, pairs))
        if None in entries:
            entries = [
                entry or self._pair_ink(setup, pair)
                for entry, pair in zip(entries, pairs, strict=True)
            ]
        return entries

    def _pair_ink(self, setup: _FontSetup, pair) -> tuple:
        """A pair composed from its units' cached ink, side by side by advance width (the
        published rule); cairo draws it only where units overlap on fragile pixels."""
        cached = _pair_cache.table(self._setup_key).get(pair)
        if cached is not None:
            return cached
        units = _unit_cache.table(self._setup_key)
        pieces, x, missing = [], 0, 0
        for unit in pair:
            (offset, alpha, fragile), width, unit_missing = units.get(unit) or self._unit(
                setup, unit
            )
            pieces.append((x + offset, alpha, fragile))
            x += width
            missing += unit_missing
        patch = self.pixels_per_patch
        num_patches = max(1, math.ceil(x / patch))
        apart = _side_by_side(pieces, num_patches, patch)  # most pairs: two copies
        if apart is not None:
            block, ink = apart
            pair_ink = (block, ink, num_patches, missing, (pair,), True)
        else:
            (offset, alpha, fragile), exact = _assemble(pieces, patch)
            if not exact:
                layouts, _, _ = self._measure_pair(setup, pair)
                try:
                    placed = self._placements(layouts, -offset)
                    alpha = self._draw_placed(setup, np.zeros_like(alpha), placed)
                finally:
                    self._free_layouts(setup, layouts)
            pair_ink = _piece((offset, alpha, fragile), num_patches, missing, (pair,), patch)
        _pair_cache.put(self._setup_key, pair, pair_ink, self.cache_size)
        return pair_ink

    def _unit(self, setup: _FontSetup, unit: str) -> tuple:
        """One unit shaped alone: its ink drawn at x = 0 (glyphs land on whole pixels, so
        it is the same at any integer x), advance width and missing glyphs."""
        cached = _unit_cache.table(self._setup_key).get(unit)
        if cached is not None:
            return cached
        layout = setup.layout(unit)
        try:
            left, right, width, height = setup.extents(layout)  # ink columns, logical size
            y = layout_y(height, self.pixels_per_patch)
            missing = setup.unknown_glyphs(layout)
            unit_ink = (self._unit_ink(setup, layout, (left, right), 0, y, missing), width, missing)
        finally:
            setup.free(layout)
        _unit_cache.put(self._setup_key, unit, unit_ink, self.cache_size)
        return unit_ink

    def _unit_ink(self, setup: _FontSetup, layout, ink, x: int, y: float, missing: int) -> tuple:
        """The coverage of `layout` drawn alone at (x, y), cropped to its inked columns.
        `ink`: Pango's [left, right) ink columns; `missing`: its unknown glyphs."""
        left, right = ink
        margin = 4  # px around Pango's ink box; doubled while ink touches the canvas edge
        for _ in range(_MAX_MARGIN_DOUBLINGS):  # bounded: ink never runs far past Pango's box
            origin = x + left - margin  # canvas column 0 in the caller's coordinates
            # a new canvas is empty (cairo zeroes a new image surface): no background to set
            canvas = _Canvas(setup.native, right - left + 2 * margin, self.pixels_per_patch)
            try:
                canvas.draw([(layout, x - origin, y)])  # an integer shift
                alpha = canvas.alpha()
            finally:
                canvas.close()
            inked = alpha.any(axis=0)
            if not (inked[0] or inked[-1]):
                break
            margin *= 2
        columns = np.flatnonzero(inked)
        if not columns.size:
            return (0, alpha[:, :0].copy(), None)
        first, last = int(columns[0]), int(columns[-1])
        alpha = alpha[:, first : last + 1].copy()
        one_composite = not missing and setup.glyph_count(layout) <= 1
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
            placed.append((layout, x, layout_y(height, self.pixels_per_patch)))
            x += width
        return placed

    @staticmethod
    def _free_layouts(setup: _FontSetup, layouts):
        for layout, _, _ in layouts:
            setup.free(layout)
