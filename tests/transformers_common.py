"""transformers' own common model tests (`ModelTesterMixin`), loaded from the transformers sdist.

The mixin ships in the sdist's tests/ folder, not in the wheel. `load_common_tests()` downloads the
sdist of the installed version once with pip (`pip download --no-binary :all: --no-deps`), keeps
its tests/ folder in a cache and imports `test_modeling_common` from there. Nothing of it is copied
into this repository. The cache is $PIXEL_M4_CACHE, else ~/.cache/pixel-m4.
"""

import importlib
import os
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path

import transformers

VERSION = transformers.__version__
PACKAGE = "transformers_sdist_tests"  # the sdist's tests/ folder, imported under this name


def cache_dir() -> Path:
    root = os.environ.get("PIXEL_M4_CACHE") or Path.home() / ".cache" / "pixel-m4"
    return Path(root) / f"transformers-{VERSION}-tests"


def fetch_sdist_tests() -> Path:
    """The sdist's tests/ folder, downloaded and unpacked on first use; raises RuntimeError."""
    target = cache_dir()
    if (target / "test_modeling_common.py").exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps"]
        command += ["--quiet", "-d", tmp, f"transformers=={VERSION}"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as error:
            message = f"pip download of the transformers {VERSION} sdist failed: {error}"
            raise RuntimeError(message) from error
        archives = list(Path(tmp).glob("transformers-*.tar.gz"))
        if done.returncode or not archives:
            raise RuntimeError(
                f"pip download of the transformers {VERSION} sdist failed: {done.stderr[-500:]}"
            )
        prefix = f"transformers-{VERSION}/tests/"
        with tarfile.open(archives[0]) as archive:
            members = [
                m
                for m in archive.getmembers()
                if m.name.startswith(prefix) and m.name[len(prefix) :]
            ]
            unpack = Path(tmp) / "unpacked"
            archive.extractall(unpack, members=members, filter="data")
        partial = target.with_name(target.name + ".partial")
        os.makedirs(partial.parent, exist_ok=True)
        if partial.exists():
            import shutil

            shutil.rmtree(partial)
        os.replace(unpack / prefix, partial)
        os.replace(partial, target)
    return target


def load_common_tests() -> types.ModuleType:
    """`test_modeling_common` of the installed transformers version; raises RuntimeError/ImportError.

    The sdist leaves out two modules the common tests import (`exporters/test_export.py` and
    `generation/test_utils.py`); they get empty stand-ins: export is tested in test_conformance.py
    and these models do not generate.
    """
    folder = fetch_sdist_tests()
    if PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(folder)]
        sys.modules[PACKAGE] = package
        for name, attribute in [
            ("exporters.test_export", "ExportTesterMixin"),
            ("generation.test_utils", "GenerationTesterMixin"),
        ]:
            parent = types.ModuleType(f"{PACKAGE}.{name.split('.')[0]}")
            parent.__path__ = []
            module = types.ModuleType(f"{PACKAGE}.{name}")
            setattr(module, attribute, type(attribute, (), {}))
            sys.modules.setdefault(parent.__name__, parent)
            sys.modules[module.__name__] = module
    return importlib.import_module(f"{PACKAGE}.test_modeling_common")
