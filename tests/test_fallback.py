"""Pixel fallback (Lotz et al. 2025): encoder, processor, LLM adapter, save/load, training script."""

import itertools
import json
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch import nn
from transformers import AutoModelForCausalLM, AutoProcessor, AutoTokenizer

from pixel_m4.configuration_pixel_fallback import PixelFallbackConfig
from pixel_m4.modeling_pixel_fallback import (
    PixelFallbackEncoder,
    PixelFallbackForCausalLM,
    mean_per_word,
    positions_within_words,
)
from pixel_m4.processing_pixel_fallback import PixelFallbackProcessor, load_word_segmenter
from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer
from pixel_m4.tools.hub import FALLBACK_HUB_FILES

from tiny_causal_lm import tiny_causal_lm_path

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = "Translate from Hindi to English:\n{text}\nEnglish:"
RENDERER = {"render_mode": "word_bigram"}  # conftest's renderer
MIXED = ["मैं घर जा रहा हूँ, OK?", "Привет мир and friends", "ไทย 中文字"]
# The remote code of a folder the processor alone saves: the Hub files but the model's modules.
PROCESSOR_MODULES = set(FALLBACK_HUB_FILES) - {
    "configuration_pixel_fallback.py",
    "modeling_pixel_fallback.py",
    "layers_pixel.py",
}


@pytest.fixture(scope="module")
def llm_path(tmp_path_factory):
    return tiny_causal_lm_path(tmp_path_factory.mktemp("llm"))


@pytest.fixture(scope="module")
def tokenizer(llm_path):
    return AutoTokenizer.from_pretrained(llm_path)


@pytest.fixture(scope="module")
def processor(tokenizer, renderer):
    """The mixed-modality option (ASCII words stay tokens): exercises the interleaving."""
    return PixelFallbackProcessor(tokenizer, renderer, pixel_word_rule="non_ascii")


def make_model(llm_path, attn="sdpa", seed=0):
    torch.manual_seed(seed)
    llm = AutoModelForCausalLM.from_pretrained(llm_path)
    config = PixelFallbackConfig.from_preset("test", attn_implementation=attn)
    return PixelFallbackForCausalLM(config, llm).eval()


def encoder(attn="sdpa", seed=0):
    torch.manual_seed(seed)
    config = PixelFallbackConfig.from_preset("test", llm_hidden_size=16, attn_implementation=attn)
    return PixelFallbackEncoder(config).eval()


# ------------------------------------------------------------------------------ rendering
@pytest.mark.parametrize(
    "word, group_graphemes, patches",
    [
        ("Happy", False, 4),  # [Ha][ap][pp][py]
        ("a", False, 1),  # one-character word: one patch
        ("cafe\u0301", False, 4),  # combining acute as its own code point
        ("cafe\u0301", True, 3),  # ... or kept in its grapheme cluster
        ("नमस्ते", True, 3),  # Devanagari conjuncts whole with grapheme grouping
        ("😀", False, 2),  # a tofu box, 2 patches wide with hinted metrics
    ],
)
def test_word_bigram_patches_per_word(tokenizer, word, group_graphemes, patches):
    renderer = PixelM4TextRenderer(render_mode="word_bigram", group_graphemes=group_graphemes)
    processor = PixelFallbackProcessor(tokenizer, renderer, pixel_word_rule="all")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the shipped fonts have no emoji: a tofu box, warned
        _, word_ids = processor.render_words([word, "Hi"])
    assert (word_ids == 0).sum() == patches
    assert (word_ids == 1).sum() == 1


def test_rows_pack_words_and_split_when_full(tokenizer):
    renderer = PixelM4TextRenderer(render_mode="word_bigram", max_seq_length=9)  # 8 word patches
    processor = PixelFallbackProcessor(tokenizer, renderer, pixel_word_rule="all")
    pixels, word_ids = processor.render_words(["Happy", "dog", "abcdef"])  # 4 + 2 + 5 patches
    assert pixels.shape == (2, 3, 24, 24 * 6)
    assert word_ids.tolist() == [[0, 0, 0, 0, 1, 1], [2, 2, 2, 2, 2, -1]]


# ------------------------------------------------------------------------------ encoder
def test_positions_restart_at_each_word():
    word_ids = torch.tensor([[0, 0, 0, 1, 1, 2, -1, -1], [3, 4, 4, 4, 4, -1, -1, -1]])
    assert positions_within_words(word_ids).tolist() == [
        [0, 1, 2, 0, 1, 0, 0, 1],
        [0, 0, 1, 2, 3, 0, 1, 2],
    ]


