"""Time the LIBSVM reader against scikit-learn's ``load_svmlight_file`` on one file.

    python -m mpitrain bench parse [--path FILE] [--repeat N] [--json]

Both parsers read the same file in the same run, float64 output; each is timed
``--repeat`` times and the best time is kept. The ratio is sklearn's best time over
ours (above 1: ours is faster). Without scikit-learn only ours is timed.
"""
import json
import time

import numpy as np

from ..argparsing import ArgumentParser


def best_time(function, repeat):
    """Smallest wall time of ``repeat`` calls of ``function()``, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> int:
    from mpitrain.data import locate, read_svmlight

    parser = ArgumentParser(prog="mpitrain bench parse", description=__doc__.splitlines()[0])
    parser.add_argument("--path", help="LIBSVM file (default: the w8a data set, located by name)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each parser (best kept)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    path = str(args.path or locate("w8a"))

    result = {"path": path, "repeat": args.repeat}
    data = read_svmlight(path, dtype=np.float64)
    result["shape"] = [data.n_samples, data.n_features]
    result["nnz"] = int(data.features.nnz)
    result["mpitrain_s"] = best_time(lambda: read_svmlight(path, dtype=np.float64), args.repeat)
    try:
        from sklearn.datasets import load_svmlight_file
    except ImportError:
        load_svmlight_file = None
        result["sklearn_s"] = None
        result["note"] = "scikit-learn is not installed: only mpitrain's reader was timed"
    if load_svmlight_file is not None:
        result["sklearn_s"] = best_time(lambda: load_svmlight_file(path, dtype=np.float64), args.repeat)
        result["speedup"] = result["sklearn_s"] / result["mpitrain_s"]

    if args.json:
        print(json.dumps(result))
        return 0
    print(f"file      {path}  ({data.n_samples} x {data.n_features}, nnz {data.features.nnz})")
    print(f"mpitrain  {result['mpitrain_s'] * 1e3:9.2f} ms  (best of {args.repeat})")
    if load_svmlight_file is None:
        print(result["note"])
    else:
        print(f"sklearn   {result['sklearn_s'] * 1e3:9.2f} ms  (best of {args.repeat})")
        print(f"speedup   {result['speedup']:9.2f} x  (sklearn time / mpitrain time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
