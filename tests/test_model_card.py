"""Hub card (metadata + runnable snippets), what a push to the Hub would upload, the gradio demo."""

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard

from pixel_m4.modeling_pixel_m4 import PixelM4ForPreTraining
from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer
from pixel_m4.tools.hub import create_hub_folder, push_hub_folder, write_model_card

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return create_hub_folder(tmp_path_factory.mktemp("card") / "pixel-m4-card", preset="test")


def test_card_metadata(folder, tmp_path):
    card = ModelCard.load(folder / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "feature-extraction"
    assert {"en", "hi", "uk", "zh"} <= set(data["language"])
    assert {"pixel", "vit-mae"} <= set(data["tags"]) and data["license"] == "apache-2.0"
    # Static widget outputs: one per example, similarity of the first example to itself is 1.
    assert len(data["widget"]) == 4 and data["widget"][0]["output"]["text"].endswith("1.000")
    assert (
        "{{" not in card.text
        and "Rust, Phillip" in card.text
        and "Kesen, Ilker" in card.text
        and "Setiawan" in card.text
    )
    assert "bigram mode, 8 pt at 120 DPI, 16 px patches" in card.text
    # Fine-tuned models name their base model and data.
    write_model_card(
        tmp_path, base_model="Team-PIXEL/pixel-m4", datasets=["Davlan/sib200"], license="mit"
    )
    tuned = ModelCard.load(tmp_path / "README.md").data.to_dict()
    assert (tuned["base_model"], tuned["datasets"], tuned["license"]) == (
        "Team-PIXEL/pixel-m4",
        ["Davlan/sib200"],
        "mit",
    )
    assert "widget" not in tuned  # no model given: no made-up outputs


def test_card_snippets_run_against_the_folder(folder, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", (folder / "README.md").read_text(), re.S)
    assert len(blocks) == 4
    monkeypatch.chdir(folder.parent)  # snippets load the folder by its name, as a Hub id
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["embeddings"].shape == (3, 2, 32)
    assert namespace["image"].shape == (2, 3, 16, 16 * 529)
    assert len(namespace["vectors"]) == 2 and len(namespace["vectors"][0]) == 32
    assert "torch.Size([2, 530, 32])" in capsys.readouterr().out


EXPECTED_UPLOAD = {
    "config.json", "model.safetensors", "README.md", "preprocessor_config.json",
    "configuration_pixel_m4.py", "layers_pixel.py", "modeling_pixel_m4.py", "rendering_pixel_m4.py",
    "pipeline_pixel_m4.py",
    "NotoSans[wght].ttf", "NotoSansDevanagari[wght].ttf", "NotoSansCJK-VF.otf.ttc",
}  # fmt: skip


class FakeHub:
    """Stands in for HfApi: records what would be uploaded."""

    uploads: list = []

    def __init__(self, token=None):
        pass

    def create_repo(self, repo_id, **kwargs):
        return type("Repo", (), {"repo_id": repo_id})()

    def upload_folder(self, repo_id, folder_path, commit_message):
        folder = Path(folder_path)
        files = {p.name: p.read_bytes() for p in folder.iterdir()}
        FakeHub.uploads.append((repo_id, files))
        return f"https://huggingface.co/{repo_id}"


def test_push_hub_folder_uploads_everything_a_repo_needs(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    torch.manual_seed(0)
    model = PixelM4ForPreTraining(PixelM4ForPreTraining.config_class.from_preset("test"))
    push_hub_folder(
        model, PixelM4TextRenderer(), "someone/pixel-m4-test", base_model="Team-PIXEL/pixel-m4"
    )
    repo_id, files = FakeHub.uploads[-1]
    assert repo_id == "someone/pixel-m4-test"
    assert set(files) >= EXPECTED_UPLOAD
    config = json.loads(files["config.json"])
    assert set(config["auto_map"]) >= {"AutoConfig", "AutoModel", "AutoModelForPreTraining"}
    assert (
        config["custom_pipelines"]["feature-extraction"]["impl"]
        == "pipeline_pixel_m4.PixelM4FeatureExtractionPipeline"
    )
    card = files["README.md"].decode()
    assert (
        'from_pretrained("someone/pixel-m4-test"' in card
        and "base_model: Team-PIXEL/pixel-m4" in card
    )
    assert not [name for name in files if name.endswith((".bin", ".pkl"))]


def test_standard_push_to_hub_sends_module_files_and_fonts(monkeypatch):
    """model.push_to_hub / renderer.push_to_hub: each part carries its own code (and fonts)."""
    from transformers.utils import hub

    sent = {}

    class Repo:
        repo_id = "someone/x"

    monkeypatch.setattr(
        hub, "hf_api", lambda: type("Api", (), {"create_repo": lambda *a, **k: Repo()})()
    )
    monkeypatch.setattr(
        hub, "create_and_tag_model_card", lambda *a, **k: ModelCard("---\n---\ncard")
    )

    def record(self, working_dir, *args, **kwargs):
        sent[type(self).__name__] = set(os.listdir(working_dir))
        sent[type(self).__name__ + "/config"] = (
            json.loads(Path(working_dir, "config.json").read_text())
            if (Path(working_dir, "config.json").exists())
            else None
        )

    monkeypatch.setattr(hub.PushToHubMixin, "_upload_modified_files", record)
    model = PixelM4ForPreTraining(PixelM4ForPreTraining.config_class.from_preset("test"))
    model.push_to_hub("someone/x")
    PixelM4TextRenderer().push_to_hub("someone/x")
    assert {
        "config.json",
        "model.safetensors",
        "configuration_pixel_m4.py",
        "modeling_pixel_m4.py",
        "README.md",
    } <= (sent["PixelM4ForPreTraining"])
    assert sent["PixelM4ForPreTraining/config"]["auto_map"]["AutoModelForPreTraining"].endswith(
        "PixelM4ForPreTraining"
    )
    assert {
        "preprocessor_config.json",
        "rendering_pixel_m4.py",
        "NotoSans[wght].ttf",
        "NotoSansCJK-VF.otf.ttc",
    } <= (sent["PixelM4TextRenderer"])


# ------------------------------------------------------------------------ gradio demo
def test_app_functions_without_gradio(load_script, folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # importing gradio would fail: not needed
    app = load_script("app", monkeypatch)
    model, renderer = app.load(str(folder))
    text = "Pixels, not tokens. Language with pixels."
    num_patches = int(renderer(text)["num_patches"][0])
    rows = -(-num_patches // app.PATCHES_PER_ROW)
    size = 16 * app.SCALE
    image, summary = app.render(text, renderer)
    # cropped to the rows in use, scaled up crisply (each pixel a SCALE x SCALE block), RGB gray
    assert image.shape == (rows * size, app.PATCHES_PER_ROW * size, 3) and image.dtype == np.uint8
    assert image.min() == 0 and image.max() == 255  # black text on white
    assert (image[::3, ::3] == image[1::3, 1::3]).all()
    assert summary.startswith(f"{num_patches} patches")
    original, masked, filled, loss = app.reconstruct(text, model, renderer, 0.5)
    assert original.shape == masked.shape == filled.shape == image.shape
    cells = lambda img: img[..., 0].reshape(rows, size, -1, size).transpose(0, 2, 1, 3)  # noqa: E731
    hidden = np.all(cells(masked) == round(app.MASKED_GREY * 255), axis=(2, 3))
    assert hidden.sum() > 0 and loss > 0
    # visible patches are kept as they are; hidden ones carry the red loss overlay
    np.testing.assert_array_equal(cells(filled)[~hidden], cells(original)[~hidden])
    red = filled[..., 0].astype(int) - filled[..., 1].astype(int)
    tinted = red.reshape(rows, size, -1, size).transpose(0, 2, 1, 3).max(axis=(2, 3)) > 0
    np.testing.assert_array_equal(tinted, hidden)
    with pytest.raises(ValueError, match="mask_ratio"):
        app.reconstruct("text", model, renderer, 1.5)
    with pytest.raises(ModuleNotFoundError):
        app.build_demo(model, renderer)


def test_app_writes_a_space_folder(load_script, monkeypatch, tmp_path):
    app = load_script("app", monkeypatch)
    space = app.write_space(tmp_path / "space", "user/pixel-m4")
    assert {p.name for p in space.iterdir()} >= {"app.py", "requirements.txt", "packages.txt",
                                                 "README.md"}  # fmt: skip
    assert "gradio" in (space / "requirements.txt").read_text()
    assert "libpango-1.0-0" in (space / "packages.txt").read_text()
    assert "sdk: gradio" in (space / "README.md").read_text()
    # the Space's app loads its model by default and imports no pixel_m4 at module level
    source = (space / "app.py").read_text()
    assert "\nfrom pixel_m4" not in source and "\nimport pixel_m4" not in source
    assert (space / "model.txt").read_text().strip() == "user/pixel-m4"


def test_app_builds_gradio_blocks_without_launching(load_script, monkeypatch, folder):
    pytest.importorskip("gradio", reason="gradio is the optional 'demo' extra")
    app = load_script("app", monkeypatch)
    model, renderer = app.load(str(folder))
    demo = app.build_demo(model, renderer)
    assert type(demo).__name__ == "Blocks"
