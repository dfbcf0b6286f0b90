"""bench/sanitize_kernels.py: launch every kernel variant an `HQQPlan` or a `MixedBitPlan` can pick (and DoRA's kernels), on small shapes, and check each.

Made to run under compute-sanitizer (bench/gpu_check.sh does: memcheck over everything, racecheck over the
matmuls, the mixed-bit kernels and the column dots, the ones with shared memory), and useful alone: every dequantize must be
bit-exact with `qdora_lab.quant.dequantize_packed` (mixed-bit: `MixedBitLinear._dequantize`) times row_scale,
every fused matmul within 2^-7 (bf16) / 2^-9 (fp16) of the largest |y| of the fp32 reference. Outputs are
poisoned (NaN) before each launch, so an unwritten element fails. Closes with 'N passed, N failed'.

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck python bench/sanitize_kernels.py
    python bench/sanitize_kernels.py --dry-run      # CPU: the cases and the reference paths only
    python bench/sanitize_kernels.py --only matmul,mb_dequantize,mb_matmul   # the kernels with shared memory
"""
import argparse, sys, traceback
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
bf16, f16, f32 = torch.bfloat16, torch.float16, torch.float32


def cases(quick=False, only=None):
    "(kind, nbits, axis, N, K, g, dtype, meta dtype, M or row_scale flag)."
    out = []
    for nb in (8, 4, 3, 2, 1):
        for ax in (1, 0):
            for dt, md in ((bf16, bf16), (f16, f16), (bf16, f32), (f32, bf16), (f16, bf16)):
                out.append(('dequantize', nb, ax, 40, 128, 32 if nb == 3 else 64, dt, md, dt == bf16))
    for nb, g in ((3, 8), (4, 16)):   # one thread per packed row: stores without a partner lane (axis 0 above has 5 per row)
        out.append(('dequantize', nb, 1, 24, 48, g, f32, bf16, True))
    for nb in (4, 2):
        for dt in (bf16, f16):
            for N in (64, 2048):          # few rows: split-K with fp32 atomics; many: one block per rows
                for M in (1, 12, 40):     # MT = 1, 2, 4
                    out.append(('matmul', nb, 1, N, 128, 64, dt, dt, M))
        out.append(('matmul', nb, 1, 96, 256, 128, bf16, f32, 5))   # fp32 meta, g = 128
    for dt in (bf16, f16):
        for N, M in ((40, 1), (64, 9), (50, 3)):                   # 3-bit: chunks of one word in different groups
            out.append(('matmul', 3, 1, N, 192, 64, dt, dt, M))
        out.append(('matmul', 3, 1, 40, 128, 64, dt, f32, 2))
    # mixed-bit (MixedBitLinear): (kind, N, group_size, groups per width 8/6/5/4/3/2, dtype, scaled_zero, row_scale / M)
    for N, g, counts in ((48, 32, (1, 2, 3, 1, 5, 2)), (80, 64, (0, 1, 2, 3, 2, 1))):   # every width; 80: a partial row block
        for dt in (bf16, f16, f32):
            out.append(('mb_dequantize', N, g, counts, dt, dt == f16, dt != f32))
        for dt in (bf16, f16):
            for M in (1, 8):
                out.append(('mb_matmul', N, g, counts, dt, dt == f16, M))
    out.append(('mb_dequantize', 32, 8, (2, 1, 3, 4, 5, 3), bf16, False, True))    # g = 8: many groups, no fused matmul
    # the DoRA backward's reduction (chapter 12): (kind, M, N, dtype, bias); a partial last column block, one row, many rows
    for M, N in ((1, 2), (37, 130), (600, 256)):
        for dt in (bf16, f16, f32):
            out.append(('column_dots', M, N, dt, M != 1))
            out.append(('dora_mgrad', M, N, dt, M != 1))
    for out_, r in ((5, 3), (300, 16), (257, 64)):          # the forward's row factors: a partial block, the largest r
        for dt in (bf16, f16, f32):
            out.append(('dora_scale', out_, r, dt, True))
            out.append(('dora_scale', out_, r, dt, False))
    kinds = None if only is None else set(only.split(','))
    out = [c for c in out if kinds is None or c[0] in kinds]
    return out[::4] if quick else out


