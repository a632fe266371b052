"""A Hub user's first day: every folder the package writes loads and runs from raw text in a clean
virtualenv holding torch (CPU), transformers and exactly what the model card's install line names,
without pixel_m4. The venv is cached under ~/.cache/pixel-m4-test-venv/<hash of the
requirements>, so only the first run (or a new install line) builds it."""

import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from transformers import AutoModelForCausalLM, AutoTokenizer

from pixel_m4.configuration_pixel_fallback import PixelFallbackConfig
from pixel_m4.modeling_pixel_fallback import PixelFallbackForCausalLM
from pixel_m4.processing_pixel_fallback import PixelFallbackProcessor
from pixel_m4.tools.convert import convert_pixel_checkpoint
from pixel_m4.tools.hub import create_hub_folder

from tiny_causal_lm import tiny_causal_lm_path

ROOT = Path(__file__).resolve().parents[1]
VENV_CACHE = Path(os.environ.get("PIXEL_M4_TEST_VENV_CACHE", "~/.cache/pixel-m4-test-venv"))
TORCH_INDEX = os.environ.get("TORCH_INDEX_URL", "https://download.pytorch.org/whl/cpu")


def card_install_line() -> list[str]:
    """The packages of the first `pip install` line of model_card.md."""
    text = (ROOT / "model_card.md").read_text()
    line = re.search(r"^pip install (.+)$", text, re.MULTILINE).group(1)
    return [item.strip("\"'") for item in line.split()]


def pinned_requirements() -> list[str]:
    """The card's packages pinned to the versions installed here (which must satisfy the card's
    specifiers): the venv is reproducible and its cache key changes with the card or versions."""
    pinned = []
    for item in card_install_line():
        requirement = Requirement(item)
        version = importlib.metadata.version(requirement.name).split("+")[0]
        assert requirement.specifier.contains(version, prereleases=True), (item, version)
        pinned.append(f"{requirement.name}=={version}")
    return pinned


def build_venv(requirements: list[str]) -> Path:
    key = hashlib.sha256(json.dumps([sys.version, requirements]).encode()).hexdigest()[:16]
    venv = VENV_CACHE.expanduser() / key
    python = venv / "bin" / "python"
    if (venv / "complete").is_file():
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    torch = [item for item in requirements if item.startswith("torch==")]
    # torch from the CPU index first, as install.sh does (a plain install pulls the CUDA build)
    if torch and subprocess.run([*pip, *torch, "--index-url", TORCH_INDEX,
                                 "--extra-index-url", "https://pypi.org/simple"]).returncode:  # fmt: skip
        subprocess.run([*pip, *torch], check=True)
    subprocess.run([*pip, *requirements], check=True)
    (venv / "complete").write_text("\n".join(requirements) + "\n")
    return python