def test_mean_per_word_ignores_padding():
    hidden = torch.arange(12.0).reshape(1, 6, 2)
    pooled = mean_per_word(hidden, torch.tensor([[1, 1, 0, -1, 0, -1]]), num_words=2)
    assert pooled.tolist() == [[6.0, 7.0], [1.0, 2.0]]  # word 0: patches 2, 4; word 1: 0, 1


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_words_are_encoded_independently(processor, attn):
    """Block-diagonal attention: changing word A's pixels leaves word B's vector unchanged."""
    model = encoder(attn)
    pixels, word_ids = processor.render_words(["नमस्ते", "दुनिया", "мир"])
    with torch.no_grad():
        before = model(pixels, word_ids)
        changed = pixels.clone()
        changed[..., : 24 * int((word_ids[0] == 0).sum())] = 0.3  # word 0's patches only
        after = model(changed, word_ids)
    assert before.shape == (3, 16)
    assert not torch.allclose(before[0], after[0])
    torch.testing.assert_close(before[1:], after[1:], rtol=0, atol=1e-6)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_words_equal_words_encoded_alone(processor, attn):
    model = encoder(attn)
    words = ["नमस्ते", "Привет", "a", "中文字"]
    with torch.no_grad():
        packed = model(*processor.render_words(words))
        alone = torch.cat([model(*processor.render_words([word])) for word in words])
    torch.testing.assert_close(packed, alone, rtol=1e-5, atol=1e-5)


def test_sdpa_and_eager_agree(processor):
    inputs = processor.render_words(["नमस्ते", "दुनिया", "Привет"])
    with torch.no_grad():
        torch.testing.assert_close(
            encoder("sdpa")(*inputs), encoder("eager")(*inputs), rtol=1e-5, atol=1e-5
        )


def test_encoder_rejects_bad_shapes(processor):
    model = encoder()
    pixels, word_ids = processor.render_words(["नमस्ते"])
    with pytest.raises(ValueError, match="pixel_values must have shape"):
        model(pixels[:, :, :16], word_ids)
    with pytest.raises(ValueError, match="patch_word_ids must have shape"):
        model(pixels, word_ids[:, :-1])
    with pytest.raises(ValueError, match="llm_hidden_size"):
        PixelFallbackEncoder(PixelFallbackConfig.from_preset("test"))


def test_encoder_refuses_outputs_it_does_not_return(processor):
    """The encoder returns word embeddings only: asking for attentions or hidden states is an
    error, not a silently missing output; the hook the error names gives the weights."""
    model = encoder("eager")
    inputs = processor.render_words(["नमस्ते", "мир"])
    with torch.no_grad():
        plain = model(*inputs)
        for name in ("output_attentions", "output_hidden_states"):
            with pytest.raises(ValueError, match="forward hook"):
                model(*inputs, **{name: True})
            torch.testing.assert_close(model(*inputs, **{name: False}), plain, rtol=0, atol=0)
        weights = []
        hook = model.layers[0].attention.register_forward_hook(
            lambda module, args, output: weights.append(output[1])
        )
        model(*inputs)
        hook.remove()
    num_patches = inputs[1].shape[1]
    assert weights[0].shape == (inputs[0].shape[0], model.config.num_attention_heads,
                                num_patches, num_patches)  # fmt: skip


@pytest.mark.parametrize("preset, millions", [("default", 92), ("small", 24)])
def test_presets_have_paper_sizes(preset, millions):
    """Paper: 92M (4 layers, d=1536, 16 heads) and 24M (4 layers, d=768, 12 heads); counted
    without pixel_projector, whose size depends on the LLM."""
    config = PixelFallbackConfig.from_preset(preset, llm_hidden_size=960)
    layers = (config.num_hidden_layers, config.hidden_size, config.num_attention_heads)
    assert layers == {"default": (4, 1536, 16), "small": (4, 768, 12)}[preset]
    with torch.device("meta"):
        model = PixelFallbackEncoder(config)
    projector = sum(p.numel() for p in model.pixel_projector.parameters())
    count = sum(p.numel() for p in model.parameters()) - projector
    assert abs(count / (millions * 1e6) - 1) < 0.02, count
    assert (
        PixelFallbackConfig().intermediate_size
        == PixelFallbackConfig.from_preset("default").intermediate_size
    )


