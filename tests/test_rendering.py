"""Tests of the text renderer (rendering_pixel_m4.py)."""

import hashlib
import json
import math
import os
import subprocess
import sys
import threading
import tracemalloc
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pixel_m4 import rendering_ink, rendering_native
from pixel_m4.rendering_pixel_m4 import (
    PixelM4TextRenderer,
    cache_info,
    default_font_files,
    font_setup_hash,
    is_rtl,
    strip_to_grid,
)

SAMPLES = {
    "en": "The quick brown fox jumps over the lazy dog.",
    "hi": "भारत एक विशाल देश है जहाँ अनेक भाषाएँ बोली जाती हैं।",
    "uk": "Київ є столицею та найбільшим містом України.",
    "zh": "北京是中华人民共和国的首都，也是政治和文化中心。",
    "th": "ประเทศไทยมีประชากรประมาณเจ็ดสิบล้านคน",
    "ar": "القاهرة هي عاصمة جمهورية مصر العربية وأكبر مدنها.",
    "he": "ירושלים היא בירת ישראל והעיר הגדולה בה.",
    "el": "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
    "ka": "თბილისი საქართველოს დედაქალაქია.",
    "hy": "Երևանը Հայաստանի մայրաքաղաքն է։",
}
CORPUS = [SAMPLES[lang] for lang in ("en", "hi", "uk", "zh", "th", "ar")]
# Ink beyond a pair's patches: marks shaped alone reach left of their patch with their dotted
# circle (U+20E4 by 9 px, Thai SARA AM by 4), U+0D63 is two glyphs (dotted circle + mark) that
# overlap, 'j' / brackets overhang; together they hit every branch of the cached path.
OVERHANG = [
    "ab \u20e4 \u20e4\u0d63 x\u0d63\u20e4 \u0489\u20e4",
    "\u20e4\u0d63 j\u20e4 (ƒ ]_ fj jj",
    "ไทย ำ\u20e4 น้ำ ि कि क्षत्रिय \u20e4ि",
    "مرحبا \u20e4ب \u0651\u20e4 שָׁלוֹם",
]
CACHE_CORPUS = [
    *CORPUS,
    *(SAMPLES[lang] for lang in ("he", "el", "ka", "hy")),
    "हिन्दी में संयुक्ताक्षर: क्ष त्र ज्ञ श्र, मात्राएँ: कि की कु कू के कै को कौ",
    "ภาษาไทย: ที่ นี่ น้ำ กล้วย เปลี่ยน",
    " ".join(CORPUS),
    *OVERHANG,
]
MODES = ["bigram", "continuous", "word_bigram"]
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def is_black(pixels, patch_index, size=16):
    return bool((pixels[:, patch_index * size : (patch_index + 1) * size] == 0).all())


def is_white(pixels, patch_index, size=16):
    return bool((pixels[:, patch_index * size : (patch_index + 1) * size] == 255).all())


def advance_width(renderer, unit):
    """Logical width in px of one shaping unit, measured with the renderer's own font setup."""
    setup = renderer._setup()
    layout = setup.layout(unit)
    width, _ = setup.logical_size(layout)
    setup.free(layout)
    return width


def expected_bigram_patches(renderer, text):
    """The published rule by hand: every pair takes ceil((w1 + w2) / 16) patches (>= 1)."""
    total = 0
    for word in text.split():
        for i in range(0, len(word), 2):
            width = sum(advance_width(renderer, char) for char in word[i : i + 2])
            total += max(1, math.ceil(width / 16))
    return total + 1  # end patch


# ---------------------------------------------------------------------------- patch counts
@pytest.mark.parametrize(
    ("text", "expected_spans"),
    [
        ("lilt tilt", [(0, 2), (2, 4)]),  # narrow Latin pairs: one patch each
        ("її ліг", [(0, 1), (1, 3)]),  # Cyrillic: [її] [лі][г]
        ("你好世界", [(0, 4)]),  # two CJK pairs, 13.3 px per character: two patches each
        ("你好世 中", [(0, 3), (3, 4)]),  # [你好][世] then a single character: one patch
    ],
)
def test_bigram_spans_hand_computed(renderer, text, expected_spans):
    out = renderer.render(text)
    assert out.word_patch_spans == expected_spans
    assert out.num_patches == expected_spans[-1][1] + 1
    assert is_black(out.pixels, out.num_patches - 1)
    assert is_white(out.pixels, out.num_patches)


@pytest.mark.parametrize("lang", ["en", "hi", "uk", "zh", "th", "ar"])
def test_bigram_patch_count_follows_advance_widths(renderer, lang):
    out = renderer.render(SAMPLES[lang])
    assert out.num_patches == expected_bigram_patches(renderer, SAMPLES[lang])
    assert len(out.word_patch_spans) == len(SAMPLES[lang].split())


@pytest.mark.parametrize("lang", ["en", "hi", "uk", "zh", "th", "ar"])
def test_continuous_patch_count(lang):
    renderer = PixelM4TextRenderer(render_mode="continuous")
    text = SAMPLES[lang]
    out = renderer.render(text)
    width = advance_width(renderer, " ".join(text.split()))
    assert out.num_patches == math.ceil((2 + width + 2) / 16) + 1
    spans = out.word_patch_spans
    assert len(spans) == len(text.split())
    assert all(0 <= start < end <= out.num_patches - 1 for start, end in spans)
    if lang != "ar":  # left-to-right: words advance along the strip
        assert [start for start, _ in spans] == sorted(start for start, _ in spans)
    else:  # right-to-left: the first word is drawn rightmost
        assert spans[0][0] > spans[-1][0]


