"""Rendering speed: uncached vs cached per render mode, against a base-size model's appetite.

    python benchmarks/bench_rendering.py                 # 2,000 sentences
    python benchmarks/bench_rendering.py --num-sentences 500 --skip-model

Sentences (~100 characters, EN/HI/UK/ZH/TH/AR) are recombined from the clauses below with a
fixed seed. "uncached" is cache_size=0: every character shaped with its own layout and drawn
on one strip surface (the published renderer's way). "pairs" caches each distinct pair's
coverage but assembles every word from its pairs (word_cache_size=0: the rate for words the
word cache has not seen); "cached" is the default, pairs + whole words. Cached passes run after
a warm-up pass over the same sentences, as in a training run where the vocabulary saturates;
the best of --repeats passes is kept (the machine may be shared). "call" is the batched
`renderer(texts, return_tensors="pt")` (batches of 8, float32 [8, 3, 16, 8464] out), cached.
The model rate is a batch-8 forward of a base ViT-MAE (hidden 768, 12 layers) on 368x368 images
(23 x 23 = 529 patches, mask_ratio 0) without grad. All rates are per second on one core.
"""

import argparse
import random
import time

from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer, cache_info

CLAUSES = {
    "en": [
        "The river rose quickly after three days of rain",
        "Most of the village had already gone to the market",
        "She wrote the letter twice before sending it",
        "Our train was delayed by almost an hour",
        "The museum opens at nine on weekdays",
        "Children played football in the narrow street",
    ],
    "hi": [
        "नदी तीन दिन की बारिश के बाद तेज़ी से बढ़ी",
        "गाँव के अधिकतर लोग पहले ही बाज़ार जा चुके थे",
        "उसने पत्र भेजने से पहले दो बार लिखा",
        "हमारी ट्रेन लगभग एक घंटे देर से आई",
        "संग्रहालय सप्ताह के दिनों में नौ बजे खुलता है",
        "बच्चे तंग गली में फुटबॉल खेल रहे थे",
    ],
    "uk": [
        "Річка швидко піднялася після трьох днів дощу",
        "Більшість села вже пішла на ринок",
        "Вона двічі переписала листа перед відправленням",
        "Наш потяг запізнився майже на годину",
        "Музей відкривається о дев'ятій у будні",
        "Діти грали у футбол на вузькій вулиці",
    ],
    "zh": [
        "连续下了三天雨以后河水很快上涨了",
        "村里的大多数人已经去了集市",
        "她在寄出那封信之前写了两遍",
        "我们的火车晚点了将近一个小时",
        "博物馆在工作日早上九点开门",
        "孩子们在狭窄的街道上踢足球",
    ],
    "th": [
        "แม่น้ำขึ้นอย่างรวดเร็วหลังจากฝนตกสามวัน",
        "คนส่วนใหญ่ในหมู่บ้านไปตลาดแล้ว",
        "เธอเขียนจดหมายสองครั้งก่อนส่ง",
        "รถไฟของเราล่าช้าเกือบหนึ่งชั่วโมง",
        "พิพิธภัณฑ์เปิดเก้าโมงในวันธรรมดา",
        "เด็กๆ เล่นฟุตบอลบนถนนแคบ",
    ],
    "ar": [
        "ارتفع النهر بسرعة بعد ثلاثة أيام من المطر",
        "ذهب معظم أهل القرية إلى السوق بالفعل",
        "كتبت الرسالة مرتين قبل إرسالها",
        "تأخر قطارنا حوالي ساعة",
        "يفتح المتحف في التاسعة في أيام الأسبوع",
        "لعب الأطفال كرة القدم في الشارع الضيق",
    ],
}


def make_sentences(count: int, length: int = 100, seed: int = 0) -> list[str]:
    """`count` sentences of about `length` characters, one language each, round robin."""
    rng = random.Random(seed)
    languages = sorted(CLAUSES)
    sentences = []
    for index in range(count):
        clauses = CLAUSES[languages[index % len(languages)]]
        parts = []
        while sum(len(part) + 2 for part in parts) < length:
            parts.append(rng.choice(clauses))
        sentences.append(", ".join(parts)[: length + 20])
    return sentences


