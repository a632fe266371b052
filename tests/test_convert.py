"""Original PIXEL / PIXEL-M4 checkpoints -> pixel_m4: conversion and key-mapping loading.

The test writes an original-format folder itself (original key names and config fields,
`torch.save` state dict, text_renderer_config.json + font) and compares the converted model with a
reference forward pass written here from the facts of the original architecture: pre-LN ViT,
exact-erf GELU, LayerNorm eps 1e-12 (decoder's final norm 1e-5), 2-D sin-cos positions, CLS first.
"""

import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from pixel_m4.modeling_pixel_m4 import PixelM4ForPreTraining, PixelM4Model
from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer, default_font_files
from pixel_m4.tools.convert import (
    ORIGINAL_KEY_MAPPING,
    convert_pixel_checkpoint,
    load_original_checkpoint,
    main,
    rename_original_key,
)

HIDDEN, LAYERS, HEADS, MLP = 32, 2, 2, 64
DEC_HIDDEN, DEC_LAYERS, DEC_HEADS, DEC_MLP = 24, 2, 3, 48
NUM_PATCHES, P = 529, 16
TEXTS = ["Pixels, not tokens.", "Language modelling with pixels", "a b"]

ORIGINAL_CONFIG = {
    "architectures": ["PIXELForPreTraining"],
    "model_type": "pixel",
    "hidden_size": HIDDEN,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "intermediate_size": MLP,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "image_size": [16, 8464],
    "patch_size": 16,
    "num_channels": 3,
    "qkv_bias": True,
    "decoder_num_attention_heads": DEC_HEADS,
    "decoder_hidden_size": DEC_HIDDEN,
    "decoder_num_hidden_layers": DEC_LAYERS,
    "decoder_intermediate_size": DEC_MLP,
    "mask_ratio": 0.25,
    "norm_pix_loss": True,
    "embedding_layernorm": False,
    "image_mode": "RGB",
    "torch_dtype": "float32",
    "transformers_version": "4.17.0",
}
ORIGINAL_RENDERER = {
    "background_color": "white",
    "dpi": 120,
    "font_color": "black",
    "font_file": "GoNotoCurrent.ttf",
    "font_size": 8,
    "max_seq_length": 529,
    "pad_size": 3,
    "pixels_per_patch": 16,
    "text_renderer_type": "PangoCairoBigramsRenderer",
}