def test_word_bigram_overlapping_bigrams():
    renderer = PixelM4TextRenderer(render_mode="word_bigram")
    assert (renderer.font_size, renderer.pixels_per_patch) == (10, 24)
    out = renderer.render("Happy a day")
    assert out.pixels.shape == (24, 24 * 529)
    assert out.word_patch_counts == [4, 1, 2]  # [Ha][ap][pp][py] [a] [da][ay]
    assert out.word_patch_spans == [(0, 4), (4, 5), (5, 7)]
    assert out.num_patches == 8  # one end patch after the last word
    assert is_black(out.pixels, 7, size=24)
    # [ap] of "Happy" is the same picture as the word "ap" alone
    alone = renderer.render("ap")
    assert np.array_equal(out.pixels[:, 24:48], alone.pixels[:, :24])


def test_group_graphemes_pairs_clusters():
    text = "नमस्ते"  # code points न म स ् त े ; clusters न म स्ते
    plain = PixelM4TextRenderer().render(text)
    grouped = PixelM4TextRenderer(group_graphemes=True).render(text)
    code_point_pairs, cluster_pairs = 3, 2
    assert plain.word_patch_spans[0][1] >= code_point_pairs
    assert cluster_pairs <= grouped.word_patch_spans[0][1] < plain.word_patch_spans[0][1]
    assert grouped.missing_glyphs == 0
    # Thai: "ที่" is one cluster (consonant + vowel + tone mark): one unit, one patch
    thai = PixelM4TextRenderer(group_graphemes=True).render("ที่")
    assert thai.word_patch_spans == [(0, 1)]
    assert PixelM4TextRenderer().render("ที่").word_patch_spans[0][1] >= 2  # [ที][่]


# ---------------------------------------------------------------------------- glyph coverage
@pytest.mark.parametrize("lang", sorted(SAMPLES))
def test_no_missing_glyphs(any_renderer, lang):
    out = any_renderer.render(SAMPLES[lang])
    assert out.missing_glyphs == 0


@pytest.mark.parametrize(("text", "missing"), [("ok 😀", 1), ("\ue000\ue001", 2)])
def test_missing_glyphs_counted_and_warned_once(text, missing):
    renderer = PixelM4TextRenderer()
    with pytest.warns(UserWarning, match="missing"):
        out = renderer.render(text)
    assert out.missing_glyphs == missing
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert renderer.render(text).missing_glyphs == missing  # counted, not warned again
    assert out.pixels[:, :32].min() < 128  # the tofu box is drawn (visible ink)


def test_fonts_isolated_from_system():
    """NotoSans alone has no Hebrew; the system's DejaVu does. A leak would find it."""
    only_latin = PixelM4TextRenderer(font_file=default_font_files()[0])
    assert only_latin.render("hello").missing_glyphs == 0
    with pytest.warns(UserWarning):
        assert only_latin.render(SAMPLES["he"]).missing_glyphs > 0


def test_default_font_files():
    files = default_font_files()
    names = [os.path.basename(path) for path in files]
    assert names[0] == "NotoSans[wght].ttf"
    assert names[-1] == "NotoSansCJK-VF.otf.ttc"
    assert "NotoSansDevanagari[wght].ttf" in names and "NotoSansThai[wght].ttf" in names
    assert not any("Italic" in name or "Emoji" in name for name in names)
    assert all(os.path.isabs(path) and os.path.isfile(path) for path in files)


# ---------------------------------------------------------------------------- truncation, pairs
def test_truncation(any_renderer):
    text = " ".join([SAMPLES["en"], SAMPLES["zh"]] * 60)
    out = any_renderer.render(text)
    assert out.num_words == len(text.split())
    assert out.overflow > 0
    assert len(out.word_patch_spans) == out.num_words - out.overflow
    assert out.num_patches <= 529
    patch = any_renderer.pixels_per_patch
    assert is_black(out.pixels, out.num_patches - 1, patch)
    # dropping one word fewer would not fit: the kept words use most of the strip
    assert out.num_patches > 529 - 8


def test_text_pair_separator(any_renderer):
    patch = any_renderer.pixels_per_patch
    single = any_renderer.render("first text")
    out = any_renderer.render("first text", "second")
    separator = single.num_patches - 1  # where the end patch was
    assert is_black(out.pixels, separator, patch)
    assert np.array_equal(out.pixels[:, : separator * patch], single.pixels[:, : separator * patch])
    assert len(out.word_patch_spans) == 3
    assert out.word_patch_spans[2][0] > separator
    assert is_black(out.pixels, out.num_patches - 1, patch)
    assert out.num_patches > single.num_patches + 1


def test_text_pair_truncation_keeps_separator():
    renderer = PixelM4TextRenderer(max_seq_length=20)
    out = renderer.render(" ".join(["hello"] * 40), "pair words")
    assert out.num_patches <= 20 and out.overflow > 0
    black = [i for i in range(out.num_patches) if is_black(out.pixels, i)]
    assert black[-2:] == [out.num_patches - 2, out.num_patches - 1]  # separator + end


@pytest.mark.parametrize("text", ["", "   ", "\n\t ", "\x00\x07"])
def test_empty_text_is_one_end_patch(any_renderer, text):
    out = any_renderer.render(text)
    # continuous mode draws spaces as written (original PIXEL): 2 + 3 spaces + 2 px, one patch
    blank = 1 if any_renderer.render_mode == "continuous" and text.isspace() else 0
    assert (out.num_patches, out.num_words, out.overflow) == (blank + 1, 0, 0)
    assert is_black(out.pixels, blank, any_renderer.pixels_per_patch)
    assert (out.pixels[:, : blank * any_renderer.pixels_per_patch] == 255).all()
    assert (out.pixels[:, (blank + 1) * any_renderer.pixels_per_patch :] == 255).all()


