"""Pretraining: corpus specs and loading, strip packing, language mixing, rendering in DataLoader
workers, reconstruction PNGs, model/renderer loading, and run_pretraining.py end to end (single
process, torchrun with 2 CPU processes over gloo, SIGKILL + --resume_from_checkpoint)."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import fields
from pathlib import Path

import datasets
import pytest
import torch
import transformers

from pixel_m4.configuration_pixel_m4 import PixelM4Config
from pixel_m4.modeling_pixel_m4 import PixelM4ForPreTraining
from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer
from pixel_m4.tools.pretraining import (
    CorpusSource,
    ReconstructionCallback,
    RenderingCollator,
    StripPacker,
    append_to_model_card,
    build_pretraining_dataset,
    load_corpus,
    load_pretraining_model,
    mix_languages,
    mixing_probabilities,
    pack_corpus,
    parse_corpus_spec,
    save_reconstructions,
)
from pixel_m4.tools.task_cli import load_renderer

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "run_pretraining.py"
SAMPLES = ROOT / "examples" / "data" / "pretrain"
LANGUAGES = ("en", "hi", "uk", "zh")


@pytest.fixture(scope="module")
def short_renderer():
    """Strips of 48 patches: packing decisions happen every few lines."""
    return PixelM4TextRenderer(max_seq_length=48)


def sample_lines(language: str) -> list[str]:
    return (SAMPLES / f"{language}.txt").read_text(encoding="utf-8").splitlines()


# ---------------------------------------------------------------------------------- corpus specs


def test_corpus_spec_local_file_and_hub_name(tmp_path):
    path = tmp_path / "en.txt"
    path.write_text("hello\n")
    assert parse_corpus_spec(f"en={path}") == CorpusSource("en", str(path))
    assert parse_corpus_spec("hi=allenai/c4:hi") == CorpusSource("hi", "allenai/c4", "hi")
    assert parse_corpus_spec("uk=some/dataset") == CorpusSource("uk", "some/dataset", None)
    assert parse_corpus_spec(f"zh={tmp_path}") == CorpusSource("zh", str(tmp_path))


@pytest.mark.parametrize("spec", ["en", "=data.txt", "en=", "examples/data/pretrain/en.txt"])
def test_corpus_spec_rejects_malformed_entries(spec):
    with pytest.raises(ValueError, match="--corpus entries must look like LANG="):
        parse_corpus_spec(spec)


def test_missing_local_file_is_an_error_naming_corpus(tmp_path):
    corpus = parse_corpus_spec(f"en={tmp_path / 'missing.txt'}")
    with pytest.raises(FileNotFoundError, match="--corpus en=.*missing.txt"):
        load_corpus(corpus)


def test_mixed_file_formats_are_rejected(tmp_path):
    (tmp_path / "a.txt").write_text("one\n")
    (tmp_path / "b.jsonl").write_text('{"text": "two"}\n')
    with pytest.raises(ValueError, match="files must all be one of"):
        load_corpus(parse_corpus_spec(f"en={tmp_path}/*"))


def test_hub_names_go_to_load_dataset_with_config_split_and_streaming(monkeypatch):
    calls = []

    def fake_load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return datasets.Dataset.from_dict({"text": ["x"]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    load_corpus(parse_corpus_spec("hi=allenai/c4:hi"), split="validation", streaming=True)
    assert calls == [(("allenai/c4", "hi"), {"split": "validation", "streaming": True})]
    # mC4's per-language files (English included) are files of the allenai/c4 repo
    mc4_english = "hf://datasets/allenai/c4/multilingual/c4-en.*.json.gz"
    calls.clear()
    load_corpus(parse_corpus_spec(f"en={mc4_english}"), streaming=True)
    expected = {"data_files": {"train": mc4_english}, "split": "train", "streaming": True}
    assert calls == [(("json",), expected)]
    with pytest.raises(ValueError, match="Hub files must end in one of"):
        load_corpus(parse_corpus_spec("en=hf://datasets/allenai/c4/multilingual/c4-en.*.tfrecord"))


def test_local_formats_load_the_same_text(tmp_path):
    lines = sample_lines("uk")[:5]
    (tmp_path / "uk.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "uk.jsonl").write_text(
        "".join(json.dumps({"body": line, "id": i}) + "\n" for i, line in enumerate(lines))
    )
    datasets.Dataset.from_dict({"text": lines}).to_parquet(tmp_path / "uk.parquet")
    assert load_corpus(CorpusSource("uk", str(tmp_path / "uk.txt")))["text"] == lines
    assert load_corpus(CorpusSource("uk", str(tmp_path / "uk.jsonl")))["body"] == lines
    assert load_corpus(CorpusSource("uk", str(tmp_path / "uk.parquet")))["text"] == lines
    # a dataset folder takes the `datasets.load_dataset(name)` path, as a Hub id does
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "train.jsonl").write_text((tmp_path / "uk.jsonl").read_text())
    assert load_corpus(CorpusSource("uk", str(folder)))["body"] == lines


# ---------------------------------------------------------------------------------- packing


def test_packing_fills_strips_without_truncation_and_keeps_every_word(short_renderer):
    lines = sample_lines("en")[:12]
    packed = list(StripPacker(short_renderer, "en").pack(lines))
    assert len(packed) > 3
    assert " ".join(packed).split() == " ".join(lines).split()  # nothing lost, order kept
    budget = short_renderer.max_seq_length - 1
    pieces = [
        patches for line in lines for _, patches in StripPacker(short_renderer, "en").pieces(line)
    ]
    for text in packed:
        rendered = short_renderer.render(text)
        assert rendered.overflow == 0
        assert rendered.num_patches - 1 <= budget
    # full: no strip but the last could have taken the next piece
    fills = [short_renderer.render(text).num_patches - 1 for text in packed]
    assert sum(fills) == sum(pieces)  # bigram patch counts add up exactly
    assert min(fills[:-1]) > budget - max(pieces)


def test_packing_on_the_full_strip_fills_most_of_it(renderer):
    packed = list(StripPacker(renderer, "hi").pack(sample_lines("hi")))
    fills = [renderer.render(text).num_patches for text in packed]
    assert max(fills) <= renderer.max_seq_length
    assert sum(fills[:-1]) / (len(fills) - 1) > 0.85 * renderer.max_seq_length


def test_lines_longer_than_a_strip_are_cut_where_the_renderer_overflows(short_renderer):
    long_line = " ".join(sample_lines("en")[:4])
    assert short_renderer.render(long_line).overflow > 0
    pieces = list(StripPacker(short_renderer, "en").pieces(long_line))
    assert len(pieces) > 1
    assert " ".join(text for text, _ in pieces).split() == long_line.split()
    for text, patches in pieces:
        rendered = short_renderer.render(text)
        assert rendered.overflow == 0 and rendered.num_patches - 1 == patches


def test_unspaced_text_longer_than_a_strip_is_cut_keeping_its_character_pairs(short_renderer):
    paragraph = "".join(sample_lines("zh")[:3])  # Chinese: one "word" of ~150 characters
    assert len(paragraph.split()) == 1
    pieces = [text for text, _ in StripPacker(short_renderer, "zh").pieces(paragraph)]
    assert len(pieces) > 1 and "".join(pieces) == paragraph
    assert all(len(text) % 2 == 0 for text in pieces[:-1])  # bigram pairs stay together
    assert all(short_renderer.render(text).overflow == 0 for text in pieces)


def test_pack_corpus_streaming_equals_map_style_and_checks_text_column(tmp_path, short_renderer):
    path = tmp_path / "zh.jsonl"
    path.write_text("".join(json.dumps({"body": line}) + "\n" for line in sample_lines("zh")[:8]))
    corpus = CorpusSource("zh", str(path))
    packed = pack_corpus(load_corpus(corpus), short_renderer, "zh", "body")
    streamed = pack_corpus(load_corpus(corpus, streaming=True), short_renderer, "zh", "body")
    assert isinstance(streamed, datasets.IterableDataset)
    assert list(streamed) == list(packed) and len(packed) > 3
    assert set(packed["language"]) == {"zh"}
    with pytest.raises(ValueError, match="--text_column 'text' is not a column"):
        pack_corpus(load_corpus(corpus), short_renderer, "zh", "text")
    with pytest.raises(ValueError, match="--text_column 'text' is not a column"):
        # streamed JSON has no known columns up front: the error comes on the first batch
        list(pack_corpus(load_corpus(corpus, streaming=True), short_renderer, "zh", "text"))


# ---------------------------------------------------------------------------------- mixing


def test_mixing_probabilities_default_equal_and_validated():
    assert mixing_probabilities(list(LANGUAGES), None) == [0.25] * 4
    assert mixing_probabilities(["en", "hi"], [3, 1]) == [0.75, 0.25]
    with pytest.raises(ValueError, match="--mixing_weights needs one weight per --corpus entry"):
        mixing_probabilities(["en", "hi"], [1.0])
    with pytest.raises(ValueError, match="--mixing_weights must all be > 0"):
        mixing_probabilities(["en", "hi"], [1.0, 0.0])


@pytest.mark.parametrize("streaming", [False, True])
def test_mix_languages_draws_with_our_weights_and_seed_until_one_language_runs_out(streaming):
    # How interleave_datasets samples is datasets' (tested there); ours is what we pass it: the
    # mixing weights, the seed and the published stopping rule, and one language as it is.
    def language(code, n):
        data = datasets.Dataset.from_dict({"text": [f"{code}{i}" for i in range(n)]})
        data = data.map(lambda row: {"language": code})
        return data.to_iterable_dataset() if streaming else data

    en, hi = language("en", 40), language("hi", 10)
    assert mix_languages([hi], [1.0], seed=0) is hi
    mixed = list(mix_languages([en, hi], [0.75, 0.25], seed=3))
    expected = datasets.interleave_datasets(
        [en, hi], probabilities=[0.75, 0.25], seed=3, stopping_strategy="first_exhausted"
    )
    assert mixed == list(expected)
    assert mixed != list(mix_languages([en, hi], [0.25, 0.75], seed=3))
    assert mixed != list(mix_languages([en, hi], [0.75, 0.25], seed=4))
    # first_exhausted (the published default): no sample twice, the stream ends with the last
    # sample of the first language to run out
    texts = [sample["text"] for sample in mixed]
    assert len(set(texts)) == len(texts)
    assert texts[-1] in ("en39", "hi9") and Counter(text[:2] for text in texts)[texts[-1][:2]] == (
        40 if texts[-1] == "en39" else 10
    )
    repeating = mix_languages([en, hi], [0.75, 0.25], seed=3, stopping_strategy="all_exhausted")
    assert len(list(repeating)) > len(mixed)


def test_build_pretraining_dataset_on_the_sample_corpus(renderer):
    corpus = [f"{code}={SAMPLES / code}.txt" for code in LANGUAGES]
    mixed, previews, probabilities = build_pretraining_dataset(
        corpus, renderer, preview_samples_per_language=2
    )
    assert probabilities == [0.25] * 4
    assert [language for language, _ in previews] == [c for c in LANGUAGES for _ in range(2)]
    counts = Counter(mixed["language"])
    assert set(counts) == set(LANGUAGES)
    # first_exhausted (published default): no sample is seen twice, and the stream ends when
    # one language has given all its samples
    assert max(Counter(mixed["text"]).values()) == 1
    exhausted = []
    for code in LANGUAGES:
        packed = list(StripPacker(renderer, code).pack(sample_lines(code)))
        exhausted.append(counts[code] == len(packed))
    assert any(exhausted)
    repeating, _, _ = build_pretraining_dataset(
        corpus, renderer, preview_samples_per_language=2, stopping_strategy="all_exhausted"
    )
    assert len(repeating) > len(mixed)
    with pytest.raises(ValueError, match="--corpus needs at least one"):
        build_pretraining_dataset([], renderer)


# ---------------------------------------------------------------------------------- rendering


def test_collator_renders_in_forked_dataloader_workers_identically(short_renderer):
    texts = list(StripPacker(short_renderer, "uk").pack(sample_lines("uk")[:10]))[:8]
    dataset = datasets.Dataset.from_dict({"text": texts, "language": ["uk"] * len(texts)})
    collator = RenderingCollator(short_renderer)

    def batches(workers):
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=4, collate_fn=collator, num_workers=workers
        )
        return list(loader)

    in_process, in_workers = batches(0), batches(2)
    assert set(in_process[0]) == {"pixel_values", "attention_mask"}
    assert in_process[0]["pixel_values"].shape == (4, 1, 16, 16 * 48)  # the compact format
    expected = short_renderer(texts[:4], return_tensors="pt", output_format="uint8")
    assert torch.equal(in_process[0]["pixel_values"], expected["pixel_values"])
    for a, b in zip(in_process, in_workers, strict=True):
        assert torch.equal(a["pixel_values"], b["pixel_values"])
        assert torch.equal(a["attention_mask"], b["attention_mask"])


# ---------------------------------------------------------------------------------- previews


def test_reconstruction_png_is_written_without_touching_the_training_rng(tmp_path, renderer):
    torch.manual_seed(0)
    model = PixelM4ForPreTraining(PixelM4Config.from_preset("test")).train()
    samples = [(code, sample_lines(code)[0]) for code in ("hi", "zh")]
    callback = ReconstructionCallback(renderer, samples, tmp_path, every_n_steps=2)
    state = torch.get_rng_state()
    status = type("State", (), {"global_step": 2, "is_world_process_zero": True})()
    callback.on_step_end(None, status, None, model=model)
    first_mask = callback.patch_mask.clone()
    status.global_step = 3
    callback.on_step_end(None, status, None, model=model)  # not a multiple of 2: no PNG
    callback.on_train_end(None, status, None, model=model)  # the end always gets one
    assert torch.equal(torch.get_rng_state(), state)
    assert model.training
    assert sorted(p.name for p in (tmp_path / "reconstructions").iterdir()) == [
        "step-000002.png",
        "step-000003.png",
    ]
    assert callback.last_path == tmp_path / "reconstructions" / "step-000003.png"
    assert torch.equal(callback.patch_mask, first_mask) and 0.9 < callback.last_loss < 1.2
    with open(callback.last_path, "rb") as png:
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"


def test_save_reconstructions_reports_the_loss_of_its_mask(tmp_path, renderer):
    torch.manual_seed(0)
    model = PixelM4ForPreTraining(PixelM4Config.from_preset("test"))
    inputs = renderer([sample_lines("en")[0]], return_tensors="pt")
    mask = model.sample_patch_mask(inputs["attention_mask"], torch.Generator().manual_seed(1))
    loss = save_reconstructions(
        model, inputs["pixel_values"], inputs["attention_mask"], mask, ["en"], tmp_path / "x.png"
    )
    assert model.training  # save_reconstructions evaluates in eval mode and restores the mode
    model.eval()  # no dropout, as in save_reconstructions
    expected = model(inputs["pixel_values"], inputs["attention_mask"], patch_mask=mask).loss
    assert loss == pytest.approx(float(expected.detach()))
    with pytest.raises(ValueError, match="--reconstruction_steps must be >= 0"):
        ReconstructionCallback(renderer, [("en", "x")], tmp_path, every_n_steps=-1)


# ---------------------------------------------------------------------------------- model, renderer


def test_load_pretraining_model_presets_paths_overrides_and_errors(tmp_path):
    model = load_pretraining_model("test", masking="random", mask_ratio=0.4, norm_pix_loss=None)
    assert model.config.hidden_size == 32 and model.config.masking == "random"
    assert model.config.mask_ratio == 0.4 and model.config.norm_pix_loss is True
    assert model.config._attn_implementation == "sdpa"
    model.config.save_pretrained(tmp_path / "config")
    from_path = load_pretraining_model(str(tmp_path / "config"), attn_implementation="eager")
    assert from_path.config.masking == "random" and from_path.config._attn_implementation == "eager"
    with pytest.raises(ValueError, match="--model_config must be a preset"):
        load_pretraining_model("huge")


def test_continued_pretraining_loads_weights_and_renderer(tmp_path, short_renderer):
    torch.manual_seed(0)
    trained = PixelM4ForPreTraining(PixelM4Config.from_preset("test", image_size=(16, 16 * 49)))
    trained.save_pretrained(tmp_path)
    renderer = PixelM4TextRenderer(max_seq_length=49, render_mode="continuous")
    renderer.save_pretrained(tmp_path)
    model = load_pretraining_model("base", str(tmp_path), masking="random")
    assert model.config.hidden_size == 32 and model.config.masking == "random"
    for name, value in trained.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    loaded = load_renderer(str(tmp_path), model.config.num_patches, saved_length_must_match=True)
    assert loaded.render_mode == "continuous" and loaded.max_seq_length == 49
    short_renderer.save_pretrained(tmp_path / "short")
    with pytest.raises(
        ValueError, match="renderer makes strips of 48 patches but the model reads 49"
    ):
        load_renderer(str(tmp_path / "short"), 49, saved_length_must_match=True)


def test_model_card_section_is_appended_once_and_replaced_on_rerun(tmp_path):
    (tmp_path / "README.md").write_text("# model\n\n## Usage\n\ncode\n")
    append_to_model_card(tmp_path, "## Pretraining\n\nfirst run")
    append_to_model_card(tmp_path, "## Pretraining\n\nsecond run")
    card = (tmp_path / "README.md").read_text()
    assert card == "# model\n\n## Usage\n\ncode\n\n## Pretraining\n\nsecond run\n"


# ---------------------------------------------------------------------------------- the script

RUN_ARGS = [
    "--model_config", "test", "--max_steps", "8", "--per_device_train_batch_size", "2",
    "--logging_steps", "1", "--save_steps", "4", "--reconstruction_steps", "4",
    "--report_to", "none", "--seed", "7",
]  # fmt: skip
TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2")
# One thread per process: the runs below share 2 cores, and equal thread counts keep the
# reference and the resumed run's arithmetic identical.
RUN_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def start(*args, launcher=(sys.executable,)) -> subprocess.Popen:
    return subprocess.Popen(
        [*launcher, str(SCRIPT), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=RUN_ENV,
    )


def finish(process: subprocess.Popen, timeout=300) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-5000:]
    return output


def kill_after_checkpoint(process: subprocess.Popen, checkpoint: Path, timeout=300) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        try:  # the trainer state is the last file written into a checkpoint
            json.loads((checkpoint / "trainer_state.json").read_text())
            break
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    return process.returncode


def logged_losses(output_dir: Path) -> dict[int, float]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return {entry["step"]: entry["loss"] for entry in state["log_history"] if "loss" in entry}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The script's runs, started together: a reference run, the same run killed (SIGKILL) after
    its step-4 checkpoint and then resumed, and a 2-process torchrun on streamed corpora with
    bf16 autocast, gradient checkpointing and eager attention."""
    root = tmp_path_factory.mktemp("pretrain")
    reference = start(*RUN_ARGS, "--output_dir", str(root / "reference"))
    killed = start(*RUN_ARGS, "--output_dir", str(root / "killed"))
    ddp = start(
        "--model_config", "test", "--max_steps", "3", "--per_device_train_batch_size", "2",
        "--reconstruction_steps", "0", "--report_to", "none", "--output_dir", str(root / "ddp"),
        "--streaming", "--dataloader_num_workers", "1",  # lazy packing + rendering in a worker
        "--bf16", "--gradient_checkpointing", "--attn_implementation", "eager",
        launcher=TORCHRUN,
    )  # fmt: skip
    checkpoint = root / "killed" / "checkpoint-4"
    killed_returncode = kill_after_checkpoint(killed, checkpoint)
    killed_had_final_model = (root / "killed" / "model.safetensors").exists()
    resumed = start(
        *RUN_ARGS, "--output_dir", str(root / "killed"), "--resume_from_checkpoint", str(checkpoint)
    )
    return {
        "root": root,
        "reference": finish(reference),
        "ddp": finish(ddp),
        "resumed": finish(resumed),
        "killed_returncode": killed_returncode,
        "killed_had_final_model": killed_had_final_model,
    }


