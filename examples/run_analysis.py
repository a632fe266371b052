"""Per-layer analysis of a PIXEL-M4 model: cross-lingual retrieval, probing, t-SNE (paper section 5).

    python examples/run_analysis.py                                  # all three, sample data, tiny random model
    python examples/run_analysis.py --analyses retrieval --model_name_or_path Team-PIXEL/pixel-m4-hf
    python examples/run_analysis.py --analyses probing --probe_file linspector_case_rus.jsonl

Writes PNGs and a results.json into --output_dir. The logic lives in `pixel_m4.tools.analysis`.
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoProcessor, HfArgumentParser

from pixel_m4.configuration_pixel_m4 import PixelM4Config
from pixel_m4.modeling_pixel_m4 import PixelM4Model
from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer
from pixel_m4.tools import analysis

DATA = Path(__file__).resolve().parent / "data" / "parallel"
ANALYSES = ("retrieval", "probing", "tsne")


@dataclass
class AnalysisArguments:
    analyses: list[str] = field(
        default_factory=lambda: list(ANALYSES),
        metadata={"help": f"which analyses to run, any of {', '.join(ANALYSES)} (default: all)"},
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "pixel_m4 model folder or Hub id (loaded with trust_remote_code); default: a "
            "randomly initialised 'tiny' model with the default renderer (a smoke run: random "
            "weights give chance-level curves)"
        },
    )
    random_model_preset: str = field(
        default="tiny",
        metadata={
            "help": "size of the random model used without --model_name_or_path (test, tiny, small, base)"
        },
    )
    parallel_files: list[str] = field(
        default_factory=lambda: [str(DATA / f"{lang}-en.jsonl") for lang in ("hi", "uk", "zh")],
        metadata={
            "help": "XX-EN JSON Lines files ({src, tgt, src_lang, tgt_lang}), aligned line by line on "
            "the English side; default: the shipped hi/uk/zh-en samples"
        },
    )
    languages: list[str] = field(
        default_factory=lambda: ["en", "hi", "uk", "zh"],
        metadata={"help": "languages for retrieval (all pairs) and t-SNE"},
    )
    recall_k: list[int] = field(
        default_factory=lambda: [1, 5, 10], metadata={"help": "k values of recall@k"}
    )
    plot_k: int = field(default=5, metadata={"help": "k of the recall@k plot (paper: 5)"})
    probe_file: str | None = field(
        default=None,
        metadata={
            "help": "probing data, JSON Lines {text, label} (e.g. a LINSPECTOR task: words with "
            "their case); default: word-level language identification, Ukrainian vs Russian "
            "words (same script) from --probe_parallel_files"
        },
    )
    probe_parallel_files: list[str] = field(
        default_factory=lambda: [str(DATA / f"{lang}-en.jsonl") for lang in ("uk", "ru")],
        metadata={"help": "parallel files whose source words make the default probing task"},
    )
    probe_words_per_language: int = field(
        default=300, metadata={"help": "words per language of the default probing task"}
    )
    tsne_layers: list[int] | None = field(
        default=None, metadata={"help": "layers of the t-SNE grid (default: all, 0 = embeddings)"}
    )
    max_sentences: int | None = field(
        default=None, metadata={"help": "use only the first N parallel sentences"}
    )
    batch_size: int = field(default=32, metadata={"help": "texts per forward pass"})
    output_dir: str = field(
        default="outputs/analysis", metadata={"help": "where PNGs and results.json go"}
    )
    seed: int = field(
        default=0, metadata={"help": "seed of the random model, probe split and t-SNE"}
    )

    def __post_init__(self):
        unknown = set(self.analyses) - set(ANALYSES)
        if unknown:
            raise ValueError(
                f"--analyses: unknown {sorted(unknown)}; choose from {', '.join(ANALYSES)}"
            )


def load_model(args: AnalysisArguments):
    if args.model_name_or_path is None:
        torch.manual_seed(args.seed)
        return PixelM4Model(
            PixelM4Config.from_preset(args.random_model_preset)
        ).eval(), PixelM4TextRenderer()
    renderer = AutoProcessor.from_pretrained(args.model_name_or_path, trust_remote_code=True)
    model = AutoModel.from_pretrained(args.model_name_or_path, trust_remote_code=True).eval()
    return model, renderer


def main(argv: list[str] | None = None) -> dict:
    (args,) = HfArgumentParser(AnalysisArguments).parse_args_into_dataclasses(args=argv)
    output_dir = Path(args.output_dir)
    model, renderer = load_model(args)
    results: dict = {"model": args.model_name_or_path or f"random {args.random_model_preset} model"}

    if {"retrieval", "tsne"} & set(args.analyses):
        sentences = analysis.load_parallel(args.parallel_files)
        missing = set(args.languages) - set(sentences)
        if missing:
            raise ValueError(
                f"--languages {sorted(missing)} not in --parallel_files ({sorted(sentences)})"
            )
        features = {
            lang: analysis.layer_features(
                model, renderer, sentences[lang][: args.max_sentences], args.batch_size
            )
            for lang in args.languages
        }
    if "retrieval" in args.analyses:
        retrieval = analysis.retrieval_per_layer(features, args.recall_k)
        path = analysis.plot_retrieval(retrieval, args.plot_k, output_dir / "retrieval.png")
        results["retrieval"] = {f"{a}-{b}": by_k for (a, b), by_k in retrieval.items()}
        print(f"retrieval recall@{args.plot_k} per layer:")
        for (a, b), by_k in retrieval.items():
            print(f"  {a}-{b}: " + " ".join(f"{value:.2f}" for value in by_k[args.plot_k]))
        print(f"wrote {path}")
    if "probing" in args.analyses:
        if args.probe_file:
            texts, labels = analysis.load_labelled(args.probe_file)
            task = Path(args.probe_file).stem
        else:
            words = analysis.load_parallel(args.probe_parallel_files)
            languages = sorted(set(words) - {"en"})
            texts, labels = analysis.language_words(words, languages, args.probe_words_per_language)
            task = f"language id ({'/'.join(languages)} words)"
        accuracies = analysis.probe_per_layer(
            analysis.layer_features(model, renderer, texts, args.batch_size), labels, seed=args.seed
        )
        path = analysis.plot_probing({task: accuracies}, output_dir / "probing.png")
        results["probing"] = {task: accuracies}
        print(f"probing accuracy per layer ({task}): " + " ".join(f"{a:.2f}" for a in accuracies))
        print(f"wrote {path}")
    if "tsne" in args.analyses:
        stacked = np.concatenate([features[lang] for lang in args.languages])
        groups = [lang for lang in args.languages for _ in range(len(features[lang]))]
        path = analysis.tsne_grid(
            stacked, groups, output_dir / "tsne.png", args.tsne_layers, args.seed
        )
        print(f"wrote {path}")
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
