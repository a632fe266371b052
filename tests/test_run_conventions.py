"""Run scripts as transformers' examples: args files, sample limits, do_* flags, result files,
--save_strategy no, and --push_to_hub against a local fake Hub API that records the upload."""

import base64
import importlib.util
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pixel_m4.hub_pixel_m4 import create_hub_folder

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"max_steps": 1, "eval_steps": 1, "save_steps": 1, "per_device_train_batch_size": 4,
         "logging_steps": 1, "disable_tqdm": True, "max_train_samples": 8,
         "max_eval_samples": 6, "max_predict_samples": 5}  # fmt: skip


def flags(values: dict) -> list[str]:
    return [item for key, value in values.items() for item in (f"--{key}", str(value))]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    return create_hub_folder(
        tmp_path_factory.mktemp("pretrained") / "pixel-m4-tiny", preset="test",
        image_size=(16, 16 * 64),
    )  # fmt: skip


def run_script(name: str, arguments: list[str], monkeypatch) -> None:
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *arguments])
    module.main()


@pytest.mark.slow
def test_json_args_file_limits_and_result_files(tmp_path, pretrained, monkeypatch):
    output_dir = tmp_path / "ner"
    args_file = tmp_path / "args.json"
    args_file.write_text(
        json.dumps({"model_name_or_path": str(pretrained), "output_dir": str(output_dir), **QUICK})
    )
    run_script("run_ner", [str(args_file)], monkeypatch)
    for name in ("train_results.json", "eval_results.json", "test_results.json",
                 "all_results.json", "trainer_state.json", "README.md", "model.safetensors",
                 "preprocessor_config.json", "pipeline_pixel_m4.py"):  # fmt: skip
        assert (output_dir / name).is_file(), name
    results = json.loads((output_dir / "all_results.json").read_text())
    assert (results["train_samples"], results["eval_samples"], results["test_samples"]) == (8, 6, 5)
    assert json.loads((output_dir / "trainer_state.json").read_text())["global_step"] == 1
    # the saved renderer fills the model's strip: processor and model agree on the patch count
    renderer_config = json.loads((output_dir / "preprocessor_config.json").read_text())
    assert renderer_config["max_seq_length"] == 64
    card = (output_dir / "README.md").read_text()
    assert "pipeline_tag: token-classification" in card and f"base_model: {pretrained}" in card
    assert "OFL-1.1" in card and "`B-PER`" in card and "pip install torch" in card


@pytest.mark.slow
def test_do_flags_are_honoured_and_save_strategy_no_works(tmp_path, pretrained, monkeypatch):
    output_dir = tmp_path / "parse"
    run_script(
        "run_dependency_parsing",
        ["--model_name_or_path", str(pretrained), "--output_dir", str(output_dir),
         "--do_train", "--save_strategy", "no", "--eval_strategy", "no", *flags(QUICK)],
        monkeypatch,
    )  # fmt: skip
    assert (output_dir / "train_results.json").is_file()
    # --do_eval not given and no evaluation during training (transformers' TrainingArguments
    # turn do_eval on with an eval_strategy)
    assert not (output_dir / "eval_results.json").exists()
    assert not (output_dir / "test_results.json").exists()
    assert not list(output_dir.glob("checkpoint-*"))
    results = json.loads((output_dir / "all_results.json").read_text())
    assert "eval_uas" not in results and results["train_samples"] == 8


def test_yaml_args_file_and_bad_limits(tmp_path, pretrained, monkeypatch):
    args_file = tmp_path / "args.yaml"
    args_file.write_text(
        f"model_name_or_path: {pretrained}\noutput_dir: {tmp_path / 'out'}\nrecipe: nonsense\n"
    )
    with pytest.raises(ValueError, match="recipe must be one of"):
        run_script("run_classification", [str(args_file)], monkeypatch)
    with pytest.raises(ValueError, match="max_train_samples must be >= 1"):
        run_script(
            "run_classification",
            ["--model_name_or_path", str(pretrained), "--output_dir", str(tmp_path / "o"),
             "--max_train_samples", "0"],
            monkeypatch,
        )  # fmt: skip


