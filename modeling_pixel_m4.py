"""PIXEL-M4: a ViT-MAE that reads text rendered as a strip of 16x16 patches.

Papers: Rust et al. 2023 (PIXEL) and Kesen et al. 2025 (PIXEL-M4, multilingual bigram rendering).
One strip of `num_patches` patches is one "sentence"; patch k sits at (row k // G, column k % G)
of a G x G grid for its fixed 2-D sin-cos position (G = 23 for 529 patches). The encoder is a
pre-LN ViT with a CLS token; pretraining hides 25% of the text patches in spans, encodes only the
visible ones and lets a small decoder reconstruct the hidden patches (MSE on normalised pixels).

Shapes used throughout: B batch, L patches in the input strip (any 1..num_patches: a batch padded
to its longest text; patch k keeps position k either way), K kept patches, D hidden size,
P patch size.
"""

import math
import random
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple
from transformers.utils.import_utils import is_tracing, torch_compilable_check
from transformers.utils.output_capturing import capture_outputs

from .configuration_pixel_m4 import PixelM4Config
from .layers_pixel import PixelAttention, PixelLayer, as_model_pixels

# ---------------------------------------------------------------------------------------------
# Pixels <-> patches, positions, masking
# ---------------------------------------------------------------------------------------------


def patchify(pixel_values: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[B, C, P, P*L] -> [B, L, P*P*C]; pixels of a patch in (row, col, channel) order."""
    batch, channels, height, width = pixel_values.shape
    patches = pixel_values.reshape(batch, channels, height, width // patch_size, patch_size)
    return patches.permute(0, 3, 2, 4, 1).reshape(batch, width // patch_size, -1)


def unpatchify(patches: torch.Tensor, patch_size: int, num_channels: int) -> torch.Tensor:
    """[B, L, P*P*C] -> [B, C, P, P*L], the inverse of `patchify`."""
    batch, length, _ = patches.shape
    pixels = patches.reshape(batch, length, patch_size, patch_size, num_channels)
    return pixels.permute(0, 4, 2, 1, 3).reshape(
        batch, num_channels, patch_size, length * patch_size
    )


def sincos_position_embedding(num_patches: int, dim: int) -> torch.Tensor:
    """[1 + L, D] fixed positions of the released checkpoints; row 0 (CLS) is zero.

    Patch k lies at column k % G and row k // G; the first half of the vector encodes the column,
    the second half the row, each as [sin(p * w), cos(p * w)] with w_i = 1 / 10000^(i / (D/4)).
    """
    grid = round(num_patches**0.5)
    index = torch.arange(num_patches, dtype=torch.float64)
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))

    def encode(position: torch.Tensor) -> torch.Tensor:
        angles = position[:, None] * omega[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    patches = torch.cat(
        [encode(index % grid), encode(torch.div(index, grid, rounding_mode="floor"))], 1
    )
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), patches]).float()


def span_mask(
    attention_mask: torch.Tensor,
    mask_ratio: float,
    cumulative_weights: list[float],
    generator: torch.Generator | None = None,
    spacing: int | str = "span",
    max_attempts: int = 100,
) -> torch.Tensor:
    """Bool [B, L]: PIXEL's span masking, as `SpanMaskingGenerator(spacing=...)` of the published
    code (pixel/models/masking.py, called by scripts/training/run_pretraining_pixel_m4.py).

    The region is each strip's attended patches n (text + the black end patch: the published
    script passes `num_text_patches + 1`; attended patches are a prefix); the budget is
    ceil(mask_ratio * n). Spans are added one at a time: a length 1..S drawn with the cumulative
    weights and a uniform start in the region; a span is kept only if no masked patch lies within
    `spacing` patches on either side of it ("span": as many as its own length) and it adds at least
    one and at most min(budget left, S) new patches. A row stops after `max_attempts` failed tries
    in a row and is topped up with uniformly drawn unmasked patches of its region, as the published
    model's `controlled_masking` does, so every row ends with exactly its budget.

    The search is sequential per row, so it runs on Python scalars (a `random.Random` seeded from
    torch's generator, hence reproducible): 1 ms per strip, faster than tensor code (see
    benchmarks/bench_masking.py).
    """
    if spacing != "span" and (
        isinstance(spacing, bool) or not isinstance(spacing, int) or spacing < 0
    ):
        raise ValueError(f"spacing must be 'span' or an int >= 0, got {spacing!r}")
    rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=generator)))
    lengths = range(1, len(cumulative_weights) + 1)
    mask = torch.zeros(attention_mask.shape, dtype=torch.bool)
    for row, region in enumerate(attention_mask.sum(1).tolist()):
        budget = math.ceil(region * mask_ratio)
        hidden = bytearray(region)
        masked = failures = 0
        while masked < budget and failures < max_attempts:
            span = rng.choices(lengths, cum_weights=cumulative_weights)[0]
            if span < region:
                left = rng.randint(0, region - span)
                space = span if spacing == "span" else spacing
                new = span - sum(hidden[left : left + span])
                if (
                    0 < new <= min(budget - masked, len(lengths))
                    and not any(hidden[max(0, left - space) : left])
                    and not any(hidden[left + span : min(left + span + space, region)])
                ):
                    hidden[left : left + span] = bytes([1]) * span
                    masked += new
                    failures = 0
                    continue
            failures += 1
        if masked < budget:
            free = [index for index, value in enumerate(hidden) if not value]
            for index in rng.sample(free, budget - masked):
                hidden[index] = 1
        if region:
            mask[row, :region] = torch.frombuffer(hidden, dtype=torch.uint8).bool()
    return mask.to(attention_mask.device)


def random_mask(
    attention_mask: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Bool [B, L]: round(mask_ratio * num_text_patches) text patches per strip, uniformly."""
    num_text = (attention_mask.sum(1, keepdim=True) - 1).clamp(min=0).cpu()
    noise = torch.rand(attention_mask.shape, generator=generator)
    positions = torch.arange(attention_mask.shape[1])[None]
    noise = noise.masked_fill(positions >= num_text, 2.0)  # never pick the end patch or padding
    rank = noise.argsort(1).argsort(1)
    return (rank < (mask_ratio * num_text).round()).to(attention_mask.device)


