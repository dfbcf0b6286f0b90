"""bench/kernels.py: qdora_lab's CUDA kernels against what users would pick instead, side by side.

NOT RUN YET. This script was written in a session without a GPU; no number it produces has been seen.
Run it on a CUDA machine with CuPy installed (`pip install -e ".[cuda]"`):

    python bench/kernels.py            # writes bench/results/kernels.md

What it times (median over repeated launches, `triton.testing.do_bench` when triton is present, CUDA
events otherwise), in one process so the ratios are comparable:
  * matmul, y = x @ W.T, bf16, M = 1, 4, 16, layers 4096x4096, 11008x4096, 4096x11008 (out x in):
      dense bf16 (cuBLAS) | aten tinygemm int4 g64 (`torch.ops.aten._weight_int4pack_mm`) |
      hqq 0.2.8 HQQLinear, PYTORCH backend, 4-bit and 3-bit, axis=1 |
      ours (`quantized_matmul` -> fused `ql_gemv`) 4/3/2-bit, axis=1 and axis=0, g64;
  * dequantize to bf16, 4/3/2-bit, g64: hqq's `Quantizer.dequantize`, ours (`dequantize_cuda`), and the
    fraction of device-to-device copy bandwidth ours reaches (bytes read + written / time).
Correctness of every "ours" result against the PyTorch reference is asserted before it is timed.
"""
import sys
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tabulate import tabulate
from qdora_lab.core import atomic_write
from qdora_lab.quant import quantize, dequantize
from qdora_lab.cuda import quantized_matmul, dequantize_cuda

SHAPES = [(4096, 4096), (11008, 4096), (4096, 11008)]
MS = (1, 4, 16)
G = 64
DT = torch.bfloat16


def bench(fn, reps=200):
    "Median time of `fn()` in microseconds."
    try:
        from triton.testing import do_bench
        return do_bench(fn, warmup=25, rep=100, return_mode='median') * 1e3
    except ImportError:
        for _ in range(10): fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(reps):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record(); fn(); b.record(); b.synchronize()
            times.append(a.elapsed_time(b) * 1e3)
        return sorted(times)[len(times) // 2]


def tinygemm(W):
    "A tinygemm int4 g64 layer for W (qdora_lab.tinygemm), or None when unavailable."
    try:
        from qdora_lab.tinygemm import TinyGemmLinear
        lin = torch.nn.Linear(W.shape[1], W.shape[0], bias=False, device='cuda', dtype=DT)
        lin.weight.data.copy_(W)
        return TinyGemmLinear.from_linear(lin, group_size=G, optimize=False)
    except Exception as e:  # report, don't hide: the table shows the reason
        print(f"tinygemm unavailable: {e}")
        return None


def hqq_layer(W, nbits):
    "hqq's HQQLinear on the PYTORCH backend, or None when hqq is not installed."
    try:
        from hqq.core.quantize import HQQLinear, HQQBackend, BaseQuantizeConfig
    except ImportError:
        return None
    lin = torch.nn.Linear(W.shape[1], W.shape[0], bias=False, device='cuda', dtype=DT)
    lin.weight.data.copy_(W)
    HQQLinear.set_backend(HQQBackend.PYTORCH)
    return HQQLinear(lin, quant_config=BaseQuantizeConfig(nbits=nbits, group_size=G, axis=1),
                     compute_dtype=DT, device='cuda')


def main():
    if not torch.cuda.is_available(): sys.exit("bench/kernels.py needs a CUDA device (and CuPy); nothing was measured")
    torch.manual_seed(0)
    dev = torch.cuda.get_device_name()
    mm_rows, deq_rows = [], []
    src = torch.randn(64 * 2**20 // 2, dtype=DT, device='cuda')  # 64 MiB copy for the bandwidth anchor
    copy_us = bench(lambda: src.clone())
    copy_bw = 2 * src.numel() * src.element_size() / copy_us / 1e6  # TB/s, read + write
    for N, K in SHAPES:
        W = torch.randn(N, K, device='cuda', dtype=DT) * 0.02
        tg, h4, h3 = tinygemm(W), hqq_layer(W, 4), hqq_layer(W, 3)
        q = {(nb, ax): quantize(W, nbits=nb, group_size=G, axis=ax, optimize=False, compute_dtype=DT)
             for nb in (4, 3, 2) for ax in (1, 0)}
        for M in MS:
            x = torch.randn(M, K, device='cuda', dtype=DT)
            row = {'layer': f'{N} x {K}', 'M': M, 'dense bf16': bench(lambda: x @ W.t())}
            row['tinygemm int4'] = bench(lambda: tg(x)) if tg is not None else float('nan')
            row['hqq 4-bit'] = bench(lambda: h4(x)) if h4 is not None else float('nan')
            row['hqq 3-bit'] = bench(lambda: h3(x)) if h3 is not None else float('nan')
            for (nb, ax), (W_q, m) in q.items():
                ref = x @ dequantize(W_q, m, DT).t()
                y = quantized_matmul(x, W_q, m)
                torch.testing.assert_close(y.float(), ref.float(), atol=2**-6 * float(ref.abs().max()), rtol=0)
                row[f'ours {nb}-bit ax{ax}'] = bench(lambda: quantized_matmul(x, W_q, m))
            mm_rows.append(row)
        for nb in (4, 3, 2):
            W_q, m = q[(nb, 1)]
            test = dequantize_cuda(W_q, m, DT)
            if not torch.equal(test, dequantize(W_q, m, DT)): sys.exit(f"dequantize_cuda is not bit-exact ({nb}-bit, {N} x {K})")
            ours = bench(lambda: dequantize_cuda(W_q, m, DT, out=test))
            nbytes = W_q.numel() * W_q.element_size() + test.numel() * test.element_size() + \
                     sum(m[k].numel() * m[k].element_size() for k in ('scale', 'zero'))
            hq = hqq_layer(W, nb)
            hqq_us = bench(lambda: hq.dequantize()) if hq is not None else float('nan')
            deq_rows.append({'layer': f'{N} x {K}', 'nbits': nb, 'hqq dequantize': hqq_us, 'ours': ours,
                             'ours TB/s': nbytes / ours / 1e6, '% of copy bw': 100 * nbytes / ours / 1e6 / copy_bw})
    fmt = lambda rows: tabulate([{k: (f'{v:.1f}' if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
                                headers='keys', tablefmt='github')
    text = (f"# CUDA kernels benchmark\n\nDevice: {dev}; torch {torch.__version__}; times in microseconds "
            f"(median); copy bandwidth {copy_bw:.2f} TB/s.\n\n## y = x @ W.T (bf16, g{G})\n\n{fmt(mm_rows)}\n\n"
            f"## dequantize to bf16 (axis=1, g{G})\n\n{fmt(deq_rows)}\n")
    out = ROOT / 'bench' / 'results' / 'kernels.md'
    with atomic_write(out) as tmp: tmp.write_text(text)
    print(text)


if __name__ == '__main__':
    main()
