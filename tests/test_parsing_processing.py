"""The shipped task modules: parsing_pixel_m4 (tree decoding, loadable from a saved parser folder
as remote code) and the one renderer loader of the scripts (tools.task_cli.load_renderer)."""

import pytest
import torch
from transformers import pipeline
from transformers.dynamic_module_utils import get_class_from_dynamic_module

from pixel_m4.configuration_pixel_m4 import PixelM4Config
from pixel_m4.modeling_pixel_m4 import PixelM4ForBiaffineParsing, PixelM4Model
from pixel_m4.parsing_pixel_m4 import decode_trees
from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer
from pixel_m4.tools.hub import PIXEL_M4_HUB_FILES
from pixel_m4.tools.task_cli import load_renderer

PATCHES = 36
TEXT = "Maria lives in Oslo ."


@pytest.fixture(scope="module")
def parser_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parser")
    config = PixelM4Config.from_preset(
        "test", image_size=(16, 16 * PATCHES), num_labels=3, biaffine_arc_size=8,
        biaffine_rel_size=4, id2label={0: "root", 1: "nsubj", 2: "obl"},
        label2id={"root": 0, "nsubj": 1, "obl": 2},
    )  # fmt: skip
    torch.manual_seed(0)
    model = PixelM4ForBiaffineParsing(config)
    for parameter in model.parameters():  # the biaffine heads start at zero: give them scores
        parameter.data.normal_(0, 0.5)
    model.eval().save_pretrained(folder)
    PixelM4TextRenderer(max_seq_length=PATCHES).save_pretrained(folder)
    return folder


def test_parsing_module_ships_with_every_folder_and_with_a_saved_parser(parser_folder):
    assert "parsing_pixel_m4.py" in PIXEL_M4_HUB_FILES
    assert (parser_folder / "parsing_pixel_m4.py").is_file()  # the pipeline's relative import


def test_folder_decode_trees_equals_the_package_one(parser_folder):
    folder_decode = get_class_from_dynamic_module(
        "parsing_pixel_m4.decode_trees", str(parser_folder)
    )
    assert folder_decode is not decode_trees  # the folder's copy, loaded as remote code
    torch.manual_seed(1)
    arc_logits, rel_logits = torch.randn(2, 5, 6), torch.randn(2, 5, 6, 3)
    word_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    for decoding in ("greedy", "mst"):
        expected = decode_trees(arc_logits, rel_logits, word_mask, decoding)
        assert torch.equal(folder_decode(arc_logits, rel_logits, word_mask, decoding), expected)
    trees = decode_trees(arc_logits, rel_logits, word_mask, "mst")
    assert (trees[1, 3:] == -100).all()  # words outside the mask get no head
    assert [(trees[row, :, 0] == 0).sum().item() for row in range(2)] == [1, 1]  # one root


def test_parsing_pipeline_gives_the_greedy_decoding(parser_folder):
    parsed = pipeline("dependency-parsing", model=str(parser_folder), trust_remote_code=True)(TEXT)
    model = PixelM4ForBiaffineParsing.from_pretrained(parser_folder).eval()
    renderer = PixelM4TextRenderer.from_pretrained(parser_folder)
    rendered = renderer(TEXT, return_tensors="pt", return_word_spans=True)
    spans = torch.tensor([rendered["word_patch_spans"][0]])
    with torch.no_grad():
        output = model(rendered["pixel_values"], spans, rendered["attention_mask"])
    decoded = decode_trees(output.arc_logits, output.rel_logits, output.word_mask)[0]
    assert [word["head"] for word in parsed] == decoded[:, 0].tolist()
    names = [model.config.id2label[int(index)] for index in decoded[:, 1]]
    assert [word["relation"] for word in parsed] == names


def test_load_renderer_for_fine_tuning_and_for_pretraining(tmp_path):
    saved = PixelM4TextRenderer(max_seq_length=PATCHES, render_mode="continuous")
    saved.save_pretrained(tmp_path / "with-renderer")
    PixelM4Model(PixelM4Config.from_preset("test")).save_pretrained(tmp_path / "weights-only")
    # fine-tuning: the saved renderer's settings at the run's (shorter) length ...
    loaded = load_renderer(str(tmp_path / "with-renderer"), 20)
    assert (loaded.render_mode, loaded.max_seq_length) == ("continuous", 20)
    # ... a folder of weights only, or no folder: a new renderer from the given settings
    for source in (str(tmp_path / "weights-only"), None):
        new = load_renderer(source, 20, render_mode="bigram")
        assert (new.render_mode, new.max_seq_length) == ("bigram", 20)
    # pretraining: the saved renderer must exist and fill the model's strip exactly
    exact = load_renderer(str(tmp_path / "with-renderer"), PATCHES, saved_length_must_match=True)
    assert exact.max_seq_length == PATCHES
    with pytest.raises(ValueError, match="strips of 36 patches but the model reads 20"):
        load_renderer(str(tmp_path / "with-renderer"), 20, saved_length_must_match=True)
    with pytest.raises(OSError):
        load_renderer(str(tmp_path / "weights-only"), 20, saved_length_must_match=True)
    with pytest.raises(ValueError, match="makes 16-px patches but the model's patch_size is 8"):
        load_renderer(None, 20, patch_size=8)
