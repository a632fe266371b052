"""Variable-length strips: every model class reads 1..num_patches patches (positions sliced as the
published model does), the renderer pads to the batch's longest text, and a text's outputs do not
depend on how much padding follows it."""

import pytest
import torch

from pixel_m4.configuration_pixel_m4 import PixelM4Config
from pixel_m4.modeling_pixel_m4 import (
    PixelM4ForBiaffineParsing,
    PixelM4ForPreTraining,
    PixelM4ForSequenceClassification,
    PixelM4ForTokenClassification,
    PixelM4Model,
    pool_patches,
    trim_to_longest,
)
from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer
from pixel_m4.tools.task_data import SequenceClassificationCollator, WordTaskCollator

PATCHES = 64  # an 8 x 8 position grid
# conftest's any_renderer: word_bigram keeps the model's 16-px patches here (its default is 24 px)
RENDERER = {"max_seq_length": PATCHES, "pixels_per_patch": 16}
TEXTS = [
    "Hello world, a somewhat longer sentence than the others here",
    "नमस्ते दुनिया",
    "Привіт",
    "你好世界",
]
TOKENS = [text.split() for text in TEXTS]
TOLERANCE = dict(rtol=0, atol=1e-5)


def make_model(model_class, **overrides):
    torch.manual_seed(0)
    config = PixelM4Config.from_preset(
        "test",
        image_size=(16, 16 * PATCHES),
        num_labels=3,
        classifier_dropout=0.0,
        biaffine_arc_size=8,
        biaffine_rel_size=8,
        **overrides,
    )
    return model_class(config).eval()


@pytest.fixture(scope="module")
def both_widths(any_renderer):
    """The same texts rendered to the full strip and to the longest text."""
    full = any_renderer(TEXTS, return_tensors="pt", return_word_spans=True)
    short = any_renderer(TEXTS, return_tensors="pt", return_word_spans=True, padding="longest")
    return full, short


def word_spans(rendered) -> torch.Tensor:
    spans = torch.zeros(len(TEXTS), max(len(t) for t in TOKENS), 2, dtype=torch.long)
    for row, row_spans in enumerate(rendered["word_patch_spans"]):
        spans[row, : len(row_spans)] = torch.tensor(row_spans)
    return spans


def run(model, rendered, **kwargs):
    with torch.no_grad():
        return model(rendered["pixel_values"], attention_mask=rendered["attention_mask"], **kwargs)


# ------------------------------------------------------------------------ renderer


def test_longest_padding_is_the_full_strip_cut_after_the_longest_text(both_widths):
    full, short = both_widths
    longest = int(full["num_patches"].max())
    assert 1 < longest < PATCHES  # the test needs real padding to remove
    assert short["pixel_values"].shape == (len(TEXTS), 3, 16, 16 * longest)
    assert short["attention_mask"].shape == (len(TEXTS), longest)
    assert torch.equal(short["pixel_values"], full["pixel_values"][..., : 16 * longest])
    assert torch.equal(short["attention_mask"], full["attention_mask"][:, :longest])
    assert torch.equal(short["num_patches"], full["num_patches"])
    assert short["word_patch_spans"] == full["word_patch_spans"]
    assert full["pixel_values"].shape[-1] == 16 * PATCHES  # "max_length" stays the default


def test_pad_to_multiple_of_rounds_up_and_never_exceeds_the_strip(any_renderer):
    longest = int(any_renderer(TEXTS)["num_patches"].max())
    rounded = any_renderer(TEXTS, padding="longest", pad_to_multiple_of=8)
    assert len(rounded["attention_mask"][0]) == -(-longest // 8) * 8
    capped = any_renderer(TEXTS, padding=True, pad_to_multiple_of=PATCHES + 5)
    assert len(capped["attention_mask"][0]) == PATCHES
    single = any_renderer("a", padding="longest")
    assert len(single["attention_mask"][0]) == int(single["num_patches"][0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(padding="do_not_pad"), "padding must be"),
        (dict(padding=False), "padding must be"),
        (dict(padding="longest", pad_to_multiple_of=0), "pad_to_multiple_of"),
        (dict(padding="longest", pad_to_multiple_of=2.5), "pad_to_multiple_of"),
    ],
)
def test_renderer_rejects_bad_padding(kwargs, message):
    renderer = PixelM4TextRenderer(max_seq_length=PATCHES)
    with pytest.raises(ValueError, match=message):
        renderer(TEXTS, **kwargs)