def sincos(num_patches: int, dim: int) -> torch.Tensor:
    """[1, 1 + L, D]: zero CLS row; column (k % G) in the first half, row (k // G) in the second,
    each half [sin(p w), cos(p w)] with w_i = 1 / 10000^(i / (D/4))."""
    grid = int(math.isqrt(num_patches))
    rows = [[0.0] * dim]
    for k in range(num_patches):
        vector = []
        for position in (k % grid, k // grid):
            freqs = [1 / 10000 ** (i / (dim / 4)) for i in range(dim // 4)]
            vector += [math.sin(position * w) for w in freqs] + [
                math.cos(position * w) for w in freqs
            ]
        rows.append(vector)
    return torch.tensor(rows, dtype=torch.float32)[None]


def original_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.2, offset=0.0):
        return offset + scale * torch.randn(*shape, generator=generator)

    def block(prefix, size, mlp):
        weights = {}
        for name in ("attention.attention.query", "attention.attention.key", "attention.attention.value",
                     "attention.output.dense"):  # fmt: skip
            weights[f"{prefix}.{name}.weight"] = rand(size, size)
            weights[f"{prefix}.{name}.bias"] = rand(size)
        weights[f"{prefix}.intermediate.dense.weight"] = rand(mlp, size)
        weights[f"{prefix}.intermediate.dense.bias"] = rand(mlp)
        weights[f"{prefix}.output.dense.weight"] = rand(size, mlp)
        weights[f"{prefix}.output.dense.bias"] = rand(size)
        for norm in ("layernorm_before", "layernorm_after"):
            weights[f"{prefix}.{norm}.weight"] = rand(size, offset=1.0)
            weights[f"{prefix}.{norm}.bias"] = rand(size)
        return weights

    state = {
        "vit.embeddings.cls_token": rand(1, 1, HIDDEN),
        "vit.embeddings.position_embeddings": sincos(NUM_PATCHES, HIDDEN),
        "vit.embeddings.patch_embeddings.projection.weight": rand(HIDDEN, 3, P, P, scale=0.05),
        "vit.embeddings.patch_embeddings.projection.bias": rand(HIDDEN),
        "vit.layernorm.weight": rand(HIDDEN, offset=1.0),
        "vit.layernorm.bias": rand(HIDDEN),
        "decoder.mask_token": rand(1, 1, DEC_HIDDEN),
        "decoder.decoder_pos_embed": sincos(NUM_PATCHES, DEC_HIDDEN),
        "decoder.decoder_embed.weight": rand(DEC_HIDDEN, HIDDEN),
        "decoder.decoder_embed.bias": rand(DEC_HIDDEN),
        "decoder.decoder_norm.weight": rand(DEC_HIDDEN, offset=1.0),
        "decoder.decoder_norm.bias": rand(DEC_HIDDEN),
        "decoder.decoder_pred.weight": rand(P * P * 3, DEC_HIDDEN),
        "decoder.decoder_pred.bias": rand(P * P * 3),
    }
    for layer in range(LAYERS):
        state.update(block(f"vit.encoder.layer.{layer}", HIDDEN, MLP))
    for layer in range(DEC_LAYERS):
        state.update(block(f"decoder.decoder_layers.{layer}", DEC_HIDDEN, DEC_MLP))
    return state


def write_original_folder(folder, state=None, config=None, renderer=None):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state if state is not None else original_state_dict(), folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps(config or ORIGINAL_CONFIG))
    (folder / "text_renderer_config.json").write_text(json.dumps(renderer or ORIGINAL_RENDERER))
    # Stand-in for GoNotoCurrent.ttf (not installable here): a Noto font under that name.
    shutil.copyfile(default_font_files()[0], folder / "GoNotoCurrent.ttf")
    return folder


# ------------------------------------------------------------------------ reference forward
def reference_block(x, sd, prefix, heads, mask_add):
    def linear(h, name):
        return F.linear(h, sd[f"{prefix}.{name}.weight"], sd[f"{prefix}.{name}.bias"])

    def norm(h, name):
        return F.layer_norm(
            h, h.shape[-1:], sd[f"{prefix}.{name}.weight"], sd[f"{prefix}.{name}.bias"], 1e-12
        )

    batch, length, size = x.shape
    h = norm(x, "layernorm_before")

    def split(t):
        return t.view(batch, length, heads, size // heads).transpose(1, 2)

    q, k, v = (split(linear(h, f"attention.attention.{n}")) for n in ("query", "key", "value"))
    scores = q @ k.transpose(-1, -2) / math.sqrt(size // heads) + mask_add
    context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, size)
    x = x + linear(context, "attention.output.dense")
    h = norm(x, "layernorm_after")
    return x + linear(F.gelu(linear(h, "intermediate.dense")), "output.dense")


def additive_mask(mask_with_cls):
    return (1.0 - mask_with_cls[:, None, None, :].float()) * torch.finfo(torch.float32).min


def reference_encoder(sd, pixels, mask, visible=None):
    """-> (final-normed output [B, 1+K, D], per-block outputs); visible: [K] patch indices."""
    x = F.conv2d(pixels, sd["vit.embeddings.patch_embeddings.projection.weight"],
                 sd["vit.embeddings.patch_embeddings.projection.bias"], stride=P)  # fmt: skip
    pos = sd["vit.embeddings.position_embeddings"]
    x = x.flatten(2).transpose(1, 2) + pos[:, 1:]
    if visible is not None:
        x, mask = x[:, visible], mask[:, visible]
    cls = (sd["vit.embeddings.cls_token"] + pos[:, :1]).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], 1)
    mask_add = additive_mask(torch.cat([torch.ones_like(mask[:, :1]), mask], 1))
    states = [x]
    for layer in range(LAYERS):
        x = reference_block(x, sd, f"vit.encoder.layer.{layer}", HEADS, mask_add)
        states.append(x)
    final = F.layer_norm(x, (HIDDEN,), sd["vit.layernorm.weight"], sd["vit.layernorm.bias"], 1e-12)
    return final, states


def reference_decoder(sd, encoded, visible, mask):
    hidden = F.linear(encoded, sd["decoder.decoder_embed.weight"], sd["decoder.decoder_embed.bias"])
    batch = hidden.shape[0]
    full = sd["decoder.mask_token"].expand(batch, NUM_PATCHES, -1).clone()
    full[:, visible] = hidden[:, 1:]
    x = torch.cat([hidden[:, :1], full], 1) + sd["decoder.decoder_pos_embed"]
    mask_add = additive_mask(torch.cat([torch.ones_like(mask[:, :1]), mask], 1))
    for layer in range(DEC_LAYERS):
        x = reference_block(x, sd, f"decoder.decoder_layers.{layer}", DEC_HEADS, mask_add)
    x = F.layer_norm(
        x, (DEC_HIDDEN,), sd["decoder.decoder_norm.weight"], sd["decoder.decoder_norm.bias"], 1e-5
    )
    return F.linear(x, sd["decoder.decoder_pred.weight"], sd["decoder.decoder_pred.bias"])[:, 1:]