def test_bad_presets():
    with pytest.raises(ValueError, match="unknown preset"):
        PixelFallbackConfig.from_preset("huge")
    with pytest.raises(ValueError, match="multiple of"):
        PixelFallbackConfig(hidden_size=100, num_attention_heads=16)


# ------------------------------------------------------------------------------ processor
def test_interleaving_order_and_masks(processor, tokenizer):
    batch = processor(MIXED[:2], template=TEMPLATE, padding_side="right")
    pieces = processor.split_pieces(MIXED[0], TEMPLATE)
    assert [kind for kind, _ in pieces] == ["text"] + ["pixel"] * 5 + ["text"]
    # spaces before a pixel word go (it stands for them), the template's newline stays
    assert pieces[0][1] == "Translate from Hindi to English:\n"
    assert pieces[-1][1] == " OK?\nEnglish:"
    assert [value for kind, value in pieces if kind == "pixel"] == MIXED[0].split()[:5]
    # text pieces are tokenized as they stand in the prompt, pixel words are one position each
    expected = tokenizer(pieces[0][1])["input_ids"]
    expected += [processor.placeholder_id] * 5
    expected += tokenizer(pieces[-1][1], add_special_tokens=False)["input_ids"]
    length = len(expected)
    assert batch["input_ids"][0, :length].tolist() == expected
    pixel_positions = batch["pixel_word_mask"][0].nonzero().flatten().tolist()
    first = len(tokenizer(pieces[0][1])["input_ids"])
    assert pixel_positions == list(range(first, first + 5))
    # word ids run over the batch in text order: 5 words of example 0, then 2 of example 1
    assert batch["patch_word_ids"].max() == 6
    assert batch["pixel_word_mask"].sum() == 7
    assert batch["attention_mask"][0].tolist() == [1] * length + [0] * (
        batch["input_ids"].shape[1] - length
    )
    left = processor(MIXED[:2], template=TEMPLATE, padding_side="left")
    assert (
        left["attention_mask"][0].tolist()
        == [0] * (left["input_ids"].shape[1] - length) + [1] * length
    )
    assert left["input_ids"][0, -length:].tolist() == expected


def test_pixel_word_rules(tokenizer, renderer):
    text = "Hello नमस्ते world"
    pixel = lambda rule: [  # noqa: E731
        value
        for kind, value in PixelFallbackProcessor(tokenizer, renderer, rule).split_pieces(text)
        if kind == "pixel"
    ]
    assert pixel("non_ascii") == ["नमस्ते"]
    assert pixel("all") == ["Hello", "नमस्ते", "world"]
    assert pixel(lambda word: word.istitle()) == ["Hello"]
    with pytest.raises(ValueError, match="pixel_word_rule"):
        PixelFallbackProcessor(tokenizer, renderer, "ascii")
    with pytest.raises(ValueError, match="word_bigram"):
        PixelFallbackProcessor(tokenizer, PixelM4TextRenderer(render_mode="bigram"))


def test_default_routes_whole_source(tokenizer, renderer):
    """The paper's main setting: every source word is a pixel word, the template stays tokens."""
    processor = PixelFallbackProcessor(tokenizer, renderer)
    assert processor.pixel_word_rule == "all"
    text = "Hello नमस्ते world, OK?"
    pieces = processor.split_pieces(text, TEMPLATE)
    assert pieces == [
        ("text", "Translate from Hindi to English:\n"),
        *[("pixel", word) for word in text.split()],
        ("text", "\nEnglish:"),
    ]
    batch = processor(text, template=TEMPLATE)
    assert batch["pixel_word_mask"].sum() == 4
    assert batch["patch_word_ids"].max() == 3