def split_visible_patches(patch_mask: torch.Tensor, attention_mask: torch.Tensor):
    """Which patches the encoder sees; the same number K for every strip of the batch.

    Masked patches are always removed; strips with fewer masked patches than the batch maximum
    also drop padding patches (never seen by attention anyway) so the batch stays rectangular.
    Returns `keep` [B, K] (ascending patch indices), `restore` [B, L] (undoes the reordering)
    and `removed` [B, L] (1 where the decoder must reconstruct).
    """
    # 0 = visible text / end patch, 1 = padding, 2 = masked; a stable sort keeps patch order.
    priority = patch_mask.long() * 2 + (1 - attention_mask.long()) * (~patch_mask).long()
    order = priority.argsort(dim=1, stable=True)
    # `.item()`, not int(): under torch.export K becomes a symbolic size instead of a guard; an
    # exported graph also assumes that some patch stays visible (sdpa branches on K > 0).
    num_keep = patch_mask.shape[1] - patch_mask.sum(1).max().item()
    torch._check(num_keep >= (1 if is_tracing() else 0))
    torch._check(num_keep <= patch_mask.shape[1])
    restore = order.argsort(dim=1)
    removed = (restore >= num_keep).long()
    return order[:, :num_keep], restore, removed


def pool_patches(
    hidden_states: torch.Tensor, attention_mask: torch.Tensor, mode: str
) -> torch.Tensor:
    """[B, 1+L, D] -> [B, D]: CLS vector, or mean / max over the attended patches (CLS excluded)."""
    if mode == "cls":
        return hidden_states[:, 0]
    patches, mask = hidden_states[:, 1:], attention_mask[:, 1:, None].to(hidden_states.dtype)
    if mode == "mean":
        return (patches * mask).sum(1) / mask.sum(1).clamp(min=1)
    if mode == "max":
        return patches.masked_fill(mask == 0, torch.finfo(patches.dtype).min).amax(1)
    raise ValueError(f"pooling mode must be 'mean', 'cls' or 'max', got {mode!r}")


# ---------------------------------------------------------------------------------------------
# Embeddings, pooler, MAE decoder (the transformer layer is in layers_pixel.py, shared with the
# pixel fallback)
# ---------------------------------------------------------------------------------------------


class PixelM4Embeddings(nn.Module):
    """Patch projection (a P x P, stride P convolution) + sin-cos positions + CLS.

    As the published code: the pretraining encoder (PIXELEmbeddings) keeps the positions frozen
    and has no dropout; the fine-tuning encoder (pixel/models/vit.py ViTEmbeddings) trains them
    and drops out `hidden_dropout_prob` after adding them. `config.trainable_position_embeddings`
    overrides the first.
    """

    def __init__(self, config: PixelM4Config, pretraining: bool = False):
        super().__init__()
        self.config = config
        self.patch_embeddings = nn.Conv2d(
            config.num_channels, config.hidden_size, config.patch_size, stride=config.patch_size
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        trainable = config.trainable_position_embeddings
        self.position_embeddings = nn.Parameter(
            torch.zeros(1, config.num_patches + 1, config.hidden_size),
            requires_grad=not pretraining if trainable is None else trainable,
        )
        self.dropout = nn.Dropout(0.0 if pretraining else config.hidden_dropout_prob)

    def forward(self, pixel_values: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """[B, C, P, P*L] -> [B, 1+L, D], or [B, 1+K, D] with only the patches in `keep` [B, K]."""
        dtype = self.patch_embeddings.weight.dtype
        patches = self.patch_embeddings(pixel_values.to(dtype)).flatten(2).transpose(1, 2)
        # A strip shorter than num_patches takes the first positions, as the published model's
        # PIXELEmbeddings.forward does (position_embeddings[:, 1 : 1 + L]).
        patches = patches + self.position_embeddings[:, 1 : 1 + patches.shape[1]]
        if keep is not None:
            patches = patches.gather(1, keep[..., None].expand(-1, -1, patches.shape[-1]))
        cls = (self.cls_token + self.position_embeddings[:, :1]).expand(patches.shape[0], -1, -1)
        return self.dropout(torch.cat([cls, patches], dim=1))


class PixelM4Pooler(nn.Module):
    """The ViT pooler of the published task models: dense + tanh on the CLS vector."""

    def __init__(self, config: PixelM4Config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))


class PixelM4Decoder(nn.Module):
    """MAE decoder: visible-patch encodings + mask tokens, back in patch order -> pixels."""

    def __init__(self, config: PixelM4Config):
        super().__init__()
        self.config = config
        size = config.decoder_hidden_size
        self.decoder_embed = nn.Linear(config.hidden_size, size)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, size))
        self.decoder_pos_embed = nn.Parameter(
            torch.zeros(1, config.num_patches + 1, size), requires_grad=False
        )
        self.decoder_layers = nn.ModuleList(
            PixelLayer(
                config, size, config.decoder_num_attention_heads, config.decoder_intermediate_size
            )
            for _ in range(config.decoder_num_hidden_layers)
        )
        self.decoder_norm = nn.LayerNorm(size, eps=config.decoder_layer_norm_eps)
        self.decoder_pred = nn.Linear(size, config.patch_size**2 * config.num_channels)

    def forward(self, encoded: torch.Tensor, restore: torch.Tensor, attention_mask: torch.Tensor):
        """encoded [B, 1+K, D], restore [B, L], attention_mask [B, L] -> logits [B, L, P*P*C]."""
        hidden = self.decoder_embed(encoded)
        batch, length = restore.shape
        mask_tokens = self.mask_token.to(hidden.dtype).expand(
            batch, length + 1 - hidden.shape[1], -1
        )
        patches = torch.cat([hidden[:, 1:], mask_tokens], dim=1)
        patches = patches.gather(1, restore[..., None].expand(-1, -1, hidden.shape[-1]))
        # Sliced like the encoder's, as the published PIXELDecoder.forward does.
        hidden = (
            torch.cat([hidden[:, :1], patches], dim=1) + self.decoder_pos_embed[:, : 1 + length]
        )

        with_cls = torch.cat([attention_mask.new_ones(batch, 1), attention_mask], dim=1)
        mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=hidden, attention_mask=with_cls
        )
        for layer in self.decoder_layers:
            hidden = layer(hidden, mask)
        return self.decoder_pred(self.decoder_norm(hidden))[:, 1:]


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


