#!/usr/bin/env python3
"""Check a vLLM launch with kvfit before starting it: deploy only what fits.

    python examples/python/deploy.py --gpu "RTX 3090" -- \
        vllm serve canopylabs/orpheus-3b-0.1-ft --max-model-len 32768

Fits (meets the goals, when --context / --concurrency are given): prints the `vllm serve` line, exit 0; with
--exec, starts it (this process becomes `vllm serve`). Does not fit: the reason on stderr, kvfit's recommended
command on stdout, exit 1. The launch cannot be checked (unknown model, bad flag, no GPU named or found):
kvfit's message, exit 2.

The launch after `--` is any form kvfit reads: `vllm serve ...`, `docker run ... vllm/vllm-openai ...`,
`python -m vllm.entrypoints.openai.api_server ...`. Without --gpu, kvfit asks NVML for this machine's GPU.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

import kvfit


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own, launch = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(description="Check a vLLM launch with kvfit, then start it only if it fits.")
    p.add_argument("--gpu", help='The GPU it will run on ("RTX 3090", "H100"); default: the one NVML finds.')
    p.add_argument("--context", type=int, help="Goal: the max_model_len the deployment needs.")
    p.add_argument("--concurrency", type=int, help="Goal: this many sequences of that length at once.")
    p.add_argument("--exec", action="store_true", help="Start the launch when it fits.")
    a = p.parse_args(own)
    if not launch:
        p.error("give the launch after `--` (e.g. -- vllm serve MODEL --max-model-len 32768)")

    try:
        r = kvfit.check_launch(shlex.join(launch), gpu=a.gpu, context=a.context, concurrency=a.concurrency)
    except kvfit.KvfitError as e:
        print(f"deploy: cannot check the launch: {e}", file=sys.stderr)
        return 2
    if r.verdict.table:
        print("deploy: no GPU named or found here; pass --gpu", file=sys.stderr)
        return 2

    rec = r.recommendation
    if not r.verdict.fits:
        print("deploy: does not fit: " + "; ".join(r.verdict.reasons), file=sys.stderr)
        if rec is not None and rec.serve_command:
            needs = f" (needs {rec.needs})" if rec.needs else ""
            print(f"deploy: kvfit recommends {rec.label}{needs}:", file=sys.stderr)
            print(rec.serve_command)
        return 1

    cap = r.capacity
    print(f"deploy: fits on {r.gpu['name']}: {cap.kv_cache_tokens:,} KV-cache tokens, "
          f"{cap.max_concurrency:.2f}x requests of {r.settings['max_model_len']:,} tokens", file=sys.stderr)
    print(rec.serve_command)
    if a.exec:
        sys.stdout.flush()
        os.execvp(rec.argv[0], list(rec.argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
