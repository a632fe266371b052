"""Rendering speed: texts/s and peak memory per render mode, next to the published renderers.

    python benchmarks/bench_rendering.py                      # all figures, ours only
    python benchmarks/bench_rendering.py --published-python /usr/bin/python3 \
        --published-pixel-m4 PIXEL_M4/src --published-pixel PIXEL/src

Corpora:
* "cached": ~100-character sentences (EN/HI/UK/ZH/TH/AR, recombined from the clauses below with a
  fixed seed; a small vocabulary), timed after a warm-up pass, best of --repeats: the rate once
  every word is cached.
* "unseen": texts of 14 words drawn without replacement from the 5,000th-50,000th most frequent
  words of EN/HI/UK/ZH/RU (the `wordfreq` package's lists: `pip install -e '.[bench]'`), one
  pass, so every word is new to the renderer. The unit/pair caches are warmed first with the
  5,000 most frequent words of the same languages (the steady state of a long run, where the
  characters and pairs of a script saturate quickly; the words themselves never do).
* "unseen, chars warm" (bigram modes, an extra line, never the headline): another --unseen-texts
  texts of 14 new words (the next words of the same shuffled lists, none in the first corpus),
  timed after every character of the five 50,000-word lists has been rendered once as a
  one-character text, so every character is a cached unit (and a cached one-unit pair): the
  steady state of a long run, where new characters have stopped arriving. What is left per text
  is new pairs and new words. A never-seen character costs a Pango layout and the rasterising
  of a new glyph (~0.1 ms), which the headline "unseen" figure pays ~0.66 times per text.

Paths: "render" is `renderer.render(text)` one by one ("continuous, no spans": with
return_word_spans=False, which skips measuring word spans, the published renderer's output and
what a batch call without return_word_spans does); "uncached" the same with cache_size=0
(every character shaped with its own layout, the published renderer's way); "call f32" and "call
u8" are one `renderer(texts, return_tensors="pt")` call on --batch texts of the cached corpus,
float32 [B, 3, 16, 8464] or, where the renderer offers it, output_format="uint8" [B, 1, 16,
8464]; "bare" is the uint8 -> float32 3-channel conversion alone of the same size (the floor of
the float32 call). Calls and the bare conversion are timed without tracemalloc, best of
--repeats; a call's peak memory is tracemalloc's peak (numpy arrays included) in one more call.

The published renderers (ilkerkesen/pixel-m4 bigram, xplip/pixel continuous) run unmodified in
their own environment through benchmarks/published_renderer.py, on the same texts and fonts,
one by one (their only way), timed as ours on the same line: on an unseen corpus one pass
after rendering the same warm-up texts (so neither has rasterised the timed texts' new glyphs
before), elsewhere best of --repeats passes as ours. Each of our figures is printed with the
ratio to theirs. Without them the ratio is to our uncached path, measured in the same run.
"""

import argparse
import inspect
import json
import math
import os
import random
import statistics
import subprocess
import time
import tracemalloc
import unicodedata

from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer, cache_info, default_font_files

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


