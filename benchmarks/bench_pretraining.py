"""Pretraining speed: PixelM4ForPreTraining vs transformers' ViTMAEForPreTraining, and the data
pipeline (packing + rendering) vs what the model consumes.

    python benchmarks/bench_pretraining.py                       # base size, batch 8, 3 steps
    python benchmarks/bench_pretraining.py --preset tiny --steps 10

Both models get the same shapes: PIXEL-M4 a strip of 529 patches (all attended, so 528 text
patches + the end patch; the published budget ceil(25% x 529) = 133 patches masked), ViTMAE a
368x368 image (23 x 23 = 529 patches) with the mask ratio that hides the same 133 patches; the
same encoder and decoder sizes, sdpa attention, AdamW. A training step is forward + backward +
optimiser step. Step times are measured in ONE process that alternates the models step by step
(after `--warmup` untimed steps each), so both see the same machine load; the table reports the
median. Peak memory is measured separately, one fresh process per (model, precision) running one step:
the peak resident set minus the resident set before the model was built (CUDA: peak
allocated). bf16 is `torch.autocast` over fp32 weights, as Trainer's --bf16.

The pipeline rate is packed-and-rendered samples per second in ONE process (a DataLoader worker)
on the embedded EN/HI/UK/ZH corpus: "cold" is the first pass (every character pair drawn),
"warm" a second pass (pairs cached, the steady state of a long run). The ratio compares it with
the fp32 model's samples per second on this machine.
"""

import argparse
import math
import multiprocessing
import os
import statistics
import time
from pathlib import Path

import torch
from tqdm import tqdm

from pixel_m4.configuration_pixel_m4 import PixelM4Config
from pixel_m4.modeling_pixel_m4 import PixelM4ForPreTraining
from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer
from pixel_m4.tools.pretraining import RenderingCollator, StripPacker

CORPUS = Path(__file__).resolve().parent.parent / "examples" / "data" / "pretrain"
NUM_PATCHES, PATCH = 529, 16


def vitmae(config: PixelM4Config, num_masked: int):
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    side = round(NUM_PATCHES**0.5) * PATCH  # 368
    # ViTMAE keeps int(L * (1 - ratio)) patches: aim half a patch below, so exactly L - num_masked
    mask_ratio = (num_masked - 0.5) / NUM_PATCHES
    vit_config = ViTMAEConfig(
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        decoder_hidden_size=config.decoder_hidden_size,
        decoder_num_hidden_layers=config.decoder_num_hidden_layers,
        decoder_num_attention_heads=config.decoder_num_attention_heads,
        decoder_intermediate_size=config.decoder_intermediate_size,
        image_size=side,
        patch_size=PATCH,
        num_channels=3,
        mask_ratio=mask_ratio,
        norm_pix_loss=True,
        attn_implementation="sdpa",
    )
    model = ViTMAEForPreTraining(vit_config)
    assert int(NUM_PATCHES * (1 - mask_ratio)) == NUM_PATCHES - num_masked
    return model, lambda batch: {"pixel_values": torch.rand(batch, 3, side, side)}


def pixel_m4(config: PixelM4Config, num_masked: int):
    config._attn_implementation = "sdpa"
    model = PixelM4ForPreTraining(config)

    def inputs(batch):
        attention_mask = torch.ones(batch, NUM_PATCHES, dtype=torch.long)
        assert math.ceil(config.mask_ratio * NUM_PATCHES) == num_masked  # span_mask's budget
        return {"pixel_values": torch.rand(batch, 3, PATCH, PATCH * NUM_PATCHES),
                "attention_mask": attention_mask}  # fmt: skip

    return model, inputs


def resident_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process; unlike getrusage's maxrss, VmHWM starts
    afresh at exec, so a spawned child does not inherit its parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"{field} missing from /proc/self/status")


class Training:
    """One model + AdamW; `step()` runs a training step and returns its seconds."""

    def __init__(self, name: str, preset: str, precision: str, batch: int):
        torch.manual_seed(0)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        config = PixelM4Config.from_preset(preset)
        num_masked = math.ceil(config.mask_ratio * NUM_PATCHES)
        self.model, make_inputs = {"pixel-m4": pixel_m4, "vit-mae": vitmae}[name](
            config, num_masked
        )
        self.model.to(self.device).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1.5e-4, betas=(0.9, 0.95))
        self.inputs = {key: value.to(self.device) for key, value in make_inputs(batch).items()}
        self.precision = precision

    def step(self) -> float:
        if self.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(self.device, torch.bfloat16, enabled=self.precision == "bf16"):
            loss = self.model(**self.inputs).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start


def step_times(preset: str, precisions: list[str], batch: int, steps: int, warmup: int):
    """{(model, precision): median seconds per step}, the runs interleaved step by step."""
    runs = {
        (name, precision): Training(name, preset, precision, batch)
        for precision in precisions
        for name in ("pixel-m4", "vit-mae")
    }
    times = {key: [] for key in runs}
    for index in tqdm(range(warmup + steps), desc="interleaved steps"):
        for key, run in runs.items():
            seconds = run.step()
            if index >= warmup:
                times[key].append(seconds)
    return {key: statistics.median(values) for key, values in times.items()}


