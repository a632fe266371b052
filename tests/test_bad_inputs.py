"""Bad input, one parametrised table per component: every case names the error type and a
piece of its message. Cases come from the hardening review (issue 14) and the earlier tests.

Components: the renderer (constructor, call, saved folders), the model (config, overrides,
inputs), the converter; the task scripts' data readers are in test_bad_rows.py.
"""

import json
import shutil

import numpy as np
import pytest
import torch

from pixel_m4.configuration_pixel_fallback import PixelFallbackConfig
from pixel_m4.configuration_pixel_m4 import PixelM4Config
from pixel_m4.modeling_pixel_m4 import PixelM4ForPreTraining, PixelM4Model
from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer, default_font_files
from pixel_m4.tools.convert import convert_pixel_checkpoint
from pixel_m4.tools.convert import main as convert_main
from pixel_m4.tools.hub import create_hub_folder

NOTO = default_font_files()[0]
STRIP = 16  # patches of the small test model (a 4 x 4 grid)
RENDERER = {"max_seq_length": 32}  # conftest's renderer


# --------------------------------------------------------------------------------- renderer
def corrupt_font(tmp_path, how: str) -> str:
    with open(NOTO, "rb") as handle:
        data = bytearray(handle.read())
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "bitflip":
        data[len(data) // 2] ^= 0x10
    elif how == "empty":
        data = bytearray()
    path = tmp_path / f"{how}.ttf"
    path.write_bytes(bytes(data))
    return str(path)


RENDERER_CONSTRUCTOR_CASES = {
    # name: (kwargs or a function of tmp_path giving kwargs, error, message)
    "unknown mode": (dict(render_mode="bigrams"), ValueError, "render_mode must be one of"),
    "font_size inf": (dict(font_size=float("inf")), ValueError, "positive finite number"),
    "font_size nan": (dict(font_size=float("nan")), ValueError, "positive finite number"),
    "font_size 0": (dict(font_size=0), ValueError, "font_size must be a positive"),
    "font_size 1e5": (dict(font_size=1e5), ValueError, "font size in pixels"),
    "font_size 1e6": (dict(font_size=1e6), ValueError, "font size in pixels"),
    "font_size tiny": (dict(font_size=0.01), ValueError, "font size in pixels"),
    "dpi negative": (dict(dpi=-120), ValueError, "dpi must be a positive"),
    "dpi string": (dict(dpi="120"), ValueError, "dpi must be a positive"),
    "pixels_per_patch 10000": (dict(pixels_per_patch=10000), ValueError, "at most 256"),
    "pixels_per_patch 0": (dict(pixels_per_patch=0), ValueError, "positive int"),
    "pixels_per_patch float": (dict(pixels_per_patch=16.0), ValueError, "positive int"),
    "max_seq_length 0": (dict(max_seq_length=0), ValueError, "max_seq_length must be"),
    "continuous strip > 32767 px": (
        dict(render_mode="continuous", max_seq_length=2100),
        ValueError,
        "at most 32766 px wide",
    ),
    "bigram uncached strip > 32767 px": (
        dict(cache_size=0, max_seq_length=2100),
        ValueError,
        "at most 32766 px wide",
    ),
    "bigram cached strip > 32767 px": (dict(max_seq_length=2100), ValueError, "at most 2047"),
    "word_bigram strip > 32767 px": (
        dict(render_mode="word_bigram", max_seq_length=1400),
        ValueError,
        "at most 1365",
    ),
    "group_graphemes 'no'": (dict(group_graphemes="no"), ValueError, "True or False"),
    "group_graphemes 1": (dict(group_graphemes=1), ValueError, "True or False"),
    "cache_size -1": (dict(cache_size=-1), ValueError, "cache_size must be an int >= 0"),
    "word_cache_size float": (dict(word_cache_size=1.5), ValueError, "word_cache_size"),
    "font_file 42": (dict(font_file=42), TypeError, "got int"),
    "font_file bytes": (dict(font_file=b"NotoSans.ttf"), TypeError, "got bytes"),
    "font_file list of bytes": (dict(font_file=[b"NotoSans.ttf"]), TypeError, "got bytes"),
    "font_file empty list": (dict(font_file=[]), ValueError, "at least one font file"),
    "font_file missing": (dict(font_file="/nonexistent.ttf"), FileNotFoundError, "does not exist"),
    "font_file directory": (dict(font_file="/tmp"), ValueError, "not a regular file"),
    "font_file /dev/null": (dict(font_file="/dev/null"), ValueError, "not a regular file"),
    "font_file /etc/passwd": (dict(font_file="/etc/passwd"), ValueError, "unknown sfnt version"),
    "font_file truncated": (
        lambda tmp: dict(font_file=corrupt_font(tmp, "truncated")),
        ValueError,
        "runs past the end of the file",
    ),
    "font_file bit-flipped": (
        lambda tmp: dict(font_file=corrupt_font(tmp, "bitflip")),
        ValueError,
        "fails its checksum",
    ),
    "font_file empty file": (
        lambda tmp: dict(font_file=corrupt_font(tmp, "empty")),
        ValueError,
        "not a valid TrueType/OpenType font",
    ),
}


@pytest.mark.parametrize("case", list(RENDERER_CONSTRUCTOR_CASES))
def test_renderer_rejects_bad_settings(case, tmp_path):
    kwargs, error, message = RENDERER_CONSTRUCTOR_CASES[case]
    kwargs = kwargs(tmp_path) if callable(kwargs) else kwargs
    with pytest.raises(error, match=message):
        PixelM4TextRenderer(**kwargs)


RENDERER_CALL_CASES = {
    # name: (args, kwargs, error, message)
    "misspelt option": ((["hi"],), dict(return_tensor="pt"), TypeError, "return_tensor"),
    "truncation option": ((["hi"],), dict(truncation=True), TypeError, "unexpected keyword"),
    "padding 'max'": ((["hi"],), dict(padding="max"), ValueError, "padding must be"),
    "return_tensors tf": ((["hi"],), dict(return_tensors="tf"), ValueError, "return_tensors"),
    "empty batch": (([],), {}, ValueError, "empty list"),
    "None text": ((None,), {}, TypeError, "must be a str"),
    "int in batch": ((["a", 3],), {}, TypeError, "got int"),
    "bytes text": ((b"hi",), {}, TypeError, "decode it first"),
    "invalid utf-8 bytes": ((b"\xff",), {}, TypeError, "not valid UTF-8"),
    "lone surrogate": ((["a\ud800b"],), {}, ValueError, "text holds a lone surrogate U\\+D800"),
    "lone surrogate in pair": ((["a"], ["\udfff"]), {}, ValueError, "text_pair holds a lone"),
    "pair length": ((["a", "b"], ["c"]), {}, ValueError, "as long as text"),
    "pair list, text str": (("a", ["c"]), {}, ValueError, "text_pair is a list"),
}


@pytest.mark.parametrize("case", list(RENDERER_CALL_CASES))
def test_renderer_call_rejects_bad_input(case, renderer):
    args, kwargs, error, message = RENDERER_CALL_CASES[case]
    with pytest.raises(error, match=message):
        renderer(*args, **kwargs)


def saved_renderer(tmp_path, edit):
    folder = tmp_path / "saved"
    PixelM4TextRenderer(font_file=NOTO, max_seq_length=32).save_pretrained(folder)
    config = json.loads((folder / "preprocessor_config.json").read_text())
    edit(folder, config)
    (folder / "preprocessor_config.json").write_text(json.dumps(config))
    return folder


def set_font(name):
    return lambda folder, config: config.update(font_file=[name])


def replace_font(how):
    def edit(folder, config):
        font = folder / config["font_file"][0]
        shutil.copyfile(corrupt_font(folder, how), font)

    return edit


SAVED_RENDERER_CASES = {
    "absolute font path": (set_font("/etc/passwd"), ValueError, "plain file names"),
    "absolute font path to a real font": (set_font(NOTO), ValueError, "plain file names"),
    "font in parent folder": (set_font("../NotoSans.ttf"), ValueError, "plain file names"),
    "font in subfolder": (set_font("fonts/NotoSans.ttf"), ValueError, "plain file names"),
    "font entry '..'": (set_font(".."), ValueError, "plain file names"),
    "font entry not a string": (set_font(42), ValueError, "plain file names"),
    "font entry empty list": (
        lambda folder, config: config.update(font_file=[]),
        ValueError,
        "a file name or a list",
    ),
    "font file missing": (
        lambda folder, config: (folder / config["font_file"][0]).unlink(),
        OSError,
        "does not appear to have a file named",
    ),
    "font file truncated": (replace_font("truncated"), ValueError, "past the end of the file"),
    "font file bit-flipped": (replace_font("bitflip"), ValueError, "fails its checksum"),
    "group_graphemes 'no'": (
        lambda folder, config: config.update(group_graphemes="no"),
        ValueError,
        "True or False",
    ),
}


@pytest.mark.parametrize("case", list(SAVED_RENDERER_CASES))
@pytest.mark.parametrize("loader", ["renderer", "AutoProcessor"])
def test_saved_renderer_rejects_bad_folders(case, loader, tmp_path):
    from transformers import AutoProcessor

    edit, error, message = SAVED_RENDERER_CASES[case]
    folder = saved_renderer(tmp_path, edit)
    load = (
        PixelM4TextRenderer.from_pretrained
        if loader == "renderer"
        else AutoProcessor.from_pretrained
    )
    kwargs = {} if loader == "renderer" else {"trust_remote_code": True}
    with pytest.raises(error, match=message):
        load(folder, **kwargs)


def test_explicit_font_file_may_point_anywhere(tmp_path):
    """Only saved configs are confined: code may name any (valid) font file."""
    folder = saved_renderer(tmp_path, lambda folder, config: None)
    renderer = PixelM4TextRenderer.from_pretrained(folder, font_file=NOTO)
    assert renderer.font_file == [NOTO]


# ------------------------------------------------------------------------------------ model
@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "m"
    create_hub_folder(folder, preset="test", image_size=(16, 16 * STRIP))
    return folder


def edited_config(folder, tmp_path, **fields):
    copy = tmp_path / "edited"
    shutil.copytree(folder, copy)
    config = json.loads((copy / "config.json").read_text())
    config.update(fields)
    (copy / "config.json").write_text(json.dumps(config))
    return copy


MODEL_LOAD_CASES = {
    # name: (override kwargs, edited config.json fields, message)
    "mask_ratio 1.5 override": ({"mask_ratio": 1.5}, {}, "mask_ratio must be in \\(0, 1\\)"),
    "mask_ratio 1.0 override": ({"mask_ratio": 1.0}, {}, "mask_ratio must be in"),
    "mask_ratio 0.0 override": ({"mask_ratio": 0.0}, {}, "mask_ratio must be in"),
    "mask_ratio -0.1 override": ({"mask_ratio": -0.1}, {}, "mask_ratio must be in"),
    "mask_ratio 1.5 in config.json": ({}, {"mask_ratio": 1.5}, "mask_ratio must be in"),
    "num_hidden_layers -1 in config.json": ({}, {"num_hidden_layers": -1}, "num_hidden_layers"),
    "num_hidden_layers 0 override": ({"num_hidden_layers": 0}, {}, "num_hidden_layers"),
    "decoder layers -1": ({}, {"decoder_num_hidden_layers": -1}, "decoder_num_hidden_layers"),
    "heads do not divide": ({"num_attention_heads": 3}, {}, "positive multiple"),
    "dropout 1.5": ({"hidden_dropout_prob": 1.5}, {}, "probability in \\[0, 1\\)"),
    "classifier_dropout -1": ({"classifier_dropout": -1.0}, {}, "classifier_dropout"),
    "masking unknown": ({"masking": "blocks"}, {}, "masking must be"),
    "span weights": ({"span_max_length": 3}, {}, "span_cumulative_weights"),
    "pooling unknown": ({"pooling_mode": "sum"}, {}, "pooling_mode"),
    "image_size not a square count": ({}, {"image_size": [16, 16 * 15]}, "must be a square"),
}


@pytest.mark.parametrize("case", list(MODEL_LOAD_CASES))
def test_model_loading_rejects_bad_config_values(case, model_folder, tmp_path):
    overrides, fields, message = MODEL_LOAD_CASES[case]
    folder = edited_config(model_folder, tmp_path, **fields) if fields else model_folder
    with pytest.raises(ValueError, match=message):
        PixelM4ForPreTraining.from_pretrained(folder, **overrides)
    with pytest.raises(ValueError, match=message):
        PixelM4Config.from_pretrained(folder, **overrides)


def test_fallback_config_overrides_are_checked():
    config = PixelFallbackConfig.from_preset("test")
    with pytest.raises(ValueError, match="num_hidden_layers must be a positive int"):
        PixelFallbackConfig.from_dict(config.to_dict(), num_hidden_layers=-1)


def pixels(batch=2, dtype=torch.float32, value=1.0):
    return torch.full((batch, 3, 16, 16 * STRIP), value, dtype=dtype)


MODEL_INPUT_CASES = {
    # name: (pixel_values, attention_mask, message)
    "numpy pixels": (np.ones((2, 3, 16, 16 * STRIP), np.float32), None, "must be a tensor"),
    "width not whole patches": (torch.ones(2, 3, 16, 16 * 9 + 3), None, "must be a tensor of"),
    "wider than the model": (torch.ones(2, 3, 16, 16 * (STRIP + 1)), None, "up to 256"),
    "3-D pixels": (torch.ones(3, 16, 16 * STRIP), None, "must be a tensor of shape"),
    "batch size 0": (pixels(batch=0), None, "batch size 0"),
    # integers are the renderer's compact format: one channel, 0-255
    "uint8 pixels, 3 channels": (
        pixels(dtype=torch.uint8, value=255),
        None,
        "\\(integers, the compact",
    ),
    "compact pixels over 255": (
        torch.full((2, 1, 16, 16 * STRIP), 300, dtype=torch.int64),
        None,
        "must lie in \\[0, 255\\]",
    ),
    "0-255 float pixels": (pixels(value=255.0), None, "must lie in \\[0, 1\\]"),
    "negative pixels (normalised)": (pixels(value=-1.0), None, "must lie in \\[0, 1\\]"),
    "numpy mask": (pixels(), np.ones((2, STRIP), np.int64), "must be a torch.Tensor"),
    "mask 0.5": (pixels(), torch.full((2, STRIP), 0.5), "only 0 \\(padding\\) and 1"),
    "mask 2": (pixels(), torch.full((2, STRIP), 2), "only 0 \\(padding\\) and 1"),
    "mask shape": (pixels(), torch.ones(2, STRIP + 1), "attention_mask must have shape"),
}


@pytest.mark.parametrize("head", ["encoder", "pretraining"])
@pytest.mark.parametrize("case", list(MODEL_INPUT_CASES))
def test_model_rejects_bad_inputs(case, head, model_folder):
    model = (PixelM4Model if head == "encoder" else PixelM4ForPreTraining).from_pretrained(
        model_folder
    )
    pixel_values, attention_mask, message = MODEL_INPUT_CASES[case]
    with pytest.raises(ValueError, match=message):
        model(pixel_values, attention_mask)


EMBED_CASES = {
    "empty list": ("with renderer", "empty list of texts"),
    "no renderer": (dict(texts=["a"]), "needs renderer"),
    "texts and pixels": (dict(texts=["a"], pixel_values=pixels()), "not both"),
    "batch_size 0": (dict(pixel_values=pixels(), batch_size=0), "batch_size must be"),
    "layer out of range": (dict(pixel_values=pixels(), layers=99), "layer"),
}


@pytest.mark.parametrize("case", list(EMBED_CASES))
def test_embed_rejects_bad_input(case, model_folder, renderer):
    kwargs, message = EMBED_CASES[case]
    if kwargs == "with renderer":
        kwargs = dict(texts=[], renderer=renderer)
    with pytest.raises(ValueError, match=message):
        PixelM4Model.from_pretrained(model_folder).embed(**kwargs)


# -------------------------------------------------------------------------------- converter
@pytest.fixture(scope="module")
def original_folder(tmp_path_factory):
    # test_convert.py's original-folder writer; tests/ is on sys.path (pytest's default import
    # mode puts each test module's folder there)
    from test_convert import write_original_folder

    return write_original_folder(tmp_path_factory.mktemp("orig") / "pixel")


def copy_of(original_folder, tmp_path, renderer_fields=None, config_fields=None):
    folder = tmp_path / "src"
    shutil.copytree(original_folder, folder)
    for name, fields in (
        ("text_renderer_config.json", renderer_fields),
        ("config.json", config_fields),
    ):
        if fields:
            data = json.loads((folder / name).read_text())
            data.update(fields)
            (folder / name).write_text(json.dumps(data))
    return folder


def stale_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "pytorch_model.bin").write_text("stale")
    return out


