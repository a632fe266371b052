"""Padding to the longest text vs the full strip: inference and a fine-tuning step, base size.

    python benchmarks/bench_padding.py                  # base model, batch 32, 2 repeats
    python benchmarks/bench_padding.py --preset tiny --repeats 1

Texts: SIB-200-like sentences (FLORES length, about 20 words in English) in the four pretraining
languages, made by joining two consecutive sentences of the shipped parallel samples
(examples/data/parallel/{hi,uk,zh}-en.jsonl, English from their "tgt" side), a batch of
--batch-size cycling through EN/HI/UK/ZH. Rendered once (bigram mode) with
padding="max_length" and with padding="longest".

* inference: PixelM4ForSequenceClassification forward without grad at the paper's 529 patches;
* fine-tuning step: forward + backward + AdamW step at the Table 7 length (a 256-patch renderer
  and a 256-patch model, as the published fine-tuning ran).

Each figure is the best of --repeats timings, "longest" and "max_length" interleaved in the same
run; the ratio is what to compare (the machine may be shared: the load average is printed).
"""

import argparse
import json
import os
import time
from pathlib import Path

import torch

from pixel_m4.configuration_pixel_m4 import PixelM4Config
from pixel_m4.modeling_pixel_m4 import PixelM4ForSequenceClassification
from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer

DATA = Path(__file__).resolve().parents[1] / "examples" / "data" / "parallel"


def sentences(batch_size: int) -> list[str]:
    by_language = {"en": [], "hi": [], "uk": [], "zh": []}
    for language in ("hi", "uk", "zh"):
        for line in (DATA / f"{language}-en.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            by_language[language].append(row["src"])
            if language == "hi":
                by_language["en"].append(row["tgt"])
    joiner = {"zh": ""}  # Chinese has no spaces between sentences
    texts = []
    for index in range(batch_size):
        language = list(by_language)[index % 4]
        pool, k = by_language[language], 2 * (index // 4)
        texts.append(joiner.get(language, " ").join(pool[k % len(pool) : k % len(pool) + 2]))
    return texts


def best_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def make_model(preset: str, patches: int, seed: int = 0):
    torch.manual_seed(seed)
    config = PixelM4Config.from_preset(preset, image_size=(16, 16 * patches), num_labels=7)
    return PixelM4ForSequenceClassification(config)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="base")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--inference-patches", type=int, default=529)
    parser.add_argument("--finetune-patches", type=int, default=256)  # Table 7
    args = parser.parse_args()
    torch.manual_seed(0)
    texts = sentences(args.batch_size)
    labels = torch.arange(args.batch_size) % 7

    print(f"load average before: {os.getloadavg()}; torch threads: {torch.get_num_threads()}")
    results = {}

    renderer = PixelM4TextRenderer(max_seq_length=args.inference_patches)
    inputs = {p: renderer(texts, return_tensors="pt", padding=p) for p in ("max_length", "longest")}
    counts = inputs["longest"]["num_patches"].float()
    print(
        f"{len(texts)} texts, patches per text: mean {counts.mean():.1f}, max {int(counts.max())} "
        f"(strip widths: longest {inputs['longest']['attention_mask'].shape[1]}, "
        f"max_length {inputs['max_length']['attention_mask'].shape[1]})"
    )
    model = make_model(args.preset, args.inference_patches).eval()
    logits = {}

    def infer(padding):
        with torch.no_grad():
            logits[padding] = model(
                inputs[padding]["pixel_values"], inputs[padding]["attention_mask"]
            ).logits

    for padding in ("longest", "max_length"):  # warm-up
        infer(padding)
    for padding in ("longest", "max_length"):
        results[f"inference {padding}"] = best_time(lambda p=padding: infer(p), args.repeats)
    difference = float((logits["longest"] - logits["max_length"]).abs().max())
    print(f"inference logits, largest |longest - max_length|: {difference:.2e}")
    del model

    renderer = PixelM4TextRenderer(max_seq_length=args.finetune_patches)
    inputs = {p: renderer(texts, return_tensors="pt", padding=p) for p in ("max_length", "longest")}
    model = make_model(args.preset, args.finetune_patches).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step(padding):
        loss = model(
            inputs[padding]["pixel_values"], inputs[padding]["attention_mask"], labels=labels
        ).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    for padding in ("longest", "max_length"):  # warm-up (also creates AdamW's state)
        step(padding)
    for padding in ("longest", "max_length"):
        results[f"fine-tuning step {padding}"] = best_time(lambda p=padding: step(p), args.repeats)

    print(f"\npreset {args.preset}, batch {args.batch_size}, best of {args.repeats}")
    for name, seconds in results.items():
        print(f"{name:32s} {seconds:8.2f} s")
    print(
        f"inference ({args.inference_patches} patches): longest is "
        f"{results['inference max_length'] / results['inference longest']:.1f}x faster"
    )
    print(
        f"fine-tuning step ({args.finetune_patches} patches): longest is "
        f"{results['fine-tuning step max_length'] / results['fine-tuning step longest']:.1f}x faster"
    )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
