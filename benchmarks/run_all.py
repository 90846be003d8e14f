"""Run every benchmark (each in its own process) and print one summary.

    .venv/bin/python -m benchmarks.run_all [--only response,lag] [--markdown]

Each benchmark writes its report to benchmarks/results/<name>.json. The exit status is non-zero
when a target is missed (the stress variant `lag-uniform` is informational and never counts).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import RESULTS, ROOT

# (report name, module, arguments, counts towards the exit status)
SUITE: list[tuple[str, str, list[str], bool]] = [
    ("response", "benchmarks.response", [], True),
    ("lag-realistic", "benchmarks.lag", [], True),
    (
        "lag-uniform",
        "benchmarks.lag",
        ["--distribution", "uniform", "--no-baseline", "--warmup", "60"],
        False,
    ),
    ("capacity", "benchmarks.capacity", [], True),
    ("quotas", "benchmarks.quotas", [], True),
    ("restart", "benchmarks.restart", [], True),
]


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, {platform.system()}"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_all")
    parser.add_argument("--only", help="comma-separated report names, e.g. response,restart")
    parser.add_argument("--markdown", action="store_true", help="print the summary as a Markdown table")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    RESULTS.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    reports: list[tuple[dict[str, object], bool]] = []
    started = time.monotonic()
    for name, module, extra, counts in SUITE:
        if only is not None and name not in only:
            continue
        out = RESULTS / f"{name}.json"
        out.unlink(missing_ok=True)
        print(f"--- {name}: python -m {module} {' '.join(extra)}", flush=True)
        proc = subprocess.run(
            [sys.executable, "-m", module, "--json", str(out), *extra], cwd=ROOT, env=env, timeout=900
        )
        if not out.exists():
            print(f"{name}: no report (exit {proc.returncode})", flush=True)
            reports.append(({"name": name, "passed": False, "rows": [], "seconds": 0}, counts))
            continue
        reports.append((json.loads(out.read_text()), counts))
    total = time.monotonic() - started
    print()
    print(f"Machine: {machine()}; whole run {total / 60:.1f} min")
    print(summary(reports, markdown=args.markdown))
    return 0 if all(r["passed"] for r, counts in reports if counts) else 1


def summary(reports: list[tuple[dict[str, object], bool]], *, markdown: bool) -> str:
    head = ["benchmark", "metric", "value", "target", "", "baseline", "ratio"]
    rows = []
    for report, counts in reports:
        for row in report["rows"]:  # type: ignore[attr-defined]
            ok = {True: "ok", False: "MISS" if counts else "miss (info)", None: ""}[row["ok"]]
            rows.append(
                [
                    report["name"],
                    row["metric"],
                    row["value"],
                    row["target"],
                    ok,
                    row["baseline"],
                    row["ratio"],
                ]
            )
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=False)]
    return "\n".join(
        "  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=False)).rstrip() for r in [head, *rows]
    )


if __name__ == "__main__":
    sys.exit(main())
