"""The renderer against the published PIXEL-M4 and PIXEL renderers (tests/data/golden/README.md):
pixel-exact golden strips, right-to-left text, continuous spaces, the settings that reproduce
them, and folders saved before those settings existed."""

import hashlib
import json
import unicodedata
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer, is_rtl
from pixel_m4.rendering_text import _word_pairs

GOLDEN = Path(__file__).parent / "data" / "golden"
FONT_VERSION = "2026.9.26.post1"  # the wheels the golden strips were drawn with
HEBREW = ["שלום", "עולם", "ירושלים"]  # 4, 4 and 7 letters
NEW_SETTINGS = ("hint_style", "hint_metrics", "cjk_face", "mirror_rtl", "keep_spaces")


@pytest.fixture(scope="module")
def golden():
    data = np.load(GOLDEN / "published_renderers.npz")
    meta = json.loads(str(data["meta"]))
    lines = (GOLDEN / "sentences.txt").read_text(encoding="utf-8").split("\n")
    assert meta["texts"] == [line for line in lines if line]  # spaces kept as written
    return data, meta["texts"]


def first_difference(ours: np.ndarray, theirs: np.ndarray) -> str:
    columns = np.flatnonzero((ours != theirs).any(axis=0))
    return f"first differing patch {columns[0] // 16} ({columns.size} columns differ)"


@pytest.mark.parametrize(
    ("mode", "options", "word_spans"),
    [
        ("bigram", {}, True),
        ("bigram", {"cache_size": 0}, True),
        ("continuous", {}, True),
        ("continuous", {}, False),  # the one-text path without spans (`_render_text_that_fits`)
    ],
    ids=["bigram", "bigram-uncached", "continuous", "continuous-no-spans"],
)
def test_golden_strips_pixel_exact(golden, mode, options, word_spans):
    """Every text of the golden set: the published renderer's pixels and patch count."""
    for package in ("manimgx-fonts", "manimgx-fonts-cjk"):
        assert version(package) == FONT_VERSION, f"{package} {version(package)}: see README"
    data, texts = golden
    renderer = PixelM4TextRenderer(render_mode=mode, **options)
    failures = []
    for index, text in enumerate(texts):
        out = renderer.render(text, return_word_spans=word_spans)
        expected_patches = int(data[f"{mode}_num_text_patches"][index])
        if out.num_patches - 1 != expected_patches:  # the published count omits the end patch
            failures.append(f"{text!r}: {out.num_patches - 1} text patches, not {expected_patches}")
        elif not np.array_equal(out.pixels, data[f"{mode}_pixels"][index]):
            failures.append(
                f"{text!r}: {first_difference(out.pixels, data[f'{mode}_pixels'][index])}"
            )
    assert not failures, f"{len(failures)}/{len(texts)} texts differ:\n" + "\n".join(failures)


# ---------------------------------------------------------------------------- right to left
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("שלום עולם", True),
        ("مرحبا بالعالم، هذه جملة عربية قصيرة.", True),
        ("Hello world", False),
        ("שלום world עולם", True),  # first and last vote RTL
        ("Hello שלום world", False),
        ("  123 ... ", False),  # nothing left to vote
        ("", False),
        ("(שלום)!", True),  # ASCII punctuation is ignored
    ],
)
def test_is_rtl_majority_vote(text, expected):
    assert is_rtl(text) is expected


def test_is_rtl_prefilter_covers_every_right_to_left_character():
    from pixel_m4.rendering_text import _RTL_CHARACTER

    strong = [chr(code) for code in range(0x110000) if code < 0xD800 or code > 0xDFFF]
    strong = [char for char in strong if unicodedata.bidirectional(char) in ("R", "AL")]
    assert len(strong) > 1000 and all(_RTL_CHARACTER.match(char) for char in strong)


def test_word_pairs_mirrored():
    # a pair of code points is a string (the caches' key), of grapheme clusters a tuple
    assert _word_pairs("abcde", "bigram", False) == ["ab", "cd", "e"]
    # pairs cut from the start, drawn last pair first, each pair's units swapped
    assert _word_pairs("abcde", "bigram", False, mirrored=True) == ["e", "dc", "ba"]
    assert _word_pairs("abcde", "bigram", True, mirrored=True) == [("e",), ("d", "c"), ("b", "a")]


@pytest.fixture(scope="module")
def ltr():
    """Draws everything left to right: the reference for what mirroring must produce."""
    return PixelM4TextRenderer(mirror_rtl=False)