def test_script_help_explains_every_flag(load_script, monkeypatch):
    script = load_script("run_pretraining", monkeypatch)
    parser = transformers.HfArgumentParser(
        (script.ModelArguments, script.DataArguments, script.PretrainingArguments)
    )
    ours = [f for cls in (script.ModelArguments, script.DataArguments) for f in fields(cls)]
    assert all(f.metadata.get("help") for f in ours), [
        f.name for f in ours if not f.metadata.get("help")
    ]
    text = parser.format_help()
    for flag in ("--corpus", "--mixing_weights", "--model_config", "--model_name_or_path",
                 "--streaming", "--masking", "--attn_implementation", "--reconstruction_steps"):  # fmt: skip
        assert flag in text
    defaults = script.PretrainingArguments(output_dir="x")
    assert defaults.remove_unused_columns is False
    assert script.DataArguments().stopping_strategy == "first_exhausted"
    assert script.ModelArguments().hidden_dropout_prob is None  # the config's 0.1


def test_script_optimiser_and_schedule_read_back_from_the_trainer(
    load_script, tmp_path, monkeypatch
):
    script = load_script("run_pretraining", monkeypatch)
    args = transformers.HfArgumentParser(script.PretrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--max_steps", "1000", "--report_to", "none"]
    )[0]
    model = load_pretraining_model("test")
    trainer = transformers.Trainer(model=model, args=args)
    trainer.create_optimizer_and_scheduler(num_training_steps=1000)
    groups = trainer.optimizer.param_groups
    assert {group["betas"] for group in groups} == {(0.9, 0.999)}  # TrainingArguments' default
    assert {group["eps"] for group in groups} == {1e-8}
    assert sorted(group["weight_decay"] for group in groups) == [0.0, 0.05]
    optimised = {id(p) for group in groups for p in group["params"]}
    assert id(model.vit.embeddings.position_embeddings) not in optimised  # frozen sin-cos

    # published get_cosine_schedule_to_min_lr_with_warmup: 5% linear warmup, cosine to 1e-5
    def published(step, warmup=50, total=1000, max_lr=1.5e-4, min_lr=1e-5):
        if step < warmup:
            return max_lr * step / warmup
        progress = (step - warmup) / (total - warmup)
        return min_lr + (max_lr - min_lr) * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * progress)))

    rate = trainer.lr_scheduler.lr_lambdas[0]  # one per parameter group, all the same
    for step in (0, 25, 50, 300, 525, 999, 1000):
        assert rate(step) * 1.5e-4 == pytest.approx(float(published(step)), rel=1e-6, abs=1e-12)
    assert rate(1000) * 1.5e-4 == pytest.approx(1e-5)


