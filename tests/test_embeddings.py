"""PixelM4Model.embed and the custom feature-extraction pipeline (loaded from a saved folder)."""

import pytest
import torch
from transformers import pipeline

from pixel_m4.configuration_pixel_m4 import PixelM4Config
from pixel_m4.modeling_pixel_m4 import PixelM4Model
from pixel_m4.pipeline_pixel_m4 import PixelM4FeatureExtractionPipeline
from pixel_m4.tools.hub import create_hub_folder

TEXTS = ["Pixels, not tokens.", "Пікселі, а не токени.", "像素，而不是词元。", "a"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return PixelM4Model(PixelM4Config.from_preset("test")).eval()


def manual_mean(model, inputs, layer):
    """Mean over the attended patches of hidden_states[layer], written out by hand."""
    with torch.no_grad():
        states = model(**inputs, output_hidden_states=True).hidden_states[layer][:, 1:]
    mask = inputs["attention_mask"]
    return torch.stack([states[i, mask[i].bool()].mean(0) for i in range(len(mask))])


def test_embed_is_mean_over_attended_patches_of_the_chosen_layer(model, renderer):
    inputs = renderer(TEXTS, return_tensors="pt")
    inputs = {"pixel_values": inputs["pixel_values"], "attention_mask": inputs["attention_mask"]}
    raw = model.embed(TEXTS, renderer, layers=1, normalize=False, batch_size=3, show_progress=False)
    torch.testing.assert_close(raw, manual_mean(model, inputs, 1))
    several = model.embed(TEXTS, renderer, layers=[0, -1], normalize=False, show_progress=False)
    assert several.shape == (4, 2, 32)
    torch.testing.assert_close(several[:, 0], manual_mean(model, inputs, 0))
    torch.testing.assert_close(several[:, 1], manual_mean(model, inputs, 2))  # -1 = last block
    from_pixels = model.embed(pixel_values=inputs["pixel_values"], attention_mask=inputs["attention_mask"],
                              layers=1, normalize=False, show_progress=False)  # fmt: skip
    torch.testing.assert_close(from_pixels, raw)


def test_embed_normalises_and_padding_does_not_leak(model, renderer):
    unit = model.embed(TEXTS, renderer, layers=[0, 1, 2], show_progress=False)
    torch.testing.assert_close(unit.norm(dim=-1), torch.ones(4, 3))
    # Batching with a long and a short text gives the short one the same vector as alone.
    alone = model.embed(["a"], renderer, show_progress=False)
    torch.testing.assert_close(unit[3, 2], alone[0], atol=1e-5, rtol=1e-5)


def test_embed_bad_arguments(model, renderer):
    with pytest.raises(ValueError, match="layers must be"):
        model.embed(TEXTS, renderer, layers=3, show_progress=False)
    with pytest.raises(ValueError, match="layers must be"):
        model.embed(TEXTS, renderer, layers=[], show_progress=False)
    with pytest.raises(ValueError, match="needs renderer"):
        model.embed(TEXTS)
    with pytest.raises(ValueError, match="either texts"):
        model.embed()
    with pytest.raises(ValueError, match="batch_size"):
        model.embed(TEXTS, renderer, batch_size=0)
    with pytest.raises(ValueError, match="pixel_values must be"):
        model.embed(pixel_values=torch.zeros(2, 3, 16, 20))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return create_hub_folder(tmp_path_factory.mktemp("pipe") / "pixel-m4-pipeline", preset="test")


def test_pipeline_from_saved_folder_with_trust_remote_code(folder, renderer):
    extractor = pipeline("feature-extraction", model=str(folder), trust_remote_code=True)
    assert type(extractor).__name__ == "PixelM4FeatureExtractionPipeline"
    assert (
        type(extractor).__module__ != PixelM4FeatureExtractionPipeline.__module__
    )  # the folder's copy
    vectors = extractor(TEXTS[:3])
    assert len(vectors) == 3 and len(vectors[0]) == 32
    reference = (
        PixelM4Model.from_pretrained(folder).eval().embed(TEXTS[:3], renderer, show_progress=False)
    )
    torch.testing.assert_close(torch.tensor(vectors), reference, atol=1e-5, rtol=1e-5)
    # batched: full strips concatenated, then cut after the batch's longest text
    batched = extractor(TEXTS[:3], batch_size=2)
    torch.testing.assert_close(torch.tensor(batched), reference, atol=1e-5, rtol=1e-5)
    # Task inferred from config.custom_pipelines; several layers; batching; tensors.
    inferred = pipeline(model=str(folder), trust_remote_code=True)
    layered = inferred(TEXTS[:3], layers=[0, 2], normalize=False, return_tensors=True, batch_size=2)
    assert layered[0].shape == (2, 32)
    assert not torch.allclose(layered[0].norm(dim=-1), torch.ones(2))


def test_pipeline_needs_trust_remote_code_and_checks_arguments(folder):
    with pytest.raises(ValueError, match="trust_remote_code"):
        pipeline("feature-extraction", model=str(folder), trust_remote_code=False)
    extractor = pipeline("feature-extraction", model=str(folder), trust_remote_code=True)
    with pytest.raises(ValueError, match="layers must be"):
        extractor("text", layers=7)
    with pytest.raises(ValueError, match="unknown arguments"):
        extractor("text", pooling="cls")


def test_pipeline_built_locally_matches_embed(model, renderer):
    extractor = PixelM4FeatureExtractionPipeline(model=model, image_processor=renderer)
    vectors = extractor(TEXTS[:2], layers=[1, 2], return_tensors=True)
    expected = model.embed(TEXTS[:2], renderer, layers=[1, 2], show_progress=False)
    torch.testing.assert_close(torch.stack(vectors), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(TypeError, match="str inputs"):
        extractor([["nested"]])
