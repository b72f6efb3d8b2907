"""The suite's report: ``report.json`` (every figure) and ``report.png`` (five panels a
person can read at a glance). Kept apart from the measuring code so a report can be
re-plotted from its JSON (``python -m bench.report bench-report/report.json``) and
so the writer is testable without a running service.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

#: Targets from the issue (2-core machine, tiny.en).
OVERHEAD_RATIO_TARGET = 1.10
BATCHING_SPEEDUP_TARGET = 1.5


def write(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out_dir / "report.json", out_dir / "report.png"
    json_path.write_text(json.dumps(report, indent=2))
    plot(report, png_path)
    return json_path, png_path


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib  # the optional `bench` extra; imported here so JSON-only use needs none

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sections = report.get("sections", {})
    fig, axes = plt.subplots(2, 3, figsize=(21, 10))
    _overhead(axes[0][0], sections.get("overhead"))
    _throughput(axes[0][1], sections.get("throughput"))
    _live(axes[1][0], sections.get("live"))
    _memory(axes[1][1], sections.get("memory"))
    _accuracy(axes[0][2], sections.get("accuracy"))
    axes[1][2].axis("off")
    title = f"whisper-appliance benchmarks — {report.get('machine', '?')} — model {report.get('model', '?')}"
    if report.get("quick"):
        title += " — QUICK SMOKE RUN"
    fig.suptitle(f"{title}\n{report.get('started', '')}", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _empty(ax: Any, title: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def _overhead(ax: Any, section: dict[str, Any] | None) -> None:
    title = "Pipeline overhead: /ws time ÷ in-process time"
    rows = (section or {}).get("rows") or []
    if not rows:
        return _empty(ax, title)
    names = [f"{r['fixture']}\n({r['audio_s']} s)" for r in rows]
    ratios = [r["ratio"] for r in rows]
    colors = ["tab:green" if x <= OVERHEAD_RATIO_TARGET else "tab:red" for x in ratios]
    bars = ax.bar(names, ratios, width=0.5, color=colors)
    ax.bar_label(bars, fmt="%.2f", label_type="center", color="white", fontweight="bold")
    ax.axhline(
        OVERHEAD_RATIO_TARGET, color="black", linestyle="--", label=f"target ≤ {OVERHEAD_RATIO_TARGET}"
    )
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_ylim(0, max([*ratios, OVERHEAD_RATIO_TARGET]) * 1.2)
    ax.set_ylabel("ratio (median of runs)")
    ax.set_title(title)
    ax.legend(loc="lower right")


def _throughput(ax: Any, section: dict[str, Any] | None) -> None:
    title = "Throughput: utterances/s vs concurrent clients"
    rows = (section or {}).get("rows") or []
    if not rows:
        return _empty(ax, title)
    colors = {1: "tab:blue", 2: "tab:orange", 4: "tab:green"}
    for workers, batch in sorted({(r["workers"], r["batch_size"]) for r in rows}):
        line = sorted(
            (r for r in rows if (r["workers"], r["batch_size"]) == (workers, batch)),
            key=lambda r: r["clients"],
        )
        ax.plot(
            [r["clients"] for r in line],
            [r["utterances_per_s"] for r in line],
            marker="o" if batch > 1 else "s",
            linestyle="-" if batch > 1 else "--",
            color=colors.get(workers),
            label=f"{workers} worker(s), batch {'on (' + str(batch) + ')' if batch > 1 else 'off'}",
        )
    clients = sorted({r["clients"] for r in rows})
    _counts_axis(ax, clients, "concurrent clients (closed loop, one 2–6 s utterance each)", "utterances / s")
    speedups = (section or {}).get("batching_speedup_at_32") or {}
    if speedups:
        text = ", ".join(f"{w} w: ×{s}" for w, s in speedups.items())
        title += f"\nbatching speed-up at 32 clients {text} (target ≥ {BATCHING_SPEEDUP_TARGET})"
    ax.set_title(title)


def _counts_axis(ax: Any, counts: list[int], xlabel: str, ylabel: str) -> None:
    """1, 8, 32 … evenly spaced (log 2), the axis from zero, legend and grid."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(counts, [str(c) for c in counts])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def _live(ax: Any, section: dict[str, Any] | None) -> None:
    title = "Live latency vs concurrent streams"
    rows = (section or {}).get("rows") or []
    if not rows:
        return _empty(ax, title)
    streams = [r["streams"] for r in rows]
    series = [
        ("final_median_s", "final p50", "tab:blue", "-"),
        ("final_p95_s", "final p95", "tab:blue", "--"),
        ("first_partial_median_s", "first text p50", "tab:orange", "-"),
        ("first_partial_p95_s", "first text p95", "tab:orange", "--"),
    ]
    for key, label, color, style in series:
        points = [(s, r[key]) for s, r in zip(streams, rows, strict=True) if r[key] is not None]
        ax.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            marker="o",
            color=color,
            linestyle=style,
            label=label,
        )
    _counts_axis(
        ax, streams, "streams in real time (250 ms WebM chunks); ended: streams finished in time", "seconds"
    )
    # A stream the service could not finish in its time box has partial figures: say so.
    ax.set_xticks(
        streams, [f"{r['streams']}\n({r.get('streams_completed', '?')}/{r['streams']} ended)" for r in rows]
    )
    ax.set_title(f"{title} ({(section or {}).get('workers', '?')} workers)")


