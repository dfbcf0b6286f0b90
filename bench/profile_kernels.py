"""bench/profile_kernels.py: launch each kernel that misses its target once, for Nsight Compute (bench/gpu_check.sh).

The kernels' measured times (bench/results/kernels_h100.md) are 1.5-12x the bounds their machine code implies
(chapter 05, "Measured on an H100"), so neither bytes nor instruction issue explain them; `ncu` says what does
(achieved bandwidth and occupancy, warp stall reasons). Each case is one launch of each of its kernels, on the
shapes of issue 11, with the weights in bf16 meta as the layers store them.

    ncu --kernel-name regex:ql_ --section SpeedOfLight ... python bench/profile_kernels.py   # GPU (bench/gpu_check.sh)
    python bench/profile_kernels.py --dry-run                                              # CPU: the cases build
"""
import sys
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / 'bench'))
BF = torch.bfloat16
# (label, N, K, M, bits): the matmuls that miss their targets or lose to dense bf16, and the 4-bit dequantize
CASES = [('4-bit M=1', 4096, 4096, 1, 4), ('3-bit M=1', 4096, 4096, 1, 3), ('2-bit M=1', 4096, 4096, 1, 2),
         ('4-bit M=64 (DoRA W A^T)', 4096, 4096, 64, 4)]


def main(dry_run=False):
    from kernels import quantized, mixed   # bench/kernels.py's builders: the benchmark's own weights
    dev = 'cpu' if dry_run else 'cuda'
    torch.manual_seed(0)
    for label, N, K, M, bits in CASES:
        W = torch.randn(N, K, device=dev, dtype=BF) / K**0.5
        W_q, s, z = quantized(W, bits)
        x = torch.randn(M, K, device=dev, dtype=BF)
        if dry_run: print('built', label, tuple(W_q.shape)); continue
        from qdora_lab.cuda import HQQPlan
        plan = HQQPlan(W_q, nbits=bits, group_size=64, axis=1, shape=(N, K))
        plan.matmul(x, s, z)
        if M == 1 and bits == 4: plan.dequantize(s, z, BF)
        torch.cuda.synchronize(); print('launched', label, repr(plan), flush=True)
    ml, plans = mixed(4096, 4096, (0, 0, 0, 16, 32, 16), 64, dev)
    if dry_run: print('built mixed', ml.bpw); return
    p, s, z = plans[0]
    p.matmul(torch.randn(1, 4096, device=dev, dtype=BF), s, z); p.dequantize(s, z, BF)
    torch.cuda.synchronize(); print('launched mixed', repr(p), flush=True)


if __name__ == '__main__': main('--dry-run' in sys.argv[1:])
