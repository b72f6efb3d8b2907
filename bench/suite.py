"""The benchmark suite: one entry point, a JSON report and a plot.

Sections (each against ``whisper-appliance up`` started on loopback with a Redis of
its own, restarted where the configuration changes):

- overhead: end-to-end time through ``/ws`` vs the same model in-process, per fixture
  (``bench.pipeline_overhead``; 1 worker, the service's default batching);
- throughput: closed-loop clients sending 2–6 s utterances, workers {1,2,4} x batching
  off/on (``S2T_BATCH_SIZE`` 1/8) x clients {1,8,32} (``bench.throughput``), and the
  batching speed-up at 32 clients per worker count;
- live: final and first-text latency percentiles at 1, 8 and 32 real-time streams
  (``bench.live_latency``; 2 workers, batching on);
- memory: RSS per service (supervisor, gateway, audio, each worker, Redis) of every
  stack above, idle after start and after its load (``bench.memory``);
- accuracy: per fixture, WER of the file over the HTTP API and of the fixture streamed
  live over ``/ws`` next to the same model run offline in-process (``bench.accuracy``;
  tiny.en for English, base for German; 2 workers).

Bounded in time: every configuration has a time box (measurement window plus one
reply timeout for the requests in flight; streams wait at most ``live_timeout_s``
after their audio), and a configuration that would not fit into what is left of
``--budget-min`` is skipped and listed as such. The gateway's rate, queue and client
limits are lifted for every stack (``bench.throughput.BENCH_ENV``, recorded in the
report). A section that fails is recorded with its error; the others still run and
the report is still written.

    .venv/bin/python -m bench.suite [--quick] [--out bench-report/]
        [--sections overhead,throughput,live,memory,accuracy] [--budget-min N]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench import accuracy, live_latency, pipeline_overhead, report, throughput
from bench.common import machine, print_table, running_stack
from bench.memory import MemoryLog, watching
from bench.utterances import cut
from tests.helpers import manifest

#: Run order: live and accuracy before throughput, so the longest section is the one the
#: budget cuts.
SECTIONS = ("overhead", "live", "accuracy", "throughput", "memory")


@dataclass(frozen=True)
class Plan:
    budget_min: float
    overhead_fixtures: tuple[str, ...]
    overhead_runs: int
    workers: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    clients: tuple[int, ...]
    timing: throughput.Timing
    live_streams: tuple[int, ...]
    live_fixtures: tuple[str, ...]
    live_workers: int
    live_timeout_s: float
    accuracy_fixtures: tuple[str, ...] = ()  # empty: every fixture of the manifest
    accuracy_speed: float = 1.0  # live pacing (1: real time; the cuts do not depend on it)
    stack_start_s: float = 20.0  # allowance for `up` to start and load models, per stack


FULL = Plan(
    budget_min=25,
    overhead_fixtures=("jfk", "osr_us_000_0034"),
    overhead_runs=5,
    workers=(1, 2, 4),
    batch_sizes=(1, 8),
    clients=(1, 8, 32),
    timing=throughput.Timing(warmup_s=5, window_s=30, max_warmup_s=60),
    live_streams=(1, 8, 32),
    live_fixtures=("jfk", "osr_us_000_0034"),
    live_workers=2,
    live_timeout_s=90,
)
QUICK = dataclasses.replace(
    FULL,
    budget_min=6,
    overhead_fixtures=("jfk",),
    overhead_runs=3,
    workers=(1,),
    timing=throughput.Timing(warmup_s=2, window_s=6, max_warmup_s=10),
    live_fixtures=("jfk",),
    live_timeout_s=20,
    accuracy_fixtures=("jfk", "thorsten_gt_03"),
    accuracy_speed=4.0,
)


class Budget:
    """What is left of the suite's time; a configuration runs only if its estimate fits."""

    def __init__(self, minutes: float) -> None:
        self.deadline = time.monotonic() + minutes * 60
        self.skipped: list[str] = []

    def allows(self, what: str, estimate_s: float) -> bool:
        if time.monotonic() + estimate_s <= self.deadline:
            return True
        self.skipped.append(what)
        tqdm.write(f"skipped (time budget): {what}")
        return False


