"""A `feature-extraction` pipeline for PIXEL-M4: text in, one sentence embedding per text out.

transformers' built-in feature-extraction pipeline expects a tokenizer; ours renders text with
`PixelM4TextRenderer` (the folder's image processor) and pools like `PixelM4Model.embed`.

It travels with a saved model through transformers' custom-pipeline mechanism: `add_to_config`
writes `custom_pipelines = {"feature-extraction": ...}` into the config (what
`Pipeline.save_pretrained` does for `PIPELINE_REGISTRY`-registered classes), and the module files
sit in the folder, so

    pipe = pipeline("feature-extraction", model=folder_or_hub_id, trust_remote_code=True)
    pipe(["Hello world", "नमस्ते दुनिया"], layers=[4, 8], normalize=True)

works on any machine with transformers. We do not register the class in the process-wide
`PIPELINE_REGISTRY` under "feature-extraction": that would replace the built-in text pipeline for
every model in the process. Locally, build it directly:
`PixelM4FeatureExtractionPipeline(model=model, image_processor=renderer)`.
"""

import torch
from transformers import Pipeline

from .modeling_pixel_m4 import check_layers, mean_pooled_layers, trim_to_longest

PIPELINE_TASK = "feature-extraction"


class PixelM4FeatureExtractionPipeline(Pipeline):
    """Per text: a list of floats (one layer) or a list of lists (one per layer in `layers`).

    Call arguments: `layers` (int or list of ints indexing `hidden_states`: 0 = embeddings,
    -1 = last block; default -1), `normalize` (L2-normalise each vector; default True),
    `return_tensors` (True: torch tensors instead of lists).
    """

    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = False

    def _sanitize_parameters(self, layers=None, normalize=None, return_tensors=None, **kwargs):
        if kwargs:
            raise ValueError(f"unknown arguments for the PIXEL-M4 pipeline: {sorted(kwargs)}")
        forward, post = {}, {}
        if layers is not None:
            forward["layers"] = check_layers(self.model.config, layers)
            post["single_layer"] = isinstance(layers, int)
        if normalize is not None:
            post["normalize"] = bool(normalize)
        if return_tensors is not None:
            post["return_tensors"] = bool(return_tensors)
        return {}, forward, post

    def preprocess(self, text):
        if not isinstance(text, str):
            raise TypeError(f"the PIXEL-M4 pipeline takes str inputs, got {type(text).__name__}")
        rendered = self.image_processor(text, return_tensors="pt")
        return {
            "pixel_values": rendered["pixel_values"],
            "attention_mask": rendered["attention_mask"],
        }

    def _forward(self, model_inputs, layers=(-1,)):
        encoder = getattr(self.model, "vit", self.model)  # PixelM4Model, or a model holding one
        # preprocess renders full strips (transformers' batching concatenates pixel_values as
        # they are); the batch is cut after its longest text here, the same outputs for less work
        pixel_values, attention_mask = trim_to_longest(
            model_inputs["pixel_values"], model_inputs["attention_mask"], encoder.config.patch_size
        )
        output = encoder(pixel_values, attention_mask, output_hidden_states=True, return_dict=True)
        return {"embeddings": mean_pooled_layers(output, layers)}  # [B, len(layers), D]

    def postprocess(self, model_outputs, normalize=True, return_tensors=False, single_layer=True):
        vectors = model_outputs["embeddings"][0]  # [len(layers), D]
        if normalize:
            vectors = torch.nn.functional.normalize(vectors, dim=-1)
        if single_layer:
            vectors = vectors[0]
        return vectors if return_tensors else vectors.tolist()


def add_to_config(config) -> None:
    """Point `config.custom_pipelines` at this pipeline (the module must be saved beside it)."""
    config.custom_pipelines = {
        PIPELINE_TASK: {
            "impl": f"{__name__.rsplit('.', 1)[-1]}.{PixelM4FeatureExtractionPipeline.__name__}",
            "pt": ["AutoModel"],
            "type": "multimodal",
        }
    }
