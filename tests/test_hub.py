"""A saved folder is a Hub repo: a fresh process without this package loads it and reproduces outputs.
The package root is exactly the files Hub folders ship, and they import no tooling."""

import ast
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from pixel_m4.configuration_pixel_m4 import PRESETS
from pixel_m4.modeling_pixel_m4 import PixelM4ForPreTraining
from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer
from pixel_m4.tools.hub import (
    FALLBACK_HUB_FILES,
    PACKAGE_ROOT,
    PIXEL_M4_HUB_FILES,
    create_hub_folder,
    main,
)

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["Pixels, not tokens.", "नमस्ते दुनिया", "Привіт, світе!", "你好，世界"]

# Run by conftest's run_without_pixel_m4: only the folder's own code may be used.
LOAD_IN_FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    from transformers import AutoModel, AutoModelForPreTraining, AutoProcessor
    folder, out = sys.argv[1], sys.argv[2]
    renderer = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    pretraining = AutoModelForPreTraining.from_pretrained(folder, trust_remote_code=True).eval()
    inputs = renderer(json.loads(sys.argv[3]), return_tensors="pt")
    with torch.no_grad():
        hidden = model(**inputs).last_hidden_state
        logits = pretraining(**inputs, patch_mask=torch.load(sys.argv[4], weights_only=True)).logits
    np.savez(out, pixels=inputs["pixel_values"].numpy(), hidden=hidden.numpy(), logits=logits.numpy(),
             renderer=type(renderer).__module__, model=type(model).__module__)
    """
)


@pytest.fixture(scope="module")
def hub_folder(tmp_path_factory):
    return create_hub_folder(tmp_path_factory.mktemp("hub") / "pixel-m4-test", preset="test")


def test_folder_has_everything_a_hub_repo_needs(hub_folder):
    names = {p.name for p in hub_folder.iterdir()}
    expected = {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "README.md",
        "configuration_pixel_m4.py",
        "layers_pixel.py",
        "modeling_pixel_m4.py",
        "rendering_pixel_m4.py",
        "NotoSans[wght].ttf",
        "NotoSansDevanagari[wght].ttf",
        "NotoSansCJK-VF.otf.ttc",
    }
    assert expected <= names
    assert not {n for n in names if n.endswith((".bin", ".pt", ".pkl"))}
    config = json.loads((hub_folder / "config.json").read_text())
    assert config["model_type"] == "pixel_m4"
    assert config["auto_map"]["AutoConfig"] == "configuration_pixel_m4.PixelM4Config"
    assert config["auto_map"]["AutoModel"] == "modeling_pixel_m4.PixelM4Model"
    assert (
        config["auto_map"]["AutoModelForPreTraining"] == "modeling_pixel_m4.PixelM4ForPreTraining"
    )
    renderer_config = json.loads((hub_folder / "preprocessor_config.json").read_text())
    assert (
        renderer_config["auto_map"]["AutoImageProcessor"]
        == "rendering_pixel_m4.PixelM4TextRenderer"
    )
    # Fonts are referenced by file name only, so the folder is relocatable.
    assert all("/" not in name for name in renderer_config["font_file"])


def root_modules() -> set[str]:
    return {path.name for path in ROOT.glob("*.py")} - {"__init__.py"}


def test_hub_folders_ship_exactly_the_root_modules():
    assert PACKAGE_ROOT == ROOT  # the lists are checked against this checkout's root
    for files in (PIXEL_M4_HUB_FILES, FALLBACK_HUB_FILES):
        assert len(set(files)) == len(files), files
        assert set(files) <= root_modules(), set(files) - root_modules()
    shipped = set(PIXEL_M4_HUB_FILES) | set(FALLBACK_HUB_FILES)
    assert root_modules() - shipped == set(), "root modules no Hub folder ships: move to tools/"


def test_saved_folder_holds_exactly_the_listed_modules(hub_folder):
    assert {path.name for path in hub_folder.glob("*.py")} == set(PIXEL_M4_HUB_FILES)
    # (the fallback's saved folder is checked in test_fallback.py, against FALLBACK_HUB_FILES)


def imports(path: Path):
    """(line, module, level) of every import statement in `path` (level > 0: relative)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name, 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, node.module or "", node.level


def test_root_modules_import_each_other_only_relatively_and_no_tooling():
    for name in sorted(root_modules() | {"__init__.py"}):
        for line, module, level in imports(ROOT / name):
            if level:  # Hub remote code: `from .configuration_pixel_m4 import ...`, a root module
                assert level == 1 and f"{module}.py" in root_modules(), f"{name}:{line}"
            else:
                assert module.split(".")[0] not in ("pixel_m4", "tools", "tiny_causal_lm"), (
                    f"{name}:{line}"
                )


@pytest.mark.slow  # a fresh process
def test_fresh_process_without_package_reproduces_outputs_bitwise(
    hub_folder, tmp_path, run_without_pixel_m4
):
    renderer = PixelM4TextRenderer.from_pretrained(hub_folder)
    model = PixelM4ForPreTraining.from_pretrained(hub_folder).eval()
    inputs = renderer(TEXTS, return_tensors="pt")
    patch_mask = model.sample_patch_mask(inputs["attention_mask"], torch.Generator().manual_seed(0))
    torch.save(patch_mask, tmp_path / "patch_mask.pt")
    with torch.no_grad():
        hidden = model.vit(**inputs).last_hidden_state
        logits = model(**inputs, patch_mask=patch_mask).logits

    out = tmp_path / "fresh.npz"
    run_without_pixel_m4(
        LOAD_IN_FRESH_PROCESS, str(hub_folder), str(out), json.dumps(TEXTS),
        str(tmp_path / "patch_mask.pt"),
    )  # fmt: skip
    fresh = np.load(out)
    assert str(fresh["renderer"]).startswith("transformers_modules.")
    assert str(fresh["model"]).startswith("transformers_modules.")
    assert np.array_equal(fresh["pixels"], inputs["pixel_values"].numpy())
    assert np.array_equal(fresh["hidden"], hidden.numpy())
    assert np.array_equal(fresh["logits"], logits.numpy())


def test_cli_writes_folder(tmp_path, capsys):
    main(["--output_dir", str(tmp_path / "cli"), "--preset", "test", "--render_mode", "continuous"])
    assert "model.safetensors" in capsys.readouterr().out
    saved = json.loads((tmp_path / "cli" / "preprocessor_config.json").read_text())
    assert saved["render_mode"] == "continuous"


def test_cli_rejects_unknown_preset_naming_the_presets(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--output_dir", str(tmp_path / "x"), "--preset", "gigantic"])
    error = capsys.readouterr().err
    assert "invalid choice: 'gigantic'" in error
    assert "--preset {" + ",".join(sorted(PRESETS)) + "}" in error  # every preset, no other
    assert not (tmp_path / "x").exists()