# Runs inside the clean venv; prints one JSON line of results.
RUN_FOLDERS = textwrap.dedent(
    """
    import importlib.util, json, sys
    import torch
    import transformers
    from transformers import AutoModel, AutoModelForPreTraining, AutoModelForSequenceClassification
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification, AutoProcessor
    from transformers import pipeline
    assert importlib.util.find_spec("pixel_m4") is None, "pixel_m4 must not be installed"
    folders = json.loads(sys.argv[1])
    text = "Maria lives in Oslo, नमस्ते दुनिया 你好"
    auto = {"pretraining": AutoModelForPreTraining, "converted": AutoModelForPreTraining,
            "classification": AutoModelForSequenceClassification,
            "ner": AutoModelForTokenClassification, "parsing": AutoModel}
    tasks = {"classification": "text-classification", "ner": "token-classification",
             "parsing": "dependency-parsing"}
    # packages the remote code must not import here: font packages (the folders carry their
    # fonts), pillow, pixel_m4, and pythainlp (the fallback imports it only for Thai text)
    watched = ("manimgx_fonts", "manimgx_fonts_cjk", "pixel_m4", "PIL", "pythainlp")
    results = {"modules": sorted(name.split(".")[0] for name in sys.modules
                                 if name.split(".")[0] in watched)}
    for kind, folder in folders.items():
        if kind == "fallback":
            processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
            model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
            inputs = processor([text, "Oslo"], template="Translate to English:\\n{text}\\nEnglish:",
                               padding_side="left")
            new = model.generate(**inputs, min_new_tokens=3, max_new_tokens=3, do_sample=False)
            results[kind] = {"processor": type(processor).__module__,
                             "processor_class": type(processor).__name__,
                             "model": type(model).__name__, "model_module": type(model).__module__,
                             "pixel_words": inputs["pixel_word_mask"].sum(1).tolist(),
                             "new_tokens": list(new.shape),
                             "decoded": processor.batch_decode(new, skip_special_tokens=True)}
            continue
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        model = auto[kind].from_pretrained(folder, trust_remote_code=True).eval()
        inputs = processor([text], return_tensors="pt", return_word_spans=True)
        model_inputs = {"pixel_values": inputs["pixel_values"],
                        "attention_mask": inputs["attention_mask"]}
        if kind in ("ner", "parsing"):
            model_inputs["word_spans"] = torch.tensor(inputs["word_patch_spans"])
        with torch.no_grad():
            output = model(**model_inputs)
        entry = {"processor": type(processor).__module__, "model": type(model).__name__,
                 "model_module": type(model).__module__, "missing_glyphs": int(inputs["missing_glyphs"][0])}
        if kind in tasks:
            entry["pipeline"] = pipeline(tasks[kind], model=folder, trust_remote_code=True)(text)
        entry["embedding"] = len(pipeline("feature-extraction", model=folder,
                                          trust_remote_code=True)(text))
        results[kind] = entry
    results["modules_after"] = sorted(name.split(".")[0] for name in sys.modules
                                      if name.split(".")[0] in watched)
    print(json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, run_script, pretrained):
    """One folder of each kind the package writes (tiny models, 1 training step)."""
    # tests/ is on sys.path (pytest's default import mode puts each test module's folder there)
    from test_convert import write_original_folder
    from test_run_conventions import QUICK, flags

    root = tmp_path_factory.mktemp("folders")
    made = {"pretraining": create_hub_folder(root / "pretraining", preset="test")}
    made["converted"] = convert_pixel_checkpoint(
        write_original_folder(root / "original"), root / "converted"
    )
    monkeypatch = pytest.MonkeyPatch()
    for kind, script in [("classification", "run_classification"), ("ner", "run_ner"),
                         ("parsing", "run_dependency_parsing")]:  # fmt: skip
        made[kind] = root / kind
        run_script(
            script,
            ["--model_name_or_path", str(pretrained), "--output_dir", str(made[kind]),
             "--max_seq_length", "32", *flags(QUICK)],
            monkeypatch,
        )  # fmt: skip
    monkeypatch.undo()
    # a pixel fallback on the tiny LLM, saved as run_fallback.py saves it (stage 1: no peft
    # adapter, so the card's install line suffices)
    llm = tiny_causal_lm_path()
    fallback = PixelFallbackForCausalLM(
        PixelFallbackConfig.from_preset("test"), AutoModelForCausalLM.from_pretrained(llm)
    )
    made["fallback"] = root / "fallback"
    fallback.save_pretrained(made["fallback"])
    PixelFallbackProcessor(AutoTokenizer.from_pretrained(llm)).save_pretrained(made["fallback"])
    return made


@pytest.mark.slow  # builds the venv once (a few minutes), then ~1 min
def test_every_folder_runs_from_raw_text_in_a_clean_venv(folders, tmp_path):
    python = build_venv(pinned_requirements())
    completed = subprocess.run(
        [str(python), "-c", RUN_FOLDERS, json.dumps({k: str(v) for k, v in folders.items()})],
        capture_output=True, text=True, cwd=tmp_path, timeout=900,
        stdin=subprocess.DEVNULL,  # a trust_remote_code prompt fails instead of waiting
        env={"PATH": os.environ["PATH"], "HOME": os.environ["HOME"],
             "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-4000:]
    results = json.loads(completed.stdout.strip().splitlines()[-1])
    # the folders carry their fonts: no font package, no pillow, no pixel_m4
    assert results["modules_after"] == []
    expected = {"pretraining": "PixelM4ForPreTraining", "converted": "PixelM4ForPreTraining",
                "classification": "PixelM4ForSequenceClassification",
                "ner": "PixelM4ForTokenClassification", "parsing": "PixelM4ForBiaffineParsing"}  # fmt: skip
    for kind, model_class in expected.items():
        entry = results[kind]
        assert entry["processor"].startswith("transformers_modules."), kind
        assert entry["model_module"].startswith("transformers_modules."), kind
        assert entry["model"] == model_class and entry["embedding"] > 0
    assert {"label", "score"} <= set(results["classification"]["pipeline"])
    assert all({"word", "start", "end", "head", "relation"} <= set(word)
               for word in results["parsing"]["pipeline"])  # fmt: skip
    fallback = results["fallback"]
    assert fallback["processor"].startswith("transformers_modules.")
    assert fallback["model_module"].startswith("transformers_modules.")
    assert (fallback["processor_class"], fallback["model"]) == (
        "PixelFallbackProcessor", "PixelFallbackForCausalLM")  # fmt: skip
    # every word of the source is a pixel word (the paper's default rule); 3 new tokens each
    assert fallback["pixel_words"] == [7, 1] and fallback["new_tokens"] == [2, 3]
    print(
        json.dumps(
            {
                **{
                    kind: results[kind].get("pipeline")
                    for kind in ("classification", "ner", "parsing")
                },
                "fallback": results["fallback"]["decoded"],
            },
            ensure_ascii=False,
        )
    )


@pytest.mark.slow  # a fresh process with Pango hidden
def test_missing_pango_is_one_clear_error(tmp_path):
    script = textwrap.dedent(
        """
        import pixel_m4.rendering_native as native
        from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer
        native._LIBRARY_NAMES = {"pango": ("libpango-missing.so.0", "pango-missing")}
        try:
            PixelM4TextRenderer()
        except ImportError as error:
            print("ERROR:", error)
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    message = completed.stdout
    assert "ERROR: pixel-m4 needs the system libraries Pango" in message
    assert "apt-get install libpango-1.0-0" in message and "brew install pango" in message


def test_card_install_line_names_what_the_remote_code_imports():
    assert {Requirement(item).name for item in card_install_line()} == {
        "torch",
        "transformers",
        "cffi",
    }
