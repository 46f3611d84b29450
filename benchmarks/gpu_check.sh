#!/usr/bin/env bash
# The GPU measurements of docs/performance.md ("GPU"), in one run of a few minutes, offline.
#
# 1. Here (a machine with PyPI), once, in the repository root:
#        bash benchmarks/gpu_check.sh wheels
#    puts the diffusers wheel into .whl/ (ignored by git): the device image has torch, accelerate, peft,
#    transformers and safetensors but no diffusers.
# 2. On the device (the `run` tool), carrying .whl:
#        command: bash benchmarks/gpu_check.sh      carry: [".whl"]      timeout_s: 540
#    writes $OUT/results.json (one object per row), $OUT/log.txt and $OUT/gpu.txt.
#
# Rows (bench_finetune_fullsize.py: the Wan2.1-T2V-1.3B transformer from its config, random weights,
# LoRA r32 on q/k/v/o, 480x832x81 = 16x21x60x104 latents, 512x4096 random text embeddings, bf16):
#   ckpt           gradient checkpointing, method none (the headline: goal < 24 GB peak)
#   refconcat      the same with method reference-concat (+1 clean reference latent frame, VAE loaded)
#   nockpt         without gradient checkpointing (may run out of memory: recorded as an error row)
#   blockswap10 / quantize-fp8   only when the trainer code uses memory.block_swap / memory.quantize
# No generate row: benchmarks/bench_generate.py runs tiny-wan only (no full-size random-weight mode).
# Each row is its own process (its own peak memory) with its own time limit; the model folder is
# written once (random weights, ~2.8 GB in /tmp) and reused. GPU_CHECK_ARGS is appended to every row
# (a CPU smoke run: GPU_CHECK_ARGS="--layers 1 --frames 5 --height 32 --width 32" GPU_CHECK_MODEL=DIR).
set -u
cd "$(dirname "$0")/.."

if [ "${1:-}" = "wheels" ]; then
    PY=${PYTHON:-python3}
    exec "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl "diffusers==0.42.1"
fi

OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
: >"$LOG"
if ! python3 -c "import diffusers" 2>/dev/null; then
    if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo "diffusers is not installed and there is no .whl/: run 'bash benchmarks/gpu_check.sh wheels' here and carry .whl" | tee -a "$LOG" >&2
        exit 2
    fi
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 2
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
MODEL=${GPU_CHECK_MODEL:-/tmp/ipvg-wan21-1.3b-random}
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; python3 -c "import torch, diffusers, peft, accelerate; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'diffusers', diffusers.__version__, 'peft', peft.__version__, 'accelerate', accelerate.__version__)"; } >"$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt" | tee -a "$LOG"

ROWS=()
BUDGET=${GPU_CHECK_BUDGET:-460}  # seconds for all rows (the device call: 540 s)
row() {  # row NAME LIMIT_S ARGS...
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*" | tee -a "$LOG"
    rm -f "/tmp/gpu-check-$name.json"
    ROWS+=("$name")
    if ((SECONDS + limit > BUDGET)); then  # the whole run stays inside the device call
        echo "{\"error\": \"skipped: ${SECONDS} s used, the row may take ${limit} s of a ${BUDGET} s budget\"}" >"/tmp/gpu-check-$name.json"
        echo "   skipped (time budget)" | tee -a "$LOG"
        return
    fi
    timeout "$limit" python3 benchmarks/bench_finetune_fullsize.py --model-dir "$MODEL" \
        --out-json "/tmp/gpu-check-$name.json" "$@" ${GPU_CHECK_ARGS:-} >>"$LOG" 2>&1
    local rc=$?
    [ $rc -eq 124 ] && echo "{\"error\": \"timed out after ${limit} s\"}" >"/tmp/gpu-check-$name.json"
    echo "   rc $rc" | tee -a "$LOG"
}

row ckpt 200 --steps 10 --warmup 2
row refconcat 120 --method reference-concat --steps 6 --warmup 2
row nockpt 120 --no-gradient-checkpointing --steps 5 --warmup 2
uses() { grep -rlE "$1" src/ipvgkit --include=*.py | grep -v finetune_config.py | grep -q .; }
uses 'memory\.block_swap' && row blockswap10 120 --steps 6 --warmup 2 --block-swap 10
uses 'memory\.quantize' && row quantize-fp8 120 --steps 6 --warmup 2 --quantize fp8

python3 - "$OUT/results.json" "${ROWS[@]}" <<'EOF' 2>&1 | tee -a "$LOG"
import json, sys
from pathlib import Path

out, names = sys.argv[1], sys.argv[2:]
rows = []
for n in names:
    p = Path(f"/tmp/gpu-check-{n}.json")
    rows.append({"row": n, **(json.loads(p.read_text()) if p.is_file() else {"error": "no result written"})})
Path(out).write_text(json.dumps({"rows": rows}, indent=2) + "\n")
print(f"{'row':14} {'s/step':>8} {'alloc GiB':>10} {'resv GiB':>9} {'MFU %':>6}  note")
for r in rows:
    if "error" in r:
        print(f"{r['row']:14} {'-':>8} {'-':>10} {'-':>9} {'-':>6}  {r['error'][:60]}")
        continue
    mfu = f"{100 * r['mfu']:.1f}" if "mfu" in r else "-"
    gib = [f"{r[k]:.2f}" if r.get(k) is not None else "-" for k in ("peak_allocated_gib", "peak_reserved_gib")]
    note = "levers noted" if r.get("memory_levers_noted") else ("LEVER NOT NOTED" if r.get("memory_levers") else "")
    print(f"{r['row']:14} {r['s_per_step']:8.3f} {gib[0]:>10} {gib[1]:>9} {mfu:>6}  {note}")
EOF