class Suite:
    def __init__(self, plan: Plan, sections: list[str], model: str, budget: Budget) -> None:
        self.plan, self.sections, self.model, self.budget = plan, sections, model, budget
        self.memory = MemoryLog() if "memory" in sections else None
        self.results: dict[str, Any] = {}
        total = (
            len(plan.overhead_fixtures) * ("overhead" in sections)
            + len(plan.workers) * len(plan.batch_sizes) * len(plan.clients) * ("throughput" in sections)
            + len(plan.live_streams) * ("live" in sections)
            + len(plan.accuracy_fixtures or manifest()) * ("accuracy" in sections)
        )
        self.progress = tqdm(total=total, desc="benchmarks", unit="config")

    def env(self, **extra: str) -> dict[str, str]:
        return {**throughput.BENCH_ENV, "S2T_MODEL": self.model, **extra}

    def row_done(self, row: dict[str, Any]) -> None:
        tqdm.write(str(row))
        self.progress.update()

    def run(self) -> None:
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "overhead": self.overhead,
            "throughput": self.throughput,
            "live": self.live,
            "accuracy": self.accuracy,
            "memory": self.memory_section,
        }
        for name in SECTIONS:
            if name not in self.sections:
                continue
            self.progress.set_description(name)
            t0 = time.monotonic()
            try:
                self.results[name] = steps[name]()
            except Exception as exc:  # one broken section must not lose the others' figures
                traceback.print_exc()
                self.results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            self.results[name]["duration_s"] = round(time.monotonic() - t0, 1)
        self.progress.close()

    def overhead(self) -> dict[str, Any]:
        plan, rows = self.plan, []
        name = "overhead stack: 1 worker, default batching"
        if self.budget.allows("overhead", plan.stack_start_s + 15 * len(plan.overhead_fixtures)):
            with running_stack(workers=1, env=self.env()) as running, watching(self.memory, name, running):
                rows = pipeline_overhead.run(
                    running.ws_url, list(plan.overhead_fixtures), plan.overhead_runs, self.model, 1
                )
            for row in rows:
                self.row_done(row)
        return {
            "workers": 1,
            "runs": plan.overhead_runs,
            "target_ratio_max": report.OVERHEAD_RATIO_TARGET,
            "rows": rows,
        }

    def throughput(self) -> dict[str, Any]:
        plan, rows = self.plan, []
        utterances = cut(list(throughput.FIXTURES))
        timing = plan.timing
        config_s = timing.warmup_s + timing.window_s + 20  # plus filling and draining the queue
        for workers in plan.workers:
            for batch in plan.batch_sizes:
                what = f"throughput {workers} worker(s) batch {batch}"
                if not self.budget.allows(what, plan.stack_start_s + config_s):
                    continue

                def keep_going(what: str = what) -> bool:
                    return self.budget.allows(f"{what}: further client counts", config_s)

                rows += throughput.run_stack(
                    workers, batch, list(plan.clients), utterances=utterances, model=self.model,
                    timing=timing, memory=self.memory,
                    on_row=self.row_done, keep_going=keep_going,
                )  # fmt: skip
        speedup = throughput.batching_speedup(rows, clients=32)
        return {
            "utterances": [{"fixture": u.fixture, "audio_s": u.audio_s} for u in utterances],
            "timing": dataclasses.asdict(timing),
            "batching_speedup_at_32": speedup,
            "target_speedup_min": report.BATCHING_SPEEDUP_TARGET,
            "rows": rows,
        }

    def live(self) -> dict[str, Any]:
        plan, rows = self.plan, []
        env = self.env()  # the service's default batching (auto: off on a CPU, 8 on a GPU)
        stream_s = sum(manifest()[f]["duration_s"] + 1.5 for f in plan.live_fixtures)
        name = f"live stack: {plan.live_workers} workers, default batching"
        if self.budget.allows("live", plan.stack_start_s + stream_s + 10):
            with (
                running_stack(workers=plan.live_workers, env=env) as running,
                watching(self.memory, name, running),
            ):
                for count in plan.live_streams:
                    if self.budget.allows(f"live {count} streams", stream_s + 15):
                        rows += live_latency.run(
                            running.ws_url, [count], plan.live_fixtures,
                            timeout=plan.live_timeout_s, on_row=self.row_done,
                        )  # fmt: skip
        return {
            "workers": plan.live_workers,
            "batch_size": "default",
            "fixtures": list(plan.live_fixtures),
            "rows": rows,
        }

    def accuracy(self) -> dict[str, Any]:
        plan, rows = self.plan, []
        fixtures = list(plan.accuracy_fixtures) or list(manifest())
        audio_s = sum(manifest()[f]["duration_s"] for f in fixtures)
        estimate = plan.stack_start_s + 30 + audio_s * (1 + 1 / plan.accuracy_speed)  # + a base load
        if self.budget.allows("accuracy", estimate):
            offline = accuracy.offline_rows(fixtures, accuracy.Offline())
            name = "accuracy stack: 2 workers, default batching"
            with running_stack(workers=2, env=self.env()) as running, watching(self.memory, name, running):
                rows = accuracy.run_config(
                    "service", running.base_url, running.ws_url, fixtures, offline,
                    [plan.accuracy_speed], on_row=self.row_done,
                )  # fmt: skip
        return {"workers": 2, "models": accuracy.MODELS, "speed": plan.accuracy_speed, "rows": rows}

    def memory_section(self) -> dict[str, Any]:
        assert self.memory is not None
        if not self.memory.stacks and self.budget.allows("memory", self.plan.stack_start_s + 30):
            # No other section started a stack: load one briefly just to measure it.
            throughput.run_stack(
                2, 8, [8], utterances=cut(list(throughput.FIXTURES)), model=self.model,
                timing=throughput.Timing(warmup_s=2, window_s=10, max_warmup_s=10), memory=self.memory,
            )  # fmt: skip
        for stack in self.memory.stacks:
            tqdm.write(f"memory, {stack['name']}: idle {stack['idle']}; after load {stack.get('after_load')}")
        return {
            "unit": "MB RSS per process; ROLE children: its child processes together",
            "stacks": self.memory.stacks,
        }


