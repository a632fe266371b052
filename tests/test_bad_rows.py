"""Bad task data, one parametrised table per script's data reader: every invalid row is found
before training starts, reported with the file, the count and the first row numbers, and
either stops the run or, with --skip_invalid_rows, is left out and counted in the results."""

import json
import sys
from pathlib import Path

import pytest

from pixel_m4.tools.task_data import read_conllu, tree_problem

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "examples" / "data"
CLASSIFICATION_HEADER = "index_id\tcategory\ttext\n"
GOOD_TSV = "1\tsports\tThe team won.\n2\tscience\tFrogs sing at night.\n"
GOOD_CONLL = "Maria\tB-PER\nmoved\tO\n\nOslo\tB-LOC\nis\tO\n\n"
GOOD_CONLLU = "1\tIt\t_\t_\t_\t_\t2\tnsubj\t_\t_\n2\trains\t_\t_\t_\t_\t0\troot\t_\t_\n\n"
NO_TRAINING = ["--max_steps", "1", "--report_to", "none", "--disable_tqdm", "true"]


def conllu(*heads, tokens=None):
    tokens = tokens or [f"w{index}" for index in range(1, len(heads) + 1)]
    return "".join(
        f"{index}\t{token}\t_\t_\t_\t_\t{head}\t{'root' if head == 0 else 'dep'}\t_\t_\n"
        for index, (token, head) in enumerate(zip(tokens, heads, strict=True), 1)
    )


# script, file suffix, the good file, case name -> (bad file content, split, message)
CASES = {
    "run_classification": (
        ".tsv",
        CLASSIFICATION_HEADER + GOOD_TSV,
        {
            "row without label": (
                CLASSIFICATION_HEADER + GOOD_TSV + "3\t\tNo label here.\n",
                "train",
                "1 invalid row.*row 3: category is missing",
            ),
            "empty text": (
                CLASSIFICATION_HEADER + "1\tsports\t\n" + GOOD_TSV,
                "train",
                "row 1: text is missing",
            ),
            "invisible text": (
                CLASSIFICATION_HEADER + GOOD_TSV + "3\tsports\t\u200b\u00a0\n",
                "test",
                "test file .*row 3: text has nothing to render",
            ),
            "several bad rows": (
                CLASSIFICATION_HEADER + "1\t\tx\n2\t\ty\n" + GOOD_TSV + "5\tsports\t\n",
                "train",
                "3 invalid row\\(s\\) of 5, first: row 1: .*row 2: .*row 5: ",
            ),
            "one label only": (
                CLASSIFICATION_HEADER + "1\tsports\tA.\n2\tsports\tB.\n",
                "train",
                "1 distinct label.*at least 2",
            ),
            "corrupt file": (
                CLASSIFICATION_HEADER + '1\tsports\t"unclosed\n' * 3 + "\x00\x00",
                "train",
                "train file .*cannot be read as tsv",
            ),
            "header only": (CLASSIFICATION_HEADER, "train", "train file .*cannot be read as tsv"),
        },
    ),
    "run_ner": (
        ".conll",
        GOOD_CONLL,
        {
            "zero-width-space token": (
                GOOD_CONLL + "\u200b\tO\nx\tO\n\n",
                "test",
                "test file .*row 3: token 1 \\('\\\\u200b'\\) has nothing to render",
            ),
            "lone no-break space token": (
                GOOD_CONLL + "a\tO\n\u00a0\tO\n\n",
                "train",
                "row 3: token 2 .* has nothing to render",
            ),
            "tag without BIO prefix": (
                GOOD_CONLL + "Paris\tLOC\n\n",
                "validation",
                "validation file .*row 3: tag 1 \\('LOC'\\) is not a BIO tag",
            ),
            "lower-case tag": (GOOD_CONLL + "Paris\tb-LOC\n\n", "train", "is not a BIO tag"),
            "empty file": ("", "train", "holds no sentences"),
            "no tag column": (GOOD_CONLL + "Paris\n\n", "train", ":7: expected 'token<TAB>tag'"),
        },
    ),
    "run_dependency_parsing": (
        ".conllu",
        GOOD_CONLLU,
        {
            "self-loop": (GOOD_CONLLU + conllu(0, 2) + "\n", "train", "word 2 is its own head"),
            "cycle": (GOOD_CONLLU + conllu(0, 3, 2) + "\n", "train", "form a cycle"),
            "two roots": (GOOD_CONLLU + conllu(0, 0) + "\n", "test", "exactly one root"),
            "head out of range": (GOOD_CONLLU + conllu(0, 9) + "\n", "train", "outside 0..2"),
            "invisible token": (
                GOOD_CONLLU + conllu(0, 1, tokens=["a", "\u200b"]) + "\n",
                "train",
                "row 2: token 2 .* has nothing to render",
            ),
            "empty file": ("", "validation", "validation file .* holds no sentences"),
        },
    ),
}
TABLE = [(script, case) for script, (_, _, cases) in CASES.items() for case in cases]


