"""GPU compression benchmark: ``python -m mpitrain bench compress --device gpu [--json]``.

On the current GPU, float32 x of d entries (default 1e7): every compressor's encoder and
decoder (CuPy kernels) in GB/s of input (4 d bytes / seconds, CUDA events, best of R after
one warm-up), against a device-to-device copy of the same array (``cupy.copyto``: the memory
bandwidth limit, timed next to each row) and against library equivalents where they exist
(Top-k: ``cupy.argpartition`` of |x|, and ``torch.topk`` of |x| when PyTorch with CUDA is
installed). Then end-to-end steps per second of SGD on dense least squares with d >= 1e6
features (a mini-batch gradient and the update, and the same with Top-k error feedback),
GPU against this process's CPU kernels, in the same run. Without a GPU it stops with an error.
"""
import time

import numpy as np

from mpitrain import backend
from mpitrain.bench.compress_cases import cases


def gpu_timer(cp, repeat):
    """best_of(fn) -> (seconds, result): smallest of ``repeat`` event-timed calls after a warm-up."""
    def best_of(fn):
        out = fn()
        best = float("inf")
        for _ in range(repeat):
            start, stop = cp.cuda.Event(), cp.cuda.Event()
            start.record()
            out = fn()
            stop.record()
            stop.synchronize()
            best = min(best, cp.cuda.get_elapsed_time(start, stop) / 1e3)
        return best, out
    return best_of


def library_topk(cp, x, k):
    """{name: fn} of library Top-k selections of |x| present here."""
    cut = x.size - k
    found = {"cupy.argpartition": lambda: cp.argpartition(cp.abs(x), cut)[cut:]}
    try:
        import torch

        if torch.cuda.is_available():
            tx = torch.from_dlpack(x)
            found["torch.topk"] = lambda: torch.topk(tx.abs(), k, sorted=False).indices
    except ImportError:
        pass
    return found


def measure_kernels(cp, d, ratio, levels, repeat, seed=12345):
    best_of = gpu_timer(cp, repeat)
    x = cp.asarray(np.random.default_rng(0).standard_normal(d).astype(np.float32))
    y = cp.empty_like(x)
    rows = []
    for name, comp, _ in cases(d, ratio, levels, seed):
        t_copy, _ = best_of(lambda: cp.copyto(y, x))
        t_enc, payload = best_of(lambda: comp.encode(x, seed))
        t_dec, _ = best_of(lambda: comp.decode(payload))
        row = {"name": name, "d": d, "payload_bytes": int(payload.nbytes),
               "copy_gbs": x.nbytes / t_copy / 1e9,
               "encode_gbs": x.nbytes / t_enc / 1e9, "encode_of_copy": t_copy / t_enc,
               "decode_gbs": x.nbytes / t_dec / 1e9, "decode_of_copy": t_copy / t_dec}
        if name == "top_k":
            k = comp.k
            for lib, fn in library_topk(cp, x, k).items():
                t_lib, _ = best_of(fn)
                row[f"{lib}_gbs"] = x.nbytes / t_lib / 1e9
                row[f"encode_over_{lib}"] = t_lib / t_enc
        rows.append(row)
    return rows


def steps_per_second(objective, x, rows, steps, lr, sync, compressor=None):
    """SGD steps per second: g = batch gradient, (Top-k EF when given), x <- x - lr g."""
    from mpitrain.compress import ErrorFeedback

    feedback = ErrorFeedback(compressor) if compressor is not None else None
    xp = backend.array_module(x)
    g = x.copy()

    def step(t):
        objective.batch_gradient(x, rows[t % len(rows)], g)
        if feedback is None:
            xp.subtract(x, x.dtype.type(lr) * g, out=x)
        else:  # the decoded C(e + lr g) already carries the step size
            xp.subtract(x, feedback.step(g, lr)[1], out=x)
    step(0)  # warm-up (kernel compilation)
    sync()
    start = time.perf_counter()
    for t in range(steps):
        step(t)
    sync()
    return steps / (time.perf_counter() - start)


def measure_end_to_end(cp, d, n, batch, steps_gpu, steps_cpu, ratio):
    from mpitrain.compress import make_compressor
    from mpitrain.objectives import make_objective

    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, d), dtype=np.float32)
    y = (a[:, :8].sum(axis=1)).astype(np.float32)
    cpu = make_objective("least_squares", a, y, 1e-4)
    gpu = cpu.to_device()
    rows = [rng.integers(0, n, batch).astype(np.int64) for _ in range(16)]
    comp = make_compressor("top_k", d, ratio=ratio)
    out = {"d": d, "n_rows": n, "batch": batch, "dtype": "float32"}
    for label, compressor in (("sgd", None), ("sgd_topk_ef", comp)):
        out[f"{label}_gpu_steps_per_s"] = steps_per_second(
            gpu, cp.zeros(d, np.float32), [cp.asarray(r) for r in rows], steps_gpu, 1e-3,
            backend.synchronize, compressor)
        out[f"{label}_cpu_steps_per_s"] = steps_per_second(
            cpu, np.zeros(d, np.float32), rows, steps_cpu, 1e-3, lambda: None, compressor)
        out[f"{label}_gpu_over_cpu"] = out[f"{label}_gpu_steps_per_s"] / out[f"{label}_cpu_steps_per_s"]
    return out


def format_table(result):
    lines = [f"GPU: {result['gpu']}"]
    head = f"{'compressor':<25} {'bytes':>10} {'enc GB/s':>9} {'of copy':>8} {'dec GB/s':>9} {'of copy':>8}  library"
    lines += [head, "-" * len(head)]
    for r in result["kernels"]:
        libs = " ".join(f"{k[:-4]}={r[k]:.1f} GB/s" for k in r if k.endswith("_gbs") and "." in k)
        lines.append(f"{r['name']:<25} {r['payload_bytes']:>10} {r['encode_gbs']:>9.1f}"
                     f" {100 * r['encode_of_copy']:>7.0f}% {r['decode_gbs']:>9.1f}"
                     f" {100 * r['decode_of_copy']:>7.0f}%  {libs}")
    lines.append(f"copy (cupy.copyto, device to device): {result['kernels'][0]['copy_gbs']:.1f} GB/s of input")
    e = result["end_to_end"]
    lines.append(f"end to end, dense least squares d={e['d']} n={e['n_rows']} batch={e['batch']}:")
    for label in ("sgd", "sgd_topk_ef"):
        lines.append(f"  {label:<12} GPU {e[label + '_gpu_steps_per_s']:.1f} steps/s, CPU "
                     f"{e[label + '_cpu_steps_per_s']:.1f} steps/s, x{e[label + '_gpu_over_cpu']:.1f}")
    return "\n".join(lines)


def run(args):
    """Entry from mpitrain.bench.compress.main for --device gpu; returns an exit code."""
    import json
    import sys

    reason = backend.gpu_unavailable_reason()
    if reason is not None:
        print(f"error: --device gpu: {reason}", file=sys.stderr)
        return 2
    cp = backend.cupy_module()
    name = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["name"]
    result = {"gpu": name.decode() if isinstance(name, bytes) else str(name),
              "kernels": measure_kernels(cp, args.size, args.ratio, args.levels, args.repeat),
              "end_to_end": measure_end_to_end(cp, max(args.e2e_features, 1_000_000), args.e2e_rows,
                                               args.e2e_batch, 200, 20, args.ratio)}
    print(json.dumps(result, indent=1) if args.json else format_table(result))
    return 0
