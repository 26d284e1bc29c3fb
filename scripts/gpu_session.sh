#!/usr/bin/env bash
# One device session: every GPU measurement draftforge records, in one command (~7 minutes on one
# H100/H200). Run from the repository root on the GPU machine with the wheels draftforge needs beyond
# the machine's image in .whl/ (deepspeed, pydantic, datasets, ...; see docs/BENCHMARKS.md), e.g.
#   OUT=/tmp/gpu bash scripts/gpu_session.sh
# Each step has its own time limit, so one failing step leaves the others' results intact.
set -u
OUT=${OUT:?set OUT to an output folder}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/nvidia-smi.csv" 2>&1
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name(0))" | tee "$OUT/versions.txt"

step() {  # step NAME SECONDS CMD...
  local name=$1 limit=$2; shift 2
  echo "=== $name (limit ${limit}s) $(date -u +%T)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "=== $name rc=$? $(date -u +%T)"
  tail -n 25 "$OUT/$name.log"
}

step profile 230 python3 scripts/gpu_profile.py --out "$OUT/profile" --minutes-per-runtime 1.0
step engine 110 python3 scripts/gpu_engine.py --out "$OUT/engine"
step distill 110 python3 scripts/gpu_distill.py --out "$OUT/distill"