# ------------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def original(tmp_path_factory):
    return write_original_folder(tmp_path_factory.mktemp("orig") / "pixel-m4-original")


@pytest.fixture(scope="module")
def converted(original, tmp_path_factory):
    return convert_pixel_checkpoint(
        original, tmp_path_factory.mktemp("conv") / "pixel-m4-converted"
    )


def test_converted_folder_is_a_pixel_m4_hub_folder(converted):
    names = {p.name for p in converted.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md",
            "modeling_pixel_m4.py", "GoNotoCurrent.ttf"} <= names  # fmt: skip
    assert not {n for n in names if n.endswith(".bin")}
    config = json.loads((converted / "config.json").read_text())
    assert config["model_type"] == "pixel_m4"
    assert (
        config["auto_map"]["AutoModelForPreTraining"] == "modeling_pixel_m4.PixelM4ForPreTraining"
    )
    assert (config["hidden_size"], config["decoder_hidden_size"], config["decoder_num_attention_heads"]) == (
        HIDDEN, DEC_HIDDEN, DEC_HEADS,
    )  # fmt: skip
    renderer = json.loads((converted / "preprocessor_config.json").read_text())
    assert renderer["render_mode"] == "bigram"
    assert (renderer["font_size"], renderer["dpi"], renderer["pixels_per_patch"]) == (8, 120, 16)
    assert renderer["font_file"] == ["GoNotoCurrent.ttf"]


def test_converted_outputs_match_reference_forward(original, converted):
    sd = torch.load(original / "pytorch_model.bin", weights_only=True)
    renderer = PixelM4TextRenderer.from_pretrained(converted)
    inputs = renderer(TEXTS, return_tensors="pt")
    pixels, mask = inputs["pixel_values"], inputs["attention_mask"]
    model = PixelM4ForPreTraining.from_pretrained(converted).eval()
    with torch.no_grad():
        ours = model.vit(pixels, mask, output_hidden_states=True)
        reference, states = reference_encoder(sd, pixels, mask)
        # Hide the same 3 text patches in every strip, so all strips keep the same patches.
        patch_mask = torch.zeros_like(mask, dtype=torch.bool)
        patch_mask[:, [0, 2, 3]] = True
        logits = model(pixels, mask, patch_mask=patch_mask).logits
        visible = torch.tensor([i for i in range(NUM_PATCHES) if i not in (0, 2, 3)])
        encoded, _ = reference_encoder(sd, pixels, mask, visible)
        reference_logits = reference_decoder(sd, encoded, visible, mask)

    attended = torch.cat([torch.ones_like(mask[:, :1]), mask], 1).bool()
    diffs = {
        "last_hidden_state": (ours.last_hidden_state - reference)[attended].abs().max().item(),
        "hidden_states": max(
            (a - b)[attended].abs().max().item()
            for a, b in zip(ours.hidden_states, states, strict=True)
        ),
        "decoder_logits": (logits - reference_logits)[mask.bool()].abs().max().item(),
    }
    print(f"conversion max abs diff: {diffs}")
    assert reference.abs().max() > 0.5  # non-trivial outputs
    assert all(diff < 1e-4 for diff in diffs.values()), diffs


def test_key_mapping_loads_original_folder_directly(original, converted):
    direct = load_original_checkpoint(original)
    reference = PixelM4ForPreTraining.from_pretrained(converted)
    direct_state, reference_state = direct.state_dict(), reference.state_dict()
    assert direct_state.keys() == reference_state.keys()
    for key, tensor in reference_state.items():
        assert torch.equal(direct_state[key], tensor), key


def test_key_table_covers_every_original_name():
    renamed = {rename_original_key(key) for key in original_state_dict()}
    assert renamed == set(PixelM4ForPreTraining(PixelM4ForPreTraining.config_class(
        hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=MLP,
        decoder_hidden_size=DEC_HIDDEN, decoder_num_hidden_layers=DEC_LAYERS,
        decoder_num_attention_heads=DEC_HEADS, decoder_intermediate_size=DEC_MLP,
    )).state_dict())  # fmt: skip
    assert rename_original_key("vit.encoder.layer.11.attention.output.dense.weight") == (
        "vit.layers.11.attention.o_proj.weight"
    )
    assert (
        rename_original_key("decoder.decoder_layers.7.output.dense.bias")
        == "decoder.decoder_layers.7.fc2.bias"
    )
    assert len(ORIGINAL_KEY_MAPPING) == 14