@pytest.mark.parametrize("mode", MODES)
def test_mixed_direction_text(mode):
    text = "Hello مرحبا world שלום 2024 العربية"
    renderer = PixelM4TextRenderer(render_mode=mode)
    out = renderer.render(text)
    assert (out.missing_glyphs, out.overflow, len(out.word_patch_spans)) == (0, 0, 6)
    assert is_black(out.pixels, out.num_patches - 1, renderer.pixels_per_patch)
    spans = out.word_patch_spans
    if mode == "continuous":  # bidi: the Latin words keep their order, all spans in the text
        assert spans[0][0] < spans[2][0]
        assert all(0 <= start < end <= out.num_patches - 1 for start, end in spans)
    else:  # words one after the other, as in the published renderer
        assert all(spans[i][1] == spans[i + 1][0] for i in range(5))
        uncached = PixelM4TextRenderer(render_mode=mode, cache_size=0).render(text)
        assert out.pixels.tobytes() == uncached.pixels.tobytes()


def test_control_characters_dropped(renderer):
    assert np.array_equal(renderer.render("ab\x00c\u200bd").pixels, renderer.render("abcd").pixels)
    assert np.array_equal(renderer.render("ab\ncd").pixels, renderer.render("ab cd").pixels)
    # ZWJ / ZWNJ are kept (they change shaping): a half form "क्‍ष" is not the conjunct "क्ष"
    continuous = PixelM4TextRenderer(render_mode="continuous")
    with_zwj, conjunct = continuous.render("क्\u200dष"), continuous.render("क्ष")
    assert not np.array_equal(with_zwj.pixels, conjunct.pixels)


# ---------------------------------------------------------------------------- __call__
@pytest.mark.parametrize("return_tensors", [None, "np", "pt"])
def test_call_batch_outputs(renderer, return_tensors):
    batch = renderer(["hello world", "你好"], return_tensors=return_tensors, return_word_spans=True)
    pixel_values = np.asarray(batch["pixel_values"])
    assert pixel_values.shape == (2, 3, 16, 16 * 529) and pixel_values.dtype == np.float32
    assert np.array_equal(pixel_values[:, 0], pixel_values[:, 2])
    assert pixel_values.max() == 1.0 and pixel_values.min() == 0.0
    mask = np.asarray(batch["attention_mask"])
    assert mask.dtype == np.int64 and mask.shape == (2, 529)
    assert mask.sum(1).tolist() == np.asarray(batch["num_patches"]).tolist()
    expected = renderer.render("hello world")
    assert np.array_equal(pixel_values[0, 0], expected.pixels.astype(np.float32) / 255)
    assert mask[0, : expected.num_patches].all() and not mask[0, expected.num_patches :].any()
    assert batch["word_patch_spans"][0] == expected.word_patch_spans
    if return_tensors == "pt":
        assert isinstance(batch["pixel_values"], torch.Tensor)
    assert np.asarray(batch["overflow"]).tolist() == [0, 0]


def test_call_memory_is_the_output_plus_a_strip(renderer):
    """A big batch is filled in place: no stacked copies of the strips next to the output."""
    texts = [SAMPLES["hi"], SAMPLES["zh"]] * 16
    renderer(texts[:2])  # caches warm: measure the batch, not the first Pango set-up
    tracemalloc.start()
    try:
        batch = renderer(texts, return_tensors="np")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    output = batch["pixel_values"].nbytes  # 32 x 3 x 16 x 8464 x 4 bytes = 52 MB
    assert peak < output + 2_000_000  # a stack + float copy + repeat would need 2-3x output


def test_call_with_pairs(renderer):
    batch = renderer(["a b", "c"], text_pair=["d", "e f"], return_tensors="pt")
    assert batch["num_patches"].tolist() == [
        renderer.render("a b", "d").num_patches,
        renderer.render("c", "e f").num_patches,
    ]


def test_to_dict_is_public_config(renderer):
    config = renderer.to_dict()
    assert not [key for key in config if key.startswith("_")]
    json.dumps(config)
    assert config["render_mode"] == "bigram" and config["font_size"] == 8
    assert config["pixels_per_patch"] == 16 and config["max_seq_length"] == 529


def test_strip_to_grid():
    strip = np.full((16, 16 * 529), 255, dtype=np.uint8)
    strip[:, 16 * 24 : 16 * 25] = 0  # patch 24 -> row 1, column 1
    grid = strip_to_grid(strip)
    assert grid.shape == (16 * 23, 16 * 23)
    assert (grid[16:32, 16:32] == 0).all() and (grid == 0).sum() == 256
    batch = torch.from_numpy(np.stack([strip, strip])[:, None].astype(np.float32) / 255)
    assert torch.equal(strip_to_grid(batch)[0, 0], torch.from_numpy(grid / 255.0).float())


