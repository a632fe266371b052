"""The task heads learn (overfit tests), and the three example scripts run end to end, writing
all_results.json and model folders that load through Auto classes in a fresh process."""

import inspect
import json
from pathlib import Path

import pytest
import torch

from pixel_m4 import (
    PixelM4Config,
    PixelM4ForBiaffineParsing,
    PixelM4ForSequenceClassification,
    PixelM4ForTokenClassification,
)
from pixel_m4.parsing_pixel_m4 import decode_trees
from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer
from pixel_m4.tools.task_data import SequenceClassificationCollator, WordTaskCollator
from pixel_m4.tools.task_metrics import attachment_scores

ROOT = Path(__file__).resolve().parents[1]
PATCHES = 36
RENDERER = {"max_seq_length": PATCHES}  # conftest's renderer


def train(model, batch, steps: int, learning_rate: float):
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    model.train()
    for _ in range(steps):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        return model(**{name: value for name, value in batch.items() if "labels" not in name})


def config(**overrides):
    """Memorisation runs: no dropout (the published 0.1 is tested in test_modeling)."""
    torch.manual_seed(0)
    return PixelM4Config.from_preset(
        "test",
        image_size=(16, 16 * PATCHES),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **overrides,
    )


def test_sequence_classification_overfits(renderer):
    texts = [
        "The team won the final match",
        "Prices rose sharply this year",
        "नदी में हर साल बाढ़ आती है",
        "新疫苗今天获得批准",
    ]
    batch = SequenceClassificationCollator(renderer, PATCHES)(
        [{"text": text, "labels": index} for index, text in enumerate(texts)]
    )
    model = PixelM4ForSequenceClassification(config(num_labels=4))
    output = train(model, batch, steps=40, learning_rate=3e-3)
    assert output.logits.argmax(-1).tolist() == [0, 1, 2, 3]


def test_token_classification_overfits(renderer):
    sentences = [
        (["Maria", "lives", "in", "Oslo"], [1, 0, 0, 2]),
        (["北京", "是", "中国", "的", "首都"], [2, 0, 2, 0, 0]),
        (["Ravi", "Kumar", "visited", "New Delhi", "today"], [1, 3, 0, 2, 0]),
        (["The", "United", "Nations", "met"], [0, 4, 5, 0]),
    ]
    batch = WordTaskCollator(renderer, PATCHES)(
        [{"tokens": tokens, "labels": labels} for tokens, labels in sentences]
    )
    model = PixelM4ForTokenClassification(config(num_labels=6))
    output = train(model, batch, steps=50, learning_rate=3e-3)
    scored = batch["labels"] != -100
    assert (output.logits.argmax(-1)[scored] == batch["labels"][scored]).all()


@pytest.mark.parametrize("variant", ["published", "dozat_manning"])
def test_biaffine_parser_overfits(renderer, variant):
    sentences = [  # (tokens, heads, relation ids)
        (["The", "old", "man", "walked"], [3, 3, 4, 0], [0, 1, 2, 3]),
        (["We", "visited", "the", "museum"], [2, 0, 4, 2], [2, 3, 0, 4]),
        (["She", "reads", "books"], [2, 0, 2], [2, 3, 4]),
        (["Dogs", "bark", "loudly", "at", "night"], [2, 0, 2, 5, 2], [2, 3, 5, 6, 7]),
    ]
    collate = WordTaskCollator(
        renderer, PATCHES, label_fields=("arc_labels", "rel_labels"), head_fields=("arc_labels",)
    )
    batch = collate([{"tokens": t, "arc_labels": h, "rel_labels": r} for t, h, r in sentences])
    model = PixelM4ForBiaffineParsing(
        config(num_labels=8, parser_variant=variant, biaffine_arc_size=64, biaffine_rel_size=32)
    )
    output = train(model, batch, steps=100, learning_rate=3e-3)
    for decoding in ("greedy", "mst"):
        decoded = decode_trees(output.arc_logits, output.rel_logits, output.word_mask, decoding)
        scores = attachment_scores(
            decoded[..., 0], decoded[..., 1], batch["arc_labels"], batch["rel_labels"]
        )
        assert scores == {"uas": 100.0, "las": 100.0}, decoding


# ---------------------------------------------------------------------------------------------
# Example scripts, end to end on the shipped samples (a pretraining-style checkpoint as start)
# ---------------------------------------------------------------------------------------------

SCRIPT_ARGS = [
    "--max_steps", "2", "--eval_steps", "1", "--save_steps", "1",
    "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "32",
    "--logging_steps", "1", "--disable_tqdm", "true",
]  # fmt: skip


@pytest.fixture(scope="module")
def script_outputs(run_script, tmp_path_factory, pretrained):
    """Runs the three scripts once (2 steps each) and returns {name: (output_dir, results)}."""
    monkeypatch = pytest.MonkeyPatch()
    outputs = {}
    for name, extra in [
        ("run_classification", ["--max_seq_length", "64"]),
        ("run_ner", []),
        ("run_dependency_parsing", []),
    ]:
        output_dir = tmp_path_factory.mktemp(name)
        arguments = [
            "--model_name_or_path", str(pretrained), "--output_dir", str(output_dir),
            *SCRIPT_ARGS, *extra,
        ]  # fmt: skip
        outputs[name] = output_dir, run_script(name, arguments, monkeypatch)
    monkeypatch.undo()
    return outputs