def test_source_truncated_to_max_source_length(tokenizer, renderer):
    words = [f"w{index}" for index in range(300)]
    default = PixelFallbackProcessor(tokenizer, renderer)
    assert default.max_source_length == 256 and default.max_target_length == 256  # paper
    batch = default(" ".join(words), template=TEMPLATE)
    assert batch["pixel_word_mask"].sum() == 256
    pixels = [value for kind, value in default.split_pieces(" ".join(words), TEMPLATE)]
    assert pixels[1:-1] == words[:256] and pixels[-1] == "\nEnglish:"  # template end kept
    three = PixelFallbackProcessor(tokenizer, renderer, max_source_length=3)
    assert three.split_pieces("a b c d e") == [("pixel", word) for word in "abc"]
    unlimited = PixelFallbackProcessor(tokenizer, renderer, max_source_length=None)
    assert unlimited(" ".join(words))["pixel_word_mask"].sum() == 300
    # with ASCII words as tokens, a tokenized word costs its tokens
    mixed = "नमस्ते world मित्र"
    cost = 1 + len(tokenizer("world", add_special_tokens=False)["input_ids"])
    for limit, kept in ((cost, "नमस्ते world"), (cost + 1, mixed), (cost - 1, "नमस्ते")):
        processor = PixelFallbackProcessor(
            tokenizer, renderer, "non_ascii", max_source_length=limit
        )
        assert processor.split_pieces(mixed) == PixelFallbackProcessor(
            tokenizer, renderer, "non_ascii"
        ).split_pieces(kept)


def test_target_truncated_to_max_target_length(tokenizer, renderer):
    target = " I am going home to my family tonight."
    ids = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    for limit, expected in ((3, ids[:3]), (len(ids), ids), (None, ids)):
        processor = PixelFallbackProcessor(tokenizer, renderer, max_target_length=limit)
        labels = processor("नमस्ते", target=target)["labels"][0]
        assert labels[labels != -100].tolist() == expected


@pytest.mark.parametrize(
    "settings, error",
    [
        (dict(max_source_length=0), ValueError),
        (dict(max_target_length=-5), ValueError),
        (dict(max_source_length="256"), TypeError),
        (dict(max_target_length=True), TypeError),
        (dict(word_segmenter="klingon"), ValueError),
        (dict(word_segmenter="chinese,japanese"), ValueError),
        (dict(word_segmenter=3), TypeError),
    ],
)
def test_bad_processor_settings(tokenizer, renderer, settings, error):
    with pytest.raises(error, match=next(iter(settings))):
        PixelFallbackProcessor(tokenizer, renderer, **settings)


# ------------------------------------------------------------------------------ segmentation
THAI = "ฉันดื่มชาหนึ่งถ้วยทุกเช้าก่อนไปทำงาน"  # I drink a cup of tea every morning before work


def test_thai_is_segmented_into_words(tokenizer, renderer):
    processor = PixelFallbackProcessor(tokenizer, renderer)
    assert processor.word_segmenter == "thai"  # the paper's setting
    text = f"{THAI} และ OK"
    spans = processor.word_spans(text)
    words = [text[start:end] for start, end in spans]
    assert words[:4] == ["ฉัน", "ดื่ม", "ชา", "หนึ่ง"] and words[-2:] == ["และ", "OK"]
    assert "".join(words) == text.replace(" ", "")  # spans cover the text, in order
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))
    batch = processor(text, template=TEMPLATE)
    assert batch["pixel_word_mask"].sum() == len(words)
    # each pixel word is rendered alone: its patches are exactly its bigrams
    for index, word in enumerate(words):
        _, alone = processor.render_words([word])
        assert (batch["patch_word_ids"] == index).sum() == (alone == 0).sum()
    whitespace_only = PixelFallbackProcessor(tokenizer, renderer, word_segmenter="none")
    assert whitespace_only.word_spans(THAI) == [(0, len(THAI))]


@pytest.mark.parametrize(
    "segmenter, text, first_words",
    [
        ("chinese", "我每天早上上班前都会喝一杯茶。", ["我", "每天", "早上"]),
        ("japanese", "私は毎朝仕事の前にお茶を一杯飲みます。", ["私", "は", "毎朝"]),
    ],
)
def test_chinese_and_japanese_segmenters(tokenizer, renderer, segmenter, text, first_words):
    processor = PixelFallbackProcessor(tokenizer, renderer, word_segmenter=f"thai,{segmenter}")
    words = [text[start:end] for start, end in processor.word_spans(text)]
    assert words[:3] == first_words and "".join(words) == text
    assert processor.word_spans(THAI) == PixelFallbackProcessor(tokenizer, renderer).word_spans(
        THAI
    )
    # off by default: the paper segments Thai only
    assert PixelFallbackProcessor(tokenizer, renderer).word_spans(text) == [(0, len(text))]


