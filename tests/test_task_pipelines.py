"""Raw-text pipelines of saved task folders (custom_pipelines, remote code) and what
`save_pretrained` writes for every model class."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import pipeline

from pixel_m4.configuration_pixel_m4 import PixelM4Config
from pixel_m4.modeling_pixel_m4 import (
    PixelM4ForBiaffineParsing,
    PixelM4ForPreTraining,
    PixelM4ForSequenceClassification,
    PixelM4ForTokenClassification,
    PixelM4Model,
)
from pixel_m4.pipeline_pixel_m4 import group_entities, word_offsets
from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer

PATCHES = 36
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
TEXT = "Maria  Schmidt lives in\tOslo ."


def labelled(names):
    return {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}


def save_folder(model, path):
    torch.manual_seed(0)
    for parameter in model.parameters():  # heads start at zero (biaffine): give them scores
        if parameter.requires_grad:
            parameter.data.normal_(0, 0.5)
    model.eval().save_pretrained(path)
    PixelM4TextRenderer(max_seq_length=PATCHES).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def folders(small_config, tmp_path_factory):
    root = tmp_path_factory.mktemp("task-folders")
    return {
        "text-classification": save_folder(
            PixelM4ForSequenceClassification(small_config(**labelled(["sport", "science"]))),
            root / "classification",
        ),
        "token-classification": save_folder(
            PixelM4ForTokenClassification(small_config(**labelled(NER_LABELS))), root / "ner"
        ),
        "dependency-parsing": save_folder(
            PixelM4ForBiaffineParsing(
                small_config(biaffine_arc_size=8, biaffine_rel_size=4, **labelled(["root", "nsubj", "obl"]))
            ),
            root / "parser",
        ),
    }  # fmt: skip


@pytest.mark.parametrize(
    "model_class, task, auto_class",
    [
        (PixelM4Model, None, "AutoModel"),
        (PixelM4ForPreTraining, None, "AutoModelForPreTraining"),
        (PixelM4ForSequenceClassification, "text-classification", "AutoModelForSequenceClassification"),
        (PixelM4ForTokenClassification, "token-classification", "AutoModelForTokenClassification"),
        (PixelM4ForBiaffineParsing, "dependency-parsing", "AutoModel"),
    ],
)  # fmt: skip
def test_save_pretrained_ships_every_file_the_config_references(
    small_config, tmp_path, model_class, task, auto_class
):
    model_class(small_config()).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"][auto_class] == f"modeling_pixel_m4.{model_class.__name__}"
    assert config["auto_map"]["AutoConfig"] == "configuration_pixel_m4.PixelM4Config"
    expected_tasks = {"feature-extraction"} | ({task} if task else set())
    assert set(config["custom_pipelines"]) == expected_tasks
    referenced = {
        value.split(".")[0] + ".py"
        for value in [*config["auto_map"].values()]
        + [entry["impl"] for entry in config["custom_pipelines"].values()]
    }
    saved = {path.name for path in tmp_path.glob("*.py")}
    assert referenced <= saved
    assert "rendering_pixel_m4.py" in saved  # the pipelines' relative import


def test_text_classification_from_raw_text(folders):
    pipe = pipeline("text-classification", model=str(folders["text-classification"]),
                    trust_remote_code=True)  # fmt: skip
    assert type(pipe).__module__.startswith("transformers_modules.")
    best = pipe(TEXT)
    model = PixelM4ForSequenceClassification.from_pretrained(folders["text-classification"]).eval()
    renderer = PixelM4TextRenderer.from_pretrained(folders["text-classification"])
    with torch.no_grad():
        probabilities = model(**renderer(TEXT, return_tensors="pt")).logits[0].softmax(-1)
    assert best["label"] == model.config.id2label[int(probabilities.argmax())]
    assert best["score"] == pytest.approx(float(probabilities.max()), abs=1e-6)
    ranked = pipe([TEXT, "Science!"], top_k=None)
    assert [len(one) for one in ranked] == [2, 2]
    assert sum(entry["score"] for entry in ranked[0]) == pytest.approx(1.0, abs=1e-6)
    assert ranked[0][0]["score"] >= ranked[0][1]["score"]
    with pytest.raises(ValueError, match="unknown arguments"):
        pipe(TEXT, temperature=2)
    with pytest.raises(TypeError, match="str inputs"):
        pipe([["nested"]])


def test_token_classification_words_and_character_offsets(folders):
    pipe = pipeline("token-classification", model=str(folders["token-classification"]),
                    trust_remote_code=True)  # fmt: skip
    words = pipe(TEXT, ignore_labels=[])
    assert [word["word"] for word in words] == TEXT.split()
    for word in words:
        assert TEXT[word["start"] : word["end"]] == word["word"]
        assert word["entity"] in NER_LABELS and 0 < word["score"] <= 1
    model = PixelM4ForTokenClassification.from_pretrained(folders["token-classification"]).eval()
    renderer = PixelM4TextRenderer.from_pretrained(folders["token-classification"])
    rendered = renderer(TEXT, return_tensors="pt", return_word_spans=True)
    with torch.no_grad():
        logits = model(
            rendered["pixel_values"],
            torch.tensor(rendered["word_patch_spans"]),
            rendered["attention_mask"],
        ).logits[0]
    assert [word["entity"] for word in words] == [
        NER_LABELS[int(index)] for index in logits.argmax(-1)
    ]
    default = pipe(TEXT)  # "O" words are left out, as in transformers' pipeline
    assert default == [word for word in words if word["entity"] != "O"]
    grouped = pipe(TEXT, aggregation_strategy="simple")
    for entity in grouped:
        assert TEXT[entity["start"] : entity["end"]] == entity["word"]
        assert entity["entity_group"] in {"PER", "LOC"}
    with pytest.raises(ValueError, match="aggregation_strategy"):
        pipe(TEXT, aggregation_strategy="max")


def test_group_entities_follows_bio():
    words = [
        {"entity": e, "score": s, "start": a, "end": b, "word": "", "index": i}
        for i, (e, s, a, b) in enumerate(
            [("B-PER", 0.9, 0, 5), ("I-PER", 0.7, 6, 13), ("O", 1.0, 14, 19),
             ("I-LOC", 0.8, 20, 24), ("B-LOC", 0.6, 25, 28)]
        )
    ]  # fmt: skip
    text = "Maria Schmidt lives Oslo Rom"
    groups = group_entities(words, text)
    assert [(g["entity_group"], g["word"]) for g in groups] == [
        ("PER", "Maria Schmidt"), ("O", "lives"), ("LOC", "Oslo"), ("LOC", "Rom"),
    ]  # fmt: skip
    assert groups[0]["score"] == pytest.approx(0.8)


def test_word_offsets_skip_invisible_words():
    text = "a \u200b b\u00adc  d"
    assert [text[start:end] for start, end in word_offsets(text)] == ["a", "b\u00adc", "d"]


def test_dependency_parsing_heads_and_relations(folders):
    pipe = pipeline("dependency-parsing", model=str(folders["dependency-parsing"]),
                    trust_remote_code=True)  # fmt: skip
    parsed = pipe(TEXT)
    assert [word["word"] for word in parsed] == TEXT.split()
    for index, word in enumerate(parsed, 1):
        assert 0 <= word["head"] <= len(parsed) and word["head"] != index
        assert word["relation"] in {"root", "nsubj", "obl"}
        assert 0 < word["score"] <= 1
        assert TEXT[word["start"] : word["end"]] == word["word"]


def test_dependency_parsing_mst_decoding_gives_a_tree(folders):
    """decoding="mst": one root word and every word reaches it (greedy heads of an untrained
    parser need not); the default stays greedy, a bad value is refused."""
    pipe = pipeline("dependency-parsing", model=str(folders["dependency-parsing"]),
                    trust_remote_code=True)  # fmt: skip
    text = " ".join([TEXT] * 3)  # more words: greedy heads of random weights rarely make a tree
    greedy, tree = pipe(text), pipe(text, decoding="mst")
    assert pipe(text, decoding="greedy") == greedy
    assert [word["word"] for word in tree] == [word["word"] for word in greedy]
    assert len(tree) > len(TEXT.split())  # (the test strip truncates the rest)
    heads = [word["head"] for word in tree]
    assert heads.count(0) == 1
    for start in range(1, len(heads) + 1):  # following heads from any word ends at ROOT
        seen, node = set(), start
        while node:
            assert node not in seen, f"cycle through word {node}: {heads}"
            seen.add(node)
            node = heads[node - 1]
    assert all(0 < word["score"] <= 1 for word in tree)
    with pytest.raises(ValueError, match="decoding must be"):
        pipe(text, decoding="eisner")


def test_truncated_words_get_no_prediction(tmp_path):
    config = PixelM4Config.from_preset("test", image_size=(16, 16 * 9), **labelled(NER_LABELS))
    path = save_folder(PixelM4ForTokenClassification(config), tmp_path / "ner")
    PixelM4TextRenderer(max_seq_length=9).save_pretrained(path)  # only a few words fit
    pipe = pipeline("token-classification", model=str(path), trust_remote_code=True)
    text = "one two three four five six seven eight"
    words = pipe(text, ignore_labels=[])
    assert 0 < len(words) < 8
    assert [word["word"] for word in words] == text.split(" ")[: len(words)]
    PixelM4TextRenderer(max_seq_length=5).save_pretrained(path)  # narrower than the model
    pipe = pipeline("token-classification", model=str(path), trust_remote_code=True)
    assert 0 < len(pipe(text, ignore_labels=[])) < len(words)


def test_lora_target_modules(small_config):
    """The peft example of docs/interop.md: LoRA on the documented module names + the head."""
    from peft import LoraConfig, get_peft_model

    model = PixelM4ForSequenceClassification(small_config(num_labels=7))
    lora = LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=0.1,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2"],
        modules_to_save=["classifier"],
    )
    model = get_peft_model(model, lora)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    layers = model.base_model.model.config.num_hidden_layers
    assert sum("lora_A" in name for name in trainable) == 6 * layers
    assert any("classifier" in name for name in trainable)
    assert not any("patch_embeddings" in name or "layernorm" in name for name in trainable)
    pixels = torch.rand(2, 3, 16, 16 * PATCHES)
    assert model(pixel_values=pixels).logits.shape == (2, 7)


def test_encoder_from_pretraining_or_task_folder_reports_no_unexpected_keys(
    small_config, tmp_path, caplog
):
    """PixelM4Model._keys_to_ignore_on_load_unexpected: the decoder and every head's weights
    are left out silently; any other stray weight is still reported."""
    folders = {
        "pretraining": PixelM4ForPreTraining(small_config()),
        "classifier": PixelM4ForSequenceClassification(small_config(num_labels=2)),
        "cls_classifier": PixelM4ForSequenceClassification(
            small_config(num_labels=2, pooling_mode="cls")
        ),
        "tagger": PixelM4ForTokenClassification(small_config(num_labels=2)),
        "parser": PixelM4ForBiaffineParsing(small_config(num_labels=2)),
        "dozat_manning": PixelM4ForBiaffineParsing(
            small_config(num_labels=2, parser_variant="dozat_manning")
        ),
    }
    for name, model in folders.items():
        model.save_pretrained(tmp_path / name)
    caplog.clear()
    left_out = set()
    for name in folders:
        _, info = PixelM4Model.from_pretrained(tmp_path / name, output_loading_info=True)
        assert not info["unexpected_keys"] and not info["missing_keys"], name
        saved = load_file(tmp_path / name / "model.safetensors")
        left_out |= {key.split(".")[0] for key in saved if not key.startswith("vit.")}
    assert "UNEXPECTED" not in caplog.text
    assert left_out == {"decoder", "pooler", "classifier", "biaffine_arcs", "biaffine_rels",
                        "arc_dependent", "arc_head", "rel_dependent", "rel_head"}  # fmt: skip

    stray = load_file(tmp_path / "pretraining" / "model.safetensors")
    stray["decoderish.weight"] = torch.zeros(1)
    save_file(stray, tmp_path / "pretraining" / "model.safetensors", metadata={"format": "pt"})
    _, info = PixelM4Model.from_pretrained(tmp_path / "pretraining", output_loading_info=True)
    assert set(info["unexpected_keys"]) == {"decoderish.weight"}
    assert "UNEXPECTED" in caplog.text and "decoderish.weight" in caplog.text