# ---------------------------------------------------------------------------- speed paths
@pytest.mark.parametrize(
    ("mode", "group_graphemes", "word_cache_size"),
    [
        ("bigram", False, 16384),
        ("bigram", True, 16384),
        ("bigram", False, 0),  # words assembled from cached pairs every time
        ("word_bigram", False, 16384),
        ("word_bigram", True, 16384),
    ],
)
def test_cache_never_changes_a_pixel(mode, group_graphemes, word_cache_size, monkeypatch):
    """Cached strips (numpy OVER with pixman's rounding) == cairo drawing every unit, bytewise."""
    redraws = {"pieces": 0, "words": 0}  # cairo redraws of pairs / words with fragile pixels
    draw_placed, draw_pairs_over = (
        PixelM4TextRenderer._draw_placed,
        PixelM4TextRenderer._draw_pairs_over,
    )

    def count_placed(self, setup, background, placed):
        redraws["pieces"] += len(placed) > 1  # units are drawn one by one, redraws in groups
        return draw_placed(self, setup, background, placed)

    def count_words(self, setup, pairs, *args):  # a word cache entry's ink placed by cairo
        redraws["words"] += any(pairs is word[4] for word in rendering_ink._word_cache.values())
        return draw_pairs_over(self, setup, pairs, *args)

    monkeypatch.setattr(PixelM4TextRenderer, "_draw_placed", count_placed)
    monkeypatch.setattr(PixelM4TextRenderer, "_draw_pairs_over", count_words)
    options = {"render_mode": mode, "group_graphemes": group_graphemes}
    cached = PixelM4TextRenderer(**options, word_cache_size=word_cache_size)
    uncached = PixelM4TextRenderer(**options, cache_size=0)
    examples = [(text, None) for text in CACHE_CORPUS] + [(CORPUS[1], OVERHANG[0])]
    warnings.simplefilter("ignore")  # U+20E4 / U+0D63 are tofu in some fonts: expected
    for text, pair in examples:
        for _ in range(2):  # second round: served from the caches
            a, b = cached.render(text, pair), uncached.render(text, pair)
            assert a.pixels.tobytes() == b.pixels.tobytes(), (text, pair)
            assert (a.num_patches, a.word_patch_spans, a.missing_glyphs) == (
                b.num_patches,
                b.word_patch_spans,
                b.missing_glyphs,
            )
    # the cairo redraws of fragile pieces were exercised (and agreed too)
    assert redraws["pieces"] > 0 and (redraws["words"] > 0 or not word_cache_size)


@pytest.mark.parametrize("mode", ["bigram", "word_bigram"])
@pytest.mark.parametrize("max_seq_length", [8, 40, 529])
def test_cache_never_changes_a_pixel_when_words_overflow(mode, max_seq_length):
    """Words that do not fit where they are, or not even on an empty strip (short words of wide
    characters on a short strip, and words longer than a strip in characters), are cut and
    dropped the same in both paths; so are text pairs and right-to-left text."""
    cached = PixelM4TextRenderer(render_mode=mode, max_seq_length=max_seq_length)
    uncached = PixelM4TextRenderer(render_mode=mode, max_seq_length=max_seq_length, cache_size=0)
    wide = "北京是中华人民共和国的首都"  # 13 wide characters: wider than 8 patches
    examples = [
        (wide, None),
        (f"ab {wide} cd", None),
        (wide[:7], None),  # word_bigram, 8 patches: 7 characters, 12 patches wide
        (f"ab {wide[:6]} cd", None),
        ("中文" * 400, None),  # more characters than any strip has patches
        (f"short {'中文' * 300} words", "and a pair"),
        (" ".join([SAMPLES["en"], SAMPLES["zh"]] * 30), None),
        (SAMPLES["ar"] * 3, SAMPLES["he"]),
        (" ".join([SAMPLES["he"]] * 20), None),
    ]
    for text, pair in examples:
        for _ in range(2):  # second round: words from the word cache
            a, b = cached.render(text, pair), uncached.render(text, pair)
            assert a.pixels.tobytes() == b.pixels.tobytes(), (text[:20], pair)
            assert (a.num_patches, a.word_patch_spans, a.overflow, a.missing_glyphs) == (
                b.num_patches,
                b.word_patch_spans,
                b.overflow,
                b.missing_glyphs,
            )
    assert cached.render(wide).overflow == (max_seq_length == 8)
    # a word wider than the strip keeps its prefix however often it is seen (the word cache
    # takes words the second time, whatever their width; a text pair has a narrower strip)
    for text, pair in [(wide[:7], None), (wide[:7], None), (wide[:6], "x"), (wide[:6], None)]:
        for renderer in (cached, uncached):
            out = renderer.render(text, pair)
            assert out.word_patch_spans and out.num_patches > 1 + (pair is not None), text


# Words by how their pairs' ink lies: inside their patches ("boxed": written as blocks), or
# reaching out of them, left (marks shaped alone with their dotted circle: U+20E4 by 9 px,
# Thai SARA AM, U+0489) or right, with fragile pixels (U+0D63: two glyphs; tofu), right to left
# (Hebrew points, Arabic shadda), wide (CJK: a pair spans two patches).
RUN_WORDS = [
    "lilt",
    "tilt",
    "ab",
    "mm",
    "中文",
    "世界",
    "Київ",
    "नया",  # boxed
    "\u20e4x",
    "ำก",
    "\u0489a",
    "x\u20e4",
    "j",
    "jj",
    "fj",
    "(ƒ",
    "]_",  # reaching out
    "\u0d63",
    "x\u0d63\u20e4",
    "\u0d63ab",
    "\ue000x",  # fragile pixels, tofu
    "שָׁלוֹם",
    "בְּ",
    "مرحبا",
    "\u0651\u20e4",
    "عربي",  # right to left
]