@pytest.mark.slow  # the module fixture: four script runs, torchrun and SIGKILL (~70 s)
def test_script_end_to_end_writes_a_hub_ready_folder(runs):
    output_dir = runs["root"] / "reference"
    assert "reload check OK" in runs["reference"]
    config = json.loads((output_dir / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_pixel_m4.PixelM4Model"
    assert config["model_type"] == "pixel_m4" and config["hidden_size"] == 32
    for name in ("model.safetensors", "configuration_pixel_m4.py", "modeling_pixel_m4.py",
                 "rendering_pixel_m4.py", "preprocessor_config.json", "NotoSans[wght].ttf"):  # fmt: skip
        assert (output_dir / name).is_file(), name
    # result files as in transformers' examples (Trainer.save_metrics)
    train_results = json.loads((output_dir / "train_results.json").read_text())
    assert train_results["train_loss"] > 0 and train_results["train_runtime"] > 0
    assert json.loads((output_dir / "all_results.json").read_text()) == train_results
    card = (output_dir / "README.md").read_text()
    assert "## Pretraining" in card and "8 steps at batch size 2" in card
    pngs = sorted(p.name for p in (output_dir / "reconstructions").iterdir())
    assert pngs == ["step-000004.png", "step-000008.png"]
    losses = logged_losses(output_dir)
    assert sorted(losses) == list(range(1, 9))
    assert all(0.5 < loss < 1.5 for loss in losses.values())


@pytest.mark.slow
def test_resume_after_sigkill_matches_the_uninterrupted_run(runs):
    assert runs["killed_returncode"] == -signal.SIGKILL  # killed mid-run, not finished
    assert not runs["killed_had_final_model"]
    resumed = logged_losses(runs["root"] / "killed")
    reference = logged_losses(runs["root"] / "reference")
    assert sorted(resumed) == list(range(1, 9))
    for step in range(5, 9):
        assert resumed[step] == reference[step], (step, resumed[step], reference[step])


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_one_model_on_streamed_corpora(runs):
    assert runs["ddp"].count("reload check OK") == 1  # one process group; rank 0 saves
    card = (runs["root"] / "ddp" / "README.md").read_text()
    assert "3 steps at batch size 4" in card  # 2 processes x 2
    config = json.loads((runs["root"] / "ddp" / "config.json").read_text())
    assert config["dtype"] == "float32"  # bf16 autocast keeps fp32 master weights
