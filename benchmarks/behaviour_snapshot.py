"""Bitwise snapshot of pixel-m4 behaviour, to prove a refactoring changes nothing (issue 17).

    <checkout>/.venv/bin/python benchmarks/behaviour_snapshot.py <checkout> <out_dir>
    python benchmarks/compare_snapshots.py <before>/manifest.json <after>/manifest.json

Writes <out_dir>/manifest.json: sha256 of every array the renderer returns (every mode and
option), of every model class's outputs (seeded init), of every tensor each example script saves
(one short run each), and of the converted checkpoint + its parity with the original. Compare two
manifests with compare_snapshots.py. Takes 1-2 minutes on 2 CPU cores.
"""

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(sys.argv[1]).resolve()
OUT = Path(sys.argv[2]).resolve()
OUT.mkdir(parents=True, exist_ok=True)
manifest = {}


def digest(value):
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        value = value.numpy()
    if isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value)
        return f"{a.dtype}{list(a.shape)}:" + hashlib.sha256(a.tobytes()).hexdigest()[:24]
    if isinstance(value, dict):
        return {k: digest(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in value):
            return [digest(v) for v in value]
        return json.loads(json.dumps(value, default=str))
    return json.loads(json.dumps(value, default=str))


# ---- renderer -------------------------------------------------------------------------------
from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer  # noqa: E402

sentences = (ROOT / "tests/data/golden/sentences.txt").read_text(encoding="utf-8").splitlines()
sentences = [s for s in sentences if s.strip()]
extra = [
    "שלום עולם זה מבחן",
    "مرحبا بالعالم هذا اختبار",
    "สวัสดีครับ นี่คือการทดสอบ",
    "a",
    "",
    "   spaced    out   text   ",
    "Mixed English और हिन्दी і українська 中文混合",
    "x" * 3000,
]
texts = sentences + extra
pairs = [(a, b) for a, b in zip(sentences[::2], sentences[1::2], strict=False)]
words = [s.split() for s in sentences[:10]]
renderer_out = {}
for mode in ("bigram", "continuous", "word_bigram"):
    for options in (
        {},
        {"group_graphemes": True},
        {"cache_size": 0},
        {"cjk_face": "SC"},
        {"max_seq_length": 64},
        {"mirror_rtl": False},
    ):
        name = f"{mode}-{json.dumps(options, sort_keys=True)}"
        r = PixelM4TextRenderer(render_mode=mode, **options)
        one = {}
        for i, t in enumerate(texts):
            rt = r.render(t)
            one[f"text{i}"] = {
                "pixels": digest(rt.pixels),
                "meta": digest(
                    [
                        rt.num_patches,
                        rt.word_patch_spans,
                        rt.num_words,
                        rt.overflow,
                        rt.missing_glyphs,
                        rt.word_patch_counts,
                    ]
                ),
            }
        for i, (a, b) in enumerate(pairs):
            rt = r.render(a, b)
            one[f"pair{i}"] = digest(
                [rt.pixels, [rt.num_patches, rt.word_patch_spans, rt.overflow]]
            )
        one["call_f32"] = digest(dict(r(texts[:12], return_tensors="np", return_word_spans=True)))
        one["call_u8"] = digest(dict(r(texts[:12], return_tensors="pt", output_format="uint8")))
        one["call_longest"] = digest(
            dict(r(texts[:12], return_tensors="pt", padding="longest", pad_to_multiple_of=8))
        )
        one["call_pairs"] = digest(
            dict(r([a for a, _ in pairs], text_pair=[b for _, b in pairs], return_tensors="np"))
        )
        one["call_words"] = digest(
            dict(r(words, is_split_into_words=True, return_tensors="np", return_word_spans=True))
        )
        renderer_out[name] = one
manifest["renderer"] = renderer_out
print("renderer done", flush=True)

# ---- models -----------------------------------------------------------------------------------
from pixel_m4 import (  # noqa: E402
    PixelM4Config,
    PixelM4ForBiaffineParsing,
    PixelM4ForPreTraining,
    PixelM4ForSequenceClassification,
    PixelM4ForTokenClassification,
    PixelM4Model,
)

torch.use_deterministic_algorithms(True)
r = PixelM4TextRenderer(max_seq_length=64)
batch = r(sentences[:4], return_tensors="pt", return_word_spans=True)
pix, mask = batch["pixel_values"], batch["attention_mask"]
u8 = r(sentences[:4], return_tensors="pt", output_format="uint8")["pixel_values"]
models_out = {}
W = max(len(sp) for sp in batch["word_patch_spans"])
spans_t = torch.zeros(4, W, 2, dtype=torch.long)
for i, sp in enumerate(batch["word_patch_spans"]):
    spans_t[i, : len(sp)] = torch.tensor(sp)
g = torch.Generator().manual_seed(1)
word_labels = torch.randint(0, 5, (4, W), generator=g)
arcs = torch.randint(0, 3, (4, W), generator=g)
rels = torch.randint(0, 7, (4, W), generator=g)
for i, sp in enumerate(batch["word_patch_spans"]):
    word_labels[i, len(sp) :] = -100
    arcs[i, len(sp) :] = -100
    rels[i, len(sp) :] = -100


def config(**kw):
    return PixelM4Config.from_preset("test", image_size=(16, 16 * 64), **kw)


def parse(model):
    return model(
        pixel_values=pix, attention_mask=mask, word_spans=spans_t, arc_labels=arcs, rel_labels=rels
    )


for index, (cls, kw, call) in enumerate(
    [
        (
            PixelM4Model,
            {},
            lambda m: m(
                pixel_values=pix,
                attention_mask=mask,
                output_hidden_states=True,
                output_attentions=True,
            ),
        ),
        (PixelM4Model, {}, lambda m: m(pixel_values=u8, attention_mask=mask)),
        (PixelM4ForPreTraining, {}, lambda m: m(pixel_values=pix, attention_mask=mask)),
        (
            PixelM4ForSequenceClassification,
            {"num_labels": 3},
            lambda m: m(pixel_values=pix, attention_mask=mask, labels=torch.tensor([0, 1, 2, 1])),
        ),
        (
            PixelM4ForSequenceClassification,
            {"num_labels": 3, "problem_type": "multi_label_classification"},
            lambda m: m(
                pixel_values=pix,
                attention_mask=mask,
                labels=torch.tensor([[0, 1, 1], [1, 0, 0], [0, 0, 1], [1, 1, 1]]).float(),
            ),
        ),
        (
            PixelM4ForSequenceClassification,
            {"num_labels": 1},
            lambda m: m(
                pixel_values=pix, attention_mask=mask, labels=torch.tensor([0.5, 1.0, -1.0, 2.0])
            ),
        ),
        (
            PixelM4ForTokenClassification,
            {"num_labels": 5},
            lambda m: m(
                pixel_values=pix, attention_mask=mask, word_spans=spans_t, labels=word_labels
            ),
        ),
        (
            PixelM4ForBiaffineParsing,
            {"num_labels": 7},
            parse,
        ),
        (
            PixelM4ForBiaffineParsing,
            {"num_labels": 7, "parser_variant": "dozat_manning"},
            parse,
        ),
        (
            PixelM4Model,
            {"attn_implementation": "eager"},
            lambda m: m(pixel_values=pix, attention_mask=mask, output_attentions=True),
        ),
    ]
):
    for train in (False, True):
        torch.manual_seed(0)
        model = cls(config(**kw))
        model.train(train)
        torch.manual_seed(1)
        try:
            out = call(model)
            result = (
                {k: digest(v) for k, v in out.items()} if hasattr(out, "items") else digest(out)
            )
        except Exception as error:  # record errors too: they must stay the same
            result = f"error {type(error).__name__}: {error}"
        key = f"{index}-{cls.__name__}-{json.dumps(kw, sort_keys=True)}-{'train' if train else 'eval'}"
        models_out[key] = {"out": result, "state": digest(dict(model.state_dict()))}

# the parser with word spans (its real call)
try:
    import inspect

    sig = inspect.signature(PixelM4ForBiaffineParsing.forward)
    torch.manual_seed(0)
    parser = PixelM4ForBiaffineParsing(config(num_labels=7)).eval()
    spans = batch.get("word_patch_spans")
    models_out["parser_signature"] = list(sig.parameters)
except Exception as error:
    models_out["parser_signature"] = f"error {error}"

# fallback encoder + causal LM over a tiny llama
from pixel_m4 import PixelFallbackConfig, PixelFallbackEncoder, PixelFallbackForCausalLM  # noqa: E402

for candidate in ("pixel_m4.tiny_causal_lm", "tiny_causal_lm"):
    try:
        sys.path[:0] = [str(ROOT / "examples"), str(ROOT / "tests")]
        tiny = importlib.import_module(candidate)
        break
    except ImportError:
        continue
llm_path = (
    tiny.tiny_causal_lm_path(OUT / "llm")
    if "cache_dir" not in str(tiny.tiny_causal_lm_path.__code__.co_varnames)
    else tiny.tiny_causal_lm_path(cache_dir=OUT / "llm")
)
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

try:
    from pixel_m4 import PixelFallbackProcessor
except ImportError:
    PixelFallbackProcessor = None
llm = AutoModelForCausalLM.from_pretrained(llm_path)
tok = AutoTokenizer.from_pretrained(llm_path)
torch.manual_seed(0)
fcfg = (
    PixelFallbackConfig.from_preset("test", llm_hidden_size=llm.config.hidden_size)
    if hasattr(PixelFallbackConfig, "from_preset")
    else None
)
fb = PixelFallbackForCausalLM(fcfg, llm).eval()
torch.manual_seed(0)
enc = PixelFallbackEncoder(fcfg).eval()
models_out["fallback_encoder_state"] = digest(dict(enc.state_dict()))
proc = PixelFallbackProcessor(tokenizer=tok) if PixelFallbackProcessor else None
src = ["Привет мир", "नमस्ते दुनिया कैसे हो", "สวัสดีครับ"]
enc_in = proc(src, return_tensors="pt") if proc else {}
models_out["fallback_processor"] = digest(dict(enc_in))
try:
    out = fb(**{k: v for k, v in enc_in.items()})
    models_out["fallback_lm"] = {
        k: digest(v) for k, v in out.items() if v is not None and not isinstance(v, tuple)
    }
except Exception as error:
    models_out["fallback_lm"] = f"error {type(error).__name__}: {error}"
models_out["fallback_state"] = digest({k: v for k, v in fb.state_dict().items()})
manifest["models"] = models_out
print("models done", flush=True)

# ---- converted checkpoint -----------------------------------------------------------------
spec = importlib.util.spec_from_file_location("tc", ROOT / "tests" / "test_convert.py")
tc = importlib.util.module_from_spec(spec)
sys.path.insert(0, str(ROOT / "tests"))
spec.loader.exec_module(tc)
orig = OUT / "original"
if not orig.exists():
    orig.mkdir()
    tc.write_original_folder(orig)
conv = OUT / "converted"
exe = Path(sys.executable).parent / "pixel-m4-convert"
res = subprocess.run(
    [str(exe), "--checkpoint", str(orig), "--output_dir", str(conv), "--overwrite"],
    capture_output=True,
    text=True,
)
assert res.returncode == 0, res.stderr[-2000:]
from safetensors.torch import load_file  # noqa: E402

manifest["converted"] = {
    "weights": digest(load_file(conv / "model.safetensors")),
    "config": json.loads((conv / "config.json").read_text()),
    "preprocessor": json.loads((conv / "preprocessor_config.json").read_text()),
    "files": sorted(p.name for p in conv.iterdir()),
}
from transformers import AutoModelForPreTraining  # noqa: E402

sd = torch.load(orig / "pytorch_model.bin", weights_only=True)
m = AutoModelForPreTraining.from_pretrained(conv).eval()
rr = PixelM4TextRenderer.from_pretrained(conv)
b = rr(tc.TEXTS, return_tensors="pt")
with torch.no_grad():
    ours = m.vit(
        pixel_values=b["pixel_values"], attention_mask=b["attention_mask"]
    ).last_hidden_state
ref, _ = tc.reference_encoder(sd, b["pixel_values"], b["attention_mask"])
attended = torch.cat([torch.ones_like(b["attention_mask"][:, :1]), b["attention_mask"]], 1).bool()
manifest["converted"]["parity_max_abs"] = float((ours - ref)[attended].abs().max())
manifest["converted"]["ours"] = digest(ours)
patch_mask = torch.zeros_like(b["attention_mask"], dtype=torch.bool)
patch_mask[:, [0, 2, 3]] = True
with torch.no_grad():
    manifest["converted"]["logits"] = digest(
        m(b["pixel_values"], b["attention_mask"], patch_mask=patch_mask).logits
    )
print("convert done", flush=True)

# ---- one sample run per script --------------------------------------------------------------
VOLATILE = ("runtime", "per_second", "flos", "time", "date", "version", "total_flos")


def stable(obj):
    if isinstance(obj, dict):
        return {k: stable(v) for k, v in sorted(obj.items()) if not any(s in k for s in VOLATILE)}
    if isinstance(obj, list):
        return [stable(v) for v in obj]
    return obj


def folder_digest(folder: Path):
    result = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_dir() or "checkpoint-" in rel or "runs/" in rel or rel.endswith(".bin"):
            continue
        if path.suffix == ".safetensors":
            result[rel] = digest(load_file(path))
        elif path.suffix == ".json":
            try:
                result[rel] = stable(json.loads(path.read_text()))
            except Exception:
                result[rel] = "unreadable"
        elif path.suffix in (".png", ".npy", ".npz", ".txt", ".tsv", ".csv"):
            result[rel] = hashlib.sha256(path.read_bytes()).hexdigest()[:24]
        else:
            result[rel] = "present"
    return result


env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0", CUDA_VISIBLE_DEVICES="")
py = sys.executable
common = ["--report_to", "none", "--disable_tqdm", "true"]
runs = {
    "pretraining": [
        "run_pretraining.py",
        "--model_config",
        "test",
        "--max_steps",
        "3",
        "--per_device_train_batch_size",
        "4",
        "--reconstruction_steps",
        "3",
        *common,
    ],
}
scripts = {}


def run(name, argv):
    out = OUT / "runs" / name
    res = subprocess.run(
        [py, str(ROOT / "examples" / argv[0]), "--output_dir", str(out), *argv[1:]],
        capture_output=True,
        text=True,
        env=env,
        cwd=OUT,
    )
    scripts[name] = {"rc": res.returncode, "files": folder_digest(out) if out.exists() else None}
    if res.returncode:
        scripts[name]["stderr"] = res.stderr[-1500:]
    print(name, res.returncode, flush=True)
    return out


pre = run("pretraining", runs["pretraining"])
task_common = [
    "--model_name_or_path",
    str(pre),
    "--max_steps",
    "2",
    "--max_seq_length",
    "64",
    "--max_train_samples",
    "16",
    "--max_eval_samples",
    "8",
    "--max_predict_samples",
    "8",
    "--per_device_train_batch_size",
    "4",
    "--per_device_eval_batch_size",
    "8",
    "--seed",
    "1",
    *common,
]
run("classification", ["run_classification.py", *task_common])
run("ner", ["run_ner.py", *task_common])
run("dependency_parsing", ["run_dependency_parsing.py", *task_common])
run(
    "fallback",
    [
        "run_fallback.py",
        "--fallback_preset",
        "test",
        "--stage1_steps",
        "2",
        "--stage2_steps",
        "2",
        "--max_train_samples",
        "16",
        "--max_eval_samples",
        "4",
        "--per_device_train_batch_size",
        "4",
        "--max_new_tokens",
        "4",
    ],
)
run(
    "analysis",
    [
        "run_analysis.py",
        "--random_model_preset",
        "test",
        "--max_sentences",
        "16",
        "--probe_words_per_language",
        "16",
    ],
)
manifest["scripts"] = scripts
(OUT / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str))
print("wrote", OUT / "manifest.json")
