#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one go (issue 20, part 2), in order of importance:
#   1. the Triton tests that have never run on a GPU (bf16/fp16, large shapes) and the other GPU tests;
#   2. the GPT-2-small training step beside nanoGPT's model.py (compiled), same card, same run;
#   3. Triton FlashAttention against PyTorch SDPA's backends (cuDNN, FlashAttention-2), d 64:
#      fwd and fwd+bwd, B 1, H 16, T up to 16,384, bf16, causal;
#   4. Triton forward at d 128, T 8,192: TFLOP/s against cuDNN;
#   5. KV-cache decoding of the GPT-2-small shape at batch 128 against recomputation.
#
#   OUT=/some/dir bash benchmarks/run_gpu.sh       # results and log.txt go to $OUT
#   bash benchmarks/run_gpu.sh --dry-run           # print the commands, run nothing
#
# nanoGPT's model.py is expected at benchmarks/scratch/nanogpt/model.py (ignored by git: copy it
# from https://github.com/karpathy/nanoGPT and carry benchmarks/scratch to the GPU machine);
# without it part 2 times tfcore's step alone. Each part has its own time limit so that one slow
# part cannot starve the rest (about eight minutes in all at most). Runs from the repository root
# with the machine's own python3 (torch, triton); the source tree is put on PYTHONPATH, nothing
# is installed.
set -u -o pipefail
OUT=${OUT:-benchmarks/results}
PY=${PYTHON:-python3}
RUN=""
if [ "${1:-}" = "--dry-run" ]; then RUN="echo"; fi
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
exec > >(tee "$OUT/log.txt") 2>&1

part() { echo; echo "== $1 ($(date -u +%T))"; }
part environment
$RUN nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
$RUN $PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"

part "GPU tests (the Triton bf16/fp16/large-shape tests first)"
$RUN timeout 180 $PY -m pytest -q -p no:cacheprovider -rs tests/test_triton_flash.py tests/test_cuda.py tests/test_flash.py

part "GPT-2-small training step beside nanoGPT (bf16, compile, fused AdamW)"
$RUN timeout 150 $PY benchmarks/nanogpt_compare.py --out "$OUT/nanogpt_compare_cuda.json" \
    || $RUN timeout 60 $PY benchmarks/train_gpu.py --no-compile --out "$OUT/train_gpu_cuda_eager.json"

part "attention kernels (bf16, causal, B=1, h=16, d=64)"
$RUN timeout 80 $PY benchmarks/attention.py --device cuda --heads 16 --seq-lens 1024,4096,16384 --reps 10 \
    --methods naive,tiled,sdpa,sdpa-FLASH_ATTENTION,sdpa-CUDNN_ATTENTION,triton --max-tiled-len 4096 \
    --out "$OUT/attention_cuda.json"

part "attention forward, d=128, T=8192 (bf16, causal, B=1, h=16): TFLOP/s against cuDNN"
$RUN timeout 40 $PY benchmarks/attention.py --device cuda --heads 16 --d-head 128 --seq-lens 8192 --reps 20 \
    --modes fwd --no-memory --methods sdpa-CUDNN_ATTENTION,sdpa-FLASH_ATTENTION,triton \
    --out "$OUT/attention_cuda_d128.json"

# A cached step is bound by kernel launches (about 15 per layer whatever the batch), while
# recomputing step t costs about 2 * 124M * batch * t FLOPs: the ratio grows with the batch.
part "KV-cache decoding, GPT-2-small shape, batch 128, 1000 new tokens"
$RUN timeout 120 $PY benchmarks/decode.py --device cuda --shape gpt2-small --dtype bfloat16 --batch 128 \
    --out "$OUT/decode_cuda_gpt2_b128.json"
part done
