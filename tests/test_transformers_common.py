"""transformers' own common model tests (`ModelTesterMixin`, from the transformers sdist) run
against every PIXEL-M4 class, the way transformers tests ViT-MAE.

The mixin ships in the sdist's tests/ folder, not in the wheel. `load_common_tests()` downloads the
sdist of the installed version once with pip (`pip download --no-binary :all: --no-deps`), keeps
its tests/ folder in a cache ($PIXEL_M4_CACHE, else ~/.cache/pixel-m4) and imports
`test_modeling_common` from there; nothing of it is copied into this repository. Without it (no
package index, pip failing) the whole module is skipped with the reason, never passed silently.
Tests the mixin itself skips (GPU-only, Hub, features these models do not have) show up as
skipped with its reason.
"""

import importlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import types
import unittest
from pathlib import Path
from unittest import mock

import pytest
import torch
import transformers
from torch import nn
from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

from pixel_m4.configuration_pixel_m4 import PixelM4Config
from pixel_m4.modeling_pixel_m4 import (
    PixelM4ForBiaffineParsing,
    PixelM4ForPreTraining,
    PixelM4ForSequenceClassification,
    PixelM4ForTokenClassification,
    PixelM4Model,
)

# ~1,000 tests over the five classes (~35 s): the full run's, not the quick loop's
pytestmark = pytest.mark.slow

# ------------------------------------------------------------- fetching the mixin
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


try:
    common = load_common_tests()
except (RuntimeError, ImportError) as error:
    pytest.skip(
        f"transformers' ModelTesterMixin is unavailable (it ships in the sdist only): {error}",
        allow_module_level=True,
    )

NUM_PATCHES = 16
BATCH = 3


class PixelM4ModelTester:
    """Tiny config + inputs for one model class, in the shape the mixin expects."""

    def __init__(self, parent, model_class):
        self.parent = parent
        self.model_class = model_class
        self.batch_size = BATCH
        self.num_hidden_layers = 2
        self.hidden_size = 32
        self.num_attention_heads = 4
        self.is_training = True
        # Pretraining encodes CLS + the visible patches only: a fixed patch_mask hides 4 of 16.
        self.seq_length = 1 + NUM_PATCHES - (4 if model_class is PixelM4ForPreTraining else 0)

    def get_config(self) -> PixelM4Config:
        return PixelM4Config(
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=37,
            decoder_hidden_size=16,
            decoder_num_hidden_layers=1,
            decoder_num_attention_heads=2,
            decoder_intermediate_size=20,
            image_size=(16, 16 * NUM_PATCHES),
            num_labels=3,
            biaffine_arc_size=8,
            biaffine_rel_size=8,
        )

    def prepare_config_and_inputs_for_common(self):
        generator = torch.Generator().manual_seed(0)
        pixel_values = torch.rand(BATCH, 3, 16, 16 * NUM_PATCHES, generator=generator)
        attention_mask = torch.ones(BATCH, NUM_PATCHES, dtype=torch.long)
        attention_mask[1, 9:] = 0  # one shorter text: padding must not matter
        inputs = {"pixel_values": pixel_values, "attention_mask": attention_mask}
        return self.get_config(), with_class_inputs(inputs, self.model_class)


def with_class_inputs(inputs: dict, model_class) -> dict:
    """Add what a class needs besides pixels, sized to the batch: a fixed patch_mask (so eager,
    sdpa and batched runs hide the same patches) or word spans."""
    batch = inputs["pixel_values"].shape[0]
    if model_class is PixelM4ForPreTraining and "patch_mask" not in inputs:
        inputs["patch_mask"] = torch.zeros(batch, NUM_PATCHES, dtype=torch.bool)
        inputs["patch_mask"][:, [1, 2, 5, 6]] = True
    if model_class in WORD_HEADS and "word_spans" not in inputs:
        inputs["word_spans"] = torch.tensor([[0, 2], [2, 5], [5, 8]]).repeat(batch, 1, 1)
    return inputs


WORD_HEADS = (PixelM4ForTokenClassification, PixelM4ForBiaffineParsing)


class PixelM4CommonTests(common.ModelTesterMixin):
    model_class = None
    test_resize_embeddings = False  # patch embeddings are a convolution, not a vocabulary
    test_torch_exportable = False  # exported and compared in test_conformance.py

    def setUp(self):
        self.model_tester = PixelM4ModelTester(self, self.model_class)
        # Remote-code classes are not in transformers' Auto tables; the mixin looks base models up
        # there (a base model has no loss to train on), so list ours for the test's duration.
        patch = mock.patch.dict(MODEL_MAPPING_NAMES, {"pixel_m4": "PixelM4Model"})
        patch.start()
        self.addCleanup(patch.stop)

    def test_model_get_set_embeddings(self):
        # As transformers' ViT-MAE test: the input "embeddings" are the patch projection.
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        model = self.model_class(config)
        self.assertIsInstance(model.get_input_embeddings(), nn.Module)
        self.assertIsNone(model.get_output_embeddings())

    @property
    def all_model_classes(self):
        return (self.model_class,)

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs = {
            k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in inputs_dict.items()
        }
        inputs = with_class_inputs(inputs, model_class)
        if return_labels:
            if model_class is PixelM4ForSequenceClassification:
                inputs["labels"] = torch.zeros(BATCH, dtype=torch.long)
            elif model_class is PixelM4ForTokenClassification:
                inputs["labels"] = torch.zeros(BATCH, 3, dtype=torch.long)
            elif model_class is PixelM4ForBiaffineParsing:
                inputs["arc_labels"] = torch.tensor([[0, 1, 1]]).expand(BATCH, -1).clone()
                inputs["rel_labels"] = torch.zeros(BATCH, 3, dtype=torch.long)
        return inputs


def common_test_case(model_class) -> type:
    name = f"Test{model_class.__name__}Common"
    return type(name, (PixelM4CommonTests, unittest.TestCase), {"model_class": model_class})


TestPixelM4ModelCommon = common_test_case(PixelM4Model)
TestPixelM4ForPreTrainingCommon = common_test_case(PixelM4ForPreTraining)
TestPixelM4ForSequenceClassificationCommon = common_test_case(PixelM4ForSequenceClassification)
TestPixelM4ForTokenClassificationCommon = common_test_case(PixelM4ForTokenClassification)
TestPixelM4ForBiaffineParsingCommon = common_test_case(PixelM4ForBiaffineParsing)
