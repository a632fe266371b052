"""Pipelines for PIXEL-M4 folders: raw text in, no tokenizer.

transformers' built-in text pipelines expect a tokenizer; these render text with
`PixelM4TextRenderer` (the folder's image processor) instead:

- `feature-extraction`: one sentence embedding per text, pooled like `PixelM4Model.embed`;
- `text-classification` (`PixelM4ForSequenceClassification` folders): labels and scores;
- `token-classification` (`PixelM4ForTokenClassification`): one label per whitespace word, with
  character offsets, optionally grouped into BIO entities;
- `dependency-parsing` (`PixelM4ForBiaffineParsing`): a head and a relation per word.

They travel with a saved model through transformers' custom-pipeline mechanism: the models'
`save_pretrained` writes `custom_pipelines` into the config (`add_to_config`, what
`Pipeline.save_pretrained` does for `PIPELINE_REGISTRY`-registered classes) and copies this module
beside it, so

    pipe = pipeline("feature-extraction", model=folder_or_hub_id, trust_remote_code=True)
    pipe(["Hello world", "नमस्ते दुनिया"], layers=[4, 8], normalize=True)
    pipeline("token-classification", model=ner_folder, trust_remote_code=True)("Jane lives in Oslo")

works on any machine with transformers. We do not register the classes in the process-wide
`PIPELINE_REGISTRY` under the built-in task names: that would replace the built-in pipelines for
every model in the process. Locally, build them directly, e.g.
`PixelM4FeatureExtractionPipeline(model=model, image_processor=renderer)`.
"""

import re

import torch
from transformers import Pipeline

from .modeling_pixel_m4 import check_layers, mean_pooled_layers, trim_to_longest
from .parsing_pixel_m4 import decode_trees
from .rendering_pixel_m4 import clean_words

PIPELINE_TASK = "feature-extraction"


class _RawTextPipeline(Pipeline):
    """Loads the folder's renderer as image processor, no tokenizer."""

    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = False

    def render(self, text, **kwargs) -> dict:
        if not isinstance(text, str):
            raise TypeError(f"the PIXEL-M4 pipeline takes str inputs, got {type(text).__name__}")
        # the compact format: the model converts it on its device
        return self.image_processor(text, return_tensors="pt", output_format="uint8", **kwargs)


class PixelM4FeatureExtractionPipeline(_RawTextPipeline):
    """Per text: a list of floats (one layer) or a list of lists (one per layer in `layers`).

    Call arguments: `layers` (int or list of ints indexing `hidden_states`: 0 = embeddings,
    -1 = last block; default -1), `normalize` (L2-normalise each vector; default True),
    `return_tensors` (True: torch tensors instead of lists).
    """

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
        rendered = self.render(text)
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


def _softmax_or_sigmoid(logits: torch.Tensor, problem_type: str | None) -> torch.Tensor:
    if problem_type == "multi_label_classification":
        return logits.sigmoid()
    if problem_type == "regression" or logits.shape[-1] == 1:
        return logits
    return logits.softmax(-1)


class PixelM4TextClassificationPipeline(_RawTextPipeline):
    """Per text: {"label", "score"} of the best class, or with `top_k` (an int, or None for all)
    a list of them, best first. Scores: softmax (single-label), sigmoid (multi-label) or the
    raw output (regression), as transformers' text-classification pipeline."""

    def _sanitize_parameters(self, top_k="", **kwargs):
        if kwargs:
            raise ValueError(f"unknown arguments for the PIXEL-M4 pipeline: {sorted(kwargs)}")
        return {}, {}, {} if top_k == "" else {"top_k": top_k}

    def preprocess(self, text):
        rendered = self.render(text)
        return {key: rendered[key] for key in ("pixel_values", "attention_mask")}

    def _forward(self, model_inputs):
        pixel_values, attention_mask = trim_to_longest(
            model_inputs["pixel_values"],
            model_inputs["attention_mask"],
            self.model.config.patch_size,
        )
        return {"logits": self.model(pixel_values, attention_mask).logits}

    def postprocess(self, model_outputs, top_k=""):
        logits = model_outputs["logits"][0].float()
        scores = _softmax_or_sigmoid(logits, self.model.config.problem_type)
        ranked = [
            {"label": self.model.config.id2label[int(index)], "score": float(scores[index])}
            for index in scores.argsort(descending=True)
        ]
        if top_k == "":
            return ranked[0]
        return ranked if top_k is None else ranked[:top_k]


