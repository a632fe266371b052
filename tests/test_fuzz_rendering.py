"""Fuzz test of the renderer: random Unicode text (all planes, combining marks, controls,
format characters, spaces of every kind, long runs) in every render mode.

Each mode renders FUZZ_TEXTS texts from a fixed seed (in turn with the default renderer,
`group_graphemes=True` and the uncached `cache_size=0` path) in a child process under a timeout (a
hang fails the test instead of stalling the suite). Allowed: output of the documented shape
and ranges, or the documented ValueError for text that is not Unicode text (lone surrogates).

    python tests/test_fuzz_rendering.py bigram 2000   # one mode by hand; prints a summary
"""

import json
import random
import subprocess
import sys
import time

import pytest

FUZZ_TEXTS = 2000
SEED = 14
TIMEOUT_SECONDS = 900  # all modes; a bound for a loaded 2-core CI machine, not a speed requirement
MODES = ("bigram", "continuous", "word_bigram")

# (first, last) code point ranges the generator draws from, besides uniform code points
COMBINING = [(0x0300, 0x036F), (0x0483, 0x0489), (0x1AB0, 0x1AFF), (0x20D0, 0x20FF)]
CONTROLS = [(0x0000, 0x001F), (0x007F, 0x009F), (0x200B, 0x200F), (0x2028, 0x202E)]
CONTROLS += [(0x2060, 0x206F), (0xFEFF, 0xFEFF), (0xE0000, 0xE007F), (0xFFF9, 0xFFFB)]
SCRIPTS = [(0x0041, 0x007A), (0x0400, 0x04FF), (0x0900, 0x097F), (0x0E00, 0x0E7F)]
SCRIPTS += [(0x4E00, 0x9FFF), (0x0600, 0x06FF), (0x05D0, 0x05EA), (0xAC00, 0xD7A3)]
SCRIPTS += [(0x1F300, 0x1F6FF), (0x20000, 0x2A6DF), (0xFDFD, 0xFDFD), (0x12000, 0x123FF)]
SPACES = " \u00a0\u2002\u2003\u3000\t\n\r\u1680\u200b\u2029"
SURROGATES = (0xD800, 0xDFFF)


def random_char(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.25:  # any code point of any plane, unassigned and private use included
        code = rng.randrange(0x110000)
        while SURROGATES[0] <= code <= SURROGATES[1]:
            code = rng.randrange(0x110000)
        return chr(code)
    ranges = COMBINING if kind < 0.45 else CONTROLS if kind < 0.55 else SCRIPTS
    first, last = rng.choice(ranges)
    return chr(rng.randint(first, last))


def random_text(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.03:  # a long run of one character (a mark, a letter, a control, ...)
        return random_char(rng) * rng.randint(200, 5000)
    if kind < 0.06:  # a long text without spaces
        return "".join(random_char(rng) for _ in range(rng.randint(200, 2000)))
    if kind < 0.08:  # a lone surrogate somewhere: not text, the documented ValueError
        return "ab" + chr(rng.randint(*SURROGATES)) + "cd"
    if kind < 0.10:  # empty or only spaces/controls
        return "".join(rng.choice(SPACES) for _ in range(rng.randint(0, 5)))
    pieces = []
    for _ in range(rng.randint(1, 12)):
        pieces.append("".join(random_char(rng) for _ in range(rng.randint(1, 8))))
        pieces.append(rng.choice(SPACES) * rng.randint(1, 2))
    return "".join(pieces)


def fuzz(mode: str, count: int, seed: int = SEED) -> dict:
    """Renders `count` random texts; returns counts, raises AssertionError on a bad output."""
    import numpy as np

    from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer

    rng = random.Random(f"{seed}-{mode}")
    length = 24
    # in turn: the default renderer, grapheme pairs, and the uncached reference path
    renderers = [
        PixelM4TextRenderer(render_mode=mode, max_seq_length=length, **settings)
        for settings in ({}, {"group_graphemes": True}, {"cache_size": 0})
    ]
    patch = renderers[0].pixels_per_patch
    summary = {"mode": mode, "texts": 0, "value_errors": 0, "pairs": 0, "overflowing": 0}
    summary["code_points"] = 0
    started = time.perf_counter()
    for index in range(count):
        text = random_text(rng)
        pair = random_text(rng) if index % 5 == 0 else None  # some text pairs too
        summary["texts"] += 1
        summary["code_points"] += len(text) + len(pair or "")
        try:
            batch = renderers[index % len(renderers)](
                [text], None if pair is None else [pair], return_word_spans=True
            )
        except ValueError as error:
            assert "lone surrogate" in str(error), (index, repr(text[:50]), error)
            summary["value_errors"] += 1
            continue
        assert not any(0xD800 <= ord(char) <= 0xDFFF for char in text + (pair or "")), index
        pixels, mask = batch["pixel_values"], batch["attention_mask"]
        num_patches, overflow = int(batch["num_patches"][0]), int(batch["overflow"][0])
        assert pixels.shape == (1, 3, patch, patch * length), pixels.shape
        assert pixels.dtype == np.float32 and pixels.min() >= 0 and pixels.max() <= 1
        assert 1 <= num_patches <= length, num_patches
        assert mask[0].sum() == num_patches and mask[0, :num_patches].all()
        end = pixels[0, 0, :, (num_patches - 1) * patch : num_patches * patch]
        assert (end == 0).all(), "the end patch is black"
        assert (pixels[0, :, :, num_patches * patch :] == 1).all(), "white after the end patch"
        spans = batch["word_patch_spans"][0]
        assert all(0 <= start < stop <= num_patches - 1 for start, stop in spans), spans
        assert overflow >= 0
        summary["pairs"] += pair is not None
        summary["overflowing"] += overflow > 0
    summary["seconds"] = round(time.perf_counter() - started, 1)
    return summary


@pytest.mark.filterwarnings("ignore:.*glyph.s. missing from the fonts")  # expected here
@pytest.mark.parametrize("mode", MODES)
def test_a_few_random_texts_in_process(mode):
    """The quick loop's share of the fuzz run below: the same checks on 60 texts per mode."""
    summary = fuzz(mode, 60)
    assert summary["texts"] == 60 and summary["pairs"] > 0


@pytest.mark.slow  # 2,000 texts per mode in a child process
def test_random_unicode_renders_or_fails_as_documented():
    """All modes in one child process (one import of the package and its fonts)."""
    result = subprocess.run(
        [sys.executable, __file__, ",".join(MODES), str(FUZZ_TEXTS)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [json.loads(line) for line in result.stdout.strip().splitlines()[-len(MODES) :]]
    print(summaries)
    for mode, summary in zip(MODES, summaries, strict=True):
        assert summary["mode"] == mode
        assert summary["texts"] == FUZZ_TEXTS
        assert 0 < summary["value_errors"] < FUZZ_TEXTS * 0.05  # the lone-surrogate texts only
        assert summary["overflowing"] > 0  # long runs were cut, not skipped


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")  # missing-glyph warnings: counted, expected here
    for name in sys.argv[1].split(","):
        print(json.dumps(fuzz(name, int(sys.argv[2]))), flush=True)
