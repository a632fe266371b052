"""What PIXEL-M4 and the pixel fallback share: the pre-LN transformer layer (attention + MLP), the
conversion of the renderer's compact pixels, and the checks of their config values.

Both modeling files (and both configuration files) import this module relatively, so a pixel
fallback Hub folder ships it instead of the whole PIXEL-M4 modeling file.
"""

from collections.abc import Callable

import torch
from torch import nn
from transformers import PreTrainedConfig
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

# ---------------------------------------------------------------------------------------------
# Pixels
# ---------------------------------------------------------------------------------------------


def as_model_pixels(pixel_values: torch.Tensor, num_channels: int) -> torch.Tensor:
    """The renderer's compact format (uint8 [B, 1, P, W], 255 = white; any integer dtype, as
    `datasets`' torch format turns uint8 into int64) -> float32 [B, C, P, W] in [0, 1] on the
    tensor's own device, exactly what `output_format="float32"` gives; float pixels pass
    through unchanged."""
    if pixel_values.is_floating_point():
        return pixel_values
    return (pixel_values.to(torch.float32) / 255).expand(-1, num_channels, -1, -1)


# ---------------------------------------------------------------------------------------------
# Transformer layer
# ---------------------------------------------------------------------------------------------


def eager_attention_forward(
    module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs
):
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # [B, heads, N, N]
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


class PixelAttention(nn.Module):
    """Multi-head self-attention through transformers' attention interface (eager, sdpa, ...)."""

    def __init__(self, config: PreTrainedConfig, hidden_size: int, num_heads: int):
        super().__init__()
        self.config = config
        self.head_dim = hidden_size // num_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=config.qkv_bias)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=config.qkv_bias)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=config.qkv_bias)
        self.o_proj = nn.Linear(hidden_size, hidden_size)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs
    ):
        batch, length, _ = hidden_states.shape
        heads_shape = (batch, length, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(heads_shape).transpose(1, 2)  # [B, heads, N, d]
        key = self.k_proj(hidden_states).view(heads_shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(heads_shape).transpose(1, 2)

        attention: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        output, weights = attention(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.config.attention_probs_dropout_prob if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        # The weights [B, heads, N, N] (None under sdpa/flash) are what `output_attentions` records.
        return self.o_proj(output.reshape(batch, length, -1)), weights


class PixelLayer(GradientCheckpointingLayer):
    """Pre-LN transformer block: PIXEL-M4's encoder and decoder (each with its own sizes) and the
    fallback encoder. The MLP's fc1 / fc2 are the layer's own attributes, not an MLP module, so
    the state-dict keys of saved models stay `layers.N.fc1...` (as in converted checkpoints)."""

    def __init__(
        self, config: PreTrainedConfig, hidden_size: int, num_heads: int, intermediate_size: int
    ):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.attention = PixelAttention(config, hidden_size, num_heads)
        self.layernorm_after = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(intermediate_size, hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs
    ):
        attended, _ = self.attention(self.layernorm_before(hidden_states), attention_mask, **kwargs)
        hidden_states = hidden_states + self.dropout(attended)
        mlp = self.fc2(self.activation(self.fc1(self.layernorm_after(hidden_states))))
        return hidden_states + self.dropout(mlp)


# ---------------------------------------------------------------------------------------------
# Config checks (PixelM4Config, PixelFallbackConfig)
# ---------------------------------------------------------------------------------------------


class CheckedConfig(PreTrainedConfig):
    """A config that checks its values (`check_values`, written by each subclass) when built and
    again after PreTrainedConfig.from_dict, which sets overrides (from_pretrained(folder,
    mask_ratio=1.5)) after construction, past __post_init__."""

    def __post_init__(self, **kwargs):
        self.check_values()
        super().__post_init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        loaded = super().from_dict(config_dict, **kwargs)  # the config or (config, unused)
        (loaded[0] if isinstance(loaded, tuple) else loaded).check_values()
        return loaded

    def check_values(self) -> None:
        raise NotImplementedError


def check_positive_ints(config, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_probabilities(config, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")


def check_heads(prefix: str, hidden_size: int, num_heads: int) -> None:
    if hidden_size <= 0 or num_heads <= 0 or hidden_size % num_heads:
        raise ValueError(
            f"{prefix}hidden_size ({hidden_size}) must be a positive multiple of "
            f"{prefix}num_attention_heads ({num_heads})"
        )


__all__ = ["PixelAttention", "PixelLayer", "as_model_pixels", "eager_attention_forward"]
