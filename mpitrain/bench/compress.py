"""Compression benchmark: ``python -m mpitrain bench compress [--size N] [--repeat R] [--json]``.

Single core, float32 input of d = 1e7 entries (default). For each compressor, times its
encoder and decoder (best of R runs) side by side with a vectorised NumPy formulation of
the same compressor and with a plain memory copy (``np.copyto``) of the input, and
reports each as GB/s of input (4 d bytes / seconds; ``--clock cpu`` uses the process CPU
time instead of wall time, for shared machines), as a speed-up over NumPy and as a
fraction of copy bandwidth. The NumPy formulations produce the same information (codes
as small integers, not bit-packed unless NumPy has a packer: ``np.packbits`` for signs).

The kernels pick their SIMD version (baseline x86-64, AVX2 or AVX-512) by the CPU at load
time; ``--simd`` caps it for the run (``--simd avx2`` on an AVX-512 CPU times the AVX2
versions). The output names the CPU model and the level used (table header; ``cpu``,
``simd`` and ``simd_widest`` in every JSON row).
"""
import json
import sys
import time

import numpy as np

from mpitrain._native import compress_round, compress_select
from mpitrain.argparsing import ArgumentParser
from mpitrain.bench.compress_cases import cases
from mpitrain.bench.machine import cpu_model
from mpitrain.progress import Countdown


CLOCKS = {
    "wall": time.perf_counter,  # elapsed time
    "cpu": time.process_time,  # CPU time of this process: robust on a shared machine
}
CLOCK = CLOCKS["wall"]

SIMD_LEVELS = ("baseline", "avx2", "avx512")  # --simd names, by the kernels' level number
SIMD_MODULES = (compress_round, compress_select)  # the kernel modules with SIMD versions


def cap_simd(level):
    """Cap the SIMD level of every kernel module at ``level`` (0 baseline, 1 AVX2, 2 AVX-512;
    each module's ``simd_level`` force function) and return the level now in use: the cap,
    or the CPU's widest level when that is lower."""
    used = {module.simd_level(level) for module in SIMD_MODULES}
    if len(used) != 1:
        raise RuntimeError(f"kernel modules disagree on the SIMD level: {sorted(used)}")
    return used.pop()


def best_of(fn, repeat):
    """Smallest time (CLOCK) of ``repeat`` calls of fn() (seconds) and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = CLOCK()
        out = fn()
        best = min(best, CLOCK() - t0)
    return best, out


# ---- NumPy formulations (encode returns a payload-like tuple, decode the dense vector)

def measure(d, ratio, levels, repeat, seed=12345):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(d).astype(np.float32)
    nbytes = x.nbytes
    y = np.empty_like(x)
    rows = []
    every = list(cases(d, ratio, levels, seed))
    countdown = Countdown(len(every))
    for name, comp, numpy_form in every:
        np_enc, np_dec = numpy_form(x)
        t_copy, _ = best_of(lambda: np.copyto(y, x), repeat)
        t_enc, payload = best_of(lambda: comp.encode(x, seed), repeat)
        t_np_enc, np_payload = best_of(np_enc, repeat)
        t_dec, _ = best_of(lambda: comp.decode(payload), repeat)
        t_np_dec, _ = best_of(lambda: np_dec(np_payload), repeat)
        rows.append({
            "name": name, "d": d, "payload_bytes": int(payload.nbytes),
            "copy_gbs": nbytes / t_copy / 1e9,
            "encode_gbs": nbytes / t_enc / 1e9, "numpy_encode_gbs": nbytes / t_np_enc / 1e9,
            "encode_speedup": t_np_enc / t_enc, "encode_of_copy": t_copy / t_enc,
            "decode_gbs": nbytes / t_dec / 1e9, "numpy_decode_gbs": nbytes / t_np_dec / 1e9,
            "decode_speedup": t_np_dec / t_dec, "decode_of_copy": t_copy / t_dec,
        })
        print(f"bench compress: {name} {countdown.tick()}", file=sys.stderr, flush=True)  # stdout: the table
    return rows


def format_table(rows):
    r0 = rows[0]
    capped = "" if r0["simd"] == r0["simd_widest"] else f" (capped by --simd; this CPU has {r0['simd_widest']})"
    title = f"CPU: {r0['cpu']}; SIMD level: {r0['simd']}{capped}"
    head = (f"{'compressor':<25} {'bytes':>10} {'enc GB/s':>9} {'numpy':>7} {'x numpy':>8}"
            f" {'of copy':>8} {'dec GB/s':>9} {'numpy':>7} {'x numpy':>8} {'of copy':>8}")
    lines = [title, head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['name']:<25} {r['payload_bytes']:>10} {r['encode_gbs']:>9.2f}"
            f" {r['numpy_encode_gbs']:>7.2f} {r['encode_speedup']:>7.1f}x"
            f" {100 * r['encode_of_copy']:>7.0f}% {r['decode_gbs']:>9.2f}"
            f" {r['numpy_decode_gbs']:>7.2f} {r['decode_speedup']:>7.1f}x"
            f" {100 * r['decode_of_copy']:>7.0f}%")
    lines.append(f"copy (np.copyto): {rows[0]['copy_gbs']:.2f} GB/s"
                 " (each row's ratio uses the copy timed next to it)")
    return "\n".join(lines)


def main(argv=None):
    parser = ArgumentParser(prog="mpitrain bench compress", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=10_000_000, help="d, entries of x (float32)")
    parser.add_argument("--repeat", type=int, default=5, help="best of R runs")
    parser.add_argument("--ratio", type=float, default=0.01, help="k / d for Top-k and Rand-k")
    parser.add_argument("--levels", type=int, default=4, help="s for the dithering compressors")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="gpu: the CuPy kernels, end-to-end GPU vs CPU (mpitrain.bench.compress_gpu)")
    parser.add_argument("--e2e-features", type=int, default=1_000_000, help="--device gpu: d (>= 1e6)")
    parser.add_argument("--e2e-rows", type=int, default=512, help="--device gpu: rows of the dense problem")
    parser.add_argument("--e2e-batch", type=int, default=32, help="--device gpu: mini-batch size")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall: elapsed time; cpu: process CPU time (shared machines)")
    parser.add_argument("--simd", choices=SIMD_LEVELS, default=None,
                        help="cap the kernels' SIMD level for this run (default: the CPU's widest)")
    args = parser.parse_args(argv)
    if args.device == "gpu":
        if args.simd is not None:
            parser.error("--simd applies to --device cpu")
        from mpitrain.bench.compress_gpu import run

        return run(args)
    global CLOCK
    CLOCK = CLOCKS[args.clock]
    if args.size < 1 or args.repeat < 1:
        parser.error("--size and --repeat must be >= 1")
    before = cap_simd(compress_round.simd_level())  # the level in use now, restored below
    widest = cap_simd(len(SIMD_LEVELS) - 1)
    try:
        used = cap_simd(SIMD_LEVELS.index(args.simd)) if args.simd else widest
        rows = measure(args.size, args.ratio, args.levels, args.repeat)
    finally:
        cap_simd(before)
    for row in rows:
        row.update(cpu=cpu_model(), simd=SIMD_LEVELS[used], simd_widest=SIMD_LEVELS[widest])
    print(json.dumps(rows, indent=1) if args.json else format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
