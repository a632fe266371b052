"""transformers conventions for every model class: `output_attentions`, `return_dict=False`
tuples and `torch.export` through transformers' exporter (eager == exported)."""

import pytest
import torch
from transformers.exporters.configs import DynamoConfig
from transformers.exporters.exporter_dynamo import DynamoExporter
from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput
from transformers.utils import logging

from pixel_m4.configuration_pixel_m4 import PixelM4Config
from pixel_m4.modeling_pixel_m4 import (
    PixelM4ForBiaffineParsing,
    PixelM4ForPreTraining,
    PixelM4ForSequenceClassification,
    PixelM4ForTokenClassification,
    PixelM4Model,
)

L = 16
CLASSES = [
    PixelM4Model,
    PixelM4ForPreTraining,
    PixelM4ForSequenceClassification,
    PixelM4ForTokenClassification,
    PixelM4ForBiaffineParsing,
]


def make_config(**overrides) -> PixelM4Config:
    return PixelM4Config.from_preset(
        "test", image_size=(16, 16 * L), num_labels=3, biaffine_arc_size=8, biaffine_rel_size=8,
        **overrides,
    )  # fmt: skip


def make_inputs(model_class, seed=0, masked=(2, 3, 4), lengths=(16, 6)) -> dict:
    """Two strips (one padded); a fixed patch_mask for pretraining, word spans for word heads."""
    generator = torch.Generator().manual_seed(seed)
    batch = len(lengths)
    inputs = {"pixel_values": torch.rand(batch, 3, 16, 16 * L, generator=generator)}
    inputs["attention_mask"] = (torch.arange(L)[None] < torch.tensor(lengths)[:, None]).long()
    if model_class is PixelM4ForPreTraining:
        patch_mask = torch.zeros(batch, L, dtype=torch.bool)
        patch_mask[0, list(masked)] = True
        patch_mask[1, 1] = True
        inputs["patch_mask"] = patch_mask
    if model_class in (PixelM4ForTokenClassification, PixelM4ForBiaffineParsing):
        inputs["word_spans"] = torch.tensor([[[0, 2], [2, 5], [5, 9]], [[0, 1], [1, 3], [3, 3]]])
    return inputs


def make_model(model_class, **overrides):
    torch.manual_seed(0)
    return model_class(make_config(**overrides)).eval()


def encoded_length(model_class, inputs) -> int:
    """CLS + the patches the encoder sees (pretraining drops the most-masked strip's count)."""
    if model_class is PixelM4ForPreTraining:
        return 1 + L - int(inputs["patch_mask"].sum(1).max())
    return 1 + L


# ------------------------------------------------------------------------ output_attentions


@pytest.mark.parametrize("model_class", CLASSES)
@pytest.mark.parametrize("via", ["argument", "config"])
def test_output_attentions_gives_one_softmax_map_per_layer(model_class, via):
    inputs = make_inputs(model_class)
    if via == "config":
        config = make_config()
        config.output_attentions = True  # as in transformers, this selects eager attention
        torch.manual_seed(0)
        model = model_class(config).eval()
    else:
        model = make_model(model_class, attn_implementation="eager")
        inputs["output_attentions"] = True
    with torch.no_grad():
        output = model(**inputs)
    config, n = model.config, encoded_length(model_class, inputs)
    assert len(output.attentions) == config.num_hidden_layers
    for weights in output.attentions:
        assert weights.shape == (2, config.num_attention_heads, n, n)
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    if model_class is not PixelM4ForPreTraining:
        # the second text has 6 patches: CLS + 6 keys get all the weight, padding none
        assert torch.all(output.attentions[0][1, :, :, 1 + 6 :] == 0)
        assert output.attentions[0][0].min() > 0


@pytest.mark.parametrize("model_class", [PixelM4Model, PixelM4ForSequenceClassification])
def test_attentions_absent_unless_asked_and_outputs_unchanged(model_class):
    model = make_model(model_class, attn_implementation="eager")
    inputs = make_inputs(model_class)
    with torch.no_grad():
        plain = model(**inputs)
        with_maps = model(**inputs, output_attentions=True, output_hidden_states=True)
    assert plain.attentions is None and plain.hidden_states is None
    assert len(with_maps.hidden_states) == model.config.num_hidden_layers + 1
    key = "last_hidden_state" if model_class is PixelM4Model else "logits"
    torch.testing.assert_close(plain[key], with_maps[key], rtol=0, atol=0)


def test_eager_attention_maps_match_the_encoders_own_computation():
    """Layer 0's map is softmax(q k^T / sqrt(d)) of its own projections, with padding masked."""
    model = make_model(PixelM4Model, attn_implementation="eager")
    inputs = make_inputs(PixelM4Model)
    with torch.no_grad():
        output = model(**inputs, output_attentions=True, output_hidden_states=True)
        layer = model.layers[0]
        x = layer.layernorm_before(output.hidden_states[0])
        heads = model.config.num_attention_heads

        def split(t):
            return t.view(2, 1 + L, heads, -1).transpose(1, 2)

        q, k = split(layer.attention.q_proj(x)), split(layer.attention.k_proj(x))
        scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
        keys = torch.cat([torch.ones(2, 1), inputs["attention_mask"].float()], 1)
        scores = scores.masked_fill(keys[:, None, None, :] == 0, float("-inf"))
    torch.testing.assert_close(output.attentions[0], scores.softmax(-1), rtol=1e-5, atol=1e-6)


