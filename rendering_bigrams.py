"""The bigram modes of the PIXEL-M4 renderer (bigram, word_bigram): words laid out on a strip.

Separate from the renderer class because it is one mode's layout rule: each text's words are
cut into pairs that start at patch boundaries, placed left to right (last word first for
mirrored right-to-left text), and truncated by whole words as in the published renderer, a word
wider than a whole strip keeping its longest prefix of pairs that fits. Words go through the ink
caches (rendering_ink.py) or, with `cache_size=0`, are drawn unit by unit by cairo (the
reference path the caches are tested against). `_BigramModes` holds the renderer's methods;
they read its settings (pixels_per_patch, max_seq_length, render_mode, group_graphemes).
"""

from __future__ import annotations

import numpy as np

from .rendering_ink import RenderedText, _InkPlacement, _patch_counts, _Strip
from .rendering_native import _Canvas, process_lock
from .rendering_text import _word_pairs


class _BigramModes(_InkPlacement):
    """The renderer's bigram-mode methods (the ink placement they use is inherited)."""

    def _render_pairs(
        self, segments: list[list[str]], mirrored: bool = False, reverse_words: bool = False
    ) -> RenderedText:
        patch = self.pixels_per_patch
        # the end patch and a pair's separator are reserved
        strip = _Strip(budget=self.max_seq_length - len(segments))
        with process_lock():
            setup = self._setup()
            if self.cache_size:
                alpha = np.zeros((patch, patch * self.max_seq_length), dtype=np.uint8)
                plans = self._plan_if_all_fits(setup, segments, mirrored, reverse_words)
                if plans is not None:
                    for index, plan in enumerate(plans):
                        if index == 1:
                            self._place_separator(strip)
                        first_span = len(strip.spans)
                        self._place_text(setup, plan, strip, alpha)
                        if reverse_words:
                            strip.spans[first_span:] = strip.spans[first_span:][::-1]
                else:
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

    def _plan_if_all_fits(self, setup, segments, mirrored: bool, reverse_words: bool):
        """The plan (`_plan_text`) of each text if all words fit the strip whole, else None.

        Then the word-by-word rule of `_place_segments` places every word whole, where the
        plans put them, so the caller places whole texts (the cached path's fast case). A text
        longer than two characters per patch cannot fit (in code points) and is not planned:
        planning looks up every pair, and the word-by-word rule measures at most a strip.
        """
        if sum(sum(map(len, words)) for words in segments) > 2 * self.max_seq_length:
            return None
        ordered = [words[::-1] if reverse_words else words for words in segments]
        plans = [self._plan_text(setup, words, mirrored) for words in ordered]
        text_patches = sum(sum(map(_patch_counts, pieces)) for pieces, _ in plans)
        if text_patches + len(segments) > self.max_seq_length:  # + separator + end patch
            return None
        return plans

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
            if index == 1:  # placed even after overflow
                self._place_separator(strip)
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

    @staticmethod
    def _place_separator(strip: _Strip):
        """The black patch between text and text_pair."""
        strip.black.append(strip.cursor)
        strip.cursor += 1
        strip.budget += 1  # its patch was reserved in the budget

    def _prefix_if_too_wide(
        self, setup, word: str, mirrored: bool, strip_budget: int, space: int
    ) -> str | None:
        """None if `word` fits an empty strip; else its longest prefix of whole pairs that fits
        in `space` patches ("" if none does). Measures at most `strip_budget` + 1 patches of
        pairs, so a word of any length costs no more than one strip. The prefix is the word's
        start in text order (a mirrored right-to-left word keeps its first pairs too)."""
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
            return self._pair_ink(setup, pair)[2]
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