CONVERTER_CASES = {
    # name: (function (source, tmp_path) -> CLI argv, error, message)
    "output is the checkpoint": (
        lambda src, tmp: ["--checkpoint", str(src), "--output_dir", str(src)],
        ValueError,
        "would overwrite the checkpoint",
    ),
    "output is the checkpoint, --overwrite": (
        lambda src, tmp: ["--checkpoint", str(src), "--output_dir", str(src), "--overwrite"],
        ValueError,
        "never writes into",
    ),
    "output is the checkpoint via ..": (
        lambda src, tmp: ["--checkpoint", str(src), "--output_dir", f"{src}/../{src.name}"],
        ValueError,
        "would overwrite the checkpoint",
    ),
    "output inside the checkpoint": (
        lambda src, tmp: ["--checkpoint", str(src), "--output_dir", str(src / "converted")],
        ValueError,
        "would overwrite the checkpoint",
    ),
    "checkpoint inside the output": (
        lambda src, tmp: ["--checkpoint", str(src), "--output_dir", str(tmp), "--overwrite"],
        ValueError,
        "would overwrite the checkpoint",
    ),
    "output not empty": (
        lambda src, tmp: ["--checkpoint", str(src), "--output_dir", str(stale_output(tmp))],
        ValueError,
        "is not empty.*--overwrite",
    ),
    "output is a file": (
        lambda src, tmp: [
            "--checkpoint",
            str(src),
            "--output_dir",
            str(src / "config.json"),
        ],
        ValueError,
        "would overwrite the checkpoint",
    ),
    "checkpoint /nonexistent": (
        lambda src, tmp: ["--checkpoint", "/nonexistent", "--output_dir", str(tmp / "o")],
        FileNotFoundError,
        "'/nonexistent' does not exist",
    ),
    "checkpoint ./missing": (
        lambda src, tmp: ["--checkpoint", "./missing", "--output_dir", str(tmp / "o")],
        FileNotFoundError,
        "does not exist",
    ),
    "checkpoint a/b/c (not a repo id)": (
        lambda src, tmp: ["--checkpoint", "a/b/c", "--output_dir", str(tmp / "o")],
        FileNotFoundError,
        "does not exist",
    ),
    "checkpoint is a file": (
        lambda src, tmp: ["--checkpoint", str(src / "config.json"), "--output_dir", str(tmp / "o")],
        FileNotFoundError,
        "is not a folder",
    ),
    "font_file absolute": (
        lambda src, tmp: [
            "--checkpoint",
            str(copy_of(src, tmp, {"font_file": "/etc/passwd"})),
            "--output_dir",
            str(tmp / "o"),
        ],
        ValueError,
        "plain file names",
    ),
    "font_file ../": (
        lambda src, tmp: [
            "--checkpoint",
            str(copy_of(src, tmp, {"font_file": "../GoNotoCurrent.ttf"})),
            "--output_dir",
            str(tmp / "o"),
        ],
        ValueError,
        "plain file names",
    ),
    "font_file missing": (
        lambda src, tmp: [
            "--checkpoint",
            str(copy_of(src, tmp, {"font_file": "Missing.ttf"})),
            "--output_dir",
            str(tmp / "o"),
        ],
        FileNotFoundError,
        "Missing.ttf",
    ),
    "mask_ratio of the original ignored, bad heads": (
        lambda src, tmp: [
            "--checkpoint",
            str(copy_of(src, tmp, config_fields={"num_attention_heads": 5})),
            "--output_dir",
            str(tmp / "o"),
        ],
        ValueError,
        "positive multiple",
    ),
}