# ------------------------------------------------------------------------ same outputs


def test_encoder_outputs_do_not_depend_on_padding(both_widths):
    full, short = both_widths
    model = make_model(PixelM4Model)
    a = run(model, full, output_hidden_states=True)
    b = run(model, short, output_hidden_states=True)
    width = short["attention_mask"].shape[1]
    attended = torch.cat([torch.ones(len(TEXTS), 1), short["attention_mask"]], 1).bool()
    for x, y in zip(
        (a.last_hidden_state, *a.hidden_states),
        (b.last_hidden_state, *b.hidden_states),
        strict=True,
    ):
        torch.testing.assert_close(y[attended], x[:, : 1 + width][attended], **TOLERANCE)
    torch.testing.assert_close(b.last_hidden_state[:, 0], a.last_hidden_state[:, 0], **TOLERANCE)
    for mode in ("mean", "max", "cls"):
        torch.testing.assert_close(
            pool_patches(b.last_hidden_state, b.attention_mask, mode),
            pool_patches(a.last_hidden_state, a.attention_mask, mode),
            **TOLERANCE,
        )


@pytest.mark.parametrize("pooling_mode", ["mean", "cls"])
def test_sequence_classification_logits_do_not_depend_on_padding(both_widths, pooling_mode):
    full, short = both_widths
    model = make_model(PixelM4ForSequenceClassification, pooling_mode=pooling_mode)
    labels = torch.tensor([0, 1, 2, 1])
    a, b = run(model, full, labels=labels), run(model, short, labels=labels)
    torch.testing.assert_close(b.logits, a.logits, **TOLERANCE)
    torch.testing.assert_close(b.loss, a.loss, **TOLERANCE)


@pytest.mark.parametrize("model_class", [PixelM4ForTokenClassification, PixelM4ForBiaffineParsing])
def test_word_heads_do_not_depend_on_padding(both_widths, model_class):
    full, short = both_widths
    spans = word_spans(short)
    model = make_model(model_class)
    if model_class is PixelM4ForBiaffineParsing:  # its scorers start at zero: give them weights
        torch.nn.init.normal_(model.biaffine_arcs.weight, std=0.02)
        torch.nn.init.normal_(model.biaffine_rels.weight, std=0.02)
    a, b = run(model, full, word_spans=spans), run(model, short, word_spans=spans)
    assert a[next(iter(a.keys() - {"word_mask"}))].abs().max() > 0
    for key in ("logits", "arc_logits", "rel_logits"):
        if key in a:
            torch.testing.assert_close(b[key], a[key], **TOLERANCE)


def test_reconstruction_loss_under_the_same_mask_does_not_depend_on_padding(both_widths):
    full, short = both_widths
    model = make_model(PixelM4ForPreTraining)
    width = short["attention_mask"].shape[1]
    patch_mask = model.sample_patch_mask(full["attention_mask"], torch.Generator().manual_seed(0))
    assert not patch_mask[:, width:].any()  # only text patches are masked
    a = run(model, full, patch_mask=patch_mask)
    b = run(model, short, patch_mask=patch_mask[:, :width])
    torch.testing.assert_close(b.loss, a.loss, **TOLERANCE)
    attended = short["attention_mask"].bool()
    torch.testing.assert_close(b.logits[attended], a.logits[:, :width][attended], **TOLERANCE)
    assert torch.equal(
        b.mask * short["attention_mask"], (a.mask * full["attention_mask"])[:, :width]
    )


# ------------------------------------------------------------------------ widths


@pytest.mark.parametrize("model_class", [PixelM4Model, PixelM4ForPreTraining])
@pytest.mark.parametrize("patches", [1, 7, PATCHES])
def test_every_width_from_one_patch_to_the_full_strip_runs(model_class, patches):
    model = make_model(model_class)
    pixels = torch.rand(2, 3, 16, 16 * patches)
    output = run(model, {"pixel_values": pixels, "attention_mask": torch.ones(2, patches)})
    if model_class is PixelM4Model:
        assert output.last_hidden_state.shape[:2] == (2, 1 + patches)
    else:
        assert output.logits.shape[:2] == (2, patches)