def sentences_per_second(renderer: PixelM4TextRenderer, sentences: list[str]) -> float:
    start = time.perf_counter()
    for sentence in sentences:
        renderer.render(sentence)
    return len(sentences) / (time.perf_counter() - start)


def batched_sentences_per_second(renderer: PixelM4TextRenderer, sentences, batch_size=8) -> float:
    start = time.perf_counter()
    for index in range(0, len(sentences), batch_size):
        renderer(sentences[index : index + batch_size], return_tensors="pt")
    return len(sentences) / (time.perf_counter() - start)


def best_of(repeats: int, measure, *args) -> float:
    return max(measure(*args) for _ in range(repeats))


def model_samples_per_second(batches: int) -> float:
    import torch
    from transformers import ViTMAEConfig, ViTMAEModel

    torch.manual_seed(0)
    config = ViTMAEConfig(image_size=368, patch_size=16, mask_ratio=0.0)  # base size defaults
    model = ViTMAEModel(config).eval()
    images = torch.rand(8, 3, 368, 368)
    with torch.no_grad():
        model(pixel_values=images)  # warm-up
        start = time.perf_counter()
        for _ in range(batches):
            model(pixel_values=images)
    return 8 * batches / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-sentences", type=int, default=2000)
    parser.add_argument(
        "--uncached-sentences",
        type=int,
        default=None,
        help="sentences timed on the slow uncached path (default: all)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="cached passes (best is kept)")
    parser.add_argument("--model-batches", type=int, default=2)
    parser.add_argument("--skip-model", action="store_true", help="skip the ViT-MAE timing")
    args = parser.parse_args()

    sentences = make_sentences(args.num_sentences)
    uncached_sentences = sentences[: args.uncached_sentences or len(sentences)]
    print(
        f"{len(sentences)} sentences, {sum(map(len, sentences)) / len(sentences):.0f} "
        "characters on average (EN/HI/UK/ZH/TH/AR)"
    )
    rows = []
    for mode in ("bigram", "word_bigram", "continuous"):
        uncached = sentences_per_second(
            PixelM4TextRenderer(render_mode=mode, cache_size=0), uncached_sentences
        )
        pairs_only = PixelM4TextRenderer(render_mode=mode, word_cache_size=0)
        sentences_per_second(pairs_only, sentences)  # warm-up: fills the pair cache
        pairs = best_of(args.repeats, sentences_per_second, pairs_only, sentences)
        renderer = PixelM4TextRenderer(render_mode=mode)
        sentences_per_second(renderer, sentences)  # warm-up: fills the word cache
        cached = best_of(args.repeats, sentences_per_second, renderer, sentences)
        call = best_of(args.repeats, batched_sentences_per_second, renderer, sentences)
        rows.append((mode, uncached, pairs, cached, call))

    model_rate = None if args.skip_model else model_samples_per_second(args.model_batches)
    print(
        f"\n{'mode':<12} {'uncached/s':>10} {'pairs/s':>8} {'cached/s':>9} {'ratio':>6} "
        f"{'call/s':>7} {'call/model':>10}"
    )
    for mode, uncached, pairs, cached, call in rows:
        versus_model = "" if model_rate is None else f"{call / model_rate:9.0f}x"
        print(
            f"{mode:<12} {uncached:10.0f} {pairs:8.0f} {cached:9.0f} {cached / uncached:5.1f}x "
            f"{call:7.0f} {versus_model}"
        )
    if model_rate is not None:
        print(f"\nViT-MAE base forward (batch 8, 529 patches, no grad): {model_rate:.2f} samples/s")
    info = cache_info()
    print(
        f"caches after the run: {info['pairs']} pairs ({info['pair_array_bytes'] / 1e6:.1f} MB of "
        f"arrays), {info['words']} words ({info['word_array_bytes'] / 1e6:.1f} MB of arrays)"
    )
    print("continuous mode has no cache (one layout per text): its columns measure the same path.")


if __name__ == "__main__":
    main()
