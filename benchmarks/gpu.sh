#!/usr/bin/env bash
# The GPU checks and timings in one run, for a machine with a CUDA GPU.
#
#   bash benchmarks/gpu.sh [OUT_DIR]        # default outputs/benchmarks/gpu
#
# 1. tests/test_cuda.py (CPU vs GPU agreement, CUDA graphs vs eager, save on GPU / load on
#    CPU, bf16, SHAC);
# 2. update speed at the single-task and 5M shapes: CUDA graphs (fp32 and bf16) and eager
#    (fp32), same run (benchmarks/speed.py);
# 3. extraction wall-clock per task at small/1M/5M/48M: fp32/bf16 x graphs/eager (benchmarks/offline.py);
# 4. online learning throughput on HalfCheetah-v5, PWM beside SAC (benchmarks/learning.py);
# 5. the CPU test suite on this machine (its agents stay on the CPU; catches platform issues).
# Each step has its own time limit so that one slow step cannot eat the rest.
set -u
OUT=${1:-outputs/benchmarks/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
PY=${PYTHON:-python3}
step() {  # step NAME SECONDS COMMAND...: run with a limit, keep the log, strip profiler chatter
    local name=$1 limit=$2
    shift 2
    echo "=== $name ($(date +%T))"
    timeout "$limit" "$@" 2>&1 | grep -v "^USDT\|^STAGE:" | tee "$OUT/$name.log"
    echo "=== $name done: rc ${PIPESTATUS[0]}"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
step test_cuda 60 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py
step speed 75 $PY benchmarks/speed.py --device cuda --bf16 --json "$OUT/speed.json"
step speed_eager 40 $PY benchmarks/speed.py --device cuda --no-cuda-graphs --json "$OUT/speed_eager.json"
step extraction 90 $PY benchmarks/offline.py --parts speed --device cuda --speed-bf16 --speed-eager \
    --speed-updates 30 --speed-presets small tdmpc2-1M tdmpc2-5M tdmpc2-48M --out "$OUT"
step learning 50 $PY benchmarks/learning.py --env HalfCheetah-v5 --steps 2000 --eval-every 2000 --episodes 1 \
    --workers 1 --out "$OUT/learning"
step suite 90 $PY -m pytest -q -p no:cacheprovider -n 8 --timeout 25 tests --ignore tests/test_cuda.py