# Not transformers' BaseModelOutput: the pooling heads also need `attention_mask` (with CLS).
@dataclass
class PixelM4ModelOutput(ModelOutput):
    """`last_hidden_state` [B, 1+N, D] (CLS first; N = L, or K visible patches in pretraining),
    `hidden_states` (embeddings + each layer, before the final LayerNorm) and `attentions` (one
    [B, heads, 1+N, 1+N] softmax map per layer, eager attention only) when asked, and the
    `attention_mask` [B, 1+N] that goes with them (CLS included), for pooling."""

    last_hidden_state: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    attention_mask: torch.Tensor | None = None


# transformers' generic outputs have no `mask`; ViTMAEForPreTrainingOutput belongs to ViT-MAE.
@dataclass
class PixelM4ForPreTrainingOutput(ModelOutput):
    """`logits` [B, L, P*P*C] predicted patches (normalised pixels if `norm_pix_loss`), `mask`
    [B, L] (1 = hidden from the encoder), `loss` over hidden patches inside the attention mask."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class PixelM4PreTrainedModel(PreTrainedModel):
    config: PixelM4Config
    config_class = PixelM4Config
    base_model_prefix = "vit"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["PixelM4Embeddings", "PixelLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True
    # `output_hidden_states` / `output_attentions` are recorded by hooks on these modules (as
    # transformers' ViT-MAE does); only the encoder's modules are hooked, never the decoder's.
    _can_record_outputs = {"hidden_states": PixelLayer, "attentions": PixelAttention}
    # Our losses are means over the batch and never read `num_items_in_batch`; without this the
    # Trainer, seeing `**kwargs` in forward, would skip dividing by gradient_accumulation_steps.
    accepts_loss_kwargs = False

    @classmethod
    def remote_code_auto_map(cls) -> dict[str, str]:
        """auto_map for every class, so one folder serves AutoModel, AutoModelFor*, ... ("AutoModel"
        stays the encoder, defined first, unless the saved class registers it itself: a saved
        parser maps AutoModel to the parser)."""
        auto_map = {"AutoConfig": f"{PixelM4Config.__module__.rsplit('.', 1)[-1]}.PixelM4Config"}
        module = __name__.rsplit(".", 1)[-1]
        for subclass in PixelM4PreTrainedModel.__subclasses__():
            if subclass._auto_class is not None:
                auto_map.setdefault(subclass._auto_class, f"{module}.{subclass.__name__}")
        if cls._auto_class is not None:
            auto_map[cls._auto_class] = f"{module}.{cls.__name__}"
        return auto_map

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Also writes what makes the folder a complete remote-code repo: `auto_map` for every
        class and `custom_pipelines` (feature-extraction + this head's task). The pipeline module
        is imported relatively here, so transformers copies it beside the model code; this also
        covers `push_to_hub`, which saves through this method."""
        from .pipeline_pixel_m4 import add_to_config

        self.config.auto_map = type(self).remote_code_auto_map()
        add_to_config(self.config, type(self).__name__)
        return super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, PixelM4Embeddings):
            positions = sincos_position_embedding(self.config.num_patches, self.config.hidden_size)
            init.copy_(module.position_embeddings, positions[None])
            init.normal_(module.cls_token, std=self.config.initializer_range)
            weight = module.patch_embeddings.weight
            if not getattr(weight, "_is_hf_initialized", False):
                # Like a linear layer over the flattened patch (MAE), not a conv's fan-in.
                init.xavier_uniform_(weight.view(weight.shape[0], -1))
        elif isinstance(module, PixelM4Decoder):
            positions = sincos_position_embedding(
                self.config.num_patches, self.config.decoder_hidden_size
            )
            init.copy_(module.decoder_pos_embed, positions[None])
            init.normal_(module.mask_token, std=self.config.initializer_range)


