"""Shared by the benchmark scripts: replace one ``## <script>`` section of benchmarks/RESULTS.md."""
from __future__ import annotations

import datetime
import platform
import re
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    """CPU model, cores, memory, GPU and instruction flags (``supernas.measure.machine``)."""
    from supernas.measure.machine import describe_machine

    return describe_machine()


def write_section(script: str, body: str) -> None:
    """Write ``body`` under ``## <script>`` in RESULTS.md, replacing that section and keeping the others."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    stamp = f"_Measured {datetime.date.today()} on {platform.machine()} ({machine()})._"
    section = f"## {script}\n\n{stamp}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(script)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    RESULTS.write_text(text)


def publish(script: str, lines: list[str], write: bool = True) -> str:
    """Print a benchmark's section and, when ``write``, record it in RESULTS.md; returns the text."""
    body = "\n".join(lines)
    print(body)
    if write:
        write_section(script, body)
    return body