def summary(report_data: dict[str, Any]) -> None:
    sections = report_data["sections"]
    print(f"\nmachine: {report_data['machine']}; model {report_data['model']}")
    if rows := sections.get("overhead", {}).get("rows"):
        print(f"\npipeline overhead (target ratio <= {report.OVERHEAD_RATIO_TARGET}):")
        print_table(rows, pipeline_overhead.COLUMNS)
    if rows := sections.get("throughput", {}).get("rows"):
        print(f"\nthroughput (limits lifted: {throughput.BENCH_ENV}):")
        print_table(rows, throughput.COLUMNS)
        print(
            f"batching speed-up at 32 clients per worker count: "
            f"{sections['throughput']['batching_speedup_at_32']} (target >= {report.BATCHING_SPEEDUP_TARGET})"
        )
    if rows := sections.get("live", {}).get("rows"):
        print("\nlive latency:")
        print_table(rows, live_latency.COLUMNS)
    if rows := sections.get("accuracy", {}).get("rows"):
        print("\naccuracy (WER per fixture; offline: the same model in-process on the whole file):")
        accuracy.print_rows(rows)
    for name, section in sections.items():
        if "error" in section:
            print(f"\nsection {name} FAILED: {section['error']}")
    if report_data["skipped"]:
        print(f"\nskipped for the time budget: {report_data['skipped']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="a ~4-minute smoke run (1 worker, short windows)"
    )
    parser.add_argument("--out", type=Path, default=Path("bench-report"))
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--budget-min", type=float, help="whole-suite time budget (default 25, quick 5)")
    parser.add_argument("--model", default="tiny.en")
    args = parser.parse_args()
    sections = [s for s in args.sections.split(",") if s]
    if unknown := set(sections) - set(SECTIONS):
        parser.error(f"unknown sections {sorted(unknown)}; choose from {','.join(SECTIONS)}")
    plan = QUICK if args.quick else FULL
    budget = Budget(args.budget_min if args.budget_min is not None else plan.budget_min)

    print(f"machine: {machine()}", flush=True)
    started = datetime.datetime.now(datetime.UTC)
    suite = Suite(plan, sections, args.model, budget)
    suite.run()
    data = {
        "machine": machine(),
        "started": started.isoformat(timespec="seconds"),
        "duration_s": round((datetime.datetime.now(datetime.UTC) - started).total_seconds(), 1),
        "quick": args.quick,
        "model": args.model,
        "plan": dataclasses.asdict(plan),
        "bench_env": throughput.BENCH_ENV,
        "skipped": budget.skipped,
        "sections": suite.results,
    }
    json_path, png_path = report.write(data, args.out)
    summary(data)
    print(f"\nwrote {json_path} and {png_path}")


if __name__ == "__main__":
    main()