def mb_layer(N, g, counts, scaled, seed=0):
    "A MixedBitLinear with random codes (groups of each width shuffled), fp16 scale/zero and a random permutation."
    from qdora_lab.mixedbit import MixedBitLinear, WIDTHS
    gen = torch.Generator().manual_seed(seed)
    bits = [b for b, n in zip(WIDTHS, counts) for _ in range(n)]
    bits = [bits[i] for i in torch.randperm(len(bits), generator=gen).tolist()]
    codes = torch.cat([torch.randint(0, 2**b, (N, g), generator=gen) for b in bits], 1)
    scale = (torch.rand(N, len(bits), generator=gen) * 0.1 + 1e-3).half()
    zero = (torch.rand(N, len(bits), generator=gen) * 2**max(bits)).half()
    if scaled: zero = (zero.float() * scale.float()).half()
    return MixedBitLinear(codes, bits, scale, zero, torch.randperm(len(bits) * g, generator=gen), scaled_zero=scaled)


def run_mb_case(c, dev):
    from qdora_lab.cuda import MixedBitPlan
    kind, N, g, counts, dt, scaled, extra = c
    ml = mb_layer(N, g, counts, scaled).to(dev)
    K = ml.in_features
    plan = None if dev == 'cpu' else MixedBitPlan([getattr(ml, n) for n in ml._planes], counts=ml.counts.tolist(), group_size=g,
                                                   perm=ml.perm, scaled_zero=scaled, shape=(N, K))
    if kind == 'mb_dequantize':
        rs = (torch.rand(N, device=dev) + 0.5) if extra else None
        ref = ml._dequantize(dt)
        if rs is not None: ref = (ref * rs[:, None]).to(dt)
        if plan is None: return 'reference only'
        out = torch.full((N, K), float('nan'), dtype=dt, device=dev)
        got = plan.dequantize(ml.scale, ml.zero, dt, out=out, row_scale=rs)
        torch.cuda.synchronize()
        if not torch.equal(got, ref): raise AssertionError(f"not bit-exact: {(got != ref).sum().item()} of {ref.numel()} differ")
        return repr(plan)
    x = torch.randn(extra, K, device=dev, dtype=dt) / K**0.5
    ref = x.float() @ ml._dequantize(torch.float32).t()
    if plan is None: return 'reference only'
    y = plan.matmul(x, ml.scale, ml.zero)
    torch.cuda.synchronize()
    tol = (2**-7 if dt == bf16 else 2**-9) * float(ref.abs().max())
    err = float((y.float() - ref).abs().max())
    if not err <= tol: raise AssertionError(f"max error {err:.3g} > {tol:.3g}")
    return f"{repr(plan)} M={extra} err {err / float(ref.abs().max()):.1e}"


def run_column_dots_case(c, dev):
    from qdora_lab.dora import cuda_column_dots
    _, M, N, dt, with_bias = c
    g, y = torch.randn(M, N, device=dev, dtype=dt), torch.randn(M, N, device=dev, dtype=dt)
    bias = torch.randn(N, device=dev, dtype=dt) if with_bias else None
    yb = y.double() - (0 if bias is None else bias.double())
    ref, scale = (g.double() * yb).sum(0), (g.double().abs() * yb.abs()).sum(0).max()
    if dev == 'cpu': return 'reference only'
    dots, sums = cuda_column_dots(g, y, bias)
    torch.cuda.synchronize()
    err = float(max((dots.double() - ref).abs().max() / scale, (sums.double() - g.double().sum(0)).abs().max() / g.double().abs().sum(0).max()))
    if not err <= 1e-4: raise AssertionError(f"relative error {err:.3g} > 1e-4")
    return f"err {err:.1e}"


def run_dora_case(c, dev):
    "ql_dora_scale against the PyTorch path (`row_norm`, `_device_scale`, the roundings); ql_dora_mgrad against float64."
    from qdora_lab.dora import cuda_row_factors, cuda_magnitude_grad, row_norm, _device_scale
    kind, a, b, dt, flag = c
    if kind == 'dora_mgrad':
        M, N = a, b
        g, y = torch.randn(M, N, device=dev, dtype=dt), torch.randn(M, N, device=dev, dtype=dt)
        cc, n = torch.rand(N, device=dev) + 0.5, torch.rand(N, device=dev) + 0.5
        ref = (g.double() * y.double()).sum(0) / (cc.double() * n.double())
        if dev == 'cpu': return 'reference only'
        gm, gs = cuda_magnitude_grad(g, y, None, cc, n, dt, flag)
        torch.cuda.synchronize()
        err = float((gm.double() - ref).norm() / ref.norm())
        if flag: err = max(err, float((gs.double() - g.double().sum(0)).norm() / g.double().sum(0).norm()))
        if not err <= (4e-3 if dt != f32 else 1e-5): raise AssertionError(f"relative error {err:.3g}")
        return f"err {err:.1e}"
    out_, r = a, b
    W = torch.randn(out_, 128, device=dev) / 12           # (AW and w_sq from one W: made-up ones can put n at its floor and
    A, B = (torch.randn(r, 128, device=dev) / 16).to(dt), (torch.randn(out_, r, device=dev) / 4).to(dt)   # c past float16's range)
    m, w_sq, AW = (torch.rand(out_, device=dev) + 0.5).to(dt), W.pow(2).sum(1), (A.float() @ W.T).to(dt)
    m[0] = 0
    n = row_norm(w_sq, AW.T, A, B, 0.7)
    cc = _device_scale(m, n, dt); cx = cc.to(dt)
    ref = (n, cc, cx, cx * 0.7, B * cx[:, None])
    if dev == 'cpu': return 'reference only'
    got = cuda_row_factors(w_sq, AW if flag else None, A, B, m, None if flag else n, 0.7, dt)
    torch.cuda.synchronize()
    errs = [float((x.double() - y.double()).norm() / y.double().norm()) for x, y in zip(got, ref)]
    if not (errs[0] < 1e-5 and errs[1] < 1e-5 and max(errs[2:]) < 4e-3): raise AssertionError(f"relative errors {errs}")
    return f"errs {max(errs):.1e}"


