"""A tiny English-centric causal LM built locally, for tests and the embedded fallback demo.

No small causal LM with weights can be installed offline, so the demo makes one: a byte-level
BPE tokenizer trained with `tokenizers` on the project's English sample corpus only (so it
fragments Devanagari, Cyrillic, Thai and Han characters into bytes, as English-centric LLM
tokenizers do), and a randomly initialised Llama-style model of a few hundred thousand
parameters, optionally trained briefly on the same English text. The folder loads with
`AutoTokenizer` / `AutoModelForCausalLM` like any Hub model. It demonstrates the plumbing;
quality needs a real LLM (see docs/fallback.md).
"""

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_CACHE_DIR = Path(os.environ.get("PIXEL_M4_CACHE", Path.home() / ".cache" / "pixel_m4"))

SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}
# Sizes of the demo model: small enough to train for a few hundred steps on 2 CPU cores.
TINY_LLAMA = dict(
    hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
)  # fmt: skip


def english_sample_texts(data_dir: Path = DATA_DIR) -> list[str]:
    """The project's English sample corpus (examples/data/pretrain/en.txt, CC0).

    Not the English side of the parallel sample: its held-out references must stay unseen."""
    corpus = data_dir / "pretrain" / "en.txt"
    if not corpus.exists():
        raise FileNotFoundError(f"the English sample corpus {corpus} is missing")
    return [
        line.strip() for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def train_english_tokenizer(texts: list[str], vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on `texts`; adds <s> in front of every sequence (Llama-style)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    bos = SPECIAL_TOKENS["bos_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A",
        pair=f"{bos} $A {bos} $B",
        special_tokens=[(bos, tokenizer.token_to_id(bos))],
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)


def pretrain_on_english(model, tokenizer, texts: list[str], steps: int, batch_size: int = 16):
    """Next-token training on English only, so the tiny LLM is English-centric like the
    paper's LLMs (knows English, has never seen the other scripts)."""
    from tqdm.auto import tqdm

    encoded = [tokenizer(text)["input_ids"] + [tokenizer.eos_token_id] for text in texts]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in tqdm(range(steps), desc="pretraining the tiny LLM on English", leave=False):
        rows = [encoded[i] for i in torch.randint(len(encoded), (batch_size,)).tolist()]
        length = max(len(row) for row in rows)
        input_ids = torch.tensor(
            [row + [tokenizer.pad_token_id] * (length - len(row)) for row in rows]
        )
        attention_mask = torch.tensor([[1] * len(row) + [0] * (length - len(row)) for row in rows])
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def tiny_causal_lm_path(
    cache_dir: str | Path | None = None, seed: int = 0, pretrain_steps: int = 0
) -> str:
    """Folder of the tiny LLM (tokenizer + Llama), built once and cached.

    `pretrain_steps` > 0 trains the random-init model that many steps on the English sample
    (the training demo uses this; tests use the random model). The cache key covers the text,
    sizes, seed and steps, so changed sample data gives a new folder. Written to a temporary
    folder and renamed, so concurrent builds are safe.
    """
    texts = english_sample_texts()
    key = json.dumps([texts, TINY_LLAMA, seed, pretrain_steps])
    key = hashlib.sha256(key.encode()).hexdigest()[:12]
    folder = Path(cache_dir or DEFAULT_CACHE_DIR) / f"tiny-english-llama-{key}"
    if (folder / "model.safetensors").exists():
        return str(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = train_english_tokenizer(texts)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **TINY_LLAMA,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    if pretrain_steps:
        pretrain_on_english(model, tokenizer, texts, pretrain_steps)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".building-"))
    try:
        tokenizer.save_pretrained(staging)
        model.save_pretrained(staging)
        os.replace(staging, folder)
    except OSError:
        if not (folder / "model.safetensors").exists():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(folder)


__all__ = ["tiny_causal_lm_path", "train_english_tokenizer", "english_sample_texts"]
