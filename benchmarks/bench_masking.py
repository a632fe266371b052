"""Span masking: the statistics of `span_mask` (the published figures to compare with) and its cost.

    python benchmarks/bench_masking.py                   # 2,000 full strips, ratio 0.25
    python benchmarks/bench_masking.py --spacing 0 --mask-ratio 0.5

Statistics over --draws full 529-patch strips (all patches attended): mean length of the runs of
consecutive masked patches, share of runs longer than --max-span, longest run, patches masked per
strip and how often the black end patch is masked. The published generator
(SpanMaskingGenerator(6, "span", .2 .4 .6 .8 .9 1) with the model's top-up, run beside ours)
gives a mean run of 2.818, no run longer than 6 and 133 patches per strip; docs/fidelity.md has
the table. Cost: milliseconds per batch of full strips, best of --repeats, on this CPU.
"""

import argparse
import os
import time

import torch

from pixel_m4.configuration_pixel_m4 import PAPER_SPAN_WEIGHTS
from pixel_m4.modeling_pixel_m4 import span_mask


def run_lengths(mask: torch.Tensor) -> torch.Tensor:
    """Lengths of all runs of True in the rows of a bool [B, L] mask."""
    padded = torch.nn.functional.pad(mask.int(), (1, 1))
    edges = padded.diff(dim=1)
    starts = (edges == 1).nonzero()[:, 1]
    ends = (edges == -1).nonzero()[:, 1]
    return ends - starts  # nonzero() walks rows in order, so starts and ends pair up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--patches", type=int, default=529)
    parser.add_argument("--mask-ratio", type=float, default=0.25)
    parser.add_argument("--spacing", default="span", help='"span" or an int')
    parser.add_argument("--max-span", type=int, default=6)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 32, 256])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    spacing = args.spacing if args.spacing == "span" else int(args.spacing)
    weights = list(PAPER_SPAN_WEIGHTS)

    generator = torch.Generator().manual_seed(args.seed)
    strips = torch.ones(args.draws, args.patches, dtype=torch.long)
    mask = span_mask(strips, args.mask_ratio, weights, generator, spacing)
    lengths = run_lengths(mask).float()
    print(f"load average {os.getloadavg()[0]:.1f}; {args.draws} strips of {args.patches} patches")
    print(
        f"mean run {lengths.mean():.3f}, runs > {args.max_span}: "
        f"{(lengths > args.max_span).float().mean():.2%}, longest {int(lengths.max())}, "
        f"masked per strip {mask.sum(1).float().mean():.1f}, "
        f"end patch masked in {mask[:, -1].float().mean():.1%} of strips"
    )
    for batch in args.batch_sizes:
        attention = torch.ones(batch, args.patches, dtype=torch.long)
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            span_mask(attention, args.mask_ratio, weights, generator, spacing)
            times.append(time.perf_counter() - started)
        print(f"batch {batch}: {min(times) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
