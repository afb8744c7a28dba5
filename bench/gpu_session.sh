#!/usr/bin/env bash
# Issue #11's GPU figures in one device call (docs/benchmarks.md, "GPUs"). Here first:
#     .venv/bin/python bench/gpu_wheels.py          # the wheels the device image lacks, into .whl/
# then the device tool:  run(command="bash bench/gpu_session.sh", carry=[".whl"])
# Each benchmark's output comes back as $OUT/gpu_eval.txt and $OUT/gpu_update.txt.
set -o pipefail
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "gpu_session: no wheels in .whl/: run bench/gpu_wheels.py here and carry .whl" >&2
    exit 2
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 2
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi -L | tee "$OUT/device.txt"
python3 - <<'PY' | tee -a "$OUT/device.txt" || exit 2
import importlib.metadata as md, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
print(" ".join(f"{n} {md.version(n)}" for n in ("transformers", "peft", "accelerate", "tokenizers", "safetensors")))
import loopgate.train, loopgate.evaluate  # noqa: F401  (everything the benchmarks import resolves)
PY
status=0
timeout 280 python3 bench/gpu_eval.py 2>&1 | tee "$OUT/gpu_eval.txt" || status=1
timeout 280 python3 bench/gpu_update.py 2>&1 | tee "$OUT/gpu_update.txt" || status=1
exit $status
