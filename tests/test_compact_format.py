"""The compact batch format: uint8 [B, 1, P, W] (255 = white) from the renderer, read by every
model class (converted on its device) with the outputs of the float32 3-channel path."""

import pytest
import torch

from pixel_m4.configuration_pixel_fallback import PixelFallbackConfig
from pixel_m4.layers_pixel import as_model_pixels
from pixel_m4.modeling_pixel_fallback import PixelFallbackEncoder
from pixel_m4.modeling_pixel_m4 import (
    PixelM4ForBiaffineParsing,
    PixelM4ForPreTraining,
    PixelM4ForSequenceClassification,
    PixelM4ForTokenClassification,
    PixelM4Model,
)
from pixel_m4.processing_pixel_m4 import pad_to_patches
from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer
from pixel_m4.tools.pretraining import RenderingCollator
from pixel_m4.tools.task_data import SequenceClassificationCollator, WordTaskCollator

PATCHES = 36
RENDERER = {"max_seq_length": PATCHES}  # conftest's renderer
TEXTS = ["Hello world, this is text.", "नमस्ते दुनिया", "中文字 Привет"]


def both_formats(renderer, texts=TEXTS, **kwargs):
    full = renderer(texts, return_tensors="pt", **kwargs)
    compact = renderer(texts, return_tensors="pt", output_format="uint8", **kwargs)
    return full, compact


@pytest.mark.parametrize("return_tensors", ["np", "pt", None])
def test_uint8_is_the_float_strip_in_one_byte_channel(renderer, return_tensors):
    full = renderer(TEXTS, return_tensors=return_tensors)
    compact = renderer(TEXTS, return_tensors=return_tensors, output_format="uint8")
    pixels = torch.as_tensor(compact["pixel_values"])
    assert pixels.dtype == torch.uint8 and tuple(pixels.shape) == (3, 1, 16, 16 * PATCHES)
    assert pixels.max() == 255 and pixels.min() == 0  # white background, black end patch
    float_pixels = torch.as_tensor(full["pixel_values"])
    assert torch.equal(as_model_pixels(pixels, 3), float_pixels)  # bit-identical, not just close
    for key in ("attention_mask", "num_patches", "overflow", "missing_glyphs"):
        assert torch.equal(torch.as_tensor(full[key]), torch.as_tensor(compact[key]))


def test_uint8_row_size(renderer):
    """One 529-patch strip is 16 x 8464 bytes (about 135 KB), 1/12 of the float32 row."""
    full_size = PixelM4TextRenderer()
    compact = full_size("Hello", return_tensors="np", output_format="uint8")["pixel_values"]
    assert compact.nbytes == 16 * 8464 == 135_424
    assert full_size("Hello", return_tensors="np")["pixel_values"].nbytes == 12 * compact.nbytes


@pytest.mark.parametrize("output_format", ["uint16", "float16", None, 8])
def test_bad_output_format(renderer, output_format):
    with pytest.raises(ValueError, match="output_format must be one of"):
        renderer("text", output_format=output_format)


def run_all_heads(small_config, pixel_values, attention_mask, word_spans):
    torch.manual_seed(0)
    outputs = {}
    model = PixelM4Model(small_config()).eval()
    outputs["model"] = model(pixel_values, attention_mask).last_hidden_state
    torch.manual_seed(0)
    pretraining = PixelM4ForPreTraining(small_config()).eval()
    patch_mask = pretraining.sample_patch_mask(attention_mask, torch.Generator().manual_seed(0))
    output = pretraining(pixel_values, attention_mask, patch_mask=patch_mask)
    outputs["pretraining_loss"] = output.loss
    outputs["reconstruction"] = pretraining.reconstruct(pixel_values, output.logits, output.mask)
    torch.manual_seed(0)
    classifier = PixelM4ForSequenceClassification(small_config(num_labels=3)).eval()
    outputs["classification"] = classifier(pixel_values, attention_mask).logits
    torch.manual_seed(0)
    tagger = PixelM4ForTokenClassification(small_config(num_labels=4)).eval()
    outputs["token_classification"] = tagger(pixel_values, word_spans, attention_mask).logits
    torch.manual_seed(0)
    parser = PixelM4ForBiaffineParsing(
        small_config(num_labels=5, biaffine_arc_size=8, biaffine_rel_size=4)
    ).eval()
    parsed = parser(pixel_values, word_spans, attention_mask)
    outputs["arcs"], outputs["rels"] = parsed.arc_logits, parsed.rel_logits
    outputs["embed"] = model.embed(
        pixel_values=pixel_values, attention_mask=attention_mask, show_progress=False
    )
    return outputs