class PixelM4Model(PixelM4PreTrainedModel):
    """The PIXEL-M4 encoder: rendered strip in, one vector per patch (+ CLS) out.

    `pretraining=True` builds the pretraining encoder (frozen positions, no embedding dropout);
    `add_pooling_layer=True` adds `pooler` (dense + tanh of CLS) for the heads that use it.
    """

    # Loading the encoder alone from a pretraining or task folder leaves out the decoder / head
    # on purpose: no unexpected-keys report for them (nor for the ViT pooler of the heads that
    # have one, `vit.pooler.`: a plain encoder has none).
    _keys_to_ignore_on_load_unexpected = [
        r"^decoder\.",
        r"^classifier\.",
        r"^(vit\.)?pooler\.",
        r"^(arc|rel)_(dependent|head)\.",
        r"^biaffine_(arcs|rels)\.",
    ]

    def __init__(
        self, config: PixelM4Config, pretraining: bool = False, add_pooling_layer: bool = False
    ):
        super().__init__(config)
        self.embeddings = PixelM4Embeddings(config, pretraining=pretraining)
        self.layers = nn.ModuleList(
            PixelLayer(
                config, config.hidden_size, config.num_attention_heads, config.intermediate_size
            )
            for _ in range(config.num_hidden_layers)
        )
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = PixelM4Pooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    @capture_outputs(tie_last_hidden_states=False)  # hidden_states stay before the final LayerNorm
    def forward(
        self,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
        **kwargs,
    ) -> PixelM4ModelOutput:
        """pixel_values [B, C, P, P*L]; attention_mask [B, L] (1 = text or end patch);
        keep [B, K]: encode only these patches (pretraining). `output_hidden_states`,
        `output_attentions` and `return_dict` work as in transformers' models."""
        attention_mask = check_inputs(self.config, pixel_values, attention_mask)
        pixel_values = as_model_pixels(pixel_values, self.config.num_channels)
        hidden = self.embeddings(pixel_values, keep)
        if keep is not None:
            attention_mask = attention_mask.gather(1, keep)
        attention_mask = torch.cat(
            [attention_mask.new_ones(attention_mask.shape[0], 1), attention_mask], 1
        )
        mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=hidden, attention_mask=attention_mask
        )
        for layer in self.layers:
            hidden = layer(hidden, mask, **kwargs)
        return PixelM4ModelOutput(
            last_hidden_state=self.layernorm(hidden), attention_mask=attention_mask
        )

    # ----------------------------------------------------------------------------- embeddings
    @torch.no_grad()
    def embed(
        self,
        texts: list[str] | None = None,
        renderer=None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        layers: int | list[int] = -1,
        normalize: bool = True,
        batch_size: int = 32,
        show_progress: bool = True,
    ) -> torch.Tensor:
        """Sentence embeddings: hidden states mean-pooled over the attended patches (CLS excluded).

        Give `texts` + `renderer` (a `PixelM4TextRenderer`; rendered batch by batch, padded to
        the batch's longest text) or rendered `pixel_values` [N, C, P, P*L] (+ `attention_mask`
        [N, L]; each batch is cut after its longest text). `layers` index `hidden_states`:
        0 = patch embeddings, i = output of block i (before the final LayerNorm), -1 = last block.
        Returns float32 [N, D] for one layer, [N, len(layers), D] for a list; L2-normalised per
        vector if `normalize`.
        """
        from tqdm.auto import tqdm

        if (texts is None) == (pixel_values is None):
            raise ValueError("embed() needs either texts (with renderer) or pixel_values, not both")
        if texts is not None:
            if renderer is None:
                raise ValueError("embed(texts=...) needs renderer= (a PixelM4TextRenderer)")
            texts = [texts] if isinstance(texts, str) else list(texts)
            if not texts:
                raise ValueError("embed() got an empty list of texts")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        indices = check_layers(self.config, layers)
        if pixel_values is not None:
            check_inputs(self.config, pixel_values, attention_mask)
        total = len(texts) if texts is not None else pixel_values.shape[0]
        pooled = []
        for start in tqdm(
            range(0, total, batch_size), desc="embedding", unit="batch", disable=not show_progress
        ):
            if texts is not None:
                inputs = renderer(
                    texts[start : start + batch_size],
                    return_tensors="pt",
                    padding="longest",
                    output_format="uint8",
                )
                batch_pixels, batch_mask = inputs["pixel_values"], inputs["attention_mask"]
            else:
                batch_pixels = pixel_values[start : start + batch_size]
                batch_mask = (
                    None if attention_mask is None else attention_mask[start : start + batch_size]
                )
                if batch_mask is not None:
                    batch_pixels, batch_mask = trim_to_longest(
                        batch_pixels, batch_mask, self.config.patch_size
                    )
            output = self(
                batch_pixels.to(self.device),
                None if batch_mask is None else batch_mask.to(self.device),
                output_hidden_states=True,
                return_dict=True,
            )
            vectors = mean_pooled_layers(output, indices)
            if normalize:
                vectors = nn.functional.normalize(vectors, dim=-1)
            pooled.append(vectors.cpu())
        result = torch.cat(pooled)
        return result[:, 0] if isinstance(layers, int) else result


def check_layers(config: PixelM4Config, layers) -> list[int]:
    """`layers` (an int or a list of ints indexing `hidden_states`) as a checked list."""
    num_states = config.num_hidden_layers + 1
    indices = [layers] if isinstance(layers, int) else list(layers)
    if not indices or any(
        isinstance(i, bool) or not isinstance(i, int) or not -num_states <= i < num_states
        for i in indices
    ):
        raise ValueError(
            f"layers must be an int or a non-empty list of ints in [-{num_states}, "
            f"{num_states - 1}] (0 = embeddings, {num_states - 1} = last layer), got {layers!r}"
        )
    return indices


def mean_pooled_layers(output: PixelM4ModelOutput, layers: list[int]) -> torch.Tensor:
    """[B, len(layers), D] float32: each chosen hidden state averaged over the attended patches."""
    states = [output.hidden_states[i] for i in layers]
    return torch.stack([pool_patches(h, output.attention_mask, "mean") for h in states], 1).float()