@pytest.mark.parametrize(
    ("mode", "group_graphemes", "word_cache_size"),
    [
        ("bigram", False, 16384),
        ("bigram", False, 0),
        ("bigram", True, 16384),
        ("word_bigram", False, 16384),
        ("word_bigram", True, 0),
    ],
)
def test_cache_never_changes_a_pixel_on_runs_of_blocks(
    mode, group_graphemes, word_cache_size, monkeypatch
):
    """Boxed pairs and words are written in runs of blocks, the others composited between them,
    in every order, for whole texts (planned at once) and texts cut word by word (8- and
    40-patch strips), text pairs and mirrored right-to-left texts: cached == uncached."""
    taken = {"runs": 0, "blocks_on_ink": 0, "whole": 0, "by_word": 0, "word_pieces": 0}
    write_run, place_piece, place_text, place_word = (
        PixelM4TextRenderer._write_run,
        PixelM4TextRenderer._place_piece,
        PixelM4TextRenderer._place_text,
        PixelM4TextRenderer._place_word,
    )

    def count_run(self, setup, pieces, strip, alpha):
        taken["runs"] += len(pieces) > 1
        return write_run(self, setup, pieces, strip, alpha)

    def count_piece(self, setup, piece, strip, alpha):
        taken["blocks_on_ink"] += piece[5]  # a boxed piece where earlier ink reaches
        taken["word_pieces"] += len(piece[4]) > 1
        return place_piece(self, setup, piece, strip, alpha)

    def count_text(self, *args):
        taken["whole"] += 1
        return place_text(self, *args)

    def count_word(self, *args):
        taken["by_word"] += 1
        return place_word(self, *args)

    monkeypatch.setattr(PixelM4TextRenderer, "_write_run", count_run)
    monkeypatch.setattr(PixelM4TextRenderer, "_place_piece", count_piece)
    monkeypatch.setattr(PixelM4TextRenderer, "_place_text", count_text)
    monkeypatch.setattr(PixelM4TextRenderer, "_place_word", count_word)
    warnings.simplefilter("ignore")  # tofu: expected
    rng = np.random.default_rng(16)
    texts = [" ".join(rng.choice(RUN_WORDS, size=rng.integers(1, 12))) for _ in range(24)]
    texts += [" ".join(rng.choice(RUN_WORDS[-5:], size=rng.integers(3, 12))) for _ in range(6)]
    texts += ["שָׁלוֹם \u20e4x בְּ ำก (ƒ \u0d63 مرحبا", "עברית \u0489a jj x\u20e4 עוד"]
    texts += [" ".join(RUN_WORDS), "".join(RUN_WORDS[:9]), "\u20e4" * 3 + "ab" * 4]
    assert sum(map(is_rtl, texts)) >= 4  # mirrored in bigram mode
    pairs = [None] * len(texts)
    pairs[::4] = texts[1::4]  # text pairs
    options = {"render_mode": mode, "group_graphemes": group_graphemes}
    for max_seq_length in (529, 40, 8):
        cached = PixelM4TextRenderer(
            **options, word_cache_size=word_cache_size, max_seq_length=max_seq_length
        )
        uncached = PixelM4TextRenderer(**options, cache_size=0, max_seq_length=max_seq_length)
        for text, pair in zip(texts, pairs, strict=True):
            for _ in range(2):  # second round: words from the word cache
                a, b = cached.render(text, pair), uncached.render(text, pair)
                assert a.pixels.tobytes() == b.pixels.tobytes(), (text, pair, max_seq_length)
                assert (a.num_patches, a.word_patch_spans, a.overflow, a.missing_glyphs) == (
                    b.num_patches,
                    b.word_patch_spans,
                    b.overflow,
                    b.missing_glyphs,
                )
    assert taken["runs"] and taken["blocks_on_ink"] and taken["whole"] and taken["by_word"]
    assert taken["word_pieces"] or not word_cache_size


def test_text_pairs_cut_as_the_published_rule():
    """The caches' pair keys (string slices, one regex for a text) are the pairs of units the
    published rule cuts: pairs from each word's start, overlapping in word_bigram, mirrored
    (last pair first, units swapped) for right-to-left bigram text, clusters with
    group_graphemes."""
    from pixel_m4.rendering_text import _text_pairs, _units

    def reference(words, mode, group_graphemes, mirrored):
        pairs = []
        for word in words:
            units = _units(word, group_graphemes)
            if mode == "word_bigram":
                cut = (
                    [units]
                    if len(units) == 1
                    else [units[i : i + 2] for i in range(len(units) - 1)]
                )
            else:
                cut = [units[i : i + 2] for i in range(0, len(units), 2)]
                if mirrored:
                    cut = [pair[::-1] for pair in reversed(cut)]
            pairs.append([tuple(pair) for pair in cut])
        return pairs

    rng = np.random.default_rng(0)
    alphabet = list("ab€中") + ["\u093f", "\u094d", "\u0915", "\u20e4", "\u0e37", "\u0e49"]
    for _ in range(500):
        words = ["".join(rng.choice(alphabet, size=rng.integers(1, 9))) for _ in range(3)]
        for mode, mirrored in [("bigram", False), ("bigram", True), ("word_bigram", False)]:
            for group_graphemes in (False, True):
                expected = reference(words, mode, group_graphemes, mirrored)
                pairs, counts = _text_pairs(words, mode, group_graphemes, mirrored)
                assert [tuple(pair) if not group_graphemes else pair for pair in pairs] == [
                    pair for word in expected for pair in word
                ]
                assert counts == [len(word) for word in expected]


def test_cache_entries_are_not_tracked_by_the_garbage_collector():
    """Plain tuples of arrays, numbers and strings: the collector drops them from its lists, so
    a long run that keeps adding entries never brings a full collection closer."""
    import gc

    for _ in range(2):  # a word enters the word cache the second time it is rendered
        PixelM4TextRenderer().render("gc untracked entries: ещё 新词 नया, twice")
        PixelM4TextRenderer(render_mode="word_bigram").render("gc word entries, twice")
    gc.collect()
    gc.collect()  # a tuple inside a tuple is untracked first, its holder at the next pass
    gc.collect()  # a word's pairs: a tuple of tuples of grapheme clusters
    caches = (rendering_ink._unit_cache, rendering_ink._pair_cache, rendering_ink._word_cache)
    assert "twice" in {
        word for table in rendering_ink._word_cache.tables.values() for word in table
    }
    for cache in caches:
        items = [item for table in cache.tables.values() for item in table.items()]
        assert items and not any(gc.is_tracked(key) or gc.is_tracked(value) for key, value in items)
        assert not any(gc.is_tracked(name_and_key) for name_and_key in cache._order)


