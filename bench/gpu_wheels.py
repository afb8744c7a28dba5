"""Fetch the wheels the GPU benchmarks need on the device machine (issue #11), for a session that is lent one.

The device's image holds torch, transformers, peft, accelerate and much else, but not everything Loopgate imports
(pydantic, SQLAlchemy, trl, datasets, …), and nothing can be installed there from the network. This script, run
here before the first device call:

1. runs both benchmarks' ``--smoke`` here and lists every distribution they import (their import closure);
2. reads the device image's package list from ``../.library/device/KINDS.md`` (or ``--have FILE``, one name per
   line or the same comma-separated list);
3. downloads into ``.whl/``, for CPython 3.12 on manylinux x86-64, the version installed here of every
   distribution of the closure the device lacks, plus the libraries whose version decides the figures (``PINNED``),
   so that the device runs what ``make test`` ran here; torch stays the device's own CUDA build.

Then one device call runs both benchmarks (``bench/gpu_session.sh``, docs/benchmarks.md):

    .venv/bin/python bench/gpu_wheels.py
    run(command="bash bench/gpu_session.sh", carry=[".whl"])
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDS = ROOT.parent / ".library" / "device" / "KINDS.md"
# whose version changes what the benchmarks measure: carried at the version `make test` uses here
PINNED = ("transformers", "peft", "trl", "tokenizers", "accelerate", "safetensors")
# never carried: the device's own CUDA builds, and what only the CPU build here needs
NEVER = {"torch", "triton", "nvidia", "loopgate", "pip", "setuptools", "wheel"}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")

CLOSURE = """
import importlib.metadata as md, json, runpy, sys
sys.path.insert(0, "bench")
for script in ("bench/gpu_eval.py", "bench/gpu_update.py"):
    sys.argv = [script, "--smoke"]
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit:
        pass
dist = md.packages_distributions()
print("CLOSURE" + json.dumps(sorted({d for m in list(sys.modules) for d in dist.get(m.split(".")[0], [])})))
"""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def device_packages(path: Path) -> set[str]:
    """The device image's distributions: KINDS.md's 'Packages: a, b, …' line, or a file of names."""
    text = path.read_text(encoding="utf-8")
    found = re.search(r"Packages: ([^\n]+)", text)
    names = found[1] if found else text
    return {canonical(n) for n in re.split(r"[,\s]+", names.strip().rstrip(".")) if n}


def closure() -> list[str]:
    env = {**os.environ, "LOOPGATE_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", CLOSURE], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=600)
    line = next((x for x in out.stdout.splitlines() if x.startswith("CLOSURE")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit(f"gpu_wheels: the smoke runs failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return list(json.loads(line.removeprefix("CLOSURE")))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--have", type=Path, default=KINDS, help="the device's package list (default: KINDS.md)")
    ap.add_argument("--dest", type=Path, default=ROOT / ".whl")
    ap.add_argument("--dry-run", action="store_true", help="print what would be fetched, fetch nothing")
    args = ap.parse_args()
    if not args.have.exists():
        print(f"gpu_wheels: {args.have} is missing; pass --have FILE with the device's package names")
        return 2
    have = device_packages(args.have)
    needed = {canonical(d) for d in closure()} | set(PINNED)
    fetch = sorted(n for n in needed if n not in NEVER and not n.startswith("nvidia-")
                   and (n in PINNED or n not in have))
    pins = [f"{n}=={md.version(n)}" for n in fetch]
    print("gpu_wheels: the device lacks or gets pinned: " + " ".join(pins))
    if args.dry_run:
        return 0
    args.dest.mkdir(exist_ok=True)
    for old in args.dest.glob("*.whl"):  # one version of each: two stop the whole install there
        old.unlink()
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--implementation", "cp", "-d", str(args.dest)]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    failed = [p for p in pins if subprocess.run(cmd + [p], capture_output=True, text=True).returncode != 0]
    if failed:
        print(f"gpu_wheels: no CPython 3.12 manylinux wheel for {' '.join(failed)}; see the device README for "
              "other --platform tags")
        return 1
    size = sum(f.stat().st_size for f in args.dest.glob("*.whl"))
    print(f"gpu_wheels: {len(pins)} wheels, {size / 2**20:.1f} MiB in {args.dest} (the device call carries it: "
          "carry=['.whl'])")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
