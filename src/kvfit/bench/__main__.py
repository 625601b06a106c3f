"""`python -m kvfit.bench NAME [options]`: kvfit's benchmark scripts (they print; they are not tests).

  accuracy   predicted vs reported KV capacity on every calibration record (bench/accuracy.py)
  speed      wall time of `kvfit check`, start-up included (bench/speed.py)
  manifest   wall time of `kvfit check --manifest` on 1,000 generated entries (bench/manifest.py)
"""

from __future__ import annotations

import importlib
import sys

BENCHES = {"accuracy": "kvfit.bench.accuracy", "speed": "kvfit.bench.speed", "manifest": "kvfit.bench.manifest"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in BENCHES:
        print(__doc__.strip())
        return 0 if argv[:1] in ([], ["-h"], ["--help"]) else 2
    return importlib.import_module(BENCHES[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