def test_continuous_batch_without_spans_draws_the_same():
    """A batch call that does not return word spans skips measuring them: same pixels."""
    renderer = PixelM4TextRenderer(render_mode="continuous")
    texts = [*CORPUS, " ".join(CORPUS * 12)]  # the last one overflows: words are searched
    pairs = [SAMPLES["he"]] * len(texts)
    without = renderer(texts, pairs, return_tensors="np")
    spans = renderer(texts, pairs, return_tensors="np", return_word_spans=True)
    assert "word_patch_spans" not in without
    for key in ("pixel_values", "attention_mask", "num_patches", "overflow", "missing_glyphs"):
        assert without[key].tobytes() == spans[key].tobytes(), key
    rendered = [renderer.render(text, pair) for text, pair in zip(texts, pairs, strict=True)]
    assert spans["word_patch_spans"] == [example.word_patch_spans for example in rendered]
    assert all(len(one) > 1 for one in spans["word_patch_spans"])
    assert spans["overflow"][-1] > 0


def test_continuous_render_without_word_spans():
    """render(return_word_spans=False): continuous mode skips measuring spans (empty list),
    everything else is the same; the bigram modes return them anyway."""
    texts = [*CORPUS, " ".join(CORPUS * 12)]  # the last one overflows: words are searched
    for mode in MODES:
        renderer = PixelM4TextRenderer(render_mode=mode)
        for text, pair in [*((text, None) for text in texts), (CORPUS[0], SAMPLES["he"])]:
            spans = renderer.render(text, pair)
            without = renderer.render(text, pair, return_word_spans=False)
            assert without.pixels.tobytes() == spans.pixels.tobytes()
            assert replace(without, pixels=None, word_patch_spans=[]) == replace(
                spans, pixels=None, word_patch_spans=[]
            )
            assert spans.word_patch_spans
            expected = [] if mode == "continuous" else spans.word_patch_spans
            assert without.word_patch_spans == expected


# Ink far from its logical box or past the strip's end, for the reused continuous canvas:
# stacked marks, dotted circles, tofu, an overflowing text
INK_TEXTS = [
    *OVERHANG,
    "\u0301" * 40 + "a" + "\u0336" * 30,
    "tofu \U000f0000\U0010fffd \ue000 " + "\u20e4" * 8,
    ("\ufb01 " + SAMPLES["hi"]) * 30,
]


def _canvas_coverage(renderer) -> np.ndarray:
    """The coverage of every reused canvas of the renderer's font setup (the strip's, and the
    narrower ones a single text without spans is drawn on), side by side."""
    patch = renderer.pixels_per_patch
    renderer._setup().strip_canvas(patch * renderer.max_seq_length, patch)
    return np.concatenate([one._alpha for one in renderer._setup()._strip_canvases.values()], 1)