def test_missing_segmenter_package_is_a_clear_error(tokenizer, renderer, monkeypatch):
    load_word_segmenter.cache_clear()
    monkeypatch.setitem(sys.modules, "pythainlp", None)  # import pythainlp -> ImportError
    monkeypatch.setitem(sys.modules, "pythainlp.tokenize", None)
    try:
        processor = PixelFallbackProcessor(tokenizer, renderer)
        assert processor("नमस्ते दुनिया")["pixel_word_mask"].sum() == 2  # no Thai: not needed
        with pytest.raises(ImportError, match=r"pip install pythainlp .*pixel-m4\[thai\]"):
            processor(THAI)
        none = PixelFallbackProcessor(tokenizer, renderer, word_segmenter="none")
        assert none(THAI)["pixel_word_mask"].sum() == 1  # whitespace words, as asked
    finally:
        load_word_segmenter.cache_clear()


def test_processor_settings_saved(tokenizer, renderer, tmp_path):
    processor = PixelFallbackProcessor(
        tokenizer,
        renderer,
        "non_ascii",
        word_segmenter="thai,chinese",
        max_source_length=100,
        max_target_length=None,
    )
    processor.save_pretrained(tmp_path)
    loaded = PixelFallbackProcessor.from_pretrained(tmp_path)
    assert (loaded.pixel_word_rule, loaded.word_segmenter) == ("non_ascii", "thai,chinese")
    assert (loaded.max_source_length, loaded.max_target_length) == (100, None)
    text = f"Tea: {THAI} 我每天早上上班前都会喝一杯茶。"
    assert loaded.split_pieces(text, TEMPLATE) == processor.split_pieces(text, TEMPLATE)
    overridden = PixelFallbackProcessor.from_pretrained(tmp_path, max_source_length=5)
    assert (overridden.max_source_length, overridden.word_segmenter) == (5, "thai,chinese")
    # a folder saved before these settings existed (fallback_processor_config.json with the
    # rule only) loads with what it was saved with: whitespace words, no truncation
    (tmp_path / "processor_config.json").unlink()
    (tmp_path / "fallback_processor_config.json").write_text(
        json.dumps({"processor_class": "PixelFallbackProcessor", "pixel_word_rule": "all"})
    )
    old = PixelFallbackProcessor.from_pretrained(tmp_path)
    assert (old.pixel_word_rule, old.word_segmenter) == ("all", "none")
    assert (old.max_source_length, old.max_target_length) == (None, None)
    (tmp_path / "fallback_processor_config.json").write_text("{}")
    assert PixelFallbackProcessor.from_pretrained(tmp_path).pixel_word_rule == "non_ascii"
    (tmp_path / "fallback_processor_config.json").unlink()
    with pytest.raises(OSError, match="no processor_config.json"):
        PixelFallbackProcessor.from_pretrained(tmp_path)


def test_auto_processor_loads_a_saved_folder_with_remote_code(tokenizer, renderer, tmp_path):
    processor = PixelFallbackProcessor(tokenizer, renderer, max_source_length=100)
    processor.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "processor_config.json").read_text())
    assert config["auto_map"] == {
        "AutoProcessor": "processing_pixel_fallback.PixelFallbackProcessor"
    }
    assert (config["pixel_word_rule"], config["word_segmenter"]) == ("all", "thai")
    assert {path.name for path in tmp_path.glob("*.py")} == PROCESSOR_MODULES
    loaded = AutoProcessor.from_pretrained(tmp_path, trust_remote_code=True)
    assert type(loaded).__name__ == "PixelFallbackProcessor"
    assert type(loaded).__module__.startswith("transformers_modules.")  # the folder's code
    assert loaded.max_source_length == 100 and loaded.word_segmenter == "thai"
    batch, expected = loaded(MIXED, template=TEMPLATE), processor(MIXED, template=TEMPLATE)
    assert batch.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(batch[key], expected[key])
    with pytest.raises(ValueError, match="callable pixel_word_rule cannot be saved"):
        PixelFallbackProcessor(tokenizer, renderer, str.isupper).save_pretrained(tmp_path)


def test_labels_cover_target_tokens_only(processor, tokenizer):
    batch = processor(MIXED[:2], template=TEMPLATE, target=[" I am going home.", " Hi world"])
    for row, target in enumerate([" I am going home.", " Hi world"]):
        target_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
        target_ids.append(tokenizer.eos_token_id)
        labels = batch["labels"][row]
        kept = labels[labels != -100].tolist()
        assert kept == target_ids
        end = int(batch["attention_mask"][row].sum())
        assert batch["input_ids"][row, end - len(target_ids) : end].tolist() == target_ids
        assert (labels[: end - len(target_ids)] == -100).all()
    with pytest.raises(ValueError, match="2 texts but 1 targets"):
        processor(MIXED[:2], target=["one"])


