"""Reports as SVG, written by hand (no plotting library): for a pull-request comment or a CI artifact.

One small builder (text, rectangles, a table, bar charts) and one function per report: check, sweep,
manifest. Plain SVG 1.1, monospace text, no scripts, no external references.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import BadInput

GiB = 1 << 30


def escape(s: str) -> str:
    """XML text escaping (xml.sax.saxutils would import urllib at start-up)."""
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


FONT = "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace"
COLORS = {"weights": "#4c78a8", "activation": "#b279a2", "CUDA graphs": "#e4c440", "other": "#9d9d9d",
          "KV cache": "#54a24b", "free": "#e6e6e6"}
GREEN, RED, INK, DIM = "#2e7d32", "#c62828", "#1f2328", "#6e7781"


class Svg:
    def __init__(self, width: int = 860):
        self.width = width
        self.extent = 0.0
        self.parts: list[str] = []
        self.y = 28

    def text(self, x: float, y: float, s: str, size: int = 13, fill: str = INK, weight: str = "normal",
             anchor: str = "start") -> None:
        if anchor == "start":                   # monospace: about 0.6 em per character
            self.extent = max(self.extent, x + len(s) * size * 0.61 + 16)
        self.parts.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{fill}" font-weight="{weight}" '
                          f'text-anchor="{anchor}">{escape(s)}</text>')

    def rect(self, x: float, y: float, w: float, h: float, fill: str, title: str | None = None) -> None:
        t = f"<title>{escape(title)}</title>" if title else ""
        self.parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{h:.1f}" fill="{fill}">{t}</rect>')

    def line(self, s: str, size: int = 13, fill: str = INK, weight: str = "normal", indent: int = 16,
             gap: int = 19) -> None:
        self.text(indent, self.y, s, size, fill, weight)
        self.y += gap

    def lines(self, text: str, **kw) -> None:
        for ln in text.splitlines():
            self.line(ln, **kw)

    def bar(self, parts: list[tuple[str, int]], total: int, width: int | None = None, height: int = 22) -> None:
        width = width or self.width - 32
        x, y = 16.0, self.y
        for label, n in parts:
            w = width * n / total if total else 0
            if w > 0:
                self.rect(x, y, w, height, COLORS.get(label, "#888"), f"{label}: {n / GiB:.2f} GiB")
                x += w
        self.y += height + 18
        x = 16.0
        for label, n in parts:
            self.rect(x, self.y - 10, 10, 10, COLORS.get(label, "#888"))
            s = f"{label} {n / GiB:.2f}"
            self.text(x + 14, self.y, s, 12, DIM)
            x += 14 + 7.5 * len(s) + 14
        self.y += 22

    def table(self, header: list[str], rows: list[list[str]], widths: list[int],
              colors: list[list[str | None]] | None = None) -> None:
        x0 = 16
        self.rect(x0, self.y - 14, sum(widths), 20, "#f0f2f4")
        x = x0 + 4
        for h, w in zip(header, widths):
            self.text(x, self.y, h, 12, INK, "bold")
            x += w
        self.y += 20
        for i, row in enumerate(rows):
            x = x0 + 4
            for j, (cell, w) in enumerate(zip(row, widths)):
                fill = (colors[i][j] if colors and colors[i][j] else INK)
                self.text(x, self.y, cell, 12, fill)
                x += w
            self.y += 18
        self.y += 10

    def hbars(self, title: str, rows: list[tuple[str, float, str]], label_width: int = 230) -> None:
        """A horizontal bar chart: (label, value, value text)."""
        self.line(title, 13, INK, "bold")
        top = max((v for _, v, _ in rows), default=0) or 1
        span = self.width - 32 - label_width - 110
        for label, v, vt in rows:
            self.text(16, self.y + 11, label, 12)
            self.rect(16 + label_width, self.y, span * v / top, 14, "#4c78a8", vt)
            self.text(16 + label_width + span * v / top + 6, self.y + 11, vt, 12, DIM)
            self.y += 20
        self.y += 10

    def render(self) -> str:
        h = self.y + 10
        w = max(self.width, int(self.extent + 0.5))
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
                f'viewBox="0 0 {w} {h}" font-family="{FONT}">\n'
                f'<rect width="100%" height="100%" fill="#ffffff"/>\n' + "\n".join(self.parts) + "\n</svg>\n")


def write(path: str, content: str) -> None:
    try:
        Path(path).expanduser().write_text(content, encoding="utf-8")
    except OSError as e:
        raise BadInput(f"--svg {path}: cannot write it ({e.strerror or e})") from None


def _memory_parts(res) -> tuple[list[tuple[str, int]], int]:
    m = res.memory
    parts = [("weights", m.weights_bytes), ("activation", m.activation_bytes), ("CUDA graphs", m.cudagraph_bytes),
             ("other", m.non_torch_bytes), ("KV cache", m.kv_cache_bytes), ("free", m.left_free_bytes)]
    return parts, max(m.total_bytes, sum(n for _, n in parts))


def check_svg(a, form: str) -> str:
    """The check report: verdict, numbers, where the memory goes, the recommended launch, the alternatives."""
    from .. import launch as L
    from .report import gpu_label, outcome

    s = Svg()
    if not a.table:
        g = a.per_gpu[0]
        pl = g.plan
        res = pl.as_given.result
        asked = pl.goals.active
        word = ("MEETS THE GOALS" if asked else "FITS") if pl.ok else \
            ("DOES NOT MEET THE GOALS" if asked else "DOES NOT FIT")
        s.line(("✔ " if pl.ok else "✘ ") + word, 18, GREEN if pl.ok else RED, "bold", gap=24)
        s.line(f"{res.model.id} on {gpu_label(res)} ({res.gpu.total_bytes / GiB:.2f} GiB each), vLLM "
               f"{res.profile.version}", 13, INK, "bold")
        if pl.failed:
            s.line(pl.failed[1], 12, RED)
        r, cap, lay = res.resolved, res.capacity, res.layout
        s.line(f"max_model_len {r.max_model_len:,} · gpu_memory_utilization {r.gpu_memory_utilization:g} · "
               f"max_num_seqs {r.max_num_seqs} · max_num_batched_tokens {r.max_num_batched_tokens:,}", 12, DIM)
        s.line(f"KV {lay.kv_bytes_per_token:,} B/token per GPU · {cap.num_blocks:,} blocks · "
               f"{cap.kv_cache_tokens:,} tokens · max concurrency {cap.max_concurrency:.2f}x", 12, DIM)
        s.y += 6
        parts, total = _memory_parts(res)
        s.bar(parts, total)
        if asked:
            s.line("goals: " + pl.goals.describe(), 12)
        s.line(f"policy: headroom {pl.policy.headroom_text}, utilization ceiling {pl.policy.ceiling:.2f}", 12, DIM)
        rec = g.recommended
        if rec is not None:
            label = "launch (as given)" if rec.option.label == "as given" else "recommended: " + rec.option.label
            s.line(label + (f" (needs {rec.needs})" if rec.needs else ""), 12, INK, "bold")
            s.line("  " + outcome(rec.option.check), 12)
            if rec.launch is not None:
                s.y += 4
                s.lines(L.render(rec.launch, form).rstrip("\n"), size=12, fill="#0b4f8a", indent=24, gap=16)
            s.y += 6
        if g.alternatives:
            rows, colors = [], []
            for p in g.alternatives[:10]:
                o = p.option
                rows.append([o.label[:44], "yes" if o.meets else "no",
                             f"{o.least_util:g}" if o.least_util is not None and o.meets else "-",
                             f"{o.context:,}" if o.context else "-", (p.needs or o.cost or "")[:30]])
                colors.append([None, GREEN if o.meets else RED, None, None, DIM])
            s.line("alternatives (cheapest first)", 13, INK, "bold")
            s.table(["change", "meets", "util", "context", "needs / costs"], rows, [330, 60, 60, 100, 230], colors)
    else:
        first = a.per_gpu[0].plan.as_given.result
        s.line(f"{first.model.id}: fit on common GPUs (vLLM {first.profile.version}; no GPU named)", 16, INK, "bold",
               gap=24)
        rows, colors = [], []
        for g in a.per_gpu:
            res = g.plan.as_given.result
            w = g.plan.what_if
            rows.append([res.gpu.name, f"{res.gpu.total_bytes / GiB:.2f}", "yes" if g.ok else "no",
                         f"{res.capacity.kv_cache_tokens:,}", f"{res.capacity.max_concurrency:.2f}x",
                         f"{w.longest_max_model_len:,}" if w.longest_max_model_len else "-"])
            colors.append([None, None, GREEN if g.ok else RED, None, None, None])
        s.table(["GPU", "GiB", "fits", "KV tokens", "conc.", "longest"], rows, [250, 70, 50, 110, 80, 120], colors)
    return s.render()


def sweep_svg(data: dict) -> str:
    s = Svg()
    s.line(f"{data['model']}: max_model_len and concurrency at {data['max_model_len']:,} tokens", 16, INK, "bold", gap=26)
    util_rows = data["utilization"]
    s.hbars(f"max concurrency vs gpu_memory_utilization on {data['gpu']}",
            [(f"util {r['gpu_memory_utilization']:.2f}", r["max_concurrency"] or 0, f"{r['max_concurrency'] or 0:.2f}x")
             for r in util_rows], label_width=110)
    s.hbars(f"longest max_model_len vs gpu_memory_utilization on {data['gpu']}",
            [(f"util {r['gpu_memory_utilization']:.2f}", r["max_model_len"] or 0, f"{r['max_model_len'] or 0:,}")
             for r in util_rows], label_width=110)
    s.hbars(f"max concurrency per GPU at gpu_memory_utilization {data['gpu_utilization']:g}",
            [(r["gpu"], r["max_concurrency"] or 0, f"{r['max_concurrency'] or 0:.2f}x") for r in data["gpus"]])
    return s.render()


def manifest_svg(data: dict) -> str:
    s = Svg(980)
    ok = data["ok"]
    s.line(f"kvfit CI gate: {data['passed']} passed, {data['failed']} failed ({data['manifest']})", 16,
           GREEN if ok else RED, "bold", gap=26)
    rows, colors = [], []
    for r in data["results"]:
        rows.append([r["name"][:28], r["gpu"][:26], "pass" if r["ok"] else "FAIL",
                     f"{r['max_model_len']:,}" if r.get("max_model_len") else "-",
                     f"{r['gpu_memory_utilization']:g}" if r.get("gpu_memory_utilization") else "-",
                     "-" if r.get("sequences_resident") is None else str(r["sequences_resident"]),
                     (r["message"] or "")[:40]])
        colors.append([None, None, GREEN if r["ok"] else RED, None, None, None, DIM])
    s.table(["entry", "GPU", "result", "max_model_len", "util", "seqs", "note"], rows,
            [210, 200, 60, 120, 60, 50, 260], colors)
    return s.render()
