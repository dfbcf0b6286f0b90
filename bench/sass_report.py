"""bench/sass_report.py: prove on a CPU what the CUDA kernels' machine code does, and what it costs on an H100.

Compiles every kernel instance an `HQQPlan` or a `MixedBitPlan` can launch (`qdora_lab.cuda.kernel_instances()`) for sm_90 with
nvcc (-cubin), disassembles it (cuobjdump -sass; nvdisasm for the control-flow labels), and reports per
kernel: registers, spills, stack frame (local memory), shared memory, load/store widths, subroutine calls,
and instructions per weight in the main loop (the SASS between the loop's label and its backward branch,
divided by the weights one thread handles per iteration, innermost loop with tensor-core instructions, or with
the 128-bit stores for the mixed-bit dequantize; when the compiler unrolled that loop, the weights of every copy;
kernels without a loop: the whole body divided by the weights of one thread). Then a roofline lower bound for the H100 shapes of issue 11:

    bytes bound = bytes moved / 3.0 TB/s
    issue bound = weights * (instructions per weight) / 32 lanes / (132 SMs * 4 schedulers * 1.7 GHz)

Usage:
    python bench/sass_report.py            # report -> bench/results/sass_report.md (and stdout)
    python bench/sass_report.py --check    # also exit 1 on: spills or local memory; weight loads narrower
                                           # than 128 bits; CALL in a matmul kernel; dequantize stores
                                           # narrower than 128 bits; an issue bound above its target
    python bench/sass_report.py --check --out /tmp/r.md   # write elsewhere (CI)
"""
import argparse, os, re, shutil, subprocess, sys, tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

H100 = dict(bw=3.0e12, sms=132, sched=4, clock=1.7e9)  # bytes/s (copy, read + write); issue: 1 instr/clk/scheduler
ISSUE_RATE = H100['sms'] * H100['sched'] * H100['clock']  # warp instructions per second


def tool(name):
    "Path of an NVIDIA tool: PATH, then the pip packages nvidia-cuda-{cuobjdump,nvdisasm} (nvidia/cu*/bin)."
    p = shutil.which(name)
    if p: return p
    try:
        import nvidia
        for base in nvidia.__path__:
            for cand in sorted(Path(base).glob(f'cu*/bin/{name}')) + sorted(Path(base).glob(f'*/bin/{name}')):
                if cand.is_file(): return str(cand)
    except ImportError: pass
    return None


def nvrtc_lib():
    "libnvrtc (pip nvidia-cuda-nvrtc, or the toolkit's), loaded with its builtins library, or None."
    import ctypes, glob
    cands = []
    try:
        import nvidia
        for base in nvidia.__path__: cands += sorted(glob.glob(f'{base}/cu*/lib/libnvrtc.so.*')) + sorted(glob.glob(f'{base}/cuda_nvrtc/lib/libnvrtc.so.*'))
    except ImportError: pass
    if shutil.which('nvcc'): cands += sorted(glob.glob(str(Path(shutil.which('nvcc')).resolve().parent.parent / 'lib*' / 'libnvrtc.so*')))
    for c in cands:
        if 'alt' in Path(c).name or 'builtins' in Path(c).name: continue
        try:
            for b in sorted(glob.glob(str(Path(c).parent / 'libnvrtc-builtins.so*'))):
                if 'alt' not in Path(b).name: ctypes.CDLL(b, mode=ctypes.RTLD_GLOBAL)
            return ctypes.CDLL(c)
        except OSError: continue
    return None


def nvrtc_check(insts):
    "Compile each source with NVRTC (CuPy's compiler) and every instance as a name expression: {file: message}."
    import ctypes
    lib = nvrtc_lib()
    if lib is None: return None
    from qdora_lab.cuda import kernel_source
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    def call(rc, prog=None):
        if rc == 0: return
        log = ''
        if prog is not None:
            n = ctypes.c_size_t(); lib.nvrtcGetProgramLogSize(prog, ctypes.byref(n))
            buf = ctypes.create_string_buffer(n.value); lib.nvrtcGetProgramLog(prog, buf); log = buf.value.decode()
        raise RuntimeError(f"{lib.nvrtcGetErrorString(rc).decode()}: {log[:2000]}")
    by, res = {}, {}
    for d in insts: by.setdefault(d['file'], []).append(d['name'])
    for f, names in by.items():
        prog = ctypes.c_void_p()
        try:
            call(lib.nvrtcCreateProgram(ctypes.byref(prog), kernel_source(f).encode(), f.encode(), 0, None, None))
            for n in names: call(lib.nvrtcAddNameExpression(prog, n.encode()))
            opts = [b'-std=c++17', b'--gpu-architecture=sm_90']
            call(lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts)), prog)
            for n in names:
                low = ctypes.c_char_p()
                call(lib.nvrtcGetLoweredName(prog, n.encode(), ctypes.byref(low)))
            res[f] = f"ok: {len(names)} name expressions"
        except RuntimeError as e: res[f] = f"FAILED: {e}"
        finally: lib.nvrtcDestroyProgram(ctypes.byref(prog))
    return res