@pytest.mark.parametrize("case", list(CONVERTER_CASES))
def test_converter_rejects_bad_arguments_and_never_touches_its_source(
    case, original_folder, tmp_path
):
    argv, error, message = CONVERTER_CASES[case]
    source = tmp_path / "inside" / "pixel"
    shutil.copytree(original_folder, source)
    before = {path.name: path.read_bytes() for path in source.iterdir()}
    with pytest.raises(error, match=message):
        convert_main(argv(source, tmp_path / "inside"))
    assert {path.name: path.read_bytes() for path in source.iterdir()} == before
    assert not (tmp_path / "inside" / "o").exists()  # nothing half-written
    assert not [path for path in (tmp_path / "inside").iterdir() if path.name.startswith(".")]


def test_converter_overwrite_replaces_the_folder_as_a_whole(original_folder, tmp_path):
    out = stale_output(tmp_path)
    (out / "model.safetensors.index.json").write_text("{}")
    convert_pixel_checkpoint(original_folder, out, overwrite=True)
    names = {path.name for path in out.iterdir()}
    assert "model.safetensors" in names and "config.json" in names
    assert not names & {"pytorch_model.bin", "model.safetensors.index.json"}
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]
    # an empty folder needs no --overwrite
    empty = tmp_path / "empty"
    empty.mkdir()
    assert convert_pixel_checkpoint(original_folder, empty) == empty.resolve()