def write_splits(tmp_path, script, bad_split, bad_content):
    suffix, good, _ = CASES[script]
    arguments = []
    for split in ("train", "validation", "test"):
        path = tmp_path / f"{split}{suffix}"
        path.write_text(bad_content if split == bad_split else good, encoding="utf-8")
        arguments += [f"--{split}_file", str(path)]
    return arguments


@pytest.mark.parametrize("script, case", TABLE)
def test_invalid_rows_stop_the_run_before_training(run_script, script, case, tmp_path, monkeypatch):
    content, split, message = CASES[script][2][case]
    arguments = write_splits(tmp_path, script, split, content)
    output_dir = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        run_script(script, [*arguments, "--output_dir", str(output_dir), *NO_TRAINING], monkeypatch)
    assert not output_dir.exists()  # nothing trained, nothing written


@pytest.mark.slow  # one short training run
def test_skip_invalid_rows_leaves_them_out_and_counts_them(
    run_script, tmp_path, pretrained, monkeypatch
):
    bad_test = GOOD_CONLL + "\u200b\tO\nx\tO\n\n" + "Paris\tLOC\n\n"
    arguments = write_splits(tmp_path, "run_ner", "test", bad_test)
    results = run_script(
        "run_ner",
        [
            *arguments,
            "--model_name_or_path", str(pretrained),
            "--output_dir", str(tmp_path / "out"),
            "--skip_invalid_rows", "true",
            "--eval_steps", "1", "--save_steps", "1", "--per_device_train_batch_size", "2",
            *NO_TRAINING,
        ],
        monkeypatch,
    )  # fmt: skip
    assert results["test_skipped_invalid_rows"] == 2
    assert results["train_skipped_invalid_rows"] == 0
    assert "test_f1" in results


def test_every_row_invalid_is_an_error_even_when_skipping(run_script, tmp_path, monkeypatch):
    arguments = write_splits(
        tmp_path, "run_classification", "test", CLASSIFICATION_HEADER + "1\t\tx\n"
    )
    with pytest.raises(ValueError, match="every row is invalid"):
        run_script(
            "run_classification",
            [*arguments, "--output_dir", str(tmp_path / "o"), "--skip_invalid_rows", "true"],
            monkeypatch,
        )


@pytest.mark.parametrize(
    "heads, problem",
    [
        ([0], None),
        ([2, 0, 2], None),
        ([1], "exactly one root"),
        ([0, 2], "its own head"),
        ([0, 3, 2], "cycle through word"),
        ([2, 3, 1], "exactly one root"),
        ([0, 0], "exactly one root"),
    ],
)
def test_tree_problem(heads, problem):
    found = tree_problem(heads)
    assert found is None if problem is None else problem in found


def test_shipped_samples_are_valid():
    for path in sorted((SAMPLES / "ud").glob("*.conllu")):
        assert read_conllu(path)


# ----------------------------------------------------------------------- run_fallback.py
def pair_line(src, tgt, lang="hi"):
    return json.dumps({"src": src, "tgt": tgt, "src_lang": lang}) + "\n"


GOOD_PAIRS = pair_line("नमस्ते दुनिया", "Hello world") + pair_line("धन्यवाद", "Thank you")

