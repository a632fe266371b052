"""Shared test setup: fixtures and helpers used by several test modules.

examples/ goes on sys.path: the example scripts (which several tests load by path) import
`tiny_causal_lm` from their own folder, as they do when run, and tests import it from there too.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer
from pixel_m4.tools.hub import create_hub_folder

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

RENDER_MODES = ["bigram", "continuous", "word_bigram"]


class RepositoryRootIsNotATestPackage:
    """The repository root is the `pixel_m4` package itself (the Hub files + __init__.py), and
    pytest's rootdir (pyproject.toml's folder). pytest would collect it as a test package and
    import its __init__.py under the checkout folder's name ('pixel-m4', 'issue-17e', ...), where
    the relative imports fail. Collected as a plain folder, nothing of it is imported by pytest:
    tests import the installed `pixel_m4` as users do."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_collect_directory(self, path, parent):
        if path == parent.config.rootpath:
            return pytest.Dir.from_parent(parent, path=path)
        return None


def pytest_configure(config):
    # conftest hooks apply only below tests/; the root folder is collected before, so the hook
    # is registered as a plugin of the whole session
    config.pluginmanager.register(RepositoryRootIsNotATestPackage())


# ------------------------------------------------------------------------------------ renderers


@pytest.fixture(scope="module")
def renderer(request):
    """The module's renderer: PixelM4TextRenderer(**RENDERER), RENDERER a dict of settings at the
    top of the test module (none: the published defaults, bigram mode and 529 patches)."""
    return PixelM4TextRenderer(**getattr(request.module, "RENDERER", {}))


@pytest.fixture(scope="module", params=RENDER_MODES)
def any_renderer(request):
    """The module's renderer (see `renderer`) in each render mode."""
    return PixelM4TextRenderer(
        **{**getattr(request.module, "RENDERER", {}), "render_mode": request.param}
    )


# ---------------------------------------------------------------------------- example scripts


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory):
    """A tiny randomly initialised pretraining checkpoint (vit.* + decoder, 64 patches) with its
    renderer: the starting point of the task scripts' runs. Read-only for the tests."""
    return create_hub_folder(
        tmp_path_factory.mktemp("pretrained") / "pixel-m4-tiny", preset="test",
        image_size=(16, 16 * 64),
    )  # fmt: skip


@pytest.fixture(scope="session")
def load_script():
    """load_script(name, monkeypatch) -> a fresh module of examples/<name>.py, importable by its
    name while the test runs, as when run as a script (checkpoints pickle the arguments' class)."""

    def load(name: str, monkeypatch):
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def run_script(load_script):
    """run_script(name, arguments, monkeypatch) runs examples/<name>.py's main() in this process
    with `arguments` as its command line; returns the run's all_results.json (None if the run
    wrote none)."""

    def run(name: str, arguments: list[str], monkeypatch) -> dict | None:
        module = load_script(name, monkeypatch)
        monkeypatch.setattr(sys, "argv", [f"{name}.py", *arguments])
        module.main()
        if "--output_dir" not in arguments:
            return None
        results = Path(arguments[arguments.index("--output_dir") + 1]) / "all_results.json"
        return json.loads(results.read_text()) if results.is_file() else None

    return run


# --------------------------------------------------------------- Hub folders without the package

# Prepended to the code run by `run_without_pixel_m4`: `import pixel_m4` fails. Filtering
# sys.path is not enough: an editable install is found through its own import hook.
HIDE_PACKAGE = 'import sys\nsys.modules["pixel_m4"] = None  # the installed package\n'
# Appended: nothing of the package was loaded behind the test's back.
CHECK_PACKAGE_HIDDEN = (
    '\nassert sys.modules["pixel_m4"] is None, "pixel_m4 was imported"'
    '\nassert not [name for name in sys.modules if name.startswith("pixel_m4.")]\n'
)


@pytest.fixture
def run_without_pixel_m4(tmp_path):
    """run_without_pixel_m4(code, *arguments) runs Python `code` in a fresh process in which the
    `pixel_m4` package cannot be imported (Hub users have only transformers): only a folder's own
    remote code may be used. Offline, with its own modules cache, in tmp_path. Returns stdout."""

    def run(code: str, *arguments: str) -> str:
        environment = {
            **os.environ,
            "HF_MODULES_CACHE": str(tmp_path / "modules"),
            "HF_HUB_OFFLINE": "1",
        }
        completed = subprocess.run(
            [sys.executable, "-c", HIDE_PACKAGE + code + CHECK_PACKAGE_HIDDEN, *arguments],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=environment,
            stdin=subprocess.DEVNULL,  # a trust_remote_code prompt fails instead of waiting
            timeout=600,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        return completed.stdout

    return run