def per_second(count: int, function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return count / (time.perf_counter() - start)


def render_all(renderer: PixelM4TextRenderer, texts: list[str], word_spans: bool = True):
    for text in texts:
        renderer.render(text, return_word_spans=word_spans)


def best_of(repeats: int, count: int, function, *args) -> float:
    return max(per_second(count, function, *args) for _ in range(repeats))


UNSEEN_LANGUAGES = ("en", "hi", "uk", "zh", "ru")


def ranked_words(language: str) -> list[str]:
    """The 50,000 most frequent words of `language` (wordfreq), letters and marks only (no
    numbers, symbols, emoji)."""
    from wordfreq import top_n_list

    def is_word(word: str) -> bool:
        return all(unicodedata.category(char)[0] in "LM" for char in word)

    return [word for word in top_n_list(language, 50000) if is_word(word)]


def unseen_texts(
    count: int, seed: int = 0, skip: int = 0, by_language: dict | None = None
) -> tuple[list[str], list[str]]:
    """(`count` texts of 14 new words each, warm-up texts of the 5,000 most frequent words).

    `skip`: texts per language left out first, so texts made with skip=count share no word
    with those made with skip=0. `by_language`: a dict that receives each language's texts.
    """
    rng = random.Random(seed)
    texts, warm_up = [], []
    for language in UNSEEN_LANGUAGES:
        ranked = ranked_words(language)
        rare, frequent = ranked[5000:], ranked[:5000]
        rng.shuffle(rare)
        per_language = count // len(UNSEEN_LANGUAGES)
        first = skip // len(UNSEEN_LANGUAGES)
        ones = [" ".join(rare[i * 14 : (i + 1) * 14]) for i in range(first, first + per_language)]
        texts += ones
        if by_language is not None:
            by_language[language] = ones
        warm_up += [" ".join(frequent[i : i + 14]) for i in range(0, len(frequent), 14)]
    rng.shuffle(texts)
    return texts, warm_up


def every_character() -> list[str]:
    """Every character of the unseen corpus' word lists, once (the "chars warm" warm-up)."""
    return sorted(
        {char for language in UNSEEN_LANGUAGES for word in ranked_words(language) for char in word}
    )


def published_rate(args, mode: str, texts: list[str], warm_up: list[str] | None = None):
    """The published renderer's texts/s (one by one) and peak RSS, or None if not configured.

    Without `warm_up`: best of --repeats passes over `texts` (as ours). With it: one pass
    after rendering `warm_up` once, as our unseen figures are timed, so both renderers meet the
    timed texts with the same font and glyph caches (a second pass would find every glyph of
    the timed texts already rasterised, which ours pays for in its one pass)."""
    source = {"bigram": args.published_pixel_m4, "continuous": args.published_pixel}.get(mode)
    if not (source and args.published_python):
        return None
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "published_renderer.py")
    command = [args.published_python, script, "--source", source, "--renderer", mode]
    if warm_up is None:
        command += ["--repeats", str(args.repeats)]
    else:
        command += ["--repeats", "1", "--warm-up", str(len(warm_up))]
        texts = [*warm_up, *texts]
    command += ["--fonts", *default_font_files()]
    result = subprocess.run(
        command, input=json.dumps(texts), capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


def call_rate(renderer, texts: list[str], repeats: int, **options) -> tuple[float, float]:
    """(texts/s, peak MB) of a batch call: best of `repeats` untraced calls (tracemalloc slows
    every allocation), then its peak memory from one more, traced call."""
    elapsed = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        renderer(texts, return_tensors="pt", **options)
        elapsed = min(elapsed, time.perf_counter() - start)
    tracemalloc.start()
    renderer(texts, return_tensors="pt", **options)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return len(texts) / elapsed, peak / 1e6


def bare_conversion_seconds(batch: int, patch: int, length: int, repeats: int) -> float:
    """uint8 [B, 1, P, W] -> float32 [B, 3, P, W] / 255, the floor of a float32 batch: best of
    `repeats` (like the calls it is compared with; fresh gigabytes cost more when the kernel
    must first reclaim them from its page cache)."""
    import torch

    strips = torch.full((batch, 1, patch, patch * length), 255, dtype=torch.uint8)
    elapsed = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        strips.float().div_(255).expand(-1, 3, -1, -1).contiguous()
        elapsed = min(elapsed, time.perf_counter() - start)
    return elapsed


def ratio(ours: float, theirs: float | None) -> str:
    return "" if not theirs else f"{ours / theirs:.2f}x"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-sentences", type=int, default=1000, help="cached corpus size")
    parser.add_argument("--unseen-texts", type=int, default=500, help="unseen-word texts")
    parser.add_argument("--batch", type=int, default=1000, help="texts per batch call")
    parser.add_argument("--repeats", type=int, default=3, help="passes of cached timings")
    parser.add_argument("--modes", nargs="+", default=["bigram", "word_bigram", "continuous"])
    parser.add_argument(
        "--per-language",
        action="store_true",
        help="continuous mode: also the no-spans figure of each language of the unseen corpus",
    )
    parser.add_argument("--published-python", help="a Python with PyGObject + pycairo")
    parser.add_argument("--published-pixel-m4", help="src/ of an ilkerkesen/pixel-m4 checkout")
    parser.add_argument("--published-pixel", help="src/ of an xplip/pixel checkout")
    args = parser.parse_args()

    sentences = make_sentences(args.num_sentences)
    unseen_by_language = {}
    unseen, warm_up = unseen_texts(args.unseen_texts, by_language=unseen_by_language)
    batch = (sentences * (args.batch // len(sentences) + 1))[: args.batch]
    print(
        f"cached corpus: {len(sentences)} sentences, {statistics.mean(map(len, sentences)):.0f} "
        f"characters on average; unseen corpus: {len(unseen)} texts of 14 new words "
        f"(EN/HI/UK/ZH/RU, {statistics.mean(map(len, unseen)):.0f} characters on average); "
        f"batch calls: {len(batch)} texts"
    )
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    unseen_more, _ = unseen_texts(args.unseen_texts, skip=args.unseen_texts)
    characters = every_character()
    one_by_one, calls = [], []
    for mode in args.modes:
        uncached = PixelM4TextRenderer(render_mode=mode, cache_size=0)
        renderer = PixelM4TextRenderer(render_mode=mode)
        render_all(renderer, warm_up)  # units and pairs of the scripts, not the timed words
        unseen_rate = per_second(len(unseen), render_all, renderer, unseen)
        unseen_uncached = per_second(len(unseen), render_all, uncached, unseen)
        if mode != "continuous":  # the extra line: every character already a cached unit
            render_all(renderer, characters)
            warm_rate = per_second(len(unseen_more), render_all, renderer, unseen_more)
            warm_uncached = per_second(len(unseen_more), render_all, uncached, unseen_more)
            published_warm = published_rate(args, mode, unseen_more, warm_up=characters)
            warm_row = (mode, "unseen, chars warm", warm_rate, warm_uncached, published_warm)
        render_all(renderer, sentences)  # warm-up: every word cached
        cached_rate = best_of(args.repeats, len(sentences), render_all, renderer, sentences)
        cached_uncached = per_second(len(sentences), render_all, uncached, sentences)
        published_unseen = published_rate(args, mode, unseen, warm_up=warm_up)
        published_cached = published_rate(args, mode, sentences)
        one_by_one.append((mode, "unseen", unseen_rate, unseen_uncached, published_unseen))
        if mode != "continuous":
            one_by_one.append(warm_row)
        one_by_one.append((mode, "cached", cached_rate, cached_uncached, published_cached))
        if mode == "continuous":  # like for like: the published renderer measures no spans
            # (corpus, texts, the published figure if already measured the same way)
            corpora = [("unseen", unseen, None), ("cached", sentences, published_cached)]
            if args.per_language:
                corpora += [
                    (f"unseen {lang}", one, None) for lang, one in unseen_by_language.items()
                ]
            for corpus, texts, published in corpora:
                # best of --repeats on every corpus, as the published renderer's figure here;
                # continuous mode keeps no cache of its own that a pass could warm
                rates = [
                    best_of(args.repeats, len(texts), render_all, one, texts, False)
                    for one in (renderer, uncached)
                ]
                published = published or published_rate(args, mode, texts)
                one_by_one.append((f"{mode}, no spans", corpus, *rates, published))
        floor = bare_conversion_seconds(len(batch), renderer.pixels_per_patch, 529, args.repeats)
        f32 = call_rate(renderer, batch, args.repeats)
        u8 = None
        if "output_format" in inspect.signature(renderer.__call__).parameters:
            u8 = call_rate(renderer, batch, args.repeats, output_format="uint8")
        published_batch = published_rate(args, mode, batch)
        calls.append((mode, f32, u8, len(batch) / floor, published_batch))

    print(
        "\nOne by one, render(text), texts/s (ratio: to the published renderer, else to uncached)"
    )
    print("| mode | corpus | ours | uncached | published | ours / published | ours / uncached |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for mode, corpus, ours, uncached, published in one_by_one:
        theirs = published["texts_per_second"] if published else None
        shown = f"{theirs:.0f}" if theirs else "-"
        print(
            f"| {mode} | {corpus} | {ours:.0f} | {uncached:.0f} | {shown} | "
            f"{ratio(ours, theirs) or '-'} | {ratio(ours, uncached)} |"
        )
    print(f"\nBatch call, {len(batch)} texts of the cached corpus, texts/s and peak MB")
    print(
        "| mode | float32 | peak MB | uint8 | peak MB | bare f32 conversion | f32 call time / "
        "bare | published loop | uint8 / published |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mode, f32, u8, bare, published in calls:
        theirs = published["texts_per_second"] if published else None
        u8_rate, u8_peak = (f"{u8[0]:.0f}", f"{u8[1]:.0f}") if u8 else ("-", "-")
        print(
            f"| {mode} | {f32[0]:.0f} | {f32[1]:.0f} | {u8_rate} | {u8_peak} | {bare:.0f} | "
            f"{bare / f32[0]:.2f}x | {f'{theirs:.0f}' if theirs else '-'} | "
            f"{ratio(u8[0], theirs) if u8 and theirs else '-'} |"
        )
    info = cache_info()
    array_mb = sum(info[f"{kind}_array_bytes"] for kind in ("unit", "pair", "word")) / 1e6
    print(
        f"\ncaches after the run: {info['units']} units, {info['pairs']} pairs, "
        f"{info['words']} words ({array_mb:.1f} MB of arrays); "
        f"load average after: {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