def test_output_attentions_under_sdpa_warns_as_transformers_does():
    """sdpa computes no weights: transformers warns (and refuses it in the config); never silent."""
    model = make_model(PixelM4Model, attn_implementation="sdpa")
    sdpa_logger = logging.get_logger("transformers.integrations.sdpa_attention")
    sdpa_logger.warning_once.cache_clear()
    messages = []
    handler = type(
        "Collect", (logging.logging.Handler,), {"emit": lambda s, r: messages.append(r)}
    )()
    sdpa_logger.addHandler(handler)
    try:
        with torch.no_grad():
            output = model(**make_inputs(PixelM4Model), output_attentions=True)
    finally:
        sdpa_logger.removeHandler(handler)
    assert any("output_attentions" in record.getMessage() for record in messages)
    assert output.attentions == ()
    with pytest.raises(ValueError, match="output_attentions"):
        model.config.output_attentions = True


# ------------------------------------------------------------------------ return_dict=False


@pytest.mark.parametrize("model_class", CLASSES)
@pytest.mark.parametrize("via", ["argument", "config"])
def test_return_dict_false_returns_the_outputs_tuple(model_class, via):
    model = make_model(model_class)
    inputs = make_inputs(model_class)
    if model_class is PixelM4ForSequenceClassification:
        inputs["labels"] = torch.tensor([0, 2])
    if model_class is PixelM4ForTokenClassification:
        inputs["labels"] = torch.tensor([[0, 1, 2], [1, -100, -100]])
    with torch.no_grad():
        as_dict = model(**inputs, output_hidden_states=True)
        if via == "config":
            model.config.return_dict = False
            as_tuple = model(**inputs, output_hidden_states=True)
        else:
            as_tuple = model(**inputs, output_hidden_states=True, return_dict=False)
    assert type(as_tuple) is tuple
    expected = as_dict.to_tuple()
    assert len(as_tuple) == len(expected)
    for got, want in zip(as_tuple, expected, strict=True):
        if isinstance(want, tuple):
            for g, w in zip(got, want, strict=True):
                torch.testing.assert_close(g, w, rtol=0, atol=0)
        else:
            torch.testing.assert_close(got, want, rtol=0, atol=0)
    if model_class in (PixelM4ForSequenceClassification, PixelM4ForTokenClassification):
        loss, logits = as_tuple[:2]  # transformers' order: loss first
        assert loss.dim() == 0 and logits.shape[-1] == 3


# ------------------------------------------------------------------------ outputs and losses


@pytest.mark.parametrize(
    ("model_class", "output_class", "labels"),
    [
        (PixelM4ForSequenceClassification, SequenceClassifierOutput, torch.tensor([0, 2])),
        (
            PixelM4ForTokenClassification,
            TokenClassifierOutput,
            torch.tensor([[0, 1, 2], [1, 2, 0]]),
        ),
    ],
)
def test_classifiers_use_transformers_outputs_and_loss_function(model_class, output_class, labels):
    """As transformers' heads: the standard output class, the loss from `self.loss_function`
    (LOSS_MAPPING, replaceable), the mean cross entropy over scored labels."""
    model = make_model(model_class)
    inputs = make_inputs(model_class)
    with torch.no_grad():
        output = model(**inputs, labels=labels)
    assert type(output) is output_class
    scored = labels.clone()
    if model_class is PixelM4ForTokenClassification:
        scored[1, 2] = -100  # the empty span [3, 3): a word without patches is not scored
    expected = torch.nn.functional.cross_entropy(output.logits.flatten(0, -2), scored.flatten())
    assert torch.equal(output.loss, expected)
    # the loss is not picked by class name (transformers' default): a renamed subclass keeps it
    renamed = make_model(type("MyHead", (model_class,), {}))
    with torch.no_grad():
        assert torch.equal(renamed(**inputs, labels=labels).loss, expected)
    calls = []
    model.loss_function = lambda **kwargs: calls.append(kwargs) or torch.tensor(7.0)
    with torch.no_grad():
        assert model(**inputs, labels=labels).loss == 7.0
    assert len(calls) == 1 and calls[0]["config"] is model.config


# ------------------------------------------------------------------------ torch.export


def export(model, inputs):
    """transformers' exporter (torch.export, strict=False as its default), static shapes."""
    return DynamoExporter().export_program(model, inputs, DynamoConfig())[0].module()


def assert_same_outputs(exported_output, eager_output):
    for key, value in eager_output.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(exported_output[key], value, rtol=0, atol=1e-5)


@pytest.mark.slow  # torch.export of every class
@pytest.mark.parametrize("model_class", CLASSES)
def test_every_class_exports_and_matches_eager(model_class):
    model = make_model(model_class)
    inputs = make_inputs(model_class)
    exported = export(model, inputs)
    # other inputs of the same shape, for pretraining another mask with a different count
    other = make_inputs(model_class, seed=1, masked=(1, 5, 6, 7, 9))
    for sample in (inputs, other):
        with torch.no_grad():
            assert_same_outputs(exported(**sample), model(**sample))


@pytest.mark.slow  # torch.export
def test_exported_word_head_still_rejects_bad_spans():
    model = make_model(PixelM4ForTokenClassification)
    inputs = make_inputs(PixelM4ForTokenClassification)
    exported = export(model, inputs)
    inputs["word_spans"] = inputs["word_spans"].clone()
    inputs["word_spans"][0, 0] = torch.tensor([3, 1])  # end before start
    with pytest.raises(Exception, match="Runtime assertion|failed"):
        exported(**inputs)
    with pytest.raises(ValueError, match="0 <= start <= end"):
        model(**inputs)  # eager users keep the readable error