def test_rtl_text_words_reversed_and_mirrored(ltr):
    renderer = PixelM4TextRenderer()
    out = renderer.render("שלום עולם")
    # even-length words: mirrored pairs are the reversed word's pairs
    reference = ltr.render("םלוע םולש")
    assert out.pixels.tobytes() == reference.pixels.tobytes()
    assert out.num_patches == reference.num_patches
    # spans stay in text order: the first word is drawn rightmost
    first, second = out.word_patch_spans
    assert second[1] == first[0] and second[0] == 0
    # an odd-length word keeps its lone last letter in a patch of its own, drawn first
    # (pairs and words both start at patch boundaries, so the units can be laid out as words)
    odd = renderer.render("ירושלים")  # pairs יר וש לי ם, drawn ם | יל | שו | רי
    assert odd.pixels.tobytes() == ltr.render("ם ילשורי").pixels.tobytes()


def test_rtl_word_list_keeps_word_order(ltr):
    renderer = PixelM4TextRenderer()
    listed = renderer.render(HEBREW[:2], is_split_into_words=True)
    assert listed.pixels.tobytes() == ltr.render("םולש םלוע").pixels.tobytes()
    first, second = listed.word_patch_spans
    assert first[0] == 0 and first[1] == second[0]
    batch = renderer([HEBREW[:2], ["Hello", "world"]], is_split_into_words=True)
    assert np.array_equal(batch["pixel_values"][0, 0] * 255, listed.pixels)
    latin = renderer.render("Hello world").pixels / np.float32(255)
    assert np.array_equal(batch["pixel_values"][1, 0], latin)


def test_rtl_cached_equals_uncached():
    cached, uncached = PixelM4TextRenderer(), PixelM4TextRenderer(cache_size=0)
    examples = [
        ("ירושלים היא בירת ישראל והעיר הגדולה בה.", None, False),
        ("القاهرة هي عاصمة جمهورية مصر العربية وأكبر مدنها.", "שָׁלוֹם עולם", False),
        (HEBREW, None, True),
    ]
    for text, pair, words in examples:
        for _ in range(2):  # second round from the caches
            a = cached.render(text, pair, is_split_into_words=words)
            b = uncached.render(text, pair, is_split_into_words=words)
            assert a.pixels.tobytes() == b.pixels.tobytes(), text
            assert (a.num_patches, a.word_patch_spans) == (b.num_patches, b.word_patch_spans)


def test_rtl_pair_mirrored_only_if_both_texts_are_rtl(ltr):
    renderer = PixelM4TextRenderer()
    both = renderer.render("שלום עולם", "עולם שלום")
    assert both.pixels.tobytes() == ltr.render("םלוע םולש", "םולש םלוע").pixels.tobytes()
    mixed = renderer.render("שלום עולם", "Hello world")
    assert mixed.pixels.tobytes() == ltr.render("שלום עולם", "Hello world").pixels.tobytes()


def test_rtl_truncation_drops_the_first_words():
    # the published renderer reverses the words, then drops words from the end of that list
    kept = "טיכל מנסע"
    fits = PixelM4TextRenderer().render(kept).num_patches
    renderer = PixelM4TextRenderer(max_seq_length=fits)
    out = renderer.render("אבגד הוזח " + kept)
    assert (out.overflow, out.num_patches, len(out.word_patch_spans)) == (2, fits, 2)
    assert out.pixels.tobytes() == renderer.render(kept).pixels.tobytes()


def test_word_bigram_and_continuous_do_not_mirror():
    for mode in ("word_bigram", "continuous"):
        mirrored = PixelM4TextRenderer(render_mode=mode).render("שלום עולם")
        plain = PixelM4TextRenderer(render_mode=mode, mirror_rtl=False).render("שלום עולם")
        assert mirrored.pixels.tobytes() == plain.pixels.tobytes()


# ---------------------------------------------------------------------------- continuous spaces
def test_continuous_draws_spaces_as_written():
    renderer = PixelM4TextRenderer(render_mode="continuous")
    joined = PixelM4TextRenderer(render_mode="continuous", keep_spaces=False)
    text = " " * 12 + "leading and   repeated   "
    out, plain = renderer.render(text), renderer.render("leading and repeated")
    assert out.num_patches > plain.num_patches
    assert joined.render(text).pixels.tobytes() == plain.pixels.tobytes()
    # leading spaces shift the first word right; its span follows it
    assert out.word_patch_spans[0][0] >= 2 and len(out.word_patch_spans) == 3
    assert [end - start for start, end in out.word_patch_spans][1] >= 1
    # a newline is a space, as in the published renderer
    assert renderer.render("a\nb").pixels.tobytes() == renderer.render("a b").pixels.tobytes()


def test_continuous_truncation_with_spaces():
    renderer = PixelM4TextRenderer(render_mode="continuous", max_seq_length=4)
    out = renderer.render("word " * 20)
    assert out.overflow > 0 and out.num_patches <= 4
    assert len(out.word_patch_spans) == 20 - out.overflow
    # only spaces, more than fit: nothing drawn, just the end patch
    assert renderer.render(" " * 200).num_patches == 1