@pytest.mark.filterwarnings("ignore:.*missing from the fonts")
def test_continuous_canvas_is_reused_clean():
    """Continuous mode draws on one A8 surface per font setup and size: after every text
    (also a pair, an overflowing text, and a drawing that fails half-way) it is clear again,
    so a text's pixels do not depend on what was drawn before."""
    renderer = PixelM4TextRenderer(render_mode="continuous", max_seq_length=64)
    texts = [*INK_TEXTS, "   ", "", *CORPUS]
    pairs = [(text, None) for text in texts] + [(OVERHANG[0], OVERHANG[2])]
    forward = []
    for text, pair in pairs:
        forward.append(renderer.render(text, pair).pixels)
        assert not _canvas_coverage(renderer).any(), text
        # without spans, a single text takes the one-text path and its narrower canvases
        alone = renderer.render(text, pair, return_word_spans=False).pixels
        assert alone.tobytes() == forward[-1].tobytes(), text
        assert not _canvas_coverage(renderer).any(), text
    assert len(renderer._setup()._strip_canvases) > 2
    backward = [renderer.render(text, pair).pixels for text, pair in reversed(pairs)]
    for one, other in zip(forward, reversed(backward), strict=True):
        assert one.tobytes() == other.tobytes()
    setup = renderer._setup()
    with pytest.MonkeyPatch.context() as patch:  # fails after drawing
        patch.setattr(setup, "unknown_glyphs", lambda layout: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            renderer.render(OVERHANG[0])
    assert not _canvas_coverage(renderer).any()
    draw = rendering_native._StripCanvas.draw

    def draw_then_fail(canvas, layout, x, y):
        draw(canvas, layout, x, y)
        raise ZeroDivisionError

    with pytest.MonkeyPatch.context() as patch:  # fails in the middle of drawing
        patch.setattr(rendering_native._StripCanvas, "draw", draw_then_fail)
        for word_spans in (True, False):
            with pytest.raises(ZeroDivisionError):
                renderer.render(OVERHANG[0], return_word_spans=word_spans)
            assert not _canvas_coverage(renderer).any()
    assert renderer.render(CORPUS[0]).pixels.tobytes() == forward[texts.index(CORPUS[0])].tobytes()


@pytest.mark.filterwarnings("ignore:.*missing from the fonts")
def test_reused_clear_canvas_draws_as_a_new_surface():
    """The reused surface, cleared by `take`, draws every text as a new A8 surface does (the
    published continuous renderer's; cairo knows both to be clear), and as the bigram modes'
    canvas, which cairo never sees clear: overlapping glyphs of one layout included."""
    renderer = PixelM4TextRenderer(render_mode="continuous")
    setup = renderer._setup()
    width = 16 * renderer.max_seq_length
    reused = setup.strip_canvas(width, 16)
    for text in [*INK_TEXTS, *CORPUS, "\u0d63\u20e4 jj fj \u0e33\u0e33"]:
        layout = setup.layout(text)
        try:
            for y in (0.0, -2.5, 3.25):
                new = rendering_native._StripCanvas(setup, width, 16)
                try:
                    new.draw(layout, 2, y)
                    expected = new.take(width)
                finally:
                    new.close()
                a8 = rendering_native._Canvas(setup.native, width, 16)
                try:
                    a8.draw([(layout, 2, y)])
                    alpha = a8.alpha()
                finally:
                    a8.close()
                assert expected.tobytes() == (255 - alpha).tobytes(), text
                reused.draw(layout, 2, y)
                assert reused.take(width).tobytes() == expected.tobytes(), text
        finally:
            setup.free(layout)


def test_ink_overhanging_a_pair_is_not_clipped():
    """U+20E4 shaped alone reaches into the previous word's patch, in both paths alike."""
    for cache_size in (65536, 0):
        renderer = PixelM4TextRenderer(cache_size=cache_size)
        alone, followed = renderer.render("ab"), renderer.render("ab \u20e4")
        assert followed.word_patch_spans == [(0, 1), (1, 2)]
        assert not np.array_equal(followed.pixels[:, :16], alone.pixels[:, :16])
        assert (followed.pixels[:, :16] <= alone.pixels[:, :16]).all()  # only ink was added
        # ink that would spill left of the strip is lost, not wrapped or shifted
        assert renderer.render("\u20e4").pixels[:, :16].min() < 255


def test_caches_are_bounded_oldest_first():
    small = PixelM4TextRenderer(cache_size=5, word_cache_size=3)
    reference = PixelM4TextRenderer(cache_size=0)
    words = [f"lru{index}q" for index in range(8)]  # new words and pairs: every one is inserted
    # a word enters the word cache the second time it is seen (first: composed from its pairs)
    for round, text in enumerate([" ".join(words)] * 2):
        assert small.render(text).pixels.tobytes() == reference.render(text).pixels.tobytes()
        info = cache_info()
        assert (info["units"], info["pairs"]) == (5, 5)
        assert info["unit_array_bytes"] > 0 and info["pair_array_bytes"] > 0
        cached = [word for table in rendering_ink._word_cache.tables.values() for word in table]
        if round == 0:
            assert not set(words) & set(cached)
            assert set(words) <= set(rendering_ink._seen_words[small._word_keys[False]])
        else:  # the oldest entries out first: the last three words are the ones kept
            assert info["words"] == 3 and info["word_array_bytes"] > 0
            assert cached == words[-3:]
    # the words seen once are forgotten past 4 x word_cache_size of them
    many = [f"seen{index}" for index in range(40)]
    small.render(" ".join(many[:13]))
    small.render(" ".join(many[13:]))
    assert set(rendering_ink._seen_words[small._word_keys[False]]) == set(many[13:])


def test_threads_render_identically(renderer):
    expected = [renderer.render(text).pixels for text in CORPUS]
    results, errors = {}, []

    def work(index):
        try:
            fresh = PixelM4TextRenderer(cache_size=index % 2 * 1000)
            results[index] = [fresh.render(text).pixels for text in CORPUS * 3]
        except Exception as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and len(results) == 4
    for pixels in results.values():
        assert all(np.array_equal(a, b) for a, b in zip(pixels, expected * 3, strict=True))


def run_python(*codes):
    """Runs each code in its own fresh interpreter, concurrently; returns their stdouts."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
        )
        for code in codes
    ]
    outputs = []
    for process in processes:
        try:
            stdout, stderr = process.communicate(timeout=120)  # a hang fails, never blocks CI
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        assert process.returncode == 0, stderr[-3000:]
        outputs.append(stdout)
    return outputs


HASH_SCRIPT = f"""
import hashlib
from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer
digest = hashlib.sha256()
for mode in ("bigram", "continuous", "word_bigram"):
    renderer = PixelM4TextRenderer(render_mode=mode)
    for text in {CORPUS!r}:
        digest.update(renderer.render(text).pixels.tobytes())
print(digest.hexdigest())
"""


@pytest.mark.slow  # fresh processes under different environments
def test_deterministic_across_processes():
    first, second = run_python(HASH_SCRIPT, HASH_SCRIPT)
    assert first == second and len(first.strip()) == 64
    digest = hashlib.sha256()
    for mode in MODES:
        renderer = PixelM4TextRenderer(render_mode=mode)
        for text in CORPUS:
            digest.update(renderer.render(text).pixels.tobytes())
    assert digest.hexdigest() == first.strip()


FORK_SCRIPT = f"""
import multiprocessing, time, numpy, torch
from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer
seen = {CORPUS!r} * 4
unseen = [text[::-1] for text in {CORPUS!r}] * 4  # new words and pairs in the workers
texts = seen + unseen
uncached = PixelM4TextRenderer(cache_size=0)  # Pango state built in the parent before fork
cached = PixelM4TextRenderer()
continuous = PixelM4TextRenderer(render_mode="continuous")  # and its reused canvas
expected = numpy.stack([uncached.render(text).pixels for text in texts])
expected_continuous = numpy.stack([continuous.render(text).pixels for text in texts])
for text in seen:  # the parent's caches hold half of the words
    cached.render(text)

class Texts(torch.utils.data.Dataset):
    def __len__(self):
        return len(texts)
    def __getitem__(self, index):
        text = texts[index]
        paths = (uncached, cached, continuous)
        return torch.from_numpy(numpy.stack([path.render(text).pixels for path in paths]))

start = time.perf_counter()
loader = torch.utils.data.DataLoader(
    Texts(), batch_size=3, num_workers=4, multiprocessing_context=multiprocessing.get_context("fork")
)
got = torch.cat(list(loader)).numpy()
seconds = time.perf_counter() - start
assert got.shape == (len(texts), 3, *expected.shape[1:])
assert (got[:, 0] == expected).all() and (got[:, 1] == expected).all(), "worker pixels differ"
assert (got[:, 2] == expected_continuous).all(), "continuous worker pixels differ"
print(f"ok: 4 fork workers rendered {{len(texts)}} samples (x3 paths) in {{seconds:.2f}} s")
"""


@pytest.mark.slow  # forked DataLoader workers
def test_fork_safe_dataloader():
    output = run_python(FORK_SCRIPT)[0].strip()
    print(output)  # the figures for docs/rendering.md (pytest -s)
    assert output.startswith("ok: 4 fork workers rendered 48 samples")


# ---------------------------------------------------------------------------- save / load
def test_save_and_load_render_identically(tmp_path):
    fonts = default_font_files()
    renderer = PixelM4TextRenderer(font_file=[fonts[0], fonts[1]], max_seq_length=64)
    renderer.save_pretrained(tmp_path)
    warnings.simplefilter("ignore")  # these two fonts lack most scripts: tofu is expected
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert config["font_file"] == [os.path.basename(fonts[0]), os.path.basename(fonts[1])]
    assert config["max_seq_length"] == 64
    for path in fonts[:2]:
        assert (tmp_path / os.path.basename(path)).read_bytes() == Path(path).read_bytes()
    loaded = PixelM4TextRenderer.from_pretrained(str(tmp_path))
    assert all(path.startswith(str(tmp_path)) for path in loaded.font_file)
    assert font_setup_hash(loaded.font_file) == font_setup_hash(renderer.font_file)
    for text in CORPUS:
        assert np.array_equal(loaded.render(text).pixels, renderer.render(text).pixels)
    # the Hub path: auto_map + the module copied next to the config
    from transformers import AutoImageProcessor

    assert config["auto_map"]["AutoImageProcessor"].endswith("PixelM4TextRenderer")
    auto = AutoImageProcessor.from_pretrained(str(tmp_path), trust_remote_code=True)
    assert type(auto).__name__ == "PixelM4TextRenderer"
    assert np.array_equal(auto.render(CORPUS[0]).pixels, renderer.render(CORPUS[0]).pixels)


def test_custom_single_font_file(tmp_path):
    noto_sans = default_font_files()[0]
    renderer = PixelM4TextRenderer(font_file=noto_sans)
    assert renderer.font_file == [noto_sans]
    assert renderer._family == "Noto Sans"
    out = renderer.render(SAMPLES["uk"])
    assert out.missing_glyphs == 0
    assert np.array_equal(out.pixels, PixelM4TextRenderer().render(SAMPLES["uk"]).pixels)


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"render_mode": "pixels"}, ValueError, "bigram.*continuous.*word_bigram"),
        ({"font_size": 0}, ValueError, "font_size"),
        ({"dpi": -1}, ValueError, "dpi"),
        ({"pixels_per_patch": 0}, ValueError, "pixels_per_patch"),
        ({"max_seq_length": 0}, ValueError, "max_seq_length"),
        ({"max_seq_length": 2.5}, ValueError, "max_seq_length"),
        ({"cache_size": -1}, ValueError, "cache_size"),
        ({"cache_size": True}, ValueError, "cache_size"),
        ({"word_cache_size": -1}, ValueError, "word_cache_size"),
        ({"word_cache_size": 1.5}, ValueError, "word_cache_size"),
        ({"font_size": "8"}, ValueError, "font_size"),
        ({"font_file": [3]}, TypeError, "font_file"),
        ({"font_file": "/nonexistent/font.ttf"}, FileNotFoundError, "/nonexistent/font.ttf"),
        ({"font_file": []}, ValueError, "font_file"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        PixelM4TextRenderer(**kwargs)


def test_corrupt_font_file(tmp_path):
    corrupt = tmp_path / "broken.ttf"
    corrupt.write_bytes(b"not a font" * 100)
    with pytest.raises(ValueError, match="broken.ttf"):
        PixelM4TextRenderer(font_file=str(corrupt))


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((None,), {}, TypeError, "text"),
        ((42,), {}, TypeError, "text"),
        ((b"hello",), {}, TypeError, "decode"),
        ((b"\xff\xfe",), {}, TypeError, "UTF-8"),
        (([],), {}, ValueError, "empty"),
        ((["a", 3],), {}, TypeError, "text"),
        (("a",), {"text_pair": 5}, TypeError, "text_pair"),
        ((["a", "b"],), {"text_pair": ["c"]}, ValueError, "text_pair"),
        (("a",), {"return_tensors": "tf"}, ValueError, "return_tensors"),
        (("a",), {"text_pair": b"\xc3\x28"}, TypeError, "text_pair.*UTF-8"),
        (("a",), {"text_pair": ["b"]}, ValueError, "text_pair"),
    ],
)
def test_bad_call_arguments(renderer, args, kwargs, error, match):
    with pytest.raises(error, match=match):
        renderer(*args, **kwargs)


def test_pair_needs_two_patches():
    renderer = PixelM4TextRenderer(max_seq_length=1)
    assert renderer.render("hello").num_patches == 1
    with pytest.raises(ValueError, match="max_seq_length"):
        renderer.render("a", "b")