FALLBACK_CASES = {
    # name: (training file content or None for the good one, extra flags, error, message)
    "tgt null": (
        GOOD_PAIRS + pair_line("नमस्ते", None),
        [],
        ValueError,
        "train file .*1 invalid row.*row 3: tgt is missing",
    ),
    "src empty": (pair_line(" ", "x") + GOOD_PAIRS, [], ValueError, "row 1: src is empty"),
    "empty file": ("", [], ValueError, "train.jsonl' (holds no pairs|cannot be read)"),
    "corrupt json": ('{"src": "a", "tgt": \n', [], ValueError, "cannot be read as json"),
    "no pair of the languages": (
        pair_line("Привіт", "Hi", "uk") * 2,
        ["--languages", "hi"],
        ValueError,
        "no training pairs are left for --languages hi.*'uk'",
    ),
    "num_beams 0": (None, ["--num_beams", "0"], ValueError, "--num_beams must be >= 1"),
    "stage1_steps -3": (None, ["--stage1_steps", "-3"], ValueError, "--stage1_steps must be >= 0"),
    "eval_batch_size 0": (None, ["--eval_batch_size", "0"], ValueError, "--eval_batch_size"),
    "lora_dropout 1": (None, ["--lora_dropout", "1"], ValueError, "--lora_dropout"),
    "max_train_samples 0": (None, ["--max_train_samples", "0"], ValueError, "max_train_samples"),
    "missing file": ("MISSING", [], FileNotFoundError, "does not exist"),
}


@pytest.mark.parametrize("case", list(FALLBACK_CASES))
def test_fallback_script_rejects_bad_data_and_flags_before_loading_models(
    load_script, case, tmp_path, monkeypatch
):
    content, flags, error, message = FALLBACK_CASES[case]
    train, validation = tmp_path / "train.jsonl", tmp_path / "validation.jsonl"
    validation.write_text(GOOD_PAIRS, encoding="utf-8")
    if content != "MISSING":
        train.write_text(GOOD_PAIRS if content is None else content, encoding="utf-8")
    module = load_script("run_fallback", monkeypatch)
    loaded = []
    monkeypatch.setattr(module, "tiny_causal_lm_path", lambda **kwargs: loaded.append(1))
    monkeypatch.setattr(
        sys,
        "argv",
        ["run_fallback.py", "--train_file", str(train), "--validation_file", str(validation),
         "--output_dir", str(tmp_path / "out"), *flags],
    )  # fmt: skip
    with pytest.raises(error, match=message):
        module.main()
    assert not loaded  # failed before the language model was loaded


# --------------------------------------------------------------------- run_pretraining.py
PRETRAINING_CASES = {
    "word_bigram on a 16-px model": (["--render_mode", "word_bigram"], "24-px patches"),
    "mask_ratio 1.5": (["--mask_ratio", "1.5"], "mask_ratio must be in \\(0, 1\\)"),
    "mask_ratio 0": (["--mask_ratio", "0"], "mask_ratio must be in \\(0, 1\\)"),
    "mask_ratio 1.5 on a checkpoint": (
        ["--model_name_or_path", "PRETRAINED", "--mask_ratio", "1.5"],
        "mask_ratio must be in",
    ),
    "corrupt corpus file": (
        ["--corpus", "en=BAD_JSONL"],
        "--corpus en=.*bad.jsonl: cannot read 1 file\\(s\\) \\['bad.jsonl'\\] as json",
    ),
    "empty corpus file": (["--corpus", "en=EMPTY_TXT"], "cannot read 1 file.*'empty.txt'"),
}


@pytest.mark.parametrize("case", list(PRETRAINING_CASES))
def test_pretraining_script_rejects_bad_flags_before_training(
    load_script, case, tmp_path, pretrained, monkeypatch
):
    flags, message = PRETRAINING_CASES[case]
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"text": \n')
    (tmp_path / "empty.txt").write_text("")
    flags = [
        flag.replace("PRETRAINED", str(pretrained))
        .replace("BAD_JSONL", str(tmp_path / "bad.jsonl"))
        .replace("EMPTY_TXT", str(tmp_path / "empty.txt"))
        for flag in flags
    ]
    module = load_script("run_pretraining", monkeypatch)
    output_dir = tmp_path / "out"
    monkeypatch.setattr(
        sys,
        "argv",
        ["run_pretraining.py", "--model_config", "test", "--output_dir", str(output_dir), *flags],
    )
    with pytest.raises(ValueError, match=message):
        module.main()
    assert not output_dir.exists()
