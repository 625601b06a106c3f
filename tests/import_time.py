"""How long `import kvfit` takes, and what it loads: `python tests/import_time.py` (a benchmark, not a test:
timings vary by machine, so the suite asserts only what is imported, tests/test_api.py).

Runs `python -X importtime -c "import kvfit"` a few times in fresh processes and prints the median of
kvfit's cumulative import time (kvfit's own modules plus whatever they pull in, Python's start-up excluded),
and the top-level modules the import loaded that a bare `python -c pass` does not.
"""

from __future__ import annotations

import statistics
import subprocess
import sys


def imported(code: str) -> tuple[dict[str, int], set[str]]:
    p = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True)
    cumulative, mods = {}, set()
    for line in p.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            _, cum, name = (x.strip() for x in line[len("import time:"):].split("|"))
            if cum.isdigit():
                cumulative[name.strip()] = int(cum)
                mods.add(name.strip())
    return cumulative, mods


def main(runs: int = 7) -> int:
    times = []
    for _ in range(runs):
        cum, mods = imported("import kvfit")
        times.append(cum["kvfit"] / 1e6)
    _, bare = imported("pass")
    extra = sorted({m.split(".")[0] for m in mods - bare})
    print(f"import kvfit: median {statistics.median(times) * 1000:.1f} ms over {runs} runs "
          f"(min {min(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms); budget 100 ms")
    print("top-level modules it loads beyond `python -c pass`: " + ", ".join(extra))
    return 0 if statistics.median(times) < 0.1 else 1


if __name__ == "__main__":
    sys.exit(main())