def word_offsets(text: str) -> list[tuple[int, int]]:
    """Character (start, end) of each word the renderer draws: whitespace-separated, words of
    only control/format characters dropped (as `clean_words`)."""
    return [match.span() for match in re.finditer(r"\S+", text) if clean_words(match.group())]


class _WordPipeline(_RawTextPipeline):
    """Renders one text with its word spans; words lost to truncation get no prediction."""

    def preprocess(self, text):
        rendered = self.render(text, return_word_spans=True)
        spans = rendered["word_patch_spans"][0]
        offsets = word_offsets(text)[: len(spans)]
        return {
            "pixel_values": rendered["pixel_values"],
            "attention_mask": rendered["attention_mask"],
            "word_spans": torch.tensor([spans or [(0, 0)]], dtype=torch.long),
            "text": text,
            "offsets": offsets,
        }

    def _forward(self, model_inputs):
        text, offsets = model_inputs.pop("text"), model_inputs.pop("offsets")
        pixel_values, attention_mask = trim_to_longest(
            model_inputs["pixel_values"],
            model_inputs["attention_mask"],
            self.model.config.patch_size,
        )
        output = self.model(pixel_values, model_inputs["word_spans"], attention_mask)
        return {"output": output, "text": text, "offsets": offsets}


class PixelM4TokenClassificationPipeline(_WordPipeline):
    """Per text: a list of {"entity", "score", "index", "word", "start", "end"} for each word
    whose label is not in `ignore_labels` (default ["O"]), as transformers' token-classification
    pipeline; `aggregation_strategy="simple"` groups B-X / I-X words into entities
    {"entity_group", "score" (mean), "word", "start", "end"}."""

    def _sanitize_parameters(self, ignore_labels=None, aggregation_strategy=None, **kwargs):
        if kwargs:
            raise ValueError(f"unknown arguments for the PIXEL-M4 pipeline: {sorted(kwargs)}")
        post = {}
        if ignore_labels is not None:
            post["ignore_labels"] = list(ignore_labels)
        if aggregation_strategy is not None:
            if aggregation_strategy not in ("none", "simple"):
                raise ValueError(
                    f"aggregation_strategy must be 'none' or 'simple', got {aggregation_strategy!r}"
                )
            post["aggregation_strategy"] = aggregation_strategy
        return {}, {}, post

    def postprocess(self, model_outputs, ignore_labels=("O",), aggregation_strategy="none"):
        text, offsets = model_outputs["text"], model_outputs["offsets"]
        scores = model_outputs["output"].logits[0].float().softmax(-1)
        words = []
        for index, (start, end) in enumerate(offsets):
            label = int(scores[index].argmax())
            words.append(
                {
                    "entity": self.model.config.id2label[label],
                    "score": float(scores[index, label]),
                    "index": index,
                    "word": text[start:end],
                    "start": start,
                    "end": end,
                }
            )
        if aggregation_strategy == "simple":
            return [
                group
                for group in group_entities(words, text)
                if group["entity_group"] not in ignore_labels
            ]
        return [word for word in words if word["entity"] not in ignore_labels]


def group_entities(words: list[dict], text: str) -> list[dict]:
    """BIO word labels -> entities: a B-X (or an I-X after another type) starts one, I-X words
    continue it; "O" words stay single groups labelled "O"."""
    groups = []
    for word in words:
        prefix, _, kind = word["entity"].rpartition("-")
        kind = kind if prefix in ("B", "I") else word["entity"]
        last = groups[-1] if groups else None
        if prefix == "I" and last is not None and last["entity_group"] == kind:
            last["scores"].append(word["score"])
            last["end"] = word["end"]
        else:
            groups.append({"entity_group": kind, "scores": [word["score"]], **word})
    return [
        {
            "entity_group": group["entity_group"],
            "score": sum(group["scores"]) / len(group["scores"]),
            "word": text[group["start"] : group["end"]],
            "start": group["start"],
            "end": group["end"],
        }
        for group in groups
    ]