# ------------------------------------------------------------------ text wider than a strip
ZH = "我们今天在公园里散步看见了很多美丽的花朵和绿色的树木天气非常好阳光明媚孩子们在草地上玩耍" * 3
TH = "ภาษาไทยเขียนติดกันโดยไม่มีช่องว่างระหว่างคำทำให้ข้อความยาวมาก" * 4


@pytest.mark.parametrize("cache_size", [65536, 0])
@pytest.mark.parametrize("mode", ["bigram", "continuous", "word_bigram"])
@pytest.mark.parametrize(
    "text", [ZH, TH, "a" * 300_000, "hi " + ZH], ids=["zh", "th", "a", "hi+zh"]
)
def test_text_wider_than_the_strip_is_cut_not_blanked(text, mode, cache_size):
    renderer = PixelM4TextRenderer(render_mode=mode, max_seq_length=80, cache_size=cache_size)
    out = renderer.render(text)
    assert out.num_patches >= 78  # the strip is filled, not just the end patch
    assert out.overflow == 1  # the cut word is not rendered whole
    assert len(out.word_patch_spans) == len(text.split())
    assert out.word_patch_spans[-1][1] >= 77
    assert (out.pixels[:, : 16 * 8] < 255).any()  # ink at the start
    if cache_size == 0 and mode != "continuous":
        cached = PixelM4TextRenderer(render_mode=mode, max_seq_length=80).render(text)
        assert cached.pixels.tobytes() == out.pixels.tobytes()


@pytest.mark.parametrize(
    "mode, text, patches, overflow",
    [
        ("continuous", "hello " * 160_000, 527, 160_000 - 255),  # was: over 10 minutes
        ("bigram", "The cat sat. " + "\u0489" * 4100 + " end", 529, 2),  # was: broadcast crash
        ("word_bigram", "x " + "\u0489" * 4100, 529, 1),
        ("continuous", "\u0489" * 4100, 2, 0),  # the marks stack on one dotted circle
    ],
)
def test_huge_inputs_finish_with_a_full_strip(mode, text, patches, overflow):
    out = PixelM4TextRenderer(render_mode=mode).render(text)
    assert (out.num_patches, out.overflow) == (patches, overflow)