def test_bad_processor_input(processor):
    with pytest.raises(ValueError, match="text must not be empty"):
        processor(["fine", "  "])
    with pytest.raises(ValueError, match="non-empty"):
        processor([])
    with pytest.raises(ValueError, match="template must contain"):
        processor("नमस्ते", template="Translate:")
    with pytest.raises(ValueError, match="padding_side"):
        processor("नमस्ते", padding_side="center")
    with pytest.raises(TypeError, match="text must be a str"):
        processor([3])


def test_over_long_word_is_split_and_reported(tokenizer, caplog):
    renderer = PixelM4TextRenderer(render_mode="word_bigram", max_seq_length=9)  # 8 word patches
    processor = PixelFallbackProcessor(tokenizer, renderer, pixel_word_rule="non_ascii")
    word = "абвгдеёжзийклмнопрс"  # 19 letters: 18 bigrams
    with caplog.at_level(logging.WARNING):
        pieces = [value for kind, value in processor.split_pieces(f"x {word} y") if kind == "pixel"]
    assert "split into 3 pieces" in caplog.text
    assert pieces == [word[:9], word[8:17], word[16:]]  # one shared letter: no bigram lost
    batch = processor(f"x {word} y")
    assert batch["pixel_word_mask"].sum() == 3
    assert (batch["patch_word_ids"] >= 0).sum(1).max() <= 8


# ------------------------------------------------------------------------------ adapter
def test_all_ascii_text_equals_plain_llm(llm_path, processor, tokenizer):
    model = make_model(llm_path)
    text = "The baker opens his shop at five."
    batch = processor(text, template=TEMPLATE)
    plain = tokenizer(TEMPLATE.format(text=text), return_tensors="pt")
    assert torch.equal(batch["input_ids"], plain["input_ids"])
    assert "pixel_values" not in batch
    with torch.no_grad():
        ours = model(**batch).logits
        reference = model.language_model(**plain).logits
        assert torch.equal(ours, reference)
        generated = model.generate(**batch, max_new_tokens=6, do_sample=False)
        expected = model.language_model.generate(**plain, max_new_tokens=6, do_sample=False)
    assert torch.equal(generated, expected[:, plain["input_ids"].shape[1] :])


def test_pixel_positions_get_fallback_vectors(llm_path, processor):
    model = make_model(llm_path)
    batch = processor(MIXED, template=TEMPLATE)
    with torch.no_grad():
        embeds = model.embed_inputs(
            batch["input_ids"],
            batch["pixel_values"],
            batch["patch_word_ids"],
            batch["pixel_word_mask"],
        )
        words = model.fallback(batch["pixel_values"], batch["patch_word_ids"])
        tokens = model.get_input_embeddings()(batch["input_ids"])
    mask = batch["pixel_word_mask"]
    assert torch.equal(embeds[mask], words)
    assert torch.equal(embeds[~mask], tokens[~mask])
    bad = dict(batch, pixel_word_mask=batch["pixel_word_mask"].clone())
    bad["pixel_word_mask"][0, 0] = True
    with pytest.raises(ValueError, match="pixel_word_mask marks 10 pixel words"):
        model(**bad)
    with pytest.raises(ValueError, match="pixel_values / patch_word_ids are missing"):
        model(batch["input_ids"], pixel_word_mask=batch["pixel_word_mask"])


def test_generate_shape_and_left_padding(llm_path, processor):
    model = make_model(llm_path)
    batch = processor(MIXED, template=TEMPLATE, padding_side="left")
    out = model.generate(**batch, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert out.shape == (3, 5)
    # a left-padded batch decodes like each example alone
    alone = model.generate(
        **processor(MIXED[1], template=TEMPLATE),
        max_new_tokens=5,
        min_new_tokens=5,
        do_sample=False,
    )
    assert torch.equal(out[1], alone[0])


def test_stage1_trains_only_the_fallback(llm_path, processor):
    model = make_model(llm_path).train()
    model.freeze_language_model()
    batch = processor(MIXED[:2], template=TEMPLATE, target=[" I go home.", " Hello world"])
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None for p in model.language_model.parameters())
    fallback_grads = [p.grad for p in model.fallback.parameters()]
    assert all(g is not None for g in fallback_grads)
    assert model.fallback.pixel_projector.weight.grad.abs().sum() > 0