def test_a_short_strip_keeps_the_first_positions():
    """Patch k of a short strip gets position k (published `position_embeddings[:, 1 : 1 + L]`)."""
    model = make_model(PixelM4Model)
    pixels = torch.rand(1, 3, 16, 16 * PATCHES)
    full = model.embeddings(pixels)
    short = model.embeddings(pixels[..., : 16 * 5])
    torch.testing.assert_close(short, full[:, :6], rtol=0, atol=0)


@pytest.mark.parametrize(
    "width, mask_width, message",
    [
        (16 * 5 + 3, 5, "multiple of 16"),
        (16 * (PATCHES + 1), PATCHES + 1, f"up to {16 * PATCHES}"),
        (0, 0, "pixel_values must be"),
        (16 * 5, 6, r"attention_mask must have shape \(2, 5\)"),
    ],
)
def test_wrong_widths_are_clear_errors(width, mask_width, message):
    model = make_model(PixelM4Model)
    with pytest.raises(ValueError, match=message):
        model(torch.rand(2, 3, 16, width), torch.ones(2, mask_width))


def test_word_spans_past_a_short_strip_are_rejected():
    model = make_model(PixelM4ForTokenClassification)
    spans = torch.tensor([[[0, 2], [2, 6]]] * 2)
    with pytest.raises(ValueError, match=r"end <= num_patches \(5\)"):
        model(torch.rand(2, 3, 16, 16 * 5), spans, torch.ones(2, 5))


def test_trim_to_longest():
    pixels = torch.rand(2, 3, 16, 16 * 10)
    mask = torch.zeros(2, 10, dtype=torch.long)
    mask[0, :3], mask[1, :6] = 1, 1
    trimmed, trimmed_mask = trim_to_longest(pixels, mask, 16)
    assert torch.equal(trimmed, pixels[..., : 16 * 6]) and torch.equal(trimmed_mask, mask[:, :6])
    _, none_attended = trim_to_longest(pixels, torch.zeros(2, 10), 16)
    assert none_attended.shape == (2, 1)


# ------------------------------------------------------------------------ collators, embed()


def test_collators_pad_to_the_longest_by_default_and_max_length_on_request():
    renderer = PixelM4TextRenderer(max_seq_length=PATCHES)
    longest = int(renderer(TEXTS)["num_patches"].max())
    features = [{"text": text, "labels": 0} for text in TEXTS]
    assert SequenceClassificationCollator(renderer, PATCHES)(features)["pixel_values"].shape[
        -1
    ] == (16 * longest)
    padded = SequenceClassificationCollator(renderer, PATCHES, padding="max_length")(features)
    assert padded["attention_mask"].shape == (len(TEXTS), PATCHES)
    words = [{"tokens": tokens, "labels": [0] * len(tokens)} for tokens in TOKENS]
    batch = WordTaskCollator(renderer, PATCHES, pad_to_multiple_of=8)(words)
    assert batch["attention_mask"].shape[1] == -(-longest // 8) * 8
    assert int(batch["word_spans"][..., 1].max()) <= batch["attention_mask"].shape[1]


def test_a_short_renderer_feeds_a_longer_model_at_the_longest_width():
    renderer = PixelM4TextRenderer(max_seq_length=16)  # fine-tuning at fewer patches than the model
    features = [{"text": text, "labels": 1} for text in TEXTS]
    batch = SequenceClassificationCollator(renderer, PATCHES)(features)
    assert batch["attention_mask"].shape[1] <= 16
    assert make_model(PixelM4ForSequenceClassification)(**batch).logits.shape == (len(TEXTS), 3)


def test_embed_from_texts_equals_embed_from_full_strips():
    renderer = PixelM4TextRenderer(max_seq_length=PATCHES)
    model = make_model(PixelM4Model)
    full = renderer(TEXTS, return_tensors="pt")
    from_texts = model.embed(TEXTS, renderer, layers=[0, -1], batch_size=3, show_progress=False)
    from_pixels = model.embed(
        pixel_values=full["pixel_values"],
        attention_mask=full["attention_mask"],
        layers=[0, -1],
        batch_size=3,
        show_progress=False,
    )
    torch.testing.assert_close(from_texts, from_pixels, **TOLERANCE)
