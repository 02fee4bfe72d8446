"""Memory against depth on weighted TV denoising-deblurring at 128 x 128 (8 images, float32):
the bytes of saved tensors held at once (saved_peak_bytes), their sum over the call
(memory_bytes) and the allocator's peak (peak_memory_bytes: the CPU allocator's, or CUDA's
with --device cuda), for K = 4 ... 64.

    PYTHONPATH=. python results/memory/memory.py results/memory/memory.csv
    PYTHONPATH=. python results/memory/memory.py results/gpu/memory_cuda.csv --device cuda
"""

from __future__ import annotations

import csv
import math

from jfbbench import estimators, problems
from jfbbench.measure import peak_bytes, saved_tensor_usage

DEPTHS = (4, 8, 16, 32, 64)


def settings(k: int) -> list[tuple[str, str, dict]]:
    s = max(1, round(math.sqrt(k)))
    return [
        ("unrolled", "unrolled", {}),
        ("unrolled", f"checkpoint=sqrtK ({s})", {"checkpoint": s}),
        ("unrolled", "checkpoint=4", {"checkpoint": 4}),
        ("revdeq", "beta=0.8", {"beta": 0.8}),
        ("forward_mode", "", {}),
        ("jfb", "", {}),
        ("deq", "", {}),
    ]


def main(out: str, device: str = "cpu", patch: int = 128) -> None:
    problem = problems.make("weighted_tv", lipschitz=0.9, patch=patch, device=device)
    state = problem.initial_point()
    fields = ["estimator", "setting", "depth", "state_bytes", "saved_peak_bytes", "memory_bytes", "peak_memory_bytes",
              "operator_evals", "vjp_evals", "jvp_evals"]  # fmt: skip
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fields)
        writer.writeheader()
        for k in DEPTHS:
            for name, label, kw in settings(k):
                est = estimators.make(name, depth=k, **kw) if name != "deq" else estimators.make(name, depth=k)
                (e, total, held), peak = peak_bytes(
                    lambda e=est: saved_tensor_usage(lambda: e.gradient(problem)), state.device
                )
                writer.writerow(dict(estimator=name, setting=label, depth=k,
                                     state_bytes=state.numel() * state.element_size(), saved_peak_bytes=held,
                                     memory_bytes=total, peak_memory_bytes=peak,
                                     operator_evals=e.stats["operator_evals"], vjp_evals=e.stats["vjp_evals"],
                                     jvp_evals=e.stats.get("jvp_evals", 0)))  # fmt: skip
                fh.flush()
                print(name, label, k, held, total, peak, flush=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="results/memory/memory.csv", help="the table written")
    parser.add_argument("--device", default="cpu", help="torch device of the problem (cpu, cuda)")
    parser.add_argument("--patch", type=int, default=128, help="crop size (smaller for a dry run)")
    args = parser.parse_args()
    main(args.out, args.device, args.patch)
