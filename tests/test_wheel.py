"""`pip install .` and `pip install git+<repo>` (non-editable): the wheel built from the checkout's
files holds exactly the package root and tools/ (with the card templates and evaluate modules), no
tests/ or examples/, and the CLIs and example scripts run from it, outside the checkout."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Runs an example script as `python script.py ...` would (its folder first on sys.path), then
# prints where every pixel_m4 module it used came from.
RUN_AND_REPORT = textwrap.dedent(
    """
    import json, runpy, sys
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path.insert(0, str(__import__("pathlib").Path(script).parent))
    runpy.run_path(script, run_name="__main__")
    used = {name: getattr(module, "__file__", None) for name, module in sys.modules.items()
            if name == "pixel_m4" or name.startswith("pixel_m4.")}
    print("PIXEL_M4_MODULES " + json.dumps(used))
    """
)


def checkout_files() -> list[str]:
    """What `pip install git+<repo>` sees: the tracked files (+ new ones not ignored yet)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [name for name in listed.decode().split("\0") if name and (ROOT / name).is_file()]


def run(command: list, **kwargs) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_installed_package_is_only_the_root_and_tools():
    """install.sh's editable install (strict mode) exposes what the wheel holds: a lenient one maps
    pixel_m4 onto the whole checkout, making tests/ and examples/ importable from it."""
    for name in ("tests", "examples", "benchmarks", "docs"):
        assert importlib.util.find_spec(f"pixel_m4.{name}") is None, f"pixel_m4.{name} importable"
    assert importlib.util.find_spec("pixel_m4.tools.hub") is not None


@pytest.mark.slow  # builds and installs a wheel, then two short example runs (~40 s)
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    source = tmp_path / "source"  # a clean copy: building writes build/ and *.egg-info
    files = checkout_files()
    for name in files:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    # This environment's setuptools, no build isolation: builds offline.
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--wheel-dir", str(tmp_path / "wheels"), str(source)])  # fmt: skip
    (wheel,) = (tmp_path / "wheels").glob("pixel_m4-*.whl")

    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
        entry_points = archive.read(entry_points).decode()
    assert "pixel-m4-create = pixel_m4.tools.hub:main" in entry_points
    assert "pixel-m4-convert = pixel_m4.tools.convert:main" in entry_points
    # Exactly the root's modules and card templates, and tools/ (with its evaluate modules).
    packaged = {name for name in names if ".dist-info/" not in name}
    expected = {f"pixel_m4/{name}" for name in files if "/" not in name and name.endswith(".py")}
    expected |= {"pixel_m4/model_card.md", "pixel_m4/model_card_fallback.md"}
    expected |= {f"pixel_m4/{name}" for name in files if name.startswith("tools/")}
    assert packaged == expected
    assert "pixel_m4/tools/metrics/seqeval_scores/seqeval_scores.py" in packaged

    # A fresh venv that sees this environment's packages (torch, transformers, ...) through a .pth
    # line (a plain path: the editable install's own .pth hooks there are not run) and gets
    # pixel_m4 only from the wheel.
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = Path(run([str(python), "-c", code]).strip())
    here = run([sys.executable, "-c", code]).strip()
    (purelib / "_test_environment.pth").write_text(here + "\n")
    # --ignore-installed: this environment's (editable) pixel-m4 is visible but not ours to remove
    run([str(python), "-m", "pip", "install", "--no-deps", "--ignore-installed",
         "--disable-pip-version-check", str(wheel)])  # fmt: skip

    elsewhere = tmp_path / "elsewhere"  # cwd and scripts outside the checkout and its copy
    shutil.copytree(source / "examples", elsewhere / "examples")
    shutil.rmtree(source)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        HF_MODULES_CACHE=str(tmp_path / "modules"),
        PIXEL_M4_CACHE=str(tmp_path / "cache"),  # the tiny LLM is built from examples/data
    )
    probe = (
        "import importlib.util, json, pixel_m4, pixel_m4.tools.hub as hub; print(json.dumps("
        "[pixel_m4.__file__, str(hub.PACKAGE_ROOT)] + [importlib.util.find_spec(f'pixel_m4.{name}')"
        " is None for name in ('tests', 'examples', 'benchmarks', 'docs')]))"
    )
    init, package_root, *absent = json.loads(
        run([str(python), "-c", probe], cwd=elsewhere, env=env)
    )
    assert Path(init) == purelib / "pixel_m4" / "__init__.py"
    assert Path(package_root) == purelib / "pixel_m4"
    assert all(absent), "pixel_m4.tests / .examples / .benchmarks / .docs must not be importable"

    # The console script from the wheel writes a complete Hub folder.
    run([str(venv / "bin" / "pixel-m4-create"), "--preset", "test", "--output_dir", "created"],
        cwd=elsewhere, env=env)  # fmt: skip
    assert {"model.safetensors", "config.json", "README.md", "rendering_pixel_m4.py"} <= {
        path.name for path in (elsewhere / "created").iterdir()
    }

    # Two example scripts: pretraining (tools.pretraining, save_hub_folder) and the fallback
    # (examples/tiny_causal_lm.py + examples/data, the fallback card template, tools/metrics).
    for script, arguments, result_file in [
        ("run_pretraining.py", ["--model_config", "test", "--max_steps", "2",
                                "--per_device_train_batch_size", "2", "--dataloader_num_workers",
                                "0", "--report_to", "none"], "train_results.json"),
        ("run_fallback.py", ["--stage1_steps", "1", "--stage2_steps", "1", "--max_train_samples",
                             "8", "--max_eval_samples", "2", "--per_device_train_batch_size", "4",
                             "--max_new_tokens", "2", "--tiny_llm_pretrain_steps", "2"],
         "eval_results.json"),
    ]:  # fmt: skip
        output = elsewhere / script.removesuffix(".py")
        stdout = run(
            [str(python), "-c", RUN_AND_REPORT, str(elsewhere / "examples" / script),
             "--output_dir", str(output), *arguments],
            cwd=elsewhere,
            env=env,
        )  # fmt: skip
        used = json.loads(stdout.rsplit("PIXEL_M4_MODULES ", 1)[1])
        assert "pixel_m4.tools.hub" in used
        assert all(Path(path).is_relative_to(purelib) for path in used.values() if path), used
        assert json.loads((output / result_file).read_text())
        assert (output / "model.safetensors").is_file() and (output / "README.md").is_file()