class FakeHub(BaseHTTPRequestHandler):
    """The few Hub API routes that create_repo + upload_folder use; records committed files."""

    commits: list = []

    def log_message(self, *args):
        pass

    def reply(self, payload, status=200):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/api/whoami"):
            return self.reply({"name": "tester", "type": "user", "orgs": []})
        self.reply({"error": "not found"}, 404)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        host = f"http://{self.headers['Host']}"
        if self.path == "/api/repos/create":
            request = json.loads(body)
            owner = request.get("organization") or "tester"
            return self.reply({"url": f"{host}/{owner}/{request['name']}"})
        if self.path == "/api/validate-yaml":
            return self.reply({})
        if "/preupload/" in self.path:
            files = json.loads(body)["files"]
            return self.reply(
                {
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                        for f in files
                    ]
                }  # fmt: skip
            )
        if "/commit/" in self.path:
            files = {}
            for line in body.decode().splitlines():
                entry = json.loads(line)
                if entry["key"] == "file":
                    files[entry["value"]["path"]] = base64.b64decode(entry["value"]["content"])
            FakeHub.commits.append(files)
            repo = self.path.split("/api/models/")[1].split("/commit/")[0]
            return self.reply({"commitUrl": f"{host}/{repo}/commit/{'0' * 40}",
                               "commitOid": "0" * 40})  # fmt: skip
        self.reply({"error": "not found"}, 404)


@pytest.fixture
def fake_hub(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    from huggingface_hub import constants

    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        endpoint + "/{repo_id}/resolve/{revision}/{filename}")  # fmt: skip
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    FakeHub.commits = []
    yield FakeHub.commits
    server.shutdown()


@pytest.mark.slow
def test_push_to_hub_uploads_a_complete_repo(tmp_path, pretrained, monkeypatch, fake_hub):
    output_dir = tmp_path / "classification"
    run_script(
        "run_classification",
        ["--model_name_or_path", str(pretrained), "--output_dir", str(output_dir),
         "--push_to_hub", "--hub_model_id", "tester/pixel-m4-sib", "--hub_token", "fake",
         "--hub_strategy", "end", "--max_seq_length", "64", *flags(QUICK)],
        monkeypatch,
    )  # fmt: skip
    # Trainer.save_model pushes the model after training, run_and_save pushes again with the
    # results: the last commit is the complete repo
    assert 1 <= len(fake_hub) <= 2
    for commit in fake_hub:
        assert "fine-tuned version of" not in commit["README.md"].decode()
    uploaded = fake_hub[-1]
    expected = {"config.json", "model.safetensors", "preprocessor_config.json", "README.md",
                "configuration_pixel_m4.py", "modeling_pixel_m4.py", "rendering_pixel_m4.py",
                "pipeline_pixel_m4.py", "NotoSans[wght].ttf", "NotoSansCJK-VF.otf.ttc",
                "all_results.json", "train_results.json", "eval_results.json"}  # fmt: skip
    assert expected <= set(uploaded), expected - set(uploaded)
    assert not [name for name in uploaded if name.startswith(("checkpoint-", "runs/"))]
    config = json.loads(uploaded["config.json"])
    assert "text-classification" in config["custom_pipelines"]
    card = uploaded["README.md"].decode()
    assert "tester/pixel-m4-sib" in card and "base_model:" in card and "OFL-1.1" in card
    assert "fine-tuned version of" not in card  # not transformers' generic card
    renderer_config = json.loads(uploaded["preprocessor_config.json"])
    assert renderer_config["max_seq_length"] == 64
    (tmp_path / "uploaded.txt").write_text("\n".join(sorted(uploaded)))
    print("uploaded files:", ", ".join(sorted(uploaded)))


def test_output_folder_upload_leaves_training_leftovers_out(tmp_path, fake_hub):
    from pixel_m4.hub_pixel_m4 import upload_output_folder

    folder = create_hub_folder(tmp_path / "pretraining-run", preset="test")
    for leftover in ("checkpoint-5/optimizer.pt", "checkpoint-5/model.safetensors",
                     "runs/events.out.tfevents.1", "reconstructions/step-000005.png"):  # fmt: skip
        (folder / leftover).parent.mkdir(parents=True, exist_ok=True)
        (folder / leftover).write_bytes(b"x")
    (folder / "training_args.bin").write_bytes(b"x")
    upload_output_folder(folder, "tester/pixel-m4-pretrained", token="fake")
    uploaded = set(fake_hub[-1])
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md"} <= uploaded
    assert not [name for name in uploaded if "/" in name or name.endswith(".bin")]
