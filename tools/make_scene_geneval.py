"""Write the scene GenEval prompt set (official format, scene shapes as classes) and its class names.

    python tools/make_scene_geneval.py --seed 0 --out manifests/geneval/scene_metadata.jsonl

The same seed gives a byte-identical file; the class names go to scene_object_names.txt beside it.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from uae_eval.geneval.prompts import load_metadata  # noqa: E402
from uae_eval.geneval.scene_prompts import write_scene_manifest  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="generation seed (default: 0, the shipped file)")
    parser.add_argument("--out", type=Path, default=ROOT / "manifests/geneval/scene_metadata.jsonl",
                        help="metadata jsonl to write (default: manifests/geneval/scene_metadata.jsonl)")
    parser.add_argument("--names-out", type=Path, default=None,
                        help="class names file (default: scene_object_names.txt beside --out)")
    args = parser.parse_args(argv)
    out, names = write_scene_manifest(args.seed, args.out, args.names_out)
    metas = load_metadata(out)  # re-read: what we ship must pass our own validation
    tags = Counter(m["tag"] for m in metas)
    print(f"wrote {out} ({len(metas)} prompts: " + ", ".join(f"{t} {n}" for t, n in tags.items()) + f") and {names}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
