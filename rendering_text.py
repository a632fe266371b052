"""Text handling of the PIXEL-M4 renderer: input checks, clean-up, right-to-left, pairs.

Separate from the renderer because it is plain string work, with no drawing: what the renderer
accepts as text (and refuses, with a message), which characters it drops before rendering, the
published renderers' right-to-left test, and how words are cut into the units and pairs that
bigram modes draw.

Control characters (Unicode Cc/Cf, except ZWJ/ZWNJ) are dropped before rendering; the
whitespace ones (newline, tab, ...) act as word separators.
"""

from __future__ import annotations

import re
import string
import unicodedata

_KEPT_FORMAT_CHARS = {"\u200c", "\u200d"}  # ZWNJ / ZWJ shape Indic and Arabic text


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


_PAIR = re.compile(r"\S\S?")  # \S: not str.isspace(), the characters str.split() keeps


def _units(word: str, group_graphemes: bool) -> list[str]:
    """The shaping units of a word: code points, or grapheme clusters."""
    if group_graphemes:
        import regex

        return regex.findall(r"\X", word)
    return list(word)


def _word_pairs(
    word: str, mode: str, group_graphemes: bool, mirrored: bool = False
) -> list[str | tuple[str, ...]]:
    """The units of a word, pair by pair, in drawing order (left to right); see `_text_pairs`."""
    return _text_pairs([word], mode, group_graphemes, mirrored)[0]


def _text_pairs(
    words: list[str], mode: str, group_graphemes: bool, mirrored: bool = False
) -> tuple[list[str | tuple[str, ...]], list[int]]:
    """The pairs of `words` (one list, in drawing order) and how many pairs each word has.

    A pair is a sequence of units: a string of one or two code points, or, with
    `group_graphemes`, a tuple of grapheme clusters (its units cannot be told from the joined
    string). Pairs are the ink caches' keys, so they are cut with one string slice each.

    `mirrored` (right-to-left text in bigram mode): the pairs are cut from the word's start as
    usual, then drawn in reverse order with each pair's units swapped, so the word reads
    right to left (`string_to_ngrams(..., rtl=True)` in the published PIXEL-M4 renderer).
    word_bigram: overlapping pairs, a one-unit word is one pair.
    """
    if group_graphemes:
        per_word = [_pairs_of_units(_units(word, True), mode, mirrored) for word in words]
        return [pair for pairs in per_word for pair in pairs], [len(pairs) for pairs in per_word]
    if mode == "word_bigram":
        counts = [max(len(word) - 1, 1) for word in words]
        pairs = [
            word[i : i + 2] for word, count in zip(words, counts, strict=True) for i in range(count)
        ]
    elif mirrored:  # pair starts 0, 2, 4, ... taken from the last one
        counts = [(len(word) + 1) // 2 for word in words]
        pairs = [
            word[i : i + 2][::-1]
            for word, count in zip(words, counts, strict=True)
            for i in range(2 * count - 2, -1, -2)
        ]
    else:  # words hold no whitespace: their pairs are the text's runs of 1-2 non-spaces
        counts = [(len(word) + 1) // 2 for word in words]
        pairs = _PAIR.findall(" ".join(words))
    return pairs, counts


def _pairs_of_units(units: list[str], mode: str, mirrored: bool) -> list[tuple[str, ...]]:
    if mode == "word_bigram":
        if len(units) == 1:
            return [tuple(units)]
        return [tuple(units[i : i + 2]) for i in range(len(units) - 1)]
    pairs = [tuple(units[i : i + 2]) for i in range(0, len(units), 2)]
    if mirrored:
        return [pair[::-1] for pair in reversed(pairs)]
    return pairs


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