def test_encoder_only_checkpoint_and_safetensors_and_cli(tmp_path):
    from safetensors.torch import save_file

    encoder_only = {k: v for k, v in original_state_dict(1).items() if k.startswith("vit.")}
    folder = write_original_folder(tmp_path / "encoder-only", state={})
    (folder / "pytorch_model.bin").unlink()
    save_file(encoder_only, folder / "model.safetensors")
    main(
        [
            "--checkpoint",
            str(folder),
            "--output_dir",
            str(tmp_path / "out"),
            "--render_mode",
            "continuous",
        ]
    )
    model = PixelM4Model.from_pretrained(tmp_path / "out")
    assert torch.equal(
        model.layers[1].fc1.weight, encoder_only["vit.encoder.layer.1.intermediate.dense.weight"]
    )
    assert (
        json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())["render_mode"]
        == "continuous"
    )


def test_bad_checkpoints_fail_with_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="model_type 'pixel'.*'vit_mae'"):
        convert_pixel_checkpoint(
            write_original_folder(
                tmp_path / "a", config={**ORIGINAL_CONFIG, "model_type": "vit_mae"}
            ),
            tmp_path / "o1",
        )
    head = {**original_state_dict(), "classifier.weight": torch.zeros(2, HIDDEN)}
    with pytest.raises(ValueError, match=r"not convertible: \['classifier.weight'\]"):
        convert_pixel_checkpoint(write_original_folder(tmp_path / "b", state=head), tmp_path / "o2")
    with pytest.raises(ValueError, match="text_renderer_type 'PyGameTextRenderer'"):
        convert_pixel_checkpoint(
            write_original_folder(
                tmp_path / "c",
                renderer={**ORIGINAL_RENDERER, "text_renderer_type": "PyGameTextRenderer"},
            ),
            tmp_path / "o3",
        )
    wrong_size = {**ORIGINAL_CONFIG, "hidden_size": 64, "num_attention_heads": 2}
    with pytest.raises(ValueError, match="has shape"):
        convert_pixel_checkpoint(
            write_original_folder(tmp_path / "d", config=wrong_size), tmp_path / "o4"
        )
    folder = write_original_folder(tmp_path / "e")
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin"):
        convert_pixel_checkpoint(folder, tmp_path / "o5")


# Head weights of the published fine-tuned models (pixel/models/pixel/modeling_pixel.py): names
# and shapes as their state dicts carry them, with HIDDEN = H.
PUBLISHED_HEADS = {
    "PixelM4ForSequenceClassification": {  # PIXELForSequenceClassification, mean pooling
        "pooler.linear.weight": (HIDDEN, HIDDEN),
        "pooler.linear.bias": (HIDDEN,),
        "pooler.ln.weight": (HIDDEN,),
        "pooler.ln.bias": (HIDDEN,),
        "classifier.weight": (3, HIDDEN),
        "classifier.bias": (3,),
    },
    "PixelM4ForTokenClassification": {  # PIXELForTokenClassification
        "classifier.weight": (3, HIDDEN),
        "classifier.bias": (3,),
    },
    "PixelM4ForBiaffineParsing": {  # PIXELForBiaffineParsing: ViT pooler + two Biaffine
        "vit.pooler.dense.weight": (HIDDEN, HIDDEN),
        "vit.pooler.dense.bias": (HIDDEN,),
        "biaffine_arcs.weight": (1, HIDDEN + 1, HIDDEN),
        "biaffine_rels.weight": (3, HIDDEN + 1, HIDDEN + 1),
    },
}


@pytest.mark.parametrize("class_name", sorted(PUBLISHED_HEADS))
def test_published_fine_tuned_heads_load_by_key_mapping(tmp_path, class_name):
    import pixel_m4.modeling_pixel_m4 as modeling
    from pixel_m4.tools.convert import convert_config

    generator = torch.Generator().manual_seed(0)
    state = {key: value for key, value in original_state_dict().items() if key.startswith("vit.")}
    head = {
        name: torch.randn(*shape, generator=generator)
        for name, shape in PUBLISHED_HEADS[class_name].items()
    }
    write_original_folder(tmp_path, state={**state, **head})
    config = convert_config(ORIGINAL_CONFIG)
    config.num_labels = 3
    model, info = getattr(modeling, class_name).from_pretrained(
        tmp_path, config=config, key_mapping=ORIGINAL_KEY_MAPPING, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not info["mismatched_keys"]
    loaded = model.state_dict()
    for name, tensor in head.items():
        assert torch.equal(loaded[name], tensor), name


def test_converted_config_keeps_the_checkpoints_dropout():
    from pixel_m4.tools.convert import convert_config

    config = convert_config(
        {**ORIGINAL_CONFIG, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.05}
    )
    assert (config.hidden_dropout_prob, config.attention_probs_dropout_prob) == (0.0, 0.05)
    unset = {k: v for k, v in ORIGINAL_CONFIG.items() if "dropout" not in k}
    assert convert_config(unset).hidden_dropout_prob == 0.1  # PIXELConfig's default too