def _memory(ax: Any, section: dict[str, Any] | None) -> None:
    """Per service, the largest RSS any stack of the run showed idle and after its load
    (workers of different stacks pooled as ``worker``): where memory goes under load."""
    title = "Memory (RSS) per service, largest over the run's stacks"
    stacks = (section or {}).get("stacks") or []
    if not stacks:
        return _empty(ax, title)
    phases = ("idle", "after_load")
    peak: dict[str, dict[str, float]] = {phase: {} for phase in phases}
    for stack in stacks:
        for phase in phases:
            for role, mb in (stack.get(phase) or {}).items():
                role = "worker" if role.startswith("worker-") else role
                peak[phase][role] = max(mb, peak[phase].get(role, 0.0))
    roles = list(dict.fromkeys([*peak["idle"], *peak["after_load"]]))
    width = 0.4
    for i, phase in enumerate(phases):
        values = [peak[phase].get(role, 0.0) for role in roles]
        bars = ax.bar(
            [x + i * width for x in range(len(roles))], values, width, label=phase.replace("_", " ")
        )
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks([x + width / 2 for x in range(len(roles))], roles, rotation=30)
    ax.set_ylabel("RSS, MB (ROLE children: its child processes)")
    ax.set_title(f"{title} ({len(stacks)})")
    ax.legend()


def _accuracy(ax: Any, section: dict[str, Any] | None) -> None:
    """Per fixture, WER offline (the same model in-process) beside the file over HTTP and
    the live stream over /ws: a bar above its offline neighbour is a regression."""
    title = "Accuracy: WER per fixture, service vs the same model offline"
    rows = (section or {}).get("rows") or []
    if not rows:
        return _empty(ax, title)
    width = 0.27
    for i, (key, color) in enumerate((("offline", "tab:grey"), ("file", "tab:blue"), ("live", "tab:orange"))):
        bars = ax.bar(
            [x + i * width for x in range(len(rows))], [r[key] for r in rows], width, label=key, color=color
        )
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    names = [f"{r['fixture'].replace('_us_000_0034', '')[:16]}\n({r['model']})" for r in rows]
    ax.set_xticks([x + width for x in range(len(rows))], names, fontsize=8)
    ax.set_ylabel("WER (case, punctuation normalised)")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.legend()


def main() -> None:
    """Re-plot a report.json (e.g. after changing the plot) next to it."""
    path = Path(sys.argv[1])
    plot(json.loads(path.read_text()), path.with_suffix(".png"))


if __name__ == "__main__":
    main()