class PixelM4ForPreTraining(PixelM4PreTrainedModel):
    """Encoder + MAE decoder with span masking of text patches (the PIXEL-M4 objective)."""

    def __init__(self, config: PixelM4Config):
        super().__init__(config)
        self.vit = PixelM4Model(config, pretraining=True)
        self.decoder = PixelM4Decoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.vit.get_input_embeddings()

    def sample_patch_mask(
        self, attention_mask: torch.Tensor, generator: torch.Generator | None = None
    ):
        """Bool [B, L] of text patches to hide, per `config.masking`; draws from torch's RNG."""
        if self.config.masking == "span":
            return span_mask(
                attention_mask.cpu(),
                self.config.mask_ratio,
                self.config.span_cumulative_weights,
                generator,
                spacing=self.config.span_spacing,
            )
        return random_mask(attention_mask.cpu(), self.config.mask_ratio, generator)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        patch_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> PixelM4ForPreTrainingOutput:
        """patch_mask [B, L] (True = hide) overrides the sampled mask, e.g. to fix it for evaluation."""
        attention_mask = check_inputs(self.config, pixel_values, attention_mask)
        pixel_values = as_model_pixels(pixel_values, self.config.num_channels)
        if patch_mask is None:
            patch_mask = self.sample_patch_mask(attention_mask)
        elif patch_mask.shape != attention_mask.shape:
            raise ValueError(
                f"patch_mask must have shape {tuple(attention_mask.shape)} (batch, num_patches), "
                f"got {tuple(patch_mask.shape)}"
            )
        keep, restore, removed = split_visible_patches(
            patch_mask.bool().to(pixel_values.device), attention_mask
        )
        encoded = self.vit(pixel_values, attention_mask, keep=keep, return_dict=True, **kwargs)
        logits = self.decoder(encoded.last_hidden_state, restore, attention_mask)
        loss = self.reconstruction_loss(pixel_values, logits, removed * attention_mask)
        return PixelM4ForPreTrainingOutput(
            loss=loss,
            logits=logits,
            mask=removed,
            hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
        )

    def target_patches(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, L, P*P*C] reconstruction target: pixels, normalised per patch if `norm_pix_loss`."""
        target = patchify(pixel_values.float(), self.config.patch_size)
        if self.config.norm_pix_loss:
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        return target

    def reconstruction_loss(self, pixel_values, logits, loss_mask) -> torch.Tensor:
        """Mean over patches with loss_mask = 1 of the per-patch mean squared error (fp32)."""
        per_patch = (logits.float() - self.target_patches(pixel_values)).pow(2).mean(-1)
        return (per_patch * loss_mask).sum() / loss_mask.sum().clamp(min=1)

    def reconstruct(
        self, pixel_values: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """[B, C, P, P*L] strip with the hidden patches replaced by the model's predictions,
        de-normalised with each original patch's own statistics when `norm_pix_loss` is on."""
        pixel_values = as_model_pixels(pixel_values, self.config.num_channels)
        original = patchify(pixel_values.float(), self.config.patch_size)
        predicted = logits.float()
        if self.config.norm_pix_loss:
            mean, var = original.mean(-1, keepdim=True), original.var(-1, keepdim=True)
            predicted = predicted * (var + 1e-6) ** 0.5 + mean
        patches = torch.where(mask[..., None].bool(), predicted.clamp(0, 1), original)
        return unpatchify(patches, self.config.patch_size, self.config.num_channels)


def check_inputs(config: PixelM4Config, pixel_values, attention_mask) -> torch.Tensor:
    """Validate model inputs with errors a user can act on; returns the [B, L] attention mask.

    The strip may be narrower than the model's (a batch padded to its longest text): any whole
    number of patches from 1 to num_patches. Integer pixels are the renderer's compact format
    (uint8, one channel, 255 = white)."""
    compact = isinstance(pixel_values, torch.Tensor) and not pixel_values.is_floating_point()
    patch, channels = config.patch_size, 1 if compact else config.num_channels
    max_width = config.image_size[1]
    if (
        not isinstance(pixel_values, torch.Tensor)
        or pixel_values.dim() != 4
        or tuple(pixel_values.shape[1:3]) != (channels, patch)
        or not 0 < pixel_values.shape[3] <= max_width
        or pixel_values.shape[3] % patch
    ):
        got = (
            tuple(pixel_values.shape)
            if isinstance(pixel_values, torch.Tensor)
            else type(pixel_values).__name__
        )
        raise ValueError(
            f"pixel_values must be a tensor of shape (batch, {channels}, {patch}, width)"
            f"{' (integers, the compact format)' if compact else ''} with width "
            f"a multiple of {patch} up to {max_width} ({config.num_patches} patches), got {got}; "
            "render text with PixelM4TextRenderer (AutoProcessor) to get model inputs"
        )
    batch, length = pixel_values.shape[0], pixel_values.shape[3] // patch
    if batch == 0:
        raise ValueError("pixel_values holds no example (batch size 0)")
    # data-dependent: a ValueError in eager mode, a runtime assert in an exported graph
    if compact:
        torch_compilable_check(
            (pixel_values >= 0) & (pixel_values <= 255),
            lambda: (
                "integer pixel_values (the renderer's compact format) must lie in [0, 255] "
                f"(255 = white), got values in [{int(pixel_values.min())}, "
                f"{int(pixel_values.max())}]"
            ),
        )
    else:
        torch_compilable_check(
            (pixel_values >= 0) & (pixel_values <= 1),
            lambda: (
                "pixel_values must lie in [0, 1] (white = 1, no mean/std normalisation), got "
                f"values in [{float(pixel_values.min()):g}, {float(pixel_values.max()):g}]"
            ),
        )
    if attention_mask is None:
        return torch.ones(batch, length, dtype=torch.long, device=pixel_values.device)
    if not isinstance(attention_mask, torch.Tensor):
        raise ValueError(
            f"attention_mask must be a torch.Tensor, got {type(attention_mask).__name__}; render "
            "with return_tensors='pt'"
        )
    if tuple(attention_mask.shape) != (batch, length):
        raise ValueError(
            f"attention_mask must have shape ({batch}, {length}) (batch, patches in pixel_values), "
            f"got {tuple(attention_mask.shape)}"
        )
    torch_compilable_check(
        (attention_mask == 0) | (attention_mask == 1),
        lambda: (
            "attention_mask must hold only 0 (padding) and 1 (text or end patch), got "
            f"{sorted(set(attention_mask.flatten().tolist()) - {0, 1})[:5]}"
        ),
    )
    return attention_mask.long()