def test_dora_on_llm_attention_only(llm_path, processor):
    from peft import LoraConfig

    model = make_model(llm_path)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
    model.apply_peft(
        LoraConfig(use_dora=True, r=32, lora_alpha=64, lora_dropout=0.05, target_modules=targets)
    )
    adapted = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if hasattr(module, "lora_A") and "lora_A" not in name
    }
    assert adapted == set(targets)
    assert not any("lora" in name for name, _ in model.fallback.named_parameters())
    assert any("lora_magnitude_vector" in name for name, _ in model.named_parameters())
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert all(name.startswith("fallback.") or "lora_" in name for name in trainable)
    assert any(name.startswith("fallback.") for name in trainable)
    # DoRA starts as the identity: adapter output equals the frozen base before training
    batch = processor(MIXED[:1], template=TEMPLATE)
    with torch.no_grad():
        adapted_logits = model(**batch).logits
        with model.language_model.disable_adapter():
            base_logits = model(**batch).logits
    torch.testing.assert_close(adapted_logits, base_logits, rtol=1e-4, atol=1e-4)


def test_bad_language_models(llm_path):
    config = PixelFallbackConfig.from_preset("test")
    with pytest.raises(TypeError, match="get_input_embeddings"):
        PixelFallbackForCausalLM(config, nn.Linear(4, 4))
    with pytest.raises(ValueError, match="needs `language_model`"):
        PixelFallbackForCausalLM(config)
    llm = AutoModelForCausalLM.from_pretrained(llm_path)
    with pytest.raises(ValueError, match="llm_hidden_size=32 does not match .* 64"):
        PixelFallbackForCausalLM(PixelFallbackConfig.from_preset("test", llm_hidden_size=32), llm)


LOAD_FALLBACK_FOLDER = """
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoProcessor
folder, texts, template = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
for module in (type(model).__module__, type(processor).__module__):
    assert module.startswith("transformers_modules."), module
with torch.no_grad():
    torch.save(model(**processor(texts, template=template)).logits, folder + "/logits.pt")
"""


def test_save_load_round_trip_with_dora(llm_path, processor, tmp_path, run_without_pixel_m4):
    from peft import LoraConfig

    model = make_model(llm_path)
    model.apply_peft(
        LoraConfig(use_dora=True, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    )
    with torch.no_grad():  # make the adapter non-trivial
        for name, param in model.language_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.1)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)

    saved, state = load_file(tmp_path / "model.safetensors"), model.state_dict()
    fallback_names = {name for name in state if name.startswith("fallback.")}
    assert saved.keys() == fallback_names  # no LLM weights
    assert all(torch.equal(saved[name], state[name]) for name in saved)
    assert json.loads((tmp_path / "config.json").read_text())["base_model_name_or_path"] == llm_path
    assert (tmp_path / "llm_adapter" / "adapter_model.safetensors").exists()
    # the remote code written by save_pretrained is exactly the fallback's list of Hub files: not
    # PIXEL-M4's modeling, configuration or pipeline files
    assert {path.name for path in tmp_path.glob("*.py")} == set(FALLBACK_HUB_FILES)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_pixel_fallback.PixelFallbackConfig",
        "AutoModelForCausalLM": "modeling_pixel_fallback.PixelFallbackForCausalLM",
    }

    loaded = PixelFallbackForCausalLM.from_pretrained(tmp_path)
    reloaded_processor = PixelFallbackProcessor.from_pretrained(tmp_path)
    batch = reloaded_processor(MIXED, template=TEMPLATE)
    with torch.no_grad():
        logits = model(**batch).logits
        torch.testing.assert_close(loaded(**batch).logits, logits)
    assert not any(p.requires_grad for p in loaded.parameters())

    # the folder's own code alone (a fresh process where pixel_m4 cannot be imported) gives the same
    run_without_pixel_m4(LOAD_FALLBACK_FOLDER, str(tmp_path), json.dumps(MIXED), TEMPLATE)
    assert torch.equal(torch.load(tmp_path / "logits.pt"), logits)