def run_case(c, dev):
    if c[0].startswith('mb_'): return run_mb_case(c, dev)
    if c[0] == 'column_dots': return run_column_dots_case(c, dev)
    if c[0].startswith('dora_'): return run_dora_case(c, dev)
    from qdora_lab.quant import quantize, dequantize_packed
    from qdora_lab.cuda import HQQPlan, plan_layout
    kind, nb, ax, N, K, g, dt, md, extra = c
    W = torch.randn(N, K, device=dev) / K**0.5
    W_q, m = quantize(W, nbits=nb, group_size=g, axis=ax, optimize=False)
    s, z = m['scale'].to(md).contiguous(), m['zero'].to(md).contiguous()
    lay = plan_layout(nb, g, ax, (N, K))
    if kind == 'dequantize':
        rs = (torch.rand(N, device=dev) + 0.5) if extra else None
        ref = dequantize_packed(W_q, lay.nbits, lay.R, (N, K), s, z, dt)
        if rs is not None: ref = (ref * rs[:, None]).to(dt)
        if dev == 'cpu': return 'reference only'
        out = torch.full((N, K), float('nan'), dtype=dt, device=dev)
        plan = HQQPlan(W_q, nbits=nb, group_size=g, axis=ax, shape=(N, K))
        got = plan.dequantize(s, z, dt, out=out, row_scale=rs)
        torch.cuda.synchronize()
        if not torch.equal(got, ref): raise AssertionError(f"not bit-exact: {(got != ref).sum().item()} of {ref.numel()} differ")
        return repr(plan)
    M = extra
    x = torch.randn(M, K, device=dev, dtype=dt)
    ref = x.float() @ dequantize_packed(W_q, lay.nbits, lay.R, (N, K), s, z, f32).t()
    if dev == 'cpu': return 'reference only'
    plan = HQQPlan(W_q, nbits=nb, group_size=g, axis=ax, shape=(N, K))
    y = plan.matmul(x, s, z)
    torch.cuda.synchronize()
    tol = (2**-7 if dt == bf16 else 2**-9) * float(ref.abs().max())
    err = float((y.float() - ref).abs().max())
    if not err <= tol: raise AssertionError(f"max error {err:.3g} > {tol:.3g}")
    return f"{repr(plan)} M={M} err {err / float(ref.abs().max()):.1e}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dry-run', action='store_true', help='CPU: build the cases and run the reference paths only')
    ap.add_argument('--quick', action='store_true', help='every fourth case')
    ap.add_argument('--only', default=None, help="kinds, comma-separated: dequantize, matmul, mb_dequantize, mb_matmul, column_dots, dora_mgrad, dora_scale")
    a = ap.parse_args(argv)
    dev = 'cpu' if a.dry_run else 'cuda'
    if dev == 'cuda' and not torch.cuda.is_available(): sys.exit("needs a CUDA device (or --dry-run)")
    torch.manual_seed(0)
    passed = failed = 0
    for c in cases(a.quick, a.only):
        try:
            msg = run_case(c, dev); passed += 1
            what = (f"{c[1]} rows g{c[2]} groups {c[3]} {c[4]} scaled_zero={c[5]}" if c[0].startswith('mb_') else
                    f"{c[1]}x{c[2]} {c[3]} bias={c[4]}" if c[0] == 'column_dots' else
                    f"{c[1]}x{c[2]} {c[3]} flag={c[4]}" if c[0].startswith('dora_') else
                    f"{c[1]}-bit axis={c[2]} {c[3]}x{c[4]} g{c[5]} {c[6]} meta {c[7]}")
            print(f"ok   {c[0]} {what}: {msg}", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL {c}\n{traceback.format_exc(limit=4)}", flush=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
