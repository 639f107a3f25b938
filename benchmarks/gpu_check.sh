#!/usr/bin/env bash
# The prepared GPU check (issue 14): one run on a CUDA machine, from the repository root.
#
#     OUT=DIR bash benchmarks/gpu_check.sh [PEERS_DIR]
#
# 1. the Triton tests that changed since the last GPU run (sparse kernels, kept basis matrix,
#    Chebyshev squash, float32 GEMM outputs under autocast, chunks, empty batch, 32-bit row
#    chunks, the edge mask inside the kernels), on the GPU,
#    compiled: xfail/xpass reported (-rxX);
# 2. benchmarks/layer_speed.py --device cuda (run as layer_speed_cuda.py) with the peers (PEERS_DIR,
#    default .peers: their layer files, see docs/performance.md) at the sizes docs/performance.md
#    quotes, with a profile;
# 3. the whole of tests/unit/test_triton.py and the path chooser's tests, if time is left.
# Steps 1 and 3 run on 8 pytest-xdist workers where xdist is installed (KANTK_CHECK_WORKERS).
# Everything lands in DIR (default /tmp/kantk-gpu): env.txt, tests_changed.txt,
# layer_speed.txt/.json, tests_all.txt. Each step has its own time limit (about 9 minutes in all).
set -u -o pipefail
out="${OUT:-/tmp/kantk-gpu}"
peers="${1:-.peers}"
# a dry run of this script on a CPU: KANTK_CHECK_DEVICE=cpu KANTK_CHECK_CONFIGS=8x16x50 TRITON_INTERPRET=1
device="${KANTK_CHECK_DEVICE:-cuda}"
configs="${KANTK_CHECK_CONFIGS:-256x8192x5 1024x65536x5 256x8192x50 256x8192x200}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
# The tests compile their kernel variants in the process that runs them, one after another (one to
# two seconds each: benchmarks/kernel_compile.py built 130 variants in 3.5 min on a 2-core CPU);
# with pytest-xdist (in the device image) eight workers compile them side by side.
# Triton's on-disk cache is safe to share between processes. Not for step 2: timings run alone.
workers=""
if python -c "import xdist" 2>/dev/null; then workers="-n ${KANTK_CHECK_WORKERS:-8}"; fi
{
    date -u
    git rev-parse --short HEAD 2>/dev/null || echo "commit: unknown"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
    python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
    echo "pytest workers: ${workers:-none}"
} >"$out/env.txt" 2>&1
cat "$out/env.txt"

echo "== 1. changed Triton tests on the GPU"
changed="sparse or keeps or squash or chebyshev_and_rbf or low_precision or in_chunks or transformed or empty or row_offsets or pruned or masked"
timeout 150 python -m pytest -q -p no:cacheprovider -rxX $workers tests/unit/test_triton.py -k "$changed" 2>&1 \
    | tee "$out/tests_changed.txt" | tail -n 25

echo "== 2. layer benchmark"
timeout 280 python benchmarks/layer_speed_cuda.py --device "$device" --peers "$peers" --profile \
    --configs $configs \
    --json "$out/layer_speed.json" 2>&1 | tee "$out/layer_speed.txt" | grep -v "^ *aten::\|^ *cuda\|^---\|Name " | tail -n 90

echo "== 3. all Triton and path-chooser tests on the GPU"
timeout 120 python -m pytest -q -p no:cacheprovider -rxX -x $workers tests/unit/test_triton.py \
    tests/unit/test_bspline_dispatch.py 2>&1 | tee "$out/tests_all.txt" | tail -n 15
