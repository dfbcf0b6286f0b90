"""Time qdora_lab.cpu's C++ dequantize and matmul against a copy of the dense weight and the dense matmul.

Run: `python bench/cpu_dequant.py` (writes bench/results/cpu_dequant.md). One 4096x4096 weight ~ N(0, 0.02^2),
group 64, quantized with optimize=False (the codes do not change the speed); torch.set_num_threads(2). Every row
times its candidates side by side in one process, interleaved, and reports medians, so that load from other
processes hits all of them alike. Not a test: nothing is asserted on times; bit-exactness and tolerances are checked.
"""
import os, platform, statistics, sys, time
from pathlib import Path
import torch
from tabulate import tabulate
sys.path.insert(0, str(Path(__file__).parent))
from _lm_common import idle_percent
from qdora_lab import cpu
from qdora_lab.quant import quantize, dequantize_packed, PACKING, PACKING_NBITS

N = K = 4096
G, N_RUNS, N_RUNS_MM = 64, 9, 25
WIDTHS = (8, 6, 5, 4, 3, 2, 1)

def medians(fs, n):
    "Interleaved medians (ms) of the callables in `fs` (each run once first, untimed)."
    for f in fs.values(): f()
    ts = {k: [] for k in fs}
    for _ in range(n):
        for k, f in fs.items():
            t0 = time.perf_counter(); f(); ts[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in ts.items()}

def plan_for(W, nbits, axis, dtype=torch.float32):
    W_q, meta = quantize(W, nbits=nbits, group_size=G, axis=axis, optimize=False)
    p = cpu.HQQPlan(W_q, nbits=nbits, group_size=G, axis=axis, shape=(N, K))
    return p, W_q, meta['scale'].to(dtype), meta['zero'].to(dtype)

def dequant_table(W):
    rows, first = [], {}
    for nbits in WIDTHS:
        for axis in (1, 0):
            p, W_q, s, z = plan_for(W, nbits, axis)
            bits, R = PACKING_NBITS[PACKING[nbits]], p.layout.R
            t0 = time.perf_counter(); got = p.dequantize(s, z, torch.float32); first[nbits, axis] = time.perf_counter() - t0
            ref = dequantize_packed(W_q, bits, R, (N, K), s, z, torch.float32)
            exact = torch.equal(got, ref)
            out = torch.empty(N, K)
            m = medians({'clone': lambda: W.clone(),
                         'ours': lambda: p.dequantize(s, z, torch.float32),
                         'ours, out=': lambda: p.dequantize(s, z, torch.float32, out=out),
                         'eager': lambda: dequantize_packed(W_q, bits, R, (N, K), s, z, torch.float32)}, N_RUNS)
            rows.append([nbits, axis, f"{m['clone']:.1f}", f"{m['ours']:.1f}", f"{m['ours'] / m['clone']:.2f}x",
                         f"{m['ours, out=']:.1f}", f"{m['eager']:.1f}", f"{m['eager'] / m['clone']:.2f}x", exact])
            print(rows[-1], flush=True)
    return rows, first

def matmul_table(W):
    rows = []
    for nbits, axis in ((4, 1), (4, 0), (3, 1), (2, 1)):
        p, W_q, s, z = plan_for(W, nbits, axis)
        Wd = p.dequantize(s, z, torch.float32); Wb = Wd.bfloat16(); sb, zb = s.bfloat16(), z.bfloat16()
        for M in (1, 4, 8, 16):
            x = torch.randn(M, K); xb = x.bfloat16()
            err = ((p.matmul(x, s, z) - x @ Wd.T).abs().max() / (x @ Wd.T).abs().max()).item()
            fs = {'ours fp32': lambda: p.matmul(x, s, z), 'dense fp32': lambda: x @ Wd.T,
                  'ours bf16': lambda: p.matmul(xb, sb, zb), 'dense bf16': lambda: xb @ Wb.T}
            m = medians(fs, N_RUNS_MM)
            rows.append([nbits, axis, M, f"{m['ours fp32']:.2f}", f"{m['dense fp32']:.2f}", f"{m['ours fp32'] / m['dense fp32']:.2f}x",
                         f"{m['ours bf16']:.2f}", f"{m['dense bf16']:.2f}", f"{m['ours bf16'] / m['dense bf16']:.2f}x",
                         f'{err:.1e}'])
            print(rows[-1], flush=True)
    return rows

def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    W = torch.randn(N, K) * 0.02
    idle0 = idle_percent()
    ok = cpu.kernels_available()
    if not ok: sys.exit('the C++ kernels of qdora_lab.cpu are not available here: nothing to benchmark')
    mm = matmul_table(W)
    deq, first = dequant_table(W)
    idle1 = idle_percent()
    head = (f'# qdora_lab.cpu: dequantize and matmul vs the dense weight\n\n'
            f'Weight {N}x{K} ~ N(0, 0.02^2), group {G}; torch {torch.__version__}, {torch.get_num_threads()} threads, '
            f'CPU capability {torch.backends.cpu.get_cpu_capability()} ({platform.processor() or platform.machine()}, '
            f'{os.cpu_count()} cores); medians of interleaved runs ({N_RUNS} for dequantize, {N_RUNS_MM} for matmul). '
            f'Machine idle before/after: {idle0:.0f}% / {idle1:.0f}% (other jobs share it: compare ratios within a row).\n\n'
            f'Kernels: `kernels/hqq_cpu.cpp` built by {cpu.BUILD.get("compiler")} '
            f'({"from the cache" if cpu.BUILD.get("cached") else "built now"}, {cpu.BUILD.get("seconds")} s to load).\n\n')
    t1 = tabulate(deq, headers=['bits', 'axis', 'W.clone() ms', 'ours ms', 'ours / clone', 'ours out= ms',
                                'eager ms', 'eager / clone', 'bit-exact'], tablefmt='github')
    t2 = tabulate(mm, headers=['bits', 'axis', 'M', 'ours fp32 ms', 'dense fp32 ms', 'ratio', 'ours bf16 ms',
                               'dense bf16 ms', 'ratio', 'max rel err fp32'],
                   tablefmt='github')
    md = (head + '## dequantize to float32\n\n`ours` allocates the result, as `W.clone()` does; `ours out=` writes into a '
          'preallocated buffer; `eager` is `quant.dequantize_packed`.\n\n' + t1 +
          '\n\n## x @ W.T\n\n`ours` is `plan.matmul` (the fused kernel for M <= GEMV_MAX_M='
          f'{cpu.GEMV_MAX_M}, else dequantize into the scratch buffer + torch.matmul); `dense` is x @ W.T on the dense '
          'weight in that dtype (bf16: meta in bf16 too, as a bf16 layer stores it). Error: max |ours - x @ W.T| / '
          'max |x @ W.T| in fp32.\n\n' + t2 + '\n')
    print(md)
    out = Path(__file__).resolve().parent / 'results' / 'cpu_dequant.md'
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    if not all(r[-1] for r in deq): sys.exit('a dequantize result differs from quant.dequantize_packed')

if __name__ == '__main__': main()