def peak_memory(name: str, preset: str, precision: str, batch: int) -> float:
    """MB: one training step of a fresh model in this (fresh) process."""
    baseline = resident_mb("VmRSS")
    run = Training(name, preset, precision, batch)
    run.step()
    if run.device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resident_mb("VmHWM") - baseline


def in_fresh_process(function, *args):
    context = multiprocessing.get_context("spawn")  # nothing shared: honest peak memory
    with context.Pool(1) as pool:
        return pool.apply(function, args)


def pipeline_rate(batch: int) -> tuple[float, float, int]:
    """(cold, warm) packed + rendered samples per second in this process; samples per pass."""
    renderer = PixelM4TextRenderer()
    collator = RenderingCollator(renderer)
    documents = {
        path.stem: path.read_text(encoding="utf-8").splitlines()
        for path in sorted(CORPUS.glob("*.txt"))
    }
    rates = []
    for _ in range(2):  # first pass draws every pair, the second finds them cached
        start = time.perf_counter()
        samples = [
            {"text": text}
            for language, lines in documents.items()
            for text in StripPacker(renderer, language).pack(lines)
        ]
        for index in range(0, len(samples), batch):
            collator(samples[index : index + batch])
        rates.append(len(samples) / (time.perf_counter() - start))
    return rates[0], rates[1], len(samples)


class PackedCorpus(torch.utils.data.IterableDataset):
    """The embedded corpus packed into strips inside the DataLoader worker (as in training)."""

    def __iter__(self):
        renderer = PixelM4TextRenderer()
        for path in sorted(CORPUS.glob("*.txt")):
            lines = path.read_text(encoding="utf-8").splitlines()
            for text in StripPacker(renderer, path.stem).pack(lines):
                yield {"text": text}


def dataloader_rate(batch: int) -> tuple[float, float, int, str]:
    """(cold, warm) samples/s through a DataLoader with ONE worker: pack + render + collate.

    Cold: the first epoch of a fresh worker (empty caches); warm: its second epoch
    (persistent worker, caches filled). Also the samples per epoch and the pixel dtype."""
    loader = torch.utils.data.DataLoader(
        PackedCorpus(),
        batch_size=batch,
        num_workers=1,
        persistent_workers=True,
        collate_fn=RenderingCollator(PixelM4TextRenderer()),
    )
    rates = []
    for _ in range(2):
        start, count = time.perf_counter(), 0
        for collated in loader:
            count += len(collated["pixel_values"])
            dtype = str(collated["pixel_values"].dtype)
        rates.append(count / (time.perf_counter() - start))
    return rates[0], rates[1], count, dtype


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="base", help="model size (test, tiny, small, base)")
    parser.add_argument("--batch_size", type=int, default=8, help="samples per training step")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model and precision")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    parser.add_argument(
        "--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"],
        help="fp32, and/or bf16 autocast",
    )  # fmt: skip
    parser.add_argument(
        "--pipeline-only", action="store_true", help="only the DataLoader pipeline figure"
    )
    args = parser.parse_args()
    if args.pipeline_only:
        cold, warm, count, dtype = dataloader_rate(args.batch_size)
        print(f"DataLoader, 1 worker, pack + render + collate ({dtype} pixel_values), "
              f"{count} samples per epoch, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        print(f"| cold (first epoch) | {cold:.1f} samples/s |\n| warm | {warm:.1f} samples/s |")
        return

    device = "cuda" if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    load = os.getloadavg()[0]
    times = step_times(args.preset, args.precisions, args.batch_size, args.steps, args.warmup)
    memory = {
        (name, precision): in_fresh_process(
            peak_memory, name, args.preset, precision, args.batch_size
        )
        for precision in args.precisions
        for name in ("pixel-m4", "vit-mae")
    }
    print(f"\n{args.preset} models, batch {args.batch_size}, median of {args.steps} interleaved "
          f"steps after {args.warmup} warm-up, on {device}; load average {load:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end")  # fmt: skip
    print()
    print("| model | precision | s/step | steps/s | samples/s | peak memory (MB) |")
    print("|---|---|---:|---:|---:|---:|")
    for (name, precision), seconds in times.items():
        print(f"| {name} | {precision} | {seconds:.2f} | {1 / seconds:.3f} | "
              f"{args.batch_size / seconds:.2f} | {memory[name, precision]:,.0f} |")  # fmt: skip
    for precision in args.precisions:
        ratio = times["pixel-m4", precision] / times["vit-mae", precision]
        print(f"\n{precision}: PIXEL-M4 step time = {ratio:.2f} x ViTMAE's, peak memory "
              f"{memory['pixel-m4', precision] / memory['vit-mae', precision]:.2f} x")  # fmt: skip

    cold, warm, count = pipeline_rate(args.batch_size)
    consumed = args.batch_size / times.get(("pixel-m4", "fp32"), math.nan)
    print()
    print("| data pipeline (1 process) | samples/s | x model fp32 consumption |")
    print("|---|---:|---:|")
    print(f"| pack + render, cold | {cold:.1f} | {cold / consumed:.0f} |")
    print(f"| pack + render, warm | {warm:.1f} | {warm / consumed:.0f} |")
    print(f"\n({count} packed samples per pass; the model consumes {consumed:.2f} samples/s)")


if __name__ == "__main__":
    main()
