"""Pixel fallback: input compression per language and generation speed, plain LLM vs + fallback.

    python benchmarks/bench_fallback.py
    python benchmarks/bench_fallback.py --tokenizer HuggingFaceTB/SmolLM2-360M-Instruct
    python benchmarks/bench_fallback.py --tokenizer path/to/tokenizer.json --skip-speed

Compression ratio (the paper's §3.6 measure) = LLM tokens of the source sentences / LLM input
positions with the fallback (one per pixel word, plus the tokens of words the rule keeps),
summed over the shipped parallel sample (examples/data/parallel, 120 sentences per language),
with the processor's defaults (every word as pixels, Thai segmented with PyThaiNLP) unless
--pixel-word-rule / --word-segmenter say otherwise. The default tokenizer is the byte-level BPE
trained on the project's English sample only (tiny_causal_lm.py, 2,000 entries); pass a real
one by Hub id, folder or tokenizer.json file (the paper reports HI 5.1, RU 2.2, TH 5.1 against
Phi-3-mini's tokenizer, HI 5.1, RU 4.7, TH 8.6 against SmolLM2's).

Speed: greedy generation of exactly --max-new-tokens tokens for the same translation prompts,
the plain LLM reading the tokenized source vs the adapter reading pixel-word embeddings,
batch size 1, CPU, the tiny LLM with a `test`-size fallback (or --llm / --fallback-preset),
best of --repeats passes. Input preparation (tokenizing; rendering for the fallback) is timed
separately.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from pixel_m4.configuration_pixel_fallback import FALLBACK_PRESETS, PixelFallbackConfig
from pixel_m4.modeling_pixel_fallback import PixelFallbackForCausalLM
from pixel_m4.processing_pixel_fallback import (
    DEFAULT_WORD_SEGMENTER,
    PIXEL_WORD_RULES,
    PixelFallbackProcessor,
)

# examples/tiny_causal_lm.py, imported from its folder as the example scripts do
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from tiny_causal_lm import DATA_DIR, tiny_causal_lm_path  # noqa: E402

SMOLLM2_360M_SHAPE = dict(
    hidden_size=960, num_hidden_layers=32, num_attention_heads=15, num_key_value_heads=5,
    intermediate_size=2560,
)  # fmt: skip
TEMPLATE = "Translate from {language} to English:\n{{text}}\nEnglish:"
NAMES = {"hi": "Hindi", "ru": "Russian", "uk": "Ukrainian", "th": "Thai", "zh": "Chinese"}


def load_tokenizer(name_or_path: str):
    """A Hub id, a folder, or a tokenizer.json file. A file takes its special tokens from a
    tokenizer_config.json beside it if there is one."""
    path = Path(name_or_path)
    if not path.is_file():
        return AutoTokenizer.from_pretrained(name_or_path)
    if (path.parent / "tokenizer_config.json").is_file() and path.name == "tokenizer.json":
        return AutoTokenizer.from_pretrained(path.parent)
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(path))
    if tokenizer.eos_token is None:
        # Compression counts never use EOS, but the processor insists on one.
        special = [token.content for token in tokenizer.added_tokens_decoder.values()]
        if not special:
            raise ValueError(f"{path} declares no special tokens: add a tokenizer_config.json")
        tokenizer.eos_token = special[-1]
    return tokenizer


def load_sources(language: str) -> list[str]:
    path = DATA_DIR / "parallel" / f"{language}-en.jsonl"
    return [json.loads(line)["src"] for line in path.read_text(encoding="utf-8").splitlines()]


def compression_table(processor: PixelFallbackProcessor, languages: list[str]) -> list[dict]:
    rows = []
    for language in languages:
        counts = [processor.count_inputs(text) for text in load_sources(language)]
        plain = sum(count[0] for count in counts)
        fallback = sum(count[1] for count in counts)
        rows.append(
            dict(
                language=language,
                sentences=len(counts),
                tokens_per_sentence=plain / len(counts),
                fallback_inputs_per_sentence=fallback / len(counts),
                ratio=plain / fallback,
            )
        )
    return rows


def time_generation(generate, inputs: list[dict], max_new_tokens: int, repeats: int) -> float:
    """Seconds per sentence, best of `repeats` passes (a shared CPU adds noise, never speed);
    every call generates exactly max_new_tokens tokens."""
    generate(inputs[0], max_new_tokens)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for one in inputs:
            generate(one, max_new_tokens)
        best = min(best, (time.perf_counter() - start) / len(inputs))
    return best


def speed_table(model, processor, languages, num_sentences, max_new_tokens, repeats):
    tokenizer = processor.tokenizer

    def run_plain(batch, new):
        return model.language_model.generate(
            **batch, max_new_tokens=new, min_new_tokens=new, do_sample=False
        )

    def run_fallback(batch, new):
        return model.generate(**batch, max_new_tokens=new, min_new_tokens=new, do_sample=False)

    rows = []
    for language in languages:
        template = TEMPLATE.format(language=NAMES.get(language, language))
        sources = load_sources(language)[:num_sentences]
        start = time.perf_counter()
        plain_inputs = [tokenizer(template.format(text=s), return_tensors="pt") for s in sources]
        plain_prep = (time.perf_counter() - start) / len(sources)
        start = time.perf_counter()
        fallback_inputs = [processor(s, template=template) for s in sources]
        fallback_prep = (time.perf_counter() - start) / len(sources)
        with torch.inference_mode():
            plain = time_generation(run_plain, plain_inputs, max_new_tokens, repeats)
            fallback = time_generation(run_fallback, fallback_inputs, max_new_tokens, repeats)
        rows.append(
            dict(
                language=language,
                prompt_tokens=sum(x["input_ids"].shape[1] for x in plain_inputs) / len(sources),
                prompt_positions=sum(x["input_ids"].shape[1] for x in fallback_inputs)
                / len(sources),
                plain_ms=1000 * plain,
                fallback_ms=1000 * fallback,
                plain_prep_ms=1000 * plain_prep,
                fallback_prep_ms=1000 * fallback_prep,
            )
        )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--tokenizer",
        help="tokenizer for the compression table: Hub id, folder or tokenizer.json file "
        "(default: the tiny English BPE)",
    )
    parser.add_argument(
        "--pixel-word-rule",
        default="all",
        choices=PIXEL_WORD_RULES,
        help="which source words go to pixels (default: all, the paper's main setting)",
    )
    parser.add_argument(
        "--word-segmenter",
        default=DEFAULT_WORD_SEGMENTER,
        help="word segmenters for scripts without spaces, e.g. thai, thai,chinese, none "
        f"(default: {DEFAULT_WORD_SEGMENTER})",
    )
    parser.add_argument("--llm", help="causal LM for the speed table (default: the tiny one)")
    parser.add_argument(
        "--smollm2-360m-shape",
        action="store_true",
        help="time a random-init Llama shaped like SmolLM2-360M (960 wide, 32 layers, 15 heads, "
        "5 KV heads, MLP 2560) with the tiny tokenizer, where compute, not overhead, dominates",
    )
    parser.add_argument(
        "--fallback-preset", default="test", choices=sorted(FALLBACK_PRESETS), help="encoder size"
    )
    parser.add_argument("--languages", default="hi,ru,uk,th,zh", help="comma-separated codes")
    parser.add_argument("--num-sentences", type=int, default=20, help="sentences per language")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="tokens generated each")
    parser.add_argument("--repeats", type=int, default=3, help="timing passes, best kept")
    parser.add_argument("--skip-speed", action="store_true", help="only the compression table")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads; 1 suits the tiny model (on a busy 2-core machine two threads "
        "made its generation ~10x slower)",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    languages = args.languages.split(",")

    tiny = tiny_causal_lm_path()
    tokenizer_path = args.tokenizer or tiny
    settings = dict(pixel_word_rule=args.pixel_word_rule, word_segmenter=args.word_segmenter)
    processor = PixelFallbackProcessor(
        load_tokenizer(tokenizer_path), max_source_length=None, **settings
    )
    print(
        f"Compression ratio, tokenizer {tokenizer_path} (pixel_word_rule={args.pixel_word_rule}, "
        f"word_segmenter={processor.word_segmenter})"
    )
    print("| language | sentences | LLM tokens / sentence | with fallback | ratio |")
    print("|---|---|---|---|---|")
    for row in compression_table(processor, languages):
        print(
            f"| {row['language']} | {row['sentences']} | {row['tokens_per_sentence']:.1f} "
            f"| {row['fallback_inputs_per_sentence']:.1f} | {row['ratio']:.2f} |"
        )
    if args.skip_speed:
        return

    llm_path = args.llm or tiny
    processor = PixelFallbackProcessor(AutoTokenizer.from_pretrained(llm_path), **settings)
    llm = AutoModelForCausalLM.from_pretrained(llm_path)
    if args.smollm2_360m_shape:
        config = llm.config
        config.update(SMOLLM2_360M_SHAPE)
        llm = AutoModelForCausalLM.from_config(config)
        llm.name_or_path = "random-init Llama, SmolLM2-360M shape"
    model = PixelFallbackForCausalLM(PixelFallbackConfig.from_preset(args.fallback_preset), llm)
    model.eval()
    print(
        f"\nGeneration speed, {Path(llm.name_or_path).name} + {args.fallback_preset} fallback, "
        f"batch 1, "
        f"{args.max_new_tokens} new tokens, {torch.get_num_threads()} CPU threads"
    )
    print(
        "| language | prompt tokens (plain) | prompt positions (fallback) | plain ms/sentence "
        "| fallback ms/sentence | speed-up | prep ms plain / fallback |"
    )
    print("|---|---|---|---|---|---|---|")
    rows = speed_table(
        model, processor, languages, args.num_sentences, args.max_new_tokens, args.repeats
    )
    for row in rows:
        print(
            f"| {row['language']} | {row['prompt_tokens']:.1f} | {row['prompt_positions']:.1f} "
            f"| {row['plain_ms']:.1f} | {row['fallback_ms']:.1f} "
            f"| {row['plain_ms'] / row['fallback_ms']:.2f}x "
            f"| {row['plain_prep_ms']:.2f} / {row['fallback_prep_ms']:.2f} |"
        )


if __name__ == "__main__":
    main()
