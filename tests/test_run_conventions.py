"""Run scripts as transformers' examples: args files, sample limits, do_* flags, result files,
--save_strategy no, and --push_to_hub against a local fake Hub API that records the upload."""

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import transformers.utils.hub

from pixel_m4.tools.hub import create_hub_folder

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"max_steps": 1, "eval_steps": 1, "save_steps": 1, "per_device_train_batch_size": 4,
         "logging_steps": 1, "disable_tqdm": True, "max_train_samples": 8,
         "max_eval_samples": 6, "max_predict_samples": 5}  # fmt: skip


def flags(values: dict) -> list[str]:
    return [item for key, value in values.items() for item in (f"--{key}", str(value))]


@pytest.mark.slow
def test_json_args_file_limits_and_result_files(run_script, tmp_path, pretrained, monkeypatch):
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
def test_do_flags_are_honoured_and_save_strategy_no_works(
    run_script, tmp_path, pretrained, monkeypatch
):
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


def test_yaml_args_file_and_bad_limits(run_script, tmp_path, pretrained, monkeypatch):
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
    # transformers' shared HfApi keeps the endpoint it was made with (an earlier fake Hub's)
    monkeypatch.setattr(transformers.utils.hub, "_hf_api", None)
    FakeHub.commits = []
    yield FakeHub.commits
    server.shutdown()


@pytest.mark.slow
def test_push_to_hub_uploads_a_complete_repo(
    run_script, tmp_path, pretrained, monkeypatch, fake_hub
):
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
    from pixel_m4.tools.hub import upload_output_folder

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


@pytest.mark.slow  # a pretraining run
@pytest.mark.slow
def test_pretraining_push_uploads_a_clean_model_folder(run_script, tmp_path, monkeypatch, fake_hub):
    output_dir = tmp_path / "pretraining"
    run_script(
        "run_pretraining",
        ["--model_config", "test", "--output_dir", str(output_dir), "--max_steps", "2",
         "--save_steps", "1", "--reconstruction_steps", "1", "--logging_steps", "1",
         "--per_device_train_batch_size", "2", "--disable_tqdm", "True", "--push_to_hub",
         "--hub_model_id", "tester/pixel-m4-pretrained", "--hub_token", "fake"],
        monkeypatch,
    )  # fmt: skip
    # the leftovers are there locally, and only the final folder is pushed, once
    assert list(output_dir.glob("checkpoint-*")) and (output_dir / "reconstructions").is_dir()
    assert (output_dir / "runs").is_dir()
    assert len(fake_hub) == 1
    uploaded = set(fake_hub[0])
    expected = {"config.json", "model.safetensors", "preprocessor_config.json", "README.md",
                "configuration_pixel_m4.py", "modeling_pixel_m4.py", "rendering_pixel_m4.py",
                "NotoSans[wght].ttf"}  # fmt: skip
    assert expected <= uploaded, expected - uploaded
    assert not [name for name in uploaded if "/" in name or name.endswith((".bin", ".pt"))]
    card = fake_hub[0]["README.md"].decode()
    assert "tester/pixel-m4-pretrained" in card and "## Pretraining" in card
    print("pretraining upload:", ", ".join(sorted(uploaded)))


def test_pretraining_push_refuses_checkpoint_strategies(run_script, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="pushes only the final model folder"):
        run_script(
            "run_pretraining",
            ["--model_config", "test", "--output_dir", str(tmp_path / "out"), "--push_to_hub",
             "--hub_strategy", "checkpoint", "--hub_model_id", "tester/x", "--hub_token", "fake"],
            monkeypatch,
        )  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_run_pretraining_reads_a_json_args_file(load_script, tmp_path, monkeypatch):
    script = load_script("run_pretraining", monkeypatch)
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({
        "model_config": "test", "corpus": ["en=a.txt", "hi=b.txt"], "mixing_weights": [3, 1],
        "max_steps": 7, "output_dir": str(tmp_path / "out"), "report_to": "none",
    }))  # fmt: skip
    model_args, data_args, training_args = script.parse_arguments([str(args_file)])
    assert model_args.model_config == "test" and model_args.render_mode == "bigram"
    assert data_args.corpus == ["en=a.txt", "hi=b.txt"] and data_args.mixing_weights == [3, 1]
    assert (training_args.max_steps, training_args.output_dir) == (7, str(tmp_path / "out"))
    assert training_args.learning_rate == 1.5e-4  # the script's own defaults stay
    assert training_args.lr_scheduler_kwargs == {"min_lr": 1e-5}
    # the same values as flags give the same dataclasses
    flags_given = script.parse_arguments(
        ["--model_config", "test", "--corpus", "en=a.txt", "hi=b.txt", "--mixing_weights", "3",
         "1", "--max_steps", "7", "--output_dir", str(tmp_path / "out"), "--report_to", "none"]
    )  # fmt: skip
    assert flags_given[:2] == (model_args, data_args)
    assert flags_given[2].max_steps == training_args.max_steps


def test_run_fallback_reads_a_yaml_args_file_over_the_paper_defaults(
    load_script, tmp_path, monkeypatch
):
    script = load_script("run_fallback", monkeypatch)
    args_file = tmp_path / "args.yaml"
    args_file.write_text(f"stage1_steps: 3\nlora_r: 4\noutput_dir: {tmp_path / 'out'}\n")
    args, training_args = script.parse_arguments([str(args_file)])
    assert (args.stage1_steps, args.lora_r) == (3, 4)
    assert training_args.output_dir == str(tmp_path / "out")
    # the paper's training defaults (PAPER_TRAINING_DEFAULTS) hold under an args file too
    assert (training_args.learning_rate, training_args.per_device_train_batch_size) == (3e-4, 16)
    assert training_args.lr_scheduler_kwargs == {"min_lr": 3e-5}
    assert training_args.save_strategy == "no"
    args_file.write_text("learning_rate: 1.0e-4\n")
    assert script.parse_arguments([str(args_file)])[1].learning_rate == 1e-4


@pytest.mark.parametrize("script_name", ["run_pretraining", "run_fallback"])
def test_bad_args_files_are_rejected(load_script, script_name, tmp_path, monkeypatch):
    script = load_script(script_name, monkeypatch)
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"output_dir": str(tmp_path), "no_such_flag": 1}))
    with pytest.raises(ValueError, match="no_such_flag"):
        script.parse_arguments([str(unknown)])
    not_a_mapping = tmp_path / "list.yaml"
    not_a_mapping.write_text("- output_dir\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        script.parse_arguments([str(not_a_mapping)])
    with pytest.raises(FileNotFoundError):
        script.parse_arguments([str(tmp_path / "missing.yml")])


def test_run_fallback_refuses_flags_it_would_ignore(load_script, tmp_path, monkeypatch):
    script = load_script("run_fallback", monkeypatch)
    out = ["--output_dir", str(tmp_path)]
    script.check_arguments(*script.parse_arguments(out))  # the defaults pass
    with pytest.raises(ValueError, match="--push_to_hub is not supported.*hf upload"):
        script.check_arguments(*script.parse_arguments([*out, "--push_to_hub"]))
    with pytest.raises(ValueError, match="--max_steps is not used"):
        script.check_arguments(*script.parse_arguments([*out, "--max_steps", "5"]))