@pytest.mark.slow  # the module fixture runs the three scripts (~30 s)
@pytest.mark.parametrize(
    "name, metrics",
    [
        ("run_classification", ["accuracy", "macro_f1"]),
        ("run_ner", ["precision", "recall", "f1", "accuracy"]),
        ("run_dependency_parsing", ["uas", "las"]),
    ],
)
def test_scripts_write_results_and_model_folders(script_outputs, name, metrics):
    output_dir, results = script_outputs[name]
    for split in ("eval", "test"):
        for metric in metrics:
            value = results[f"{split}_{metric}"]
            assert 0 <= value <= (100 if name == "run_dependency_parsing" else 1)
    for split in ("train", "validation", "test"):
        assert results[f"{split}_truncated_examples"] == 0  # the samples fit in 64 patches
    assert results["train_loss"] > 0
    for file in ("model.safetensors", "config.json", "preprocessor_config.json"):
        assert (output_dir / file).is_file(), file
    assert not list(output_dir.glob("*.bin")) or (output_dir / "training_args.bin").exists()


@pytest.mark.slow
def test_scripts_train_with_the_published_dropout_and_parser(script_outputs):
    for output_dir, _ in script_outputs.values():
        config = json.loads((output_dir / "config.json").read_text())
        assert config["hidden_dropout_prob"] == config["attention_probs_dropout_prob"] == 0.1
        assert config["classifier_dropout"] is None  # the heads use hidden_dropout_prob
    parser_dir, _ = script_outputs["run_dependency_parsing"]
    config = json.loads((parser_dir / "config.json").read_text())
    assert (config["parser_variant"], config["parser_decoding"]) == ("published", "greedy")
    # the sample treebank has nmod:poss, aux:pass, ...: the published reader keeps "nmod", "aux"
    relations = set(config["id2label"].values())
    assert "nmod" in relations and not any(":" in name for name in relations)


@pytest.mark.slow  # a training run
def test_script_without_validation_split_trains_and_tests(
    run_script, tmp_path, pretrained, monkeypatch
):
    zh = ROOT / "examples" / "data" / "ner" / "zh"  # the Chinese sample has no validation split
    results = run_script(
        "run_ner",
        [
            "--model_name_or_path",
            str(pretrained),
            "--output_dir",
            str(tmp_path),
            "--train_file",
            str(zh / "train.conll"),
            "--validation_file",
            "",
            "--test_file",
            str(zh / "test.conll"),
            *SCRIPT_ARGS,
        ],  # fmt: skip
        monkeypatch,
    )
    assert "test_f1" in results and "eval_f1" not in results


def test_script_rejects_labels_unknown_to_training(run_script, tmp_path, pretrained, monkeypatch):
    bad = tmp_path / "validation.conll"
    bad.write_text("Maria\tB-PERSON\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown label 'B-PERSON' in validation"):
        run_script(
            "run_ner",
            ["--model_name_or_path", str(pretrained), "--output_dir", str(tmp_path / "out"),
             "--validation_file", str(bad), *SCRIPT_ARGS],
            monkeypatch,
        )  # fmt: skip


def test_script_help_documents_recipes(run_script, capsys, monkeypatch):
    with pytest.raises(SystemExit):
        run_script("run_dependency_parsing", ["--help", "--output_dir", "x"], monkeypatch)
    help_text = capsys.readouterr().out
    assert "--recipe {sample,paper}" in help_text
    assert "Table 7" in help_text and "from_preset('tiny')" in help_text


def sample_logits(model, renderer, script: str) -> list[float]:
    """The first 20 logits for one sentence, run here and (by its source) in the fresh process."""
    batch = renderer(["Maria lives in Oslo ."], return_tensors="pt", return_word_spans=True)
    inputs = {"pixel_values": batch["pixel_values"], "attention_mask": batch["attention_mask"]}
    if script != "run_classification":
        inputs["word_spans"] = torch.tensor(batch["word_patch_spans"])
    with torch.no_grad():
        output = model(**inputs)
    logits = output.arc_logits if script == "run_dependency_parsing" else output.logits
    return logits.flatten()[:20].tolist()


# Run by conftest's run_without_pixel_m4: only the folders' own code may be used.
LOAD_IN_FRESH_PROCESS = f"""
import json, sys
import torch
from transformers import (AutoImageProcessor, AutoModel, AutoModelForSequenceClassification,
                          AutoModelForTokenClassification)
{inspect.getsource(sample_logits)}
folders = json.loads(sys.argv[1])
results = {{}}
for name, auto in [("run_classification", AutoModelForSequenceClassification),
                   ("run_ner", AutoModelForTokenClassification),
                   ("run_dependency_parsing", AutoModel)]:
    model = auto.from_pretrained(folders[name], trust_remote_code=True).eval()
    renderer = AutoImageProcessor.from_pretrained(folders[name], trust_remote_code=True)
    results[name] = [type(model).__module__, type(model).__name__,
                     sample_logits(model, renderer, name)]
print(json.dumps(results))
"""


@pytest.mark.slow
def test_saved_models_load_through_auto_classes_in_a_fresh_process(
    script_outputs, run_without_pixel_m4
):
    folders = {name: str(output_dir) for name, (output_dir, _) in script_outputs.items()}
    stdout = run_without_pixel_m4(LOAD_IN_FRESH_PROCESS, json.dumps(folders))
    loaded = json.loads(stdout.strip().splitlines()[-1])
    expected_classes = {
        "run_classification": PixelM4ForSequenceClassification,
        "run_ner": PixelM4ForTokenClassification,
        "run_dependency_parsing": PixelM4ForBiaffineParsing,
    }
    for name, model_class in expected_classes.items():
        module, class_name, logits = loaded[name]
        assert module.startswith("transformers_modules.")  # the folder's own code
        assert class_name == model_class.__name__
        model = model_class.from_pretrained(folders[name]).eval()  # the package's own class
        renderer = PixelM4TextRenderer.from_pretrained(folders[name])
        ours = sample_logits(model, renderer, name)
        assert torch.allclose(torch.tensor(logits), torch.tensor(ours), atol=1e-5)
