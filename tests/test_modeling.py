"""PixelM4Model / PixelM4ForPreTraining: shapes, masking spec, loss, attention backends, checkpointing."""

import itertools

import pytest
import torch

from pixel_m4.configuration_pixel_m4 import PixelM4Config
from pixel_m4.modeling_pixel_m4 import (
    PixelM4ForPreTraining,
    PixelM4Model,
    patchify,
    pool_patches,
    sincos_position_embedding,
    span_mask,
    split_visible_patches,
    unpatchify,
)

L = 529


def make_batch(lengths=(529, 120, 7), seed=0):
    """Random strips whose first `n` patches are attended (text + end patch)."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.rand(len(lengths), 3, 16, 16 * L, generator=generator)
    mask = torch.zeros(len(lengths), L, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    return pixels, mask


@pytest.fixture
def config():
    return PixelM4Config.from_preset("test")


def seeded_span_mask(config, attention, seed: int) -> torch.Tensor:
    """The published span masking at 25 %, drawn from a fixed seed."""
    weights = config.span_cumulative_weights
    return span_mask(attention, 0.25, weights, torch.Generator().manual_seed(seed))


def test_paper_defaults():
    config = PixelM4Config()
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (
        768,
        12,
        12,
    )
    assert config.intermediate_size == 3072 and config.decoder_hidden_size == 512
    assert (config.decoder_num_hidden_layers, config.decoder_num_attention_heads) == (8, 16)
    assert config.decoder_intermediate_size == 2048
    assert tuple(config.image_size) == (16, 8464) and config.num_patches == 529
    assert config.mask_ratio == 0.25 and config.span_max_length == 6 and config.norm_pix_loss
    assert config.span_spacing == "span" and config.masking == "span"
    # dropout 0.1 (PIXELConfig, Table 7); heads drop out with hidden_dropout_prob as published
    assert config.hidden_dropout_prob == config.attention_probs_dropout_prob == 0.1
    assert config.classifier_dropout is None and config.head_dropout == 0.1
    assert PixelM4Config(classifier_dropout=0.3).head_dropout == 0.3
    assert config.pooling_mode == "mean" and config.word_pooling == "first"
    assert (config.parser_variant, config.parser_decoding) == ("published", "greedy")
    assert config.trainable_position_embeddings is None


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(hidden_size=30, num_attention_heads=4), "hidden_size"),
        (dict(decoder_hidden_size=30), "decoder_hidden_size"),
        (dict(image_size=(16, 8000)), "image_size"),
        (dict(image_size=(16, 16 * 530)), "square"),
        (dict(mask_ratio=1.5), "mask_ratio"),
        (dict(masking="block"), "masking"),
        (dict(span_cumulative_weights=(0.5, 0.2, 1.0, 1.0, 1.0, 1.0)), "span_cumulative_weights"),
        (dict(pooling_mode="sum"), "pooling_mode"),
        (dict(span_spacing="wide"), "span_spacing"),
        (dict(span_spacing=-1), "span_spacing"),
        (dict(hidden_dropout_prob=1.5), "hidden_dropout_prob"),
        (dict(attention_probs_dropout_prob=-0.1), "attention_probs_dropout_prob"),
        (dict(classifier_dropout=1.0), "classifier_dropout"),
        (dict(parser_variant="mlp"), "parser_variant"),
        (dict(parser_decoding="beam"), "parser_decoding"),
    ],
)
def test_config_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PixelM4Config(**kwargs)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        PixelM4Config.from_preset("huge")


def test_patchify_order_and_inverse():
    pixels = torch.arange(2 * 3 * 16 * 32, dtype=torch.float).reshape(2, 3, 16, 32)
    patches = patchify(pixels, 16)
    assert patches.shape == (2, 2, 768)
    # (row, col, channel) with channel fastest: value at patch 1, row 2, col 5, channel 1.
    assert patches[0, 1, (2 * 16 + 5) * 3 + 1] == pixels[0, 1, 2, 16 + 5]
    assert torch.equal(unpatchify(patches, 16, 3), pixels)


def test_sincos_positions_match_grid_layout():
    positions = sincos_position_embedding(529, 8)  # D/4 = 2 frequencies: 1 and 1/100
    assert positions.shape == (530, 8) and torch.all(positions[0] == 0)
    k = 30  # row 1, column 7 on the 23 x 23 grid
    column = torch.tensor([7.0, 7 / 100])
    row = torch.tensor([1.0, 1 / 100])
    expected = torch.cat([column.sin(), column.cos(), row.sin(), row.cos()])
    torch.testing.assert_close(positions[1 + k], expected)


def masked_runs(row: torch.Tensor) -> list[tuple[int, int]]:
    """(start, length) of each run of consecutive masked patches."""
    runs, start = [], None
    for index, value in enumerate(row.tolist() + [False]):
        if value and start is None:
            start = index
        elif not value and start is not None:
            runs.append((start, index - start))
            start = None
    return runs


def test_span_mask_matches_published_generator_statistics():
    # The published SpanMaskingGenerator(6, "span", .2 .4 .6 .8 .9 1) on a full 529-patch strip,
    # 2,000 draws: mean masked-run length 2.818, no run longer than 6, 133 patches per strip.
    attention = torch.ones(500, L, dtype=torch.long)
    weights = PixelM4Config().span_cumulative_weights
    mask = span_mask(attention, 0.25, weights, torch.Generator().manual_seed(0))
    assert mask.sum(1).tolist() == [133] * 500  # ceil(0.25 * 529)
    lengths = [length for row in mask for _, length in masked_runs(row)]
    assert abs(sum(lengths) / len(lengths) - 2.818) < 0.1
    assert max(lengths) == 6
    # spacing="span": a span was placed only with as many unmasked patches on each side as its
    # length, so two neighbouring runs are at least the shorter one's length apart
    for row in mask[:50]:
        runs = masked_runs(row)
        for (start, length), (next_start, next_length) in itertools.pairwise(runs):
            assert next_start - (start + length) >= min(length, next_length)


def test_span_mask_budget_region_and_end_patch():
    _, attention = make_batch((529, 201, 41, 2, 0))
    weights = PixelM4Config().span_cumulative_weights
    generator = torch.Generator().manual_seed(0)
    end_patch_masked = False
    for _ in range(40):
        mask = span_mask(attention, 0.25, weights, generator)
        # ceil(ratio * attended patches), the end patch included in the region, padding never
        assert mask.sum(1).tolist() == [133, 51, 11, 1, 0]
        assert not (mask & ~attention.bool()).any()
        end_patch_masked |= bool(mask[2, 40])
    assert end_patch_masked, "the black end patch is part of the published masking region"


def test_span_mask_tops_up_when_spans_no_longer_fit():
    # 90% of 10 patches cannot be covered by spans kept apart: the published model masks the
    # rest uniformly (controlled_masking), so the budget is always met.
    attention = torch.zeros(3, L, dtype=torch.long)
    attention[:, :10] = 1
    weights = PixelM4Config().span_cumulative_weights
    mask = span_mask(attention, 0.9, weights, torch.Generator().manual_seed(1))
    assert mask.sum(1).tolist() == [9, 9, 9] and not mask[:, 10:].any()


def test_span_mask_spacing_option_and_determinism():
    attention = torch.ones(200, L, dtype=torch.long)
    weights = PixelM4Config().span_cumulative_weights

    def draw(spacing, seed=0):
        return span_mask(attention, 0.25, weights, torch.Generator().manual_seed(seed), spacing)

    assert torch.equal(draw("span"), draw("span"))
    assert not torch.equal(draw("span"), draw("span", seed=1))
    touching = [length for row in draw(0) for _, length in masked_runs(row)]
    assert sum(touching) / len(touching) > 3.0  # spacing 0 lets spans touch and merge
    for bad in (-1, "wide", 1.5, True):
        with pytest.raises(ValueError, match="spacing"):
            span_mask(attention[:1], 0.25, weights, spacing=bad)


def test_split_visible_patches_keeps_batch_rectangular():
    _, attention = make_batch((529, 50))
    patch_mask = torch.zeros(2, L, dtype=torch.bool)
    patch_mask[0, 10:142] = True  # 132 masked
    patch_mask[1, 3:15] = True  # 12 masked
    keep, restore, removed = split_visible_patches(patch_mask, attention)
    assert keep.shape == (2, L - 132)
    assert torch.equal(removed[0].bool(), patch_mask[0])
    # Strip 1 drops its 12 masked patches plus 120 padding patches, never a visible text patch.
    assert (removed[1].bool() & attention[1].bool()).sum() == 12
    visible = keep[1][attention[1][keep[1]].bool()]
    assert torch.all(visible.diff() > 0)
    assert torch.equal(restore.argsort(1)[:, : keep.shape[1]], keep)


def test_pretraining_forward_shapes_and_loss(config):
    model = PixelM4ForPreTraining(config)
    pixels, attention = make_batch()
    torch.manual_seed(0)
    out = model(pixels, attention, output_hidden_states=True)
    assert out.logits.shape == (3, L, 16 * 16 * 3)
    assert out.mask.shape == (3, L)
    assert torch.isfinite(out.loss)
    hidden_masked = (out.mask * attention).sum(1).tolist()
    assert hidden_masked == [133, 30, 2]  # ceil(0.25 * attended patches)
    assert len(out.hidden_states) == config.num_hidden_layers + 1
    assert out.hidden_states[0].shape == (3, 1 + L - 133, config.hidden_size)


def test_loss_counts_only_masked_attended_patches(config):
    model = PixelM4ForPreTraining(config).eval()
    pixels, attention = make_batch((60, 60))
    patch_mask = torch.zeros(2, L, dtype=torch.bool)
    patch_mask[:, :15] = True
    out = model(pixels, attention, patch_mask=patch_mask)
    target = model.target_patches(pixels)
    per_patch = (out.logits - target).pow(2).mean(-1)
    torch.testing.assert_close(out.loss, per_patch[:, :15].mean())
    assert out.mask[:, :15].all() and (out.mask * attention).sum() == 30

    def with_new_pixels(first_patch: int, last_patch: int):
        changed = pixels.clone()
        changed[..., 16 * first_patch : 16 * last_patch] = torch.rand(
            2, 3, 16, 16 * (last_patch - first_patch)
        )
        output = model(changed, attention, patch_mask=patch_mask, output_hidden_states=True)
        return changed, output

    reference = model(pixels, attention, patch_mask=patch_mask, output_hidden_states=True)
    # New pixels in the masked patches: the encoder never sees them (its outputs and so the
    # predictions stay the same); only the target moves, and the loss with it.
    changed, masked = with_new_pixels(0, 15)
    assert torch.equal(masked.hidden_states[-1], reference.hidden_states[-1])
    assert torch.equal(masked.logits, reference.logits)
    new_target = model.target_patches(changed)
    expected = (reference.logits - new_target).pow(2).mean(-1)[:, :15].mean()
    torch.testing.assert_close(masked.loss, expected)
    assert not torch.isclose(masked.loss, reference.loss)
    # New pixels in the padding: attention never reads them (only the padding's own outputs
    # change) and the loss leaves them out.
    _, padding = with_new_pixels(60, L)
    assert torch.equal(padding.logits[:, :60], reference.logits[:, :60])
    assert torch.equal(padding.loss, reference.loss)
    # New pixels in one visible patch: the encoder sees them, every prediction can change.
    _, visible = with_new_pixels(20, 21)
    assert not torch.allclose(visible.hidden_states[-1], reference.hidden_states[-1])
    assert not torch.allclose(visible.logits[:, :15], reference.logits[:, :15])


def test_norm_pix_target_is_per_patch_normalised(config):
    model = PixelM4ForPreTraining(config)
    pixels, _ = make_batch((529,))
    target = model.target_patches(pixels)
    torch.testing.assert_close(target.mean(-1), torch.zeros(1, L), atol=1e-5, rtol=0)
    torch.testing.assert_close(target.var(-1), torch.ones(1, L), atol=1e-3, rtol=0)


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_reconstruct_shows_predictions_in_pixel_space(norm_pix_loss):
    model = PixelM4ForPreTraining(PixelM4Config.from_preset("test", norm_pix_loss=norm_pix_loss))
    pixels, _ = make_batch((529,))
    mask = torch.zeros(1, L, dtype=torch.bool)
    mask[0, 5:40] = True
    # a perfect prediction (the training target, normalised per patch if norm_pix_loss) gives
    # the original strip back: reconstruct() undoes the normalisation with each patch's stats
    perfect = model.reconstruct(pixels, model.target_patches(pixels), mask)
    torch.testing.assert_close(perfect, pixels, atol=1e-5, rtol=0)
    # a wrong prediction shows in the hidden patches only
    wrong = model.reconstruct(pixels, torch.zeros(1, L, 16 * 16 * 3), mask)
    changed = (patchify(wrong, 16) != patchify(pixels, 16)).any(-1)
    assert torch.equal(changed, mask)


def test_tiny_overfit_loss_decreases(config):
    torch.manual_seed(0)
    model = PixelM4ForPreTraining(config)
    pixels, attention = make_batch((100, 80))
    patch_mask = seeded_span_mask(config, attention, seed=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = model(pixels, attention, patch_mask=patch_mask).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert all(map(torch.isfinite, map(torch.tensor, losses)))
    # Random pixels can only be memorised; a learning model halves the loss in 60 steps.
    assert losses[-1] < 0.6 * losses[0]


def test_eager_and_sdpa_agree(config):
    pixels, attention = make_batch()
    model = PixelM4Model(config).eval()
    model.set_attn_implementation("eager")
    eager = model(pixels, attention).last_hidden_state
    model.set_attn_implementation("sdpa")
    sdpa = model(pixels, attention).last_hidden_state
    torch.testing.assert_close(eager, sdpa, atol=1e-5, rtol=0)


def test_padding_does_not_change_text_encodings(config):
    model = PixelM4Model(config).eval()
    pixels, attention = make_batch((40,))
    base = model(pixels, attention).last_hidden_state[:, :41]
    noisy = pixels.clone()
    noisy[..., 16 * 40 :] = torch.rand_like(noisy[..., 16 * 40 :])
    torch.testing.assert_close(model(noisy, attention).last_hidden_state[:, :41], base)


def test_gradient_checkpointing_gives_same_gradients(config):
    torch.manual_seed(0)
    model = PixelM4ForPreTraining(config)
    pixels, attention = make_batch((200, 90))
    patch_mask = seeded_span_mask(config, attention, seed=3)

    def gradients():
        model.zero_grad()
        torch.manual_seed(0)  # the same dropout masks in both runs
        model(pixels, attention, patch_mask=patch_mask).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.train()
    plain = gradients()
    model.gradient_checkpointing_enable()
    checkpointed = gradients()
    assert plain.keys() == checkpointed.keys() and len(plain) > 10
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], msg=name)


def test_dropout_and_trainable_positions_follow_the_published_models(config):
    from pixel_m4.modeling_pixel_m4 import PixelM4ForSequenceClassification

    # pretraining (PIXELEmbeddings): frozen sin-cos positions, no embedding dropout
    pretraining = PixelM4ForPreTraining(config)
    assert not pretraining.vit.embeddings.position_embeddings.requires_grad
    assert pretraining.vit.embeddings.dropout.p == 0.0
    assert not pretraining.decoder.decoder_pos_embed.requires_grad
    # fine-tuning (the published ViT): positions trained, dropout after the embeddings
    classifier = PixelM4ForSequenceClassification(config)
    assert classifier.vit.embeddings.position_embeddings.requires_grad
    assert classifier.vit.embeddings.dropout.p == 0.1
    assert classifier.vit.layers[0].dropout.p == 0.1
    # an explicit config value wins in both
    frozen = PixelM4Config.from_preset("test", trainable_position_embeddings=False)
    assert not PixelM4ForSequenceClassification(
        frozen
    ).vit.embeddings.position_embeddings.requires_grad
    trained = PixelM4Config.from_preset("test", trainable_position_embeddings=True)
    assert PixelM4ForPreTraining(trained).vit.embeddings.position_embeddings.requires_grad
    # dropout is active in training mode only
    pixels, attention = make_batch((60,))
    classifier.train()
    first, second = (classifier(pixels, attention).logits for _ in range(2))
    assert not torch.equal(first, second)
    classifier.eval()
    assert torch.equal(classifier(pixels, attention).logits, classifier(pixels, attention).logits)


def test_bf16_autocast_forward_is_finite(config):
    model = PixelM4ForPreTraining(config)
    pixels, attention = make_batch((100,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(pixels, attention)
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.loss)


def test_pool_patches_modes():
    hidden = torch.tensor([[[9.0], [1.0], [3.0], [100.0]]])  # CLS, two text patches, padding
    mask = torch.tensor([[1, 1, 1, 0]])
    assert pool_patches(hidden, mask, "cls").item() == 9.0
    assert pool_patches(hidden, mask, "mean").item() == 2.0
    assert pool_patches(hidden, mask, "max").item() == 3.0
    with pytest.raises(ValueError, match="pooling mode"):
        pool_patches(hidden, mask, "sum")


@pytest.mark.parametrize(
    "pixels, attention, message",
    [
        (torch.rand(2, 3, 16, 808), None, "pixel_values must be a tensor of shape"),
        (torch.rand(2, 3, 16, 16 * 530), None, "pixel_values must be a tensor of shape"),
        (torch.rand(2, 3, 8, 8464), None, "pixel_values must be a tensor of shape"),
        (torch.rand(3, 16, 8464), None, "pixel_values must be a tensor of shape"),
        ([[0.0]], None, "got list"),
        (torch.rand(2, 3, 16, 8464), torch.ones(2, 500), "attention_mask must have shape"),
    ],
)
def test_model_rejects_bad_inputs(config, pixels, attention, message):
    with pytest.raises(ValueError, match=message):
        PixelM4Model(config)(pixels, attention)


def test_pretraining_rejects_bad_patch_mask(config):
    pixels, attention = make_batch((50,))
    with pytest.raises(ValueError, match="patch_mask must have shape"):
        PixelM4ForPreTraining(config)(
            pixels, attention, patch_mask=torch.zeros(1, 10, dtype=torch.bool)
        )


def test_save_load_safetensors_roundtrip(config, tmp_path):
    model = PixelM4ForPreTraining(config).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    loaded = PixelM4ForPreTraining.from_pretrained(tmp_path).eval()
    pixels, attention = make_batch((60,))
    patch_mask = seeded_span_mask(config, attention, seed=0)
    torch.testing.assert_close(
        loaded(pixels, attention, patch_mask=patch_mask).logits,
        model(pixels, attention, patch_mask=patch_mask).logits,
        atol=0,
        rtol=0,
    )
    # The fixed positions are stored and reloaded, not re-derived differently.
    assert torch.equal(
        loaded.vit.embeddings.position_embeddings, model.vit.embeddings.position_embeddings
    )


def test_gradient_accumulation_gives_the_large_batch_update(tmp_path):
    """Two accumulated batches of 2 update the weights as one batch of 4 (the losses are batch
    means, so the Trainer must divide each by gradient_accumulation_steps)."""
    from transformers import Trainer, TrainingArguments

    from pixel_m4.modeling_pixel_m4 import PixelM4ForSequenceClassification

    config = PixelM4Config.from_preset(
        "test", image_size=(16, 16 * 9), num_labels=3, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    rows = [
        {"pixel_values": torch.rand(3, 16, 144, generator=generator), "labels": label}
        for label in (0, 1, 2, 1)
    ]

    def weights_after_one_step(batch_size: int, accumulation: int) -> dict:
        torch.manual_seed(0)
        model = PixelM4ForSequenceClassification(config)
        arguments = TrainingArguments(
            output_dir=str(tmp_path / f"ga{accumulation}"), per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation, max_steps=1, learning_rate=1.0,
            optim="sgd", lr_scheduler_type="constant", max_grad_norm=0.0, report_to=[],
            save_strategy="no", disable_tqdm=True, use_cpu=True,
        )  # fmt: skip
        trainer = Trainer(model=model, args=arguments, train_dataset=rows)
        trainer.train()
        return {name: value.detach().clone() for name, value in model.named_parameters()}

    whole, accumulated = weights_after_one_step(4, 1), weights_after_one_step(2, 2)
    torch.manual_seed(0)
    start = dict(PixelM4ForSequenceClassification(config).named_parameters())
    assert not torch.equal(whole["classifier.weight"], start["classifier.weight"])  # it moved
    for name, value in whole.items():
        torch.testing.assert_close(accumulated[name], value, atol=1e-5, rtol=1e-4, msg=name)