class PixelM4DependencyParsingPipeline(_WordPipeline):
    """Per text: a list with one {"word", "start", "end", "head", "relation", "score"} per word:
    `head` 0 = ROOT, i = the i-th word (1-based, CoNLL-U style), `score` its head probability.
    `decoding="greedy"` (default: each word's best head, then its best relation there, as the
    published PIXEL parser decodes; the heads need not form a tree) or `"mst"` (the best tree
    with one root word), through `parsing_pixel_m4.decode_trees`."""

    def __init__(self, model, *args, **kwargs):
        if not hasattr(model, "biaffine_arcs"):
            # transformers has no Auto class for parsers: parser folders map AutoModel to the
            # parser, but where the pixel_m4 package is imported its own AutoModel registration
            # (the encoder) wins over the folder's code. Load the folder's parser explicitly.
            from .modeling_pixel_m4 import PixelM4ForBiaffineParsing

            model = PixelM4ForBiaffineParsing.from_pretrained(
                model.name_or_path, dtype=model.dtype
            ).to(model.device)
        super().__init__(model, *args, **kwargs)

    def _sanitize_parameters(self, decoding=None, **kwargs):
        if kwargs:
            raise ValueError(f"unknown arguments for the PIXEL-M4 pipeline: {sorted(kwargs)}")
        if decoding is None:
            return {}, {}, {}
        if decoding not in ("greedy", "mst"):
            raise ValueError(f"decoding must be 'greedy' or 'mst', got {decoding!r}")
        return {}, {}, {"decoding": decoding}

    def postprocess(self, model_outputs, decoding="greedy"):
        text, offsets, output = (
            model_outputs["text"],
            model_outputs["offsets"],
            model_outputs["output"],
        )
        head_probs = output.arc_logits[0].float().softmax(-1)  # [W, 1+W]
        decoded = decode_trees(
            output.arc_logits[:1], output.rel_logits[:1], output.word_mask[:1], decoding
        )[0]
        heads, relations = decoded[:, 0], decoded[:, 1]
        return [
            {
                "word": text[start:end],
                "start": start,
                "end": end,
                "head": int(heads[index]),
                "relation": self.model.config.id2label[int(relations[index])],
                "score": float(head_probs[index, heads[index]]),
            }
            for index, (start, end) in enumerate(offsets)
        ]


# Which pipelines a saved model class gets, and the Auto class each pipeline loads.
TASK_PIPELINES = {
    "PixelM4ForSequenceClassification": (
        "text-classification",
        PixelM4TextClassificationPipeline,
        "AutoModelForSequenceClassification",
    ),
    "PixelM4ForTokenClassification": (
        "token-classification",
        PixelM4TokenClassificationPipeline,
        "AutoModelForTokenClassification",
    ),
    # a parser folder maps AutoModel to the parser
    "PixelM4ForBiaffineParsing": (
        "dependency-parsing",
        PixelM4DependencyParsingPipeline,
        "AutoModel",
    ),
}


def add_to_config(config, model_class_name: str | None = None) -> None:
    """Point `config.custom_pipelines` at this module's pipelines: feature-extraction for every
    folder, plus the task pipeline of `model_class_name` (the module must be saved beside)."""
    module = __name__.rsplit(".", 1)[-1]
    pipelines = {
        PIPELINE_TASK: {
            "impl": f"{module}.{PixelM4FeatureExtractionPipeline.__name__}",
            "pt": ["AutoModel"],
            "type": "multimodal",
        }
    }
    if model_class_name in TASK_PIPELINES:
        task, pipeline_class, auto_class = TASK_PIPELINES[model_class_name]
        pipelines[task] = {
            "impl": f"{module}.{pipeline_class.__name__}",
            "pt": [auto_class],
            "type": "multimodal",
        }
    config.custom_pipelines = pipelines
