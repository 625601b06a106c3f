#!/usr/bin/env python3
"""Notebook-style: how long a context does each gpu_memory_utilization buy? One kvfit.check per value, then a
plot of the longest max_model_len against gpu_memory_utilization, saved as a PNG.

    python examples/python/sweep_plot.py canopylabs/orpheus-3b-0.1-ft --gpu "RTX 3090" -o orpheus-3090.png

In a notebook, call `sweep(...)` and `plot(...)` cell by cell. The plot needs matplotlib
(`python -m pip install matplotlib`); the numbers do not.
"""

from __future__ import annotations

import argparse
import sys

import kvfit

UTILIZATIONS = tuple(round(0.30 + 0.05 * i, 2) for i in range(14))       # 0.30 .. 0.95


def sweep(model: str, gpu: str, utilizations=UTILIZATIONS, **vllm_args) -> list[dict]:
    """One row per utilization: the longest max_model_len vLLM can serve there (vLLM's own arithmetic, no
    headroom; 0 or None when not even one short request fits), with the KV cache it gets and the verdict of
    the launch as given. vllm_args: any other vLLM argument (kv_cache_dtype="fp8", enforce_eager=True, ...)."""
    rows = []
    for u in utilizations:
        r = kvfit.check(model, gpu=gpu, gpu_memory_utilization=u, **vllm_args)
        rows.append({"gpu_memory_utilization": u,
                     "longest_max_model_len": r.what_if["longest_max_model_len"] or 0,
                     "kv_cache_tokens": r.capacity.kv_cache_tokens,
                     "fits": r.verdict.fits})
    return rows


def plot(rows: list[dict], title: str, path: str) -> None:
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("sweep_plot: the plot needs matplotlib (python -m pip install matplotlib); "
                         "sweep() alone returns the numbers") from None
    matplotlib.use("Agg")                       # files only, no window
    import matplotlib.pyplot as plt

    x = [r["gpu_memory_utilization"] for r in rows]
    y = [r["longest_max_model_len"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.plot(x, y, marker="o")
    ax.set_xlabel("gpu_memory_utilization")
    ax.set_ylabel("longest max_model_len (tokens)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--gpu", required=True)
    p.add_argument("--kv-cache-dtype", default=None)
    p.add_argument("-o", "--output", default="max_model_len_vs_utilization.png")
    a = p.parse_args(argv)
    try:
        rows = sweep(a.model, a.gpu, kv_cache_dtype=a.kv_cache_dtype)
    except kvfit.KvfitError as e:
        print(f"sweep_plot: {e}", file=sys.stderr)
        return 2
    for r in rows:
        print(f"{r['gpu_memory_utilization']:.2f}  {r['longest_max_model_len']:>9,}")
    plot(rows, f"{a.model} on {a.gpu}", a.output)
    print(f"saved {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