# ---------------------------------------------------------------------------- CJK face
def test_cjk_face_default_is_fontconfigs_fallback():
    text = "直骨 北京是中国的首都"
    default = PixelM4TextRenderer().render(text).pixels
    assert default.tobytes() == PixelM4TextRenderer(cjk_face="JP").render(text).pixels.tobytes()
    assert default.tobytes() != PixelM4TextRenderer(cjk_face="SC").render(text).pixels.tobytes()


# ---------------------------------------------------------------------------- settings
def test_settings_saved_loaded_and_hashed(tmp_path):
    options = {
        "hint_style": "full",
        "hint_metrics": False,
        "cjk_face": "SC",
        "mirror_rtl": False,
        "keep_spaces": False,
    }
    renderer = PixelM4TextRenderer(render_mode="continuous", max_seq_length=32, **options)
    renderer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert {key: config[key] for key in NEW_SETTINGS} == options
    loaded = PixelM4TextRenderer.from_pretrained(str(tmp_path))
    assert {key: getattr(loaded, key) for key in NEW_SETTINGS} == options
    assert loaded._setup_key == renderer._setup_key
    text = "  北京 שלום  Hello "
    assert loaded.render(text).pixels.tobytes() == renderer.render(text).pixels.tobytes()
    # hinting is part of the font-setup hash (cache keys), and changes pixels
    keys = {PixelM4TextRenderer(hint_style=style)._setup_key for style in ("none", "slight")}
    keys.add(PixelM4TextRenderer(hint_metrics=False)._setup_key)
    assert len(keys) == 3
    assert "hint_style" in repr(renderer) and "keep_spaces" in renderer.to_dict()


# What the renderer drew before these settings existed (commit 9a7d7c0), max_seq_length 32:
# sha256 of the strip (first 16 hex digits) and num_patches.
BEFORE = {
    ("bigram", "Hello world"): ("96ea7cdf4d763339", 9),
    ("bigram", "שלום עולם, זה משפט"): ("b74a82f71973bf1d", 11),
    ("bigram", "北京是中国的首都"): ("e3a277ffcb664343", 9),
    ("bigram", "  two  spaces  "): ("21063ee4f430e6ad", 6),
    ("continuous", "Hello world"): ("dd394fd6754032dc", 6),
    ("continuous", "שלום עולם, זה משפט"): ("85a64e650ac5e64b", 9),
    ("continuous", "北京是中国的首都"): ("3079a2e7e722db30", 8),
    ("continuous", "  two  spaces  "): ("547e4a0155ba7c5d", 6),
}


@pytest.mark.parametrize("mode", ["bigram", "continuous"])
def test_folder_saved_before_the_settings_renders_as_before(tmp_path, mode):
    PixelM4TextRenderer(render_mode=mode, max_seq_length=32).save_pretrained(tmp_path)
    path = tmp_path / "preprocessor_config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in config.items() if k not in NEW_SETTINGS}))
    loaded = PixelM4TextRenderer.from_pretrained(str(tmp_path))
    assert (loaded.hint_style, loaded.hint_metrics, loaded.cjk_face) == ("none", False, "SC")
    assert (loaded.mirror_rtl, loaded.keep_spaces) == (False, False)
    for (key_mode, text), (digest, num_patches) in BEFORE.items():
        if key_mode != mode:
            continue
        out = loaded.render(text)
        assert hashlib.sha256(out.pixels.tobytes()).hexdigest()[:16] == digest, text
        assert out.num_patches == num_patches
    # from_dict (AutoImageProcessor's path) reads the old config the same way
    old_config = {**json.loads(path.read_text()), "font_file": loaded.font_file}
    from_dict = PixelM4TextRenderer.from_dict(old_config)
    assert from_dict._setup_key == loaded._setup_key


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hint_style": "slightly"}, "hint_style"),
        ({"hint_style": None}, "hint_style"),
        ({"hint_metrics": "on"}, "hint_metrics"),
        ({"cjk_face": "CN"}, "cjk_face"),
        ({"cjk_face": "sc"}, "cjk_face"),
        ({"mirror_rtl": 1}, "mirror_rtl"),
        ({"keep_spaces": None}, "keep_spaces"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PixelM4TextRenderer(**kwargs)


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("a plain string", TypeError, "list of words"),
        (["ok", 3], TypeError, "text words"),
        (["ok", b"bytes"], TypeError, "decode"),
    ],
)
def test_bad_word_lists(text, error, match):
    with pytest.raises(error, match=match):
        PixelM4TextRenderer().render(text, is_split_into_words=True)
