"""Compare two behaviour_snapshot.py manifests; prints every differing entry.

python benchmarks/compare_snapshots.py <before>/manifest.json <after>/manifest.json
"""

import json
import sys
from pathlib import Path


def differences(before, after, path: str = "") -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        found = []
        for key in sorted(set(before) | set(after)):
            if key not in before or key not in after:
                found.append(f"{path}/{key}: only in {'after' if key not in before else 'before'}")
            else:
                found += differences(before[key], after[key], f"{path}/{key}")
        return found
    # a checkpoint path names the run's output folder, which differs between snapshots
    if path.endswith("best_model_checkpoint"):
        before, after = str(before).split("/runs/")[-1], str(after).split("/runs/")[-1]
    return [] if before == after else [f"{path}: {str(before)[:150]} != {str(after)[:150]}"]


def count(tree) -> int:
    return sum(count(value) for value in tree.values()) if isinstance(tree, dict) else 1


if __name__ == "__main__":
    before, after = (json.loads(Path(name).read_text()) for name in sys.argv[1:3])
    found = differences(before, after)
    print(f"{count(before)} entries before, {count(after)} after, {len(found)} differences")
    print("\n".join(found))
