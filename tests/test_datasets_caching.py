"""`datasets` and the renderer: deterministic fingerprints (installed and remote-code class, across
processes), a second `.map` that hits the cache, and the compact pre-rendered format."""

import json
import os
import subprocess
import sys
import textwrap

import datasets
import pytest
import torch
from datasets.fingerprint import Hasher
from transformers import default_data_collator

from pixel_m4.modeling_pixel_m4 import PixelM4Model
from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer
from pixel_m4.tools.hub import create_hub_folder

TEXTS = ["Pixels, not tokens.", "नमस्ते दुनिया", "Привіт, світе!", "你好，世界"] * 3

# One process: load the renderer (installed or from the folder's remote code), pre-render a JSON
# corpus with .map into datasets' cache, print the fingerprints and whether .map recomputed.
MAP_IN_PROCESS = textwrap.dedent(
    """
    import json, sys
    kind, folder, data_file, cache_dir = sys.argv[1:5]
    if kind == "remote":
        sys.modules["pixel_m4"] = None  # only the folder's own code
        from transformers import AutoImageProcessor
        renderer = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    else:
        from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer
        renderer = PixelM4TextRenderer.from_pretrained(folder)
    import datasets
    from datasets.fingerprint import Hasher
    corpus = datasets.load_dataset("json", data_files=data_file, cache_dir=cache_dir)["train"]
    calls = []

    def render(batch):
        calls.append(1)
        return renderer(batch["text"], return_tensors="np", output_format="uint8")

    rendered = corpus.map(render, batched=True, remove_columns=["text"])
    print(json.dumps({
        "renderer": Hasher.hash(renderer),
        "map": rendered._fingerprint,
        "computed": bool(calls),
        "cache_files": [entry["filename"] for entry in rendered.cache_files],
        "module": type(renderer).__module__,
    }))
    """
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return create_hub_folder(
        tmp_path_factory.mktemp("hub") / "pixel-m4-test", preset="test", renderer_kwargs={}
    )


def run_map(kind, folder, tmp_path):
    data_file = tmp_path / "corpus.jsonl"
    if not data_file.exists():
        data_file.write_text("".join(json.dumps({"text": text}) + "\n" for text in TEXTS))
    result = subprocess.run(
        [sys.executable, "-c", MAP_IN_PROCESS, kind, str(folder), str(data_file),
         str(tmp_path / "cache")],
        check=True, capture_output=True, text=True, timeout=300,
        env={**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"),
             "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_renderer_fingerprint_is_deterministic_and_follows_settings(folder):
    renderer = PixelM4TextRenderer.from_pretrained(folder)
    again = PixelM4TextRenderer.from_pretrained(folder)
    assert Hasher.hash(renderer) == Hasher.hash(again)
    renderer("a text with an unknown glyph \U0001f600")  # per-process state: a warned flag, caches
    assert Hasher.hash(renderer) == Hasher.hash(again)
    assert Hasher.hash(renderer) != Hasher.hash(
        PixelM4TextRenderer.from_pretrained(folder, max_seq_length=30)
    )


def test_pickled_renderer_renders_identically(folder):
    import pickle

    renderer = PixelM4TextRenderer.from_pretrained(folder)
    copy = pickle.loads(pickle.dumps(renderer))
    assert copy.to_dict() == renderer.to_dict()
    assert (copy.render(TEXTS[1]).pixels == renderer.render(TEXTS[1]).pixels).all()


@pytest.mark.slow  # two fresh processes per case
@pytest.mark.parametrize("kind", ["installed", "remote"])
def test_second_map_in_a_new_process_hits_the_cache(folder, tmp_path, kind):
    first = run_map(kind, folder, tmp_path)
    second = run_map(kind, folder, tmp_path)
    if kind == "remote":
        assert first["module"].startswith("transformers_modules.")
    assert first["computed"] and not second["computed"]  # the second run loaded the cache file
    assert first["renderer"] == second["renderer"]
    assert first["map"] == second["map"]
    assert first["cache_files"] == second["cache_files"]


def test_pre_rendered_rows_are_compact_and_feed_the_model(folder, tmp_path):
    renderer = PixelM4TextRenderer.from_pretrained(folder)
    corpus = datasets.Dataset.from_dict({"text": TEXTS[:4]})

    def render(batch, output_format):
        return renderer(batch["text"], return_tensors="np", output_format=output_format)

    compact = corpus.map(render, batched=True, fn_kwargs={"output_format": "uint8"})
    full = corpus.map(render, batched=True, fn_kwargs={"output_format": "float32"})
    width = 16 * renderer.max_seq_length
    # 16 x W bytes of pixels per row, against 3 x 16 x W float32 values
    pixels_per_row = compact.data.column("pixel_values").nbytes / len(compact)
    assert pixels_per_row == pytest.approx(16 * width, rel=0.01)
    assert full.data.column("pixel_values").nbytes / len(full) == pytest.approx(
        12 * 16 * width, rel=0.01
    )
    columns = ["pixel_values", "attention_mask"]
    # the documented way: uint8 tensors through the DataLoader (the attention mask is 0/1)
    compact_rows = compact.with_format("torch", columns=columns, dtype=torch.uint8)
    compact_batch = default_data_collator([compact_rows[index] for index in range(4)])
    assert compact_batch["pixel_values"].dtype == torch.uint8
    # datasets' torch format turns every integer column into int64: the models take that too
    as_int64 = compact.with_format("torch", columns=columns)[:4]
    assert as_int64["pixel_values"].dtype == torch.int64
    full_batch = full.with_format("torch", columns=columns)[:4]
    model = PixelM4Model.from_pretrained(folder).eval()
    with torch.no_grad():
        expected = model(**full_batch).last_hidden_state
        for batch in (compact_batch, as_int64):
            got = model(**batch).last_hidden_state
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