def trim_to_longest(
    pixel_values: torch.Tensor, attention_mask: torch.Tensor, patch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut a batch of strips after the last patch any of them attends to: the same outputs for
    every attended patch, with less padding to compute on (at least one patch is kept)."""
    length = max(int(attention_mask.sum(1).max()), 1)
    return pixel_values[..., : length * patch_size], attention_mask[:, :length]


PixelM4Model.register_for_auto_class("AutoModel")
PixelM4ForPreTraining.register_for_auto_class("AutoModelForPreTraining")


# ---------------------------------------------------------------------------------------------
# Task heads: sequence classification, token classification, biaffine dependency parsing
# ---------------------------------------------------------------------------------------------
# Word-level heads take `word_spans` [B, W, 2]: the (start, end_exclusive) patch span of each word,
# built by the data collator from the renderer's `word_patch_spans`. Padding words and words lost
# to truncation have an empty span (start == end); they get no vector, no loss and no head role.


def check_word_spans(word_spans: torch.Tensor, batch: int, num_patches: int) -> torch.Tensor:
    """`num_patches`: patches in the input strip (spans index into it)."""
    if not isinstance(word_spans, torch.Tensor) or word_spans.dim() != 3:
        raise ValueError(
            "word_spans must be a tensor of shape (batch, num_words, 2) holding each word's "
            "(start, end) patch span (see pixel_m4.tools.task_data.WordTaskCollator), got "
            f"{tuple(word_spans.shape) if isinstance(word_spans, torch.Tensor) else type(word_spans).__name__}"
        )
    if word_spans.shape[0] != batch or word_spans.shape[2] != 2:
        raise ValueError(
            f"word_spans must have shape ({batch}, num_words, 2), got {tuple(word_spans.shape)}"
        )
    starts, ends = word_spans[..., 0], word_spans[..., 1]
    # A ValueError in eager mode, a runtime assert in an exported graph (no data-dependent branch).
    torch_compilable_check(
        (starts >= 0) & (ends >= starts) & (ends <= num_patches),
        f"word_spans must satisfy 0 <= start <= end <= num_patches ({num_patches}) for every word",
    )
    return word_spans.long()


def word_vectors(hidden_states: torch.Tensor, word_spans: torch.Tensor, mode: str) -> torch.Tensor:
    """[B, 1+L, D] encoder output (CLS first) -> [B, W, D]: each word's `first` patch vector or the
    `mean` of its patches; zeros for words with an empty span."""
    patches = hidden_states[:, 1:]
    starts, ends = word_spans[..., 0], word_spans[..., 1]
    present = (ends > starts)[..., None].to(patches.dtype)  # [B, W, 1]
    if mode == "first":
        index = starts.clamp(max=patches.shape[1] - 1)[..., None].expand(-1, -1, patches.shape[-1])
        return patches.gather(1, index) * present
    if mode == "mean":
        positions = torch.arange(patches.shape[1], device=patches.device)
        inside = (positions >= starts[..., None]) & (positions < ends[..., None])  # [B, W, L]
        weights = inside.to(patches.dtype)
        return weights @ patches / weights.sum(-1, keepdim=True).clamp(min=1)
    raise ValueError(f"word pooling must be 'first' or 'mean', got {mode!r}")


def check_labels(
    name: str, labels: torch.Tensor, num_labels: int, word_shape: tuple | None = None
) -> None:
    """Class ids must lie in [0, num_labels) or be -100 (ignored); word-level labels must also
    have `word_shape` (batch, num_words), the shape of word_spans without its last axis."""
    if word_shape is not None and tuple(labels.shape) != tuple(word_shape):
        raise ValueError(
            f"{name} must have shape {tuple(word_shape)} (batch, num_words) like word_spans, "
            f"got {tuple(labels.shape)}"
        )
    bad = (labels != -100) & ((labels < 0) | (labels >= num_labels))
    torch_compilable_check(
        ~bad,
        lambda: (
            f"{name} must be class ids in [0, {num_labels}) or -100 (ignored), got "
            f"{sorted(set(labels[bad].tolist()))[:5]}; check the label list (config.id2label)"
        ),
    )


class PixelM4PoolingHead(nn.Module):
    """The published classification pooler (pixel/models/pooling.py,
    PoolingForSequenceClassificationHead): every patch through Linear + GELU + LayerNorm
    (eps 1e-12) + dropout, then the mean (or max) over the attended patches."""

    def __init__(self, config: PixelM4Config):
        super().__init__()
        self.linear = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.GELU()
        self.ln = nn.LayerNorm(config.hidden_size, eps=1e-12)
        self.dropout = nn.Dropout(config.head_dropout)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor, mode: str):
        """[B, 1+L, D] encoder output, [B, 1+L] mask -> [B, D] (CLS left out)."""
        patches = self.dropout(self.ln(self.activation(self.linear(hidden_states[:, 1:]))))
        with_cls = torch.cat([hidden_states[:, :1], patches], 1)  # pool_patches skips row 0
        return pool_patches(with_cls, attention_mask, mode)


class PixelM4ForSequenceClassification(PixelM4PreTrainedModel):
    """Sequence classifier as published (pixel/models/pixel/modeling_pixel.py,
    PIXELForSequenceClassification): `pooling_mode="mean"` (default) or `"max"` pools the
    patches through `pooler` (PixelM4PoolingHead); `"cls"` feeds the ViT pooler output (dense +
    tanh of CLS, `vit.pooler`) to the classifier. Then one linear layer.

    Loss as in transformers' heads, chosen by config.problem_type (inferred when unset):
    regression (MSE; num_labels == 1), single-label (cross
    entropy on int labels) or multi-label (BCE on float multi-hot labels [B, num_labels]).
    """

    def __init__(self, config: PixelM4Config):
        super().__init__(config)
        self.num_labels = config.num_labels
        # transformers picks the loss by class name; a subclass named otherwise keeps this one
        self.loss_type = "ForSequenceClassification"
        cls_pooling = config.pooling_mode == "cls"
        self.vit = PixelM4Model(config, add_pooling_layer=cls_pooling)
        self.pooler = None if cls_pooling else PixelM4PoolingHead(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        encoded = self.vit(pixel_values, attention_mask, return_dict=True, **kwargs)
        hidden = encoded.last_hidden_state
        if self.pooler is None:
            pooled = self.vit.pooler(hidden)
        else:
            pooled = self.pooler(hidden, encoded.attention_mask, self.config.pooling_mode)
        logits = self.classifier(pooled)
        loss = None if labels is None else self.classification_loss(logits, labels)
        return SequenceClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
        )

    def classification_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """transformers' ForSequenceClassification loss (problem_type as there) after checks of
        the labels, on float32 logits (and float labels for regression / multi-label, which it
        does not convert). The Trainer's `num_items_in_batch` is not passed: the loss stays the
        batch mean, as published."""
        if self.config.problem_type is None:
            if self.num_labels == 1:
                self.config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        if self.config.problem_type == "single_label_classification":
            check_labels("labels", labels, self.num_labels)
        else:
            if self.config.problem_type == "multi_label_classification" and (
                labels.shape != logits.shape
            ):
                raise ValueError(
                    f"multi-label labels must be multi-hot of shape {tuple(logits.shape)}, "
                    f"got {tuple(labels.shape)}"
                )
            labels = labels.float()
        return self.loss_function(labels=labels, pooled_logits=logits.float(), config=self.config)


class PixelM4ForTokenClassification(PixelM4PreTrainedModel):
    """One label per word from its first patch (config.word_pooling="first", the paper's choice)
    or the mean of its patches ("mean"); labels [B, W] with -100 where ignored."""

    def __init__(self, config: PixelM4Config):
        super().__init__(config)
        self.num_labels = config.num_labels
        # transformers picks the loss by class name; a subclass named otherwise keeps this one
        self.loss_type = "ForTokenClassification"
        self.vit = PixelM4Model(config)
        self.dropout = nn.Dropout(config.head_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        word_spans: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> TokenClassifierOutput:
        word_spans = check_word_spans(
            word_spans, pixel_values.shape[0], pixel_values.shape[-1] // self.config.patch_size
        )
        encoded = self.vit(pixel_values, attention_mask, return_dict=True, **kwargs)
        words = word_vectors(encoded.last_hidden_state, word_spans, self.config.word_pooling)
        logits = self.classifier(self.dropout(words))  # [B, W, num_labels]
        loss = None
        if labels is not None:
            check_labels("labels", labels, self.num_labels, word_spans.shape[:2])
            # words without patches (truncated) cannot be predicted: leave them out of the loss
            targets = labels.masked_fill(word_spans[..., 1] <= word_spans[..., 0], -100)
            # transformers' ForTokenClassification loss (float32, mean over scored words); no
            # `num_items_in_batch`: the Trainer would count the truncated words too
            loss = self.loss_function(logits=logits, labels=targets, config=self.config)
        return TokenClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
        )


class PixelM4Biaffine(nn.Module):
    """x [B, N, d], y [B, M, d] -> [B, N, M, out]: x_i^T U_o y_j with a bias unit appended to x
    (and to y if `bias_y`), so the product also holds linear terms (Dozat & Manning 2017; the
    published pixel/models/biaffine.py, weight [out, d + 1, d + bias_y], zero-initialised)."""

    def __init__(self, size: int, out_features: int, bias_y: bool):
        super().__init__()
        self.bias_y = bias_y
        self.weight = nn.Parameter(torch.zeros(out_features, size + 1, size + int(bias_y)))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x, x.new_ones(*x.shape[:-1], 1)], -1)
        if self.bias_y:
            y = torch.cat([y, y.new_ones(*y.shape[:-1], 1)], -1)
        return torch.einsum("bnx,oxy,bmy->bnmo", x, self.weight, y)


# No transformers output holds arc / relation scores and the word mask of a parser.
@dataclass
class PixelM4ParsingOutput(ModelOutput):
    """`arc_logits` [B, W, 1+W]: score of each head (0 = ROOT, j = word j) for each word (the
    dozat_manning variant gives impossible heads — padding, truncated words, the word itself —
    the dtype's minimum; the published one scores every candidate).
    `rel_logits` [B, W, 1+W, num_labels]: relation scores for every (word, head) pair.
    `word_mask` [B, W]: 1 for words that were rendered (have patches)."""

    loss: torch.Tensor | None = None
    arc_logits: torch.Tensor | None = None
    rel_logits: torch.Tensor | None = None
    word_mask: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class PixelM4ForBiaffineParsing(PixelM4PreTrainedModel):
    """Biaffine dependency parser on PIXEL-M4 (Dozat & Manning 2017; Rust et al. 2023).

    Word vectors are the mean of each word's patches (zeros for a word without patches).
    `config.parser_variant`:
    * `published` (default; pixel/models/pixel/modeling_pixel.py, PIXELForBiaffineParsing):
      dropout on the patch vectors, biaffine arc and relation scores directly on the word
      vectors, ROOT = the ViT pooler output (dense + tanh of CLS); every candidate head is
      scored (the word itself, padding and truncated words included).
    * `dozat_manning`: separate MLPs (biaffine_arc_size / biaffine_rel_size, LeakyReLU 0.1,
      dropout) give each word a dependent and a head view; the CLS vector is ROOT; impossible
      heads (padding, truncated words, the word itself) are masked out.
    Loss: cross entropy over the heads of each word + over the relations at the gold head.
    Decode with `parsing_pixel_m4.decode_trees` (`config.parser_decoding`: greedy argmax as
    published, or Chu-Liu-Edmonds with one root).
    Labels: `arc_labels` [B, W] (0 = ROOT, j = word j, 1-based) and `rel_labels` [B, W]
    (ids of config.id2label), -100 where ignored.
    """

    def __init__(self, config: PixelM4Config):
        super().__init__(config)
        self.num_labels = config.num_labels
        published = config.parser_variant == "published"
        self.vit = PixelM4Model(config, add_pooling_layer=published)
        self.dropout = nn.Dropout(config.head_dropout)
        arc_size, rel_size = config.hidden_size, config.hidden_size
        if not published:
            arc_size, rel_size = config.biaffine_arc_size, config.biaffine_rel_size

            def mlp(size: int) -> nn.Sequential:
                return nn.Sequential(
                    nn.Linear(config.hidden_size, size),
                    nn.LeakyReLU(0.1),
                    nn.Dropout(config.head_dropout),
                )

            self.arc_dependent = mlp(arc_size)
            self.arc_head = mlp(arc_size)
            self.rel_dependent = mlp(rel_size)
            self.rel_head = mlp(rel_size)
        self.biaffine_arcs = PixelM4Biaffine(arc_size, 1, bias_y=False)
        self.biaffine_rels = PixelM4Biaffine(rel_size, config.num_labels, bias_y=True)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        word_spans: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        arc_labels: torch.Tensor | None = None,
        rel_labels: torch.Tensor | None = None,
        **kwargs,
    ) -> PixelM4ParsingOutput:
        word_spans = check_word_spans(
            word_spans, pixel_values.shape[0], pixel_values.shape[-1] // self.config.patch_size
        )
        encoded = self.vit(pixel_values, attention_mask, return_dict=True, **kwargs)
        hidden = encoded.last_hidden_state
        word_mask = word_spans[..., 1] > word_spans[..., 0]  # [B, W]
        if self.vit.pooler is not None:  # published
            words = word_vectors(self.dropout(hidden), word_spans, "mean")
            nodes = torch.cat([self.vit.pooler(hidden)[:, None], words], 1)  # ROOT first
            arc_words, arc_nodes, rel_words, rel_nodes = words, nodes, words, nodes
            allowed = word_mask.new_ones(*word_mask.shape, word_mask.shape[1] + 1)
        else:
            words = word_vectors(hidden, word_spans, "mean")
            nodes = self.dropout(torch.cat([hidden[:, :1], words], 1))  # [B, 1+W, D], ROOT first
            words = nodes[:, 1:]
            arc_words, arc_nodes = self.arc_dependent(words), self.arc_head(nodes)
            rel_words, rel_nodes = self.rel_dependent(words), self.rel_head(nodes)
            head_mask = torch.cat([word_mask.new_ones(word_mask.shape[0], 1), word_mask], 1)
            positions = torch.arange(words.shape[1] + 1, device=words.device)
            not_self = positions[None, :] != positions[1:, None]  # [W, 1+W]: word i is node i+1
            allowed = head_mask[:, None, :] & not_self[None]  # [B, W, 1+W]

        arc_logits = self.biaffine_arcs(arc_words, arc_nodes)[..., 0]
        arc_logits = arc_logits.masked_fill(~allowed, torch.finfo(arc_logits.dtype).min)
        rel_logits = self.biaffine_rels(rel_words, rel_nodes)

        loss = None
        if arc_labels is not None or rel_labels is not None:
            loss = self.parsing_loss(arc_logits, rel_logits, arc_labels, rel_labels, allowed)
        return PixelM4ParsingOutput(
            loss=loss,
            arc_logits=arc_logits,
            rel_logits=rel_logits,
            word_mask=word_mask.long(),
            hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
        )

    def parsing_loss(self, arc_logits, rel_logits, arc_labels, rel_labels, allowed):
        """Mean cross entropy over scorable words (labelled, gold head a candidate); as the
        published `_get_loss`, the arc and relation means are added."""
        if arc_labels is None or rel_labels is None:
            raise ValueError("give both arc_labels and rel_labels (or neither)")
        words = arc_logits.shape[:2]
        check_labels("arc_labels", arc_labels, arc_logits.shape[2], words)
        check_labels("rel_labels", rel_labels, self.num_labels, words)
        heads = arc_labels.clamp(min=0)
        scorable = (arc_labels != -100) & allowed.gather(2, heads[..., None])[..., 0]
        arc_loss = nn.functional.cross_entropy(
            arc_logits.float()[scorable], arc_labels[scorable], reduction="sum"
        )
        index = heads[..., None, None].expand(-1, -1, 1, rel_logits.shape[-1])
        at_gold_head = rel_logits.gather(2, index)[:, :, 0]  # [B, W, num_labels]
        rel_scorable = scorable & (rel_labels != -100)
        rel_loss = nn.functional.cross_entropy(
            at_gold_head.float()[rel_scorable], rel_labels[rel_scorable], reduction="sum"
        )
        return (arc_loss + rel_loss) / scorable.sum().clamp(min=1)

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, PixelM4Biaffine):
            init.zeros_(module.weight)  # as the published Biaffine: scores start at zero


PixelM4ForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
PixelM4ForTokenClassification.register_for_auto_class("AutoModelForTokenClassification")
# transformers has no Auto class for parsing and `register_for_auto_class` only accepts existing
# ones: a saved parser's config maps "AutoModel" to the parser, so
# `AutoModel.from_pretrained(parser_folder, trust_remote_code=True)` returns the parser.
PixelM4ForBiaffineParsing.register_for_auto_class("AutoModel")

__all__ = [
    "PixelM4PreTrainedModel",
    "PixelM4Model",
    "PixelM4ForPreTraining",
    "patchify",
    "unpatchify",
    "pool_patches",
    "trim_to_longest",
    "mean_pooled_layers",
    "sincos_position_embedding",
    "span_mask",
    "random_mask",
    "PixelM4ForSequenceClassification",
    "PixelM4ForTokenClassification",
    "PixelM4ForBiaffineParsing",
    "PixelM4PoolingHead",
    "PixelM4Pooler",
    "word_vectors",
]