@torch.no_grad()
def test_every_model_class_reads_uint8_like_float32(small_config, renderer):
    full, compact = both_formats(renderer, return_word_spans=True)
    word_spans = torch.tensor([[[0, 2], [2, 4]], [[0, 1], [1, 3]], [[0, 2], [2, 3]]])
    expected = run_all_heads(small_config, full["pixel_values"], full["attention_mask"], word_spans)
    got = run_all_heads(
        small_config, compact["pixel_values"], compact["attention_mask"], word_spans
    )
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=1e-6, msg=name)


@torch.no_grad()
def test_embed_from_texts_equals_embed_from_float_pixels(small_config, renderer):
    torch.manual_seed(0)
    model = PixelM4Model(small_config()).eval()
    full = renderer(TEXTS, return_tensors="pt")
    from_pixels = model.embed(
        pixel_values=full["pixel_values"],
        attention_mask=full["attention_mask"],
        show_progress=False,
    )
    from_texts = model.embed(TEXTS, renderer=renderer, show_progress=False)
    torch.testing.assert_close(from_texts, from_pixels, rtol=0, atol=1e-6)


def test_models_reject_uint8_with_three_channels(small_config, renderer):
    model = PixelM4Model(small_config())
    compact = renderer(TEXTS, return_tensors="pt", output_format="uint8")["pixel_values"]
    with pytest.raises(ValueError, match=r"\(batch, 1, 16, width\) \(integers"):
        model(compact.expand(-1, 3, -1, -1))


@torch.no_grad()
def test_fallback_encoder_reads_uint8_like_float32():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    from pixel_m4.processing_pixel_fallback import PixelFallbackProcessor

    # render_words needs no real vocabulary; the processor needs a transformers tokenizer
    # (ProcessorMixin checks its class) with an eos token
    vocabulary = models.WordLevel({"</s>": 0}, unk_token="</s>")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(vocabulary), eos_token="</s>")
    processor = PixelFallbackProcessor(tokenizer)
    words = ["नमस्ते", "दुनिया", "мир", "中文字"]
    pixels, word_ids = processor.render_words(words)
    compact, compact_ids = processor.render_words(words, output_format="uint8")
    assert compact.dtype == torch.uint8 and compact.shape[1] == 1
    assert torch.equal(compact_ids, word_ids)
    torch.manual_seed(0)
    config = PixelFallbackConfig.from_preset("test", llm_hidden_size=16)
    encoder = PixelFallbackEncoder(config).eval()
    torch.testing.assert_close(
        encoder(compact, word_ids), encoder(pixels, word_ids), rtol=0, atol=1e-6
    )
    with pytest.raises(ValueError, match=r"pixel_values must have shape \(rows, 1, 24"):
        encoder(compact.expand(-1, 3, -1, -1), word_ids)


def test_collators_emit_the_compact_format(renderer):
    batch = SequenceClassificationCollator(renderer, 49, padding="max_length")(
        [{"text": t, "labels": 0} for t in TEXTS]
    )
    assert batch["pixel_values"].dtype == torch.uint8
    assert tuple(batch["pixel_values"].shape) == (3, 1, 16, 16 * 49)
    assert (batch["pixel_values"][..., 16 * PATCHES :] == 255).all()  # padded with white
    assert (batch["attention_mask"][:, PATCHES:] == 0).all()
    words = WordTaskCollator(renderer, PATCHES)(
        [{"tokens": t.split(), "labels": [0] * len(t.split())} for t in TEXTS]
    )
    assert words["pixel_values"].dtype == torch.uint8
    pretraining = RenderingCollator(renderer)([{"text": t} for t in TEXTS])
    assert pretraining["pixel_values"].dtype == torch.uint8
    full = RenderingCollator(renderer, output_format="float32")([{"text": t} for t in TEXTS])
    assert torch.equal(as_model_pixels(pretraining["pixel_values"], 3), full["pixel_values"])


def test_pad_to_patches_pads_float_with_one_and_uint8_with_255(renderer):
    full, compact = both_formats(renderer)
    padded_full = pad_to_patches(full, PATCHES + 4)["pixel_values"]
    padded_compact = pad_to_patches(compact, PATCHES + 4)["pixel_values"]
    assert torch.equal(as_model_pixels(padded_compact, 3), padded_full)