def test_save_needs_base_model_name(llm_path, tmp_path):
    llm = AutoModelForCausalLM.from_config(AutoModelForCausalLM.from_pretrained(llm_path).config)
    llm.name_or_path = ""
    model = PixelFallbackForCausalLM(PixelFallbackConfig.from_preset("test"), llm)
    with pytest.raises(ValueError, match="base_model_name_or_path is empty"):
        model.save_pretrained(tmp_path)


def test_compression_counts(processor, tokenizer):
    text = "मैं घर जा रहा हूँ OK"
    plain, with_fallback = processor.count_inputs(text)
    assert plain == len(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert with_fallback == 5 + len(tokenizer(" OK", add_special_tokens=False)["input_ids"])
    assert plain / with_fallback > 3  # the English-centric tokenizer fragments Devanagari


# ------------------------------------------------------------------------------ script
@pytest.mark.slow
def test_run_fallback_script_end_to_end(llm_path, tmp_path, run_without_pixel_m4):
    """The default run (paper setting: whole source as pixels, Thai segmented, 256/256
    truncation), shortened: both stages for a few steps, scores written, and the saved adapter
    (fallback + DoRA) loads with trust_remote_code in a fresh process without pixel_m4."""
    output = tmp_path / "run"
    command = [
        sys.executable,
        str(REPO / "examples" / "run_fallback.py"),
        "--output_dir", str(output),
        "--llm_name_or_path", llm_path,
        "--fallback_preset", "test",
        "--stage1_steps", "2",
        "--stage2_steps", "2",
        "--max_train_samples", "16",
        "--max_eval_samples", "4",
        "--per_device_train_batch_size", "4",
        "--max_new_tokens", "4",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((output / "eval_results.json").read_text())
    assert json.loads((output / "all_results.json").read_text()) == metrics
    for key in ("before_chrf++", "after_stage1_chrf++", "after_chrf++", "after_bleu"):
        assert 0.0 <= metrics[key] <= 100.0
    assert (metrics["pixel_word_rule"], metrics["word_segmenter"]) == ("all", "thai")
    saved = json.loads((output / "processor_config.json").read_text())
    assert (saved["max_source_length"], saved["max_target_length"]) == (256, 256)
    assert (output / "llm_adapter" / "adapter_model.safetensors").exists()
    assert {path.name for path in output.glob("*.py")} == set(FALLBACK_HUB_FILES)
    num_saved = sum(t.numel() for t in load_file(output / "model.safetensors").values())

    # the Hub card: YAML metadata for the task and base LLM, the run's scores, install line
    _, front_matter, body = (output / "README.md").read_text(encoding="utf-8").split("---\n", 2)
    card = yaml.safe_load(front_matter)
    assert card["pipeline_tag"] == "text-generation"
    assert card["base_model"] == llm_path
    assert card["license"] == "apache-2.0" and "datasets" not in card  # the shipped sample
    assert "en" in card["language"] and "translation" in card["tags"]
    assert {"custom_code", "pixel-fallback"} <= set(card["tags"])
    assert "{{" not in body
    assert f"| after | {metrics['after_chrf++']:.2f} | {metrics['after_bleu']:.2f} |" in body
    install = next(line for line in body.splitlines() if line.startswith("pip install"))
    assert install.split()[2:5] == ["torch", '"transformers>=5.17"', "cffi"]
    assert "peft" in install.split()  # the stage-2 DoRA adapter is saved
    assert ("pythainlp" in install.split()) == ("th" in card["language"])
    assert "OFL-1.1" in body and "NotoSans" in body  # the shipped fonts' licence, named
    assert "AutoModelForCausalLM.from_pretrained" in body and "model.generate(" in body
    assert f'from_pretrained("{output.name}", trust_remote_code=True)' in body

    script = f"""
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained({str(output)!r}, trust_remote_code=True)
assert type(model).__module__.startswith('transformers_modules'), type(model).__module__
print(type(model).__name__, hasattr(model.language_model, 'peft_config'),
      sum(p.numel() for p in model.fallback.parameters()))
"""
    stdout = run_without_pixel_m4(script)
    assert stdout.split()[-3:] == ["PixelFallbackForCausalLM", "True", str(num_saved)]

    # the card's usage snippet runs as written (the folder name resolves from tmp_path)
    snippet = body.split("## Usage", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    stdout = run_without_pixel_m4(snippet)
    assert stdout.startswith("['"), stdout
