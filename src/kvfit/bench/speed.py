"""`python -m kvfit.bench speed`: wall time of `kvfit check`, start-up included, for the three
sources that never touch the network: a local directory, the Hugging Face cache, the bundled catalog.

Each run is a fresh `python -m kvfit check MODEL --gpu GPU --json` process (what a CI step pays);
the figure is the median over N runs after one warm-up run. Every run's JSON is checked to come
from the source it claims to measure. Two more scenarios time what people meet: the plain report (rich
rendering) and a launch that does not fit (the planner searches the fix and ranks the alternatives:
the slowest path). The budget (README "## Speed") is 0.3 s; the command exits 1 when a median is over it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_S = 0.3
BUNDLED_ID = "Qwen/Qwen3-8B"          # any bundled id; its config also seeds the local and cached copies
CACHED_ID = "kvfit-bench/cached-model"  # not bundled, so only the cache can answer
NO_FIT_ID = "canopylabs/orpheus-3b-0.1-ft"   # 131,072 tokens do not fit an RTX 3090 at 0.92: the planner works


def _bundled_config(repo_id: str) -> dict:
    from ..sources.catalog import find_file

    f = find_file(repo_id)
    if f is None:
        raise SystemExit(f"kvfit.bench speed: {repo_id} is not bundled")
    return json.loads(f.read_text(encoding="utf-8"))["config"]


def make_fixtures(root: Path, local: Path | None = None) -> dict[str, tuple[str, dict[str, str], str]]:
    """scenario -> (model argument, extra environment, the source kvfit must report)."""
    config = json.dumps(_bundled_config(BUNDLED_ID))
    if local is None:
        local = root / "local-model"
        local.mkdir()
        (local / "config.json").write_text(config)
    cache = root / "hf-cache"
    snap = cache / ("models--" + CACHED_ID.replace("/", "--")) / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(config)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("0" * 40)
    empty = root / "empty-cache"
    empty.mkdir()
    return {
        "local": (str(local), {"HF_HUB_CACHE": str(empty)}, "local"),
        "cached": (CACHED_ID, {"HF_HUB_CACHE": str(cache)}, "hf-cache"),
        "bundled": (BUNDLED_ID, {"HF_HUB_CACHE": str(empty)}, "catalog"),
        "report": (BUNDLED_ID, {"HF_HUB_CACHE": str(empty)}, "catalog"),
        "no-fit": (NO_FIT_ID, {"HF_HUB_CACHE": str(empty)}, "catalog"),
    }


def command(model: str, gpu: str, via: str, as_json: bool = True) -> list[str]:
    if via == "script":
        exe = shutil.which("kvfit", path=str(Path(sys.executable).parent)) or shutil.which("kvfit")
        if exe is None:
            raise SystemExit("kvfit.bench speed: no `kvfit` console script found")
        head = [exe]
    else:
        head = [sys.executable, "-m", "kvfit"]
    return head + ["check", model, "--gpu", gpu] + (["--json"] if as_json else [])


def time_runs(cmd: list[str], env: dict[str, str], expect_source: str, runs: int) -> list[float]:
    full_env = {**os.environ, **env}
    times: list[float] = []
    for i in range(runs + 1):                      # run 0 warms the page cache and __pycache__
        t0 = time.perf_counter()
        p = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=60)
        dt = time.perf_counter() - t0
        if p.returncode not in (0, 1):
            raise SystemExit(f"kvfit.bench speed: {' '.join(cmd)} exited {p.returncode}:\n{p.stderr}")
        source = json.loads(p.stdout)["model"]["source"] if "--json" in cmd else \
            (expect_source if f"{expect_source}:" in p.stdout else "?")
        if source != expect_source:
            raise SystemExit(f"kvfit.bench speed: expected source {expect_source}, kvfit used {source}")
        if i:
            times.append(dt)
    return times


def p90(xs: list[float]) -> float:
    s = sorted(xs)
    return s[max(0, -(-9 * len(s) // 10) - 1)]     # nearest rank


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kvfit.bench speed",
                                 description="Wall time of `kvfit check` (start-up included) per model source.")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per source (default 20)")
    ap.add_argument("--gpu", default="RTX 3090", help="catalog GPU passed to --gpu (no NVML probe)")
    ap.add_argument("--local", type=Path, help="a local model directory to time instead of a copy of "
                                                 f"{BUNDLED_ID}'s config.json")
    ap.add_argument("--via", choices=("module", "script"), default="module",
                    help="python -m kvfit (default) or the kvfit console script")
    ap.add_argument("--budget", type=float, default=BUDGET_S, help="exit 1 when a median exceeds it (s)")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be >= 1")

    rows = []
    with tempfile.TemporaryDirectory(prefix="kvfit-speed-") as tmp:
        for name, (model, env, source) in make_fixtures(Path(tmp), args.local).items():
            cmd = command(model, args.gpu, args.via, as_json=name != "report")
            t = time_runs(cmd, env, source, args.runs)
            rows.append({"scenario": name, "source": source, "runs": len(t), "median_s": statistics.median(t),
                         "p90_s": p90(t), "min_s": min(t), "max_s": max(t),
                         "command": " ".join(cmd[1:] if args.via == "module" else cmd)})
    over = [r["scenario"] for r in rows if r["median_s"] > args.budget]
    if args.json:
        print(json.dumps({"budget_s": args.budget, "within_budget": not over, "results": rows}, indent=2))
    else:
        print(f"kvfit check wall time, start-up included: {args.runs} runs per source after one warm-up, "
              f"--gpu {args.gpu!r} --json, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
        print(f"{'scenario':<9} {'source':<9} {'median':>8} {'p90':>8} {'min':>8} {'max':>8}")
        for r in rows:
            print(f"{r['scenario']:<9} {r['source']:<9} {r['median_s']:>7.3f}s {r['p90_s']:>7.3f}s "
                  f"{r['min_s']:>7.3f}s {r['max_s']:>7.3f}s")
        print(f"budget {args.budget:.3f} s (median): " + ("ok" if not over else "OVER for " + ", ".join(over)))
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
