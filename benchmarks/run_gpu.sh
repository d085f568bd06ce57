#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one go: the GPU benchmarks of issue "Training"
# (GPT-2-small step, KV-cache decoding), the GPU tests, then the attention kernels.
#
#   OUT=/some/dir bash benchmarks/run_gpu.sh       # results and log.txt go to $OUT
#
# Each part has its own time limit so that one slow part cannot starve the rest; the
# order is the order of importance. Runs from the repository root with the machine's
# own python3 (torch, triton); the source tree is put on PYTHONPATH, nothing is installed.
set -u -o pipefail
OUT=${OUT:-benchmarks/results}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
exec > >(tee "$OUT/log.txt") 2>&1

part() { echo; echo "== $1 ($(date -u +%T))"; }
part environment
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
$PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"

part "GPT-2-small training step (bf16, compile, fused AdamW)"
timeout 200 $PY benchmarks/train_gpu.py --out "$OUT/train_gpu_cuda.json" \
    || timeout 60 $PY benchmarks/train_gpu.py --no-compile --out "$OUT/train_gpu_cuda_eager.json"

# A cached step is bound by kernel launches (about 15 per layer whatever the batch), while
# recomputing step t costs about 2 * 124M * batch * t FLOPs: the ratio grows with the batch.
# A rough estimate for an H100/H200 (not measured yet): ~1x at batch 1, ~5x at 32, ~15x at 128.
part "KV-cache decoding, 1000 new tokens"
timeout 40 $PY benchmarks/decode.py --device cuda --out "$OUT/decode_cuda_cpu-shape_b1.json"
timeout 150 $PY benchmarks/decode.py --device cuda --shape gpt2-small --dtype bfloat16 --batch 128 \
    --out "$OUT/decode_cuda_gpt2_b128.json"

part "GPU tests"
timeout 120 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_triton_flash.py tests/test_flash.py

part "attention kernels (bf16, causal, B=1, h=16, d=64)"
timeout 90 $PY benchmarks/attention.py --device cuda --heads 16 --seq-lens 1024,4096,16384 --reps 10 \
    --methods naive,tiled,sdpa,sdpa-FLASH_ATTENTION,sdpa-CUDNN_ATTENTION,triton --max-tiled-len 4096 \
    --out "$OUT/attention_cuda.json"
part done