def instances():
    from qdora_lab.cuda import kernel_instances
    return kernel_instances()


def compile_file(file, names, outdir):
    "One cubin with every instance of `file` (explicit instantiations, as NVRTC's name expressions would make)."
    from qdora_lab.core import kernel_path
    src = Path(outdir) / f'inst_{file}.cu'
    lines = [f'#include "{kernel_path(file)}"']
    for i, n in enumerate(names): lines.append(f'static void* ql_inst_{i} = (void*)&{n};')
    src.write_text('\n'.join(lines) + '\n')
    cubin = Path(outdir) / f'{file}.cubin'
    cmd = ['nvcc', '-std=c++17', '-arch=sm_90', '-cubin', '-Xptxas', '-v', str(src), '-o', str(cubin)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode: raise RuntimeError(f"nvcc failed on {file}:\n{r.stdout}\n{r.stderr}")
    return cubin, r.stderr + r.stdout


def demangle(names):
    "Demangled C++ names (cu++filt, shipped with nvcc)."
    filt = tool('cu++filt') or tool('c++filt')
    r = subprocess.run([filt], input='\n'.join(names), capture_output=True, text=True, check=True)
    return r.stdout.split('\n')[:len(names)]


def ptxas_resources(log):
    "{mangled: dict(regs, stack, spill_st, spill_ld, smem)} from `ptxas -v`."
    res, cur = {}, None
    for line in log.splitlines():
        m = re.search(r"Function properties for (\S+)", line) or re.search(r"Compiling entry function '(\S+)'", line)
        if m: cur = m.group(1); res.setdefault(cur, {}); continue
        if cur is None: continue
        m = re.search(r'(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads', line)
        if m: res[cur].update(stack=int(m.group(1)), spill_st=int(m.group(2)), spill_ld=int(m.group(3)))
        m = re.search(r'Used (\d+) registers', line)
        if m: res[cur]['regs'] = int(m.group(1))
        m = re.search(r'(\d+) bytes smem', line)
        if m: res[cur]['smem'] = int(m.group(1))
    return res


INSTR = re.compile(r'^\s*/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)(.*?);')
LABEL = re.compile(r'^\s*(\.L_x_\d+):')


def disassemble(cubin):
    "{mangled: [(addr, opcode, operands) or ('label', name)]} from nvdisasm (labels) of the cubin."
    out = subprocess.run([tool('nvdisasm'), '-c', '-hex', str(cubin)], capture_output=True, text=True, check=True).stdout
    funcs, cur = {}, None
    for line in out.splitlines():
        m = re.match(r'\s*\.text\.(\S+):', line)
        if m: cur = m.group(1); funcs[cur] = []; continue
        if cur is None: continue
        m = LABEL.match(line)
        if m: funcs[cur].append(('label', m.group(1))); continue
        m = INSTR.match(line)
        if m: funcs[cur].append((int(m.group(1), 16), m.group(3), m.group(4)))
    return funcs


def main_loop(body, want='HMMA'):
    "The instructions between a loop's label and its backward branch: the innermost loop containing `want`."
    labels, pos = {}, 0
    seq = []
    for item in body:
        if item[0] == 'label': labels[item[1]] = len(seq)
        else: seq.append(item)
    best = None
    for idx, (addr, op, args) in enumerate(seq):
        if not op.startswith('BRA'): continue
        m = re.search(r'(\.L_x_\d+)', args)
        if not m or m.group(1) not in labels: continue
        start = labels[m.group(1)]
        if start > idx: continue  # forward branch
        loop = seq[start:idx + 1]
        if any(o.startswith(want) for _, o, _ in loop) and (best is None or len(loop) < len(best)): best = loop
    return best


def mem_ops(seq):
    "Counter of global loads/stores by their full opcode, local-memory and call instructions."
    return Counter(op for _, op, _ in seq if op.startswith(('LDG', 'STG', 'LDL', 'STL', 'CALL', 'RED', 'ATOM', 'LDS', 'STS')))

DEQUANTIZE_KINDS = ('dequantize', 'mb_dequantize')


def analyze():
    insts = instances()
    by_file = {}
    for d in insts: by_file.setdefault(d['file'], []).append(d)
    tmp = tempfile.mkdtemp(prefix='ql_sass_')
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as ex:
        built = dict(zip(by_file, ex.map(lambda f: compile_file(f, [d['name'] for d in by_file[f]], tmp), by_file)))
    rows = []
    for file, ds in by_file.items():
        cubin, log = built[file]
        res, funcs = ptxas_resources(log), disassemble(cubin)
        mangled = sorted(funcs)
        pretty = dict(zip(mangled, demangle(mangled)))
        for d in ds:
            hits = [m for m in mangled if re.sub(r'\s+', '', pretty[m]).startswith('void' + re.sub(r'\s+', '', d['name']) + '(')]
            if len(hits) != 1: raise RuntimeError(f"{d['name']}: found {len(hits)} functions in the cubin")
            m = hits[0]
            body = funcs[m]
            seq = [b for b in body if b[0] != 'label']
            marker = d.get('loop_marker', 'HMMA')
            loop = main_loop(body, marker) if d['loop'] else None
            if d['loop'] and loop is None: raise RuntimeError(f"{d['name']}: no loop with {marker} found")
            part = loop if loop is not None else seq
            n_instr = sum(1 for _, op, _ in part if op != 'NOP')
            hmma = sum(op.startswith('HMMA') for _, op, _ in part)
            unroll = hmma / d['hmma_per_iter'] if d.get('hmma_per_iter') else 1  # copies of the iteration in the loop
            if unroll != int(unroll) or unroll < 1: raise RuntimeError(f"{d['name']}: {hmma} HMMA in the loop, not a multiple of {d['hmma_per_iter']}")
            wpi = d['weights_per_iter'] * int(unroll)
            start = part[0][0] if loop is not None else None
            pf = sum(op.startswith('CCTL.E.PF') for a, op, _ in seq if start is not None and a < start)  # L1/L2 prefetches
            pf_loop = sum(op.startswith('CCTL.E.PF') for _, op, _ in part) if loop is not None else 0
            r = dict(d, mangled=m, **res.get(m, {}), n_instr=n_instr, ipw=n_instr / wpi, unroll=int(unroll), weights_loop=wpi,
                     mem_all=mem_ops(seq), mem_loop=mem_ops(part), hmma=hmma, prefetches=pf,
                     prefetches_loop=pf_loop)
            rows.append(r)
    shutil.rmtree(tmp, ignore_errors=True)
    return rows


def weight_loads(r, ops):
    "The weight loads by width: the only non-allocating ones (ld.global.nc.L1::no_allocate), or the opcodes the instance names."
    if r.get('weight_ops'): return {op: n for op, n in ops.items() if op.startswith(r['weight_ops'])}
    return {op: n for op, n in ops.items() if op.startswith('LDG') and '.NA' in op}


def violations(r):
    "Reasons this kernel fails the CI check."
    bad = []
    if r.get('stack', 0) or r.get('spill_st', 0) or r.get('spill_ld', 0):
        bad.append(f"stack {r.get('stack')} B, spills {r.get('spill_st')}/{r.get('spill_ld')} B")
    if any(op.startswith(('LDL', 'STL')) for op in r['mem_all']): bad.append('local memory access')
    wl = weight_loads(r, r['mem_all'])
    if not wl: bad.append('no weight load found')
    if any('.128' not in op for op in wl): bad.append(f'weight loads narrower than 128 bits: {wl}')
    if r['kind'] not in DEQUANTIZE_KINDS and sum(n for op, n in r['mem_all'].items() if op.startswith('CALL')):
        bad.append('subroutine call in a matmul kernel')
    if r['kind'] in DEQUANTIZE_KINDS:
        st = {op: n for op, n in r['mem_all'].items() if op.startswith('STG')}
        if any('.128' not in op for op in st): bad.append(f'stores narrower than 128 bits: {st}')
    if r.get('no_prefetch') and (r['prefetches'] or r['prefetches_loop']):   # timed slower on an H100: opt-in only
        bad.append(f"{r['prefetches']} / {r['prefetches_loop']} prefetches before / in the loop; the default build has none")
    if r['loop']:
        lw = weight_loads(r, r['mem_loop'])
        if 'loop_weight_loads' in r:  # the mixed-bit kernels: the loads one iteration issues (cp.async per block: see the kernel)
            want = r['loop_weight_loads'] * r['unroll']
            if sum(lw.values()) != want: bad.append(f'the loop issues {sum(lw.values())} weight loads, expected {want}')
        else:
            bytes_loop = 16 * sum(lw.values())
            want = r['weights_per_iter'] * (3.2 if r['nbits'] == 3 else r['nbits']) / 8
            if abs(bytes_loop - want) > 1e-6: bad.append(f'the loop loads {bytes_loop} weight bytes per lane, expected {want}')
    return bad


# ---- roofline for issue 11's H100 shapes ----
def shape_rows(rows):
    from qdora_lab.cuda import plan_layout, mm_kind, mm_config, dequantize_name
    import torch
    bf = torch.bfloat16
    by_name = {r['name']: r for r in rows}
    out = []
    def mm(label, N, K, nbits, M, target):
        lay = plan_layout(nbits, 64, 1, (N, K))
        kind = mm_kind(lay)
        cfg = mm_config(lay, kind, M, bf, bf, H100['sms'])
        r = by_name[cfg.name]
        bits = 3.2 if nbits == 3 else nbits
        nbytes = N * K * bits / 8 + 2 * (N * K // 64) * 2 + M * K * 2 + M * N * (2 + (8 if cfg.atomic else 0))
        weights = N * K * cfg.grid[1]  # token groups beyond the first re-read (and re-issue) every weight
        out.append(dict(work=label, kernel=cfg.name, grid=cfg.grid, ipw=r['ipw'], bytes=nbytes,
                        t_bytes=nbytes / H100['bw'] * 1e6, t_issue=weights * r['ipw'] / 32 / ISSUE_RATE * 1e6, target=target,
                        x_l2=cfg.grid[0] * M * K * 2))  # every row block reads all its tokens' activations
    mm('4096x4096, M=1, 4-bit g64', 4096, 4096, 4, 1, 7.8)
    mm('4096x4096, M=1, 3-bit g64', 4096, 4096, 3, 1, 7.0)
    mm('4096x4096, M=1, 2-bit g64', 4096, 4096, 2, 1, 6.0)
    mm('11008x4096, M=1, 4-bit g64', 11008, 4096, 4, 1, 15.5)
    mm('4096x4096, M=16, 4-bit g64', 4096, 4096, 4, 16, 11.6)
    mm('4096x4096, M=64, 4-bit g64 (DoRA W A^T, r=64)', 4096, 4096, 4, 64, None)
    mm('4096x4096, M=16, 3-bit g64', 4096, 4096, 3, 16, None)
    # the mixed-bit layer of bench/kernels.py: 4096x4096, g64, 16/32/16 groups at 4/3/2 bits (3.0 bits per code,
    # fp16 scale+zero); one ql_mb_mm per width, back to back: the bounds add up
    from qdora_lab.cuda import mb_layout, mb_mm_config, mb_dequantize_name
    lay = mb_layout([0, 0, 0, 16, 32, 16], 64, (4096, 4096))
    for M in (1, 8):
        nbytes = t_issue = 0
        names = []
        for c in mb_mm_config(lay, bf, H100['sms']):
            w, r = c.width, by_name[c.name]
            nbytes += 4096 * w.groups * 64 * w.bits / 8 + 4096 * w.groups * 4 + M * w.groups * 64 * 2 + M * 4096 * 8
            t_issue += 4096 * w.groups * 64 * r['ipw'] / 32 / ISSUE_RATE * 1e6
            names.append(f"{w.bits}-bit {r['ipw']:.2f}")
        out.append(dict(work=f'4096x4096, M={M}, mixed 4/3/2-bit g64 (3.0 bits/code)', kernel='ql_mb_mm<{4,3,2}, ql_bf16>',
                        grid=(64, 5), ipw=sum(by_name[c.name]['ipw'] * c.width.groups for c in mb_mm_config(lay, bf)) / 64,
                        bytes=nbytes, t_bytes=nbytes / H100['bw'] * 1e6, t_issue=t_issue, target=None, x_l2=64 * M * 4096 * 2))
    r = by_name[mb_dequantize_name(bf, False, False)]
    nbytes = 4096 * 4096 * 3 / 8 + 4096 * 64 * 4 + 4096 * 4096 * 2
    out.append(dict(work='dequantize 4096x4096 mixed 4/3/2-bit -> bf16', kernel=r['name'], grid=(256, 3), ipw=r['ipw'],
                    bytes=nbytes, t_bytes=nbytes / H100['bw'] * 1e6, t_issue=4096 * 4096 * r['ipw'] / 32 / ISSUE_RATE * 1e6, target=None))
    N = K = 4096
    r = by_name[dequantize_name(4, 1, bf, bf)]
    nbytes = N * K / 2 + 2 * (N * K // 64) * 2 + N * K * 2
    out.append(dict(work='dequantize 4096x4096 4-bit g64 -> bf16', kernel=r['name'], grid=(N * K // 2 // 16 // 256,),
                    ipw=r['ipw'], bytes=nbytes, t_bytes=nbytes / H100['bw'] * 1e6,
                    t_issue=N * K * r['ipw'] / 32 / ISSUE_RATE * 1e6, target=15.0))
    return out


def fmt_ops(ops, prefix):
    return ', '.join(f"{op}x{n}" for op, n in sorted(ops.items()) if op.startswith(prefix)) or '-'


def report(rows, shapes, nvrtc):
    from tabulate import tabulate
    kern = [[r['name'], r.get('regs'), f"{r.get('spill_st', 0)}/{r.get('spill_ld', 0)}", r.get('stack', 0), r.get('smem', 0),
             fmt_ops(weight_loads(r, r['mem_all']), 'LDG'),
             fmt_ops({k: v for k, v in r['mem_all'].items() if k not in weight_loads(r, r['mem_all']) and k != 'LDGDEPBAR'}, 'LDG'),
             fmt_ops(r['mem_all'], 'STG') + ('; ' + fmt_ops(r['mem_all'], 'RED') if any(k.startswith('RED') for k in r['mem_all']) else ''),
             sum(n for op, n in r['mem_all'].items() if op.startswith('CALL')),
             r['n_instr'], r['weights_loop'], f"{r['ipw']:.2f}", r['hmma'], f"{r['prefetches']} / {r['prefetches_loop']}", '; '.join(violations(r)) or 'ok']
            for r in rows]
    hk = ['kernel', 'regs', 'spill st/ld B', 'stack B', 'smem B', 'weight loads', 'other loads', 'stores',
          'CALL', 'loop instr', 'weights/iter/thread', 'instr/weight', 'HMMA in loop', 'prefetches before / in loop', 'check']
    sh = [[s['work'], s['kernel'], 'x'.join(map(str, s['grid'])), f"{s['ipw']:.2f}", f"{s['bytes'] / 1e6:.2f}",
           f"{s['t_bytes']:.2f}", f"{s['t_issue']:.2f}", f"{max(s['t_bytes'], s['t_issue']):.2f}",
           '-' if s.get('x_l2') is None else f"{s['x_l2'] / 1e6:.2f}",
           '-' if s['target'] is None else f"{s['target']:.1f}",
           '-' if s['target'] is None else ('ok' if s['t_issue'] <= s['target'] else 'ISSUE BOUND ABOVE TARGET')] for s in shapes]
    hs = ['work', 'kernel', 'grid', 'instr/weight', 'MB moved', 'bytes bound us', 'issue bound us', 'lower bound us',
          'x read by the blocks MB', 'target us', 'check']
    text = (
        "# SASS report: the kernels' machine code, and the H100 lower bounds it implies\n\n"
        "Generated by `python bench/sass_report.py` (CPU only: nvcc -arch=sm_90 -cubin, cuobjdump/nvdisasm). "
        "No GPU was used; the bounds are computed, not measured.\n\n"
        "Model: bytes bound = bytes moved / 3.0 TB/s; issue bound = weights x instr/weight / 32 lanes / "
        "(132 SMs x 4 schedulers x 1.7 GHz, one warp instruction per clock each). instr/weight counts the SASS of "
        "the innermost loop with tensor-core instructions (label to backward branch, every path through it, so an "
        "upper bound per iteration; ql_mm_3bit's flush of a chunk whose group wrapped runs between its segments, "
        "at most 10 times per warp, outside this loop) divided "
        "by the weights one thread handles per iteration; for the loop-free dequantize kernel, the whole body divided "
        "by one thread's weights. Weight loads are the `ld.global.nc.L1::no_allocate` ones (`LDG.E.NA...`); "
        "activations and meta use cached loads. The mixed-bit kernels: `ql_mb_dequantize`'s loop is its chunk loop (the "
        "one with the 128-bit stores; 16 weights per thread per chunk), its weight loads the two `L1::evict_last` loads "
        "(`LDG.E.EL.128`, high and low plane, 16 rows each); `ql_mb_mm`'s loop is the inner loop over runs in which no "
        "chunk's group ends (the flushes and the split runs execute between its segments, once per group and chunk), "
        "8 x (codes per unit byte) weights per thread per run, its weight loads the L2-only `cp.async.cg` copies "
        "(`LDGSTS.E.BYPASS.128`, a block's 64 output rows x 16 unit rows per plane and run: every byte is a weight of "
        "the run); a mixed layer runs one `ql_mb_mm` per width, so its bounds are the sums over its widths. "
        "'x read by the blocks' is the activations' bytes all blocks read, mostly from L2 (every block of output rows "
        "reads its tokens' whole rows of x): not in the bounds, which count DRAM bytes, but L2 has a bandwidth too. "
        "'prefetches before / in loop' counts the `prefetch.global.L1` (`CCTL.E.PF1`) issued before the main loop's first "
        "instruction and inside it: the matmuls must have none. Prefetches ahead of the branches (each segment's scale, "
        "zero and weights in `ql_mm_3bit`, the next batch's weights and each batch's activations in `ql_mm_aligned`) "
        "were timed on an H100 on 2026-11-27 (in one process, against the same kernels without them) and made every shape "
        "slower, so they were removed.\n\n"
        "## H100 roofline for issue 11's shapes (bf16 activations and meta)\n\n"
        + tabulate(sh, headers=hs, tablefmt='github') +
        "\n\n## NVRTC (the compiler CuPy uses) accepts the sources and every name expression\n\n"
        + ("skipped: libnvrtc not found (pip install nvidia-cuda-nvrtc)" if nvrtc is None else
           tabulate([[f, m] for f, m in nvrtc.items()], headers=['source (headers inlined)', 'nvrtc -std=c++17 sm_90'], tablefmt='github'))
        + "\n\n## Every kernel instance a plan can launch (nvcc -arch=sm_90 -cubin)\n\n" + tabulate(kern, headers=hk, tablefmt='github') + "\n")
    return text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--check', action='store_true', help='exit 1 on any violation')
    ap.add_argument('--out', default=str(ROOT / 'bench' / 'results' / 'sass_report.md'))
    a = ap.parse_args(argv)
    missing = [t for t in ('nvcc', 'cuobjdump', 'nvdisasm') if tool(t) is None]
    if tool('cu++filt') is None and tool('c++filt') is None: missing.append('c++filt')
    if missing:
        print(f"sass_report: missing {', '.join(missing)} (nvcc from the CUDA toolkit; pip install nvidia-cuda-cuobjdump "
              "nvidia-cuda-nvdisasm)")
        return 1 if a.check else 0
    rows = analyze()
    shapes = shape_rows(rows)
    nvrtc = nvrtc_check(instances())
    text = report(rows, shapes, nvrtc)
    from qdora_lab.core import atomic_write
    with atomic_write(a.out) as tmp: tmp.write_text(text)
    print(text)
    bad = [(r['name'], v) for r in rows for v in violations(r)]
    bad += [(f, m) for f, m in (nvrtc or {}).items() if not m.startswith('ok')]
    bad += [(s['work'], f"issue bound {s['t_issue']:.2f} us > target {s['target']} us") for s in shapes
            if s['target'] is not None and s['t_issue'] > s['target']]
    print(f"{len(rows)} kernel instances, {len(bad)} violations" + ''.join(f"\n  {n}: {v}" for n, v in bad))
    return 1 if (a.check and bad) else 0


if __name__ == '__main__':
    sys.exit(main())
