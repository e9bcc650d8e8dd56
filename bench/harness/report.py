"""Results: one row per (tool, workload, hosts), the markdown table, the targets, the JSON."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from .measure import Measurement

FIRST_APPLY = "first apply"
NO_CHANGE = "no-change apply"
CHECK_EDITED = "check, 1 file edited"
FLOOR_SSH = "floor: ssh"
FLOOR_SCP = "floor: scp"
FLOOR_WORKLOAD = {FLOOR_SSH: "handshake + sudo -n true", FLOOR_SCP: "copy the payload"}
TOOL_ORDER = ["mop", "mop-cache", "pyinfra", "ansible", FLOOR_SSH, FLOOR_SCP]
WORKLOAD_ORDER = [FIRST_APPLY, NO_CHANGE, CHECK_EDITED]


@dataclass
class Row:
    tool: str
    workload: str
    hosts: int
    planned_runs: int
    measurements: list[Measurement] = field(default_factory=list)
    status: str = "ok"  # ok, failed, timeout, skipped, unavailable
    notes: list[str] = field(default_factory=list)
    reference: float | None = None  # the floor this row is compared with (seconds)
    reference_name: str = ""

    @property
    def good(self) -> list[Measurement]:
        return [m for m in self.measurements if m.ok]

    @property
    def wall(self) -> float | None:
        good = self.good
        return statistics.median(m.wall for m in good) if good else None

    @property
    def cpu(self) -> float | None:
        good = self.good
        return statistics.median(m.cpu for m in good) if good else None

    @property
    def own_rss_mib(self) -> float | None:
        if self.tool in (FLOOR_SSH, FLOOR_SCP):
            return None  # the floor's own process is a bash loop: nothing to compare
        values = [m.own_peak_rss_kib for m in self.good if m.own_peak_rss_kib is not None]
        return max(values) / 1024 if values else None

    @property
    def ratio(self) -> float | None:
        wall = self.wall
        if wall is None or not self.reference:
            return None
        return wall / self.reference

    def fail(self, status: str, note: str) -> None:
        self.status = status
        self.notes.append(note)

    def to_json(self) -> dict[str, object]:
        return {
            "tool": self.tool,
            "workload": self.workload,
            "hosts": self.hosts,
            "status": self.status,
            "notes": self.notes,
            "runs_planned": self.planned_runs,
            "runs_ok": len(self.good),
            "wall_median_s": self.wall,
            "cpu_median_s": self.cpu,
            "own_peak_rss_mib": self.own_rss_mib,
            "reference_s": self.reference,
            "reference": self.reference_name,
            "ratio_to_reference": self.ratio,
            "runs": [
                {
                    "wall_s": round(m.wall, 4),
                    "cpu_user_s": round(m.cpu_user, 4),
                    "cpu_system_s": round(m.cpu_system, 4),
                    "own_peak_rss_kib": m.own_peak_rss_kib,
                    "exit_code": m.exit_code,
                    "timed_out": m.timed_out,
                    "orphans_reaped": m.orphans,
                    "left_running": m.left_running,
                    "notes": m.notes,
                }
                for m in self.measurements
            ],
        }


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _ratio(row: Row) -> str:
    ratio = row.ratio
    if ratio is None:
        return "-"
    return f"{ratio:.2f}x"


def _status(row: Row) -> str:
    if row.status == "ok":
        text = "ok" if len(row.good) == row.planned_runs else f"ok ({len(row.good)} of {row.planned_runs} runs)"
    else:
        text = row.status
    if row.notes:
        text += ": " + "; ".join(row.notes)
    return text.replace("|", "\\|")


def sort_key(row: Row) -> tuple[int, int, int]:
    workload_rank = WORKLOAD_ORDER.index(row.workload) if row.workload in WORKLOAD_ORDER else -1
    return (row.hosts, workload_rank, TOOL_ORDER.index(row.tool))


def table(rows: list[Row]) -> str:
    """Every row given, floor first, then by workload and tool."""
    header = (
        "| tool | workload | hosts | runs | wall s (median) | controller CPU s | peak RSS MiB "
        "| vs floor | status |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---|\n"
    )
    lines = []
    for row in sorted(rows, key=sort_key):
        lines.append(
            f"| {row.tool} | {row.workload} | {row.hosts} | {len(row.good)} | {_seconds(row.wall)} "
            f"| {_seconds(row.cpu)} | {_mib(row.own_rss_mib)} | {_ratio(row)} | {_status(row)} |"
        )
    return header + "\n".join(lines) + "\n"


def scale_table(rows: list[Row]) -> str:
    """The no-change apply and the floor at every fleet size, with the time above the floor."""
    header = (
        "| tool | hosts | runs | wall s (median) | above floor s | above floor ms/host "
        "| controller CPU s | peak RSS MiB | vs floor | status |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
    )
    lines = []
    for row in sorted(rows, key=lambda row: (TOOL_ORDER.index(row.tool), row.hosts)):
        above = None if row.wall is None or row.reference is None else row.wall - row.reference
        per_host = "-" if above is None else f"{1000 * above / row.hosts:.0f}"
        lines.append(
            f"| {row.tool} | {row.hosts} | {len(row.good)} | {_seconds(row.wall)} | {_seconds(above)} "
            f"| {per_host} | {_seconds(row.cpu)} | {_mib(row.own_rss_mib)} | {_ratio(row)} | {_status(row)} |"
        )
    return header + "\n".join(lines) + "\n"


def _find(rows: list[Row], tool: str, workload: str, hosts: int) -> Row | None:
    for row in rows:
        if row.tool == tool and row.workload == workload and row.hosts == hosts:
            return row
    return None


def targets(rows: list[Row], main_hosts: int, scale: list[int], tool: str = "mop") -> str:
    """The targets of one mop configuration (`mop` or `mop-cache`), each with the measured
    figure and a verdict."""
    lines = ["| target | measured | verdict |", "|---|---|---|"]

    def verdict(ok: bool | None) -> str:
        return "pending (no mop figure)" if ok is None else ("met" if ok else "NOT met")

    def mop_row(workload: str, hosts: int) -> Row | None:
        row = _find(rows, tool, workload, hosts)
        return row if row is not None and row.wall is not None else None

    at = f"{main_hosts} hosts"
    for workload, limit, reference in (
        (NO_CHANGE, 1.5, "floor"),
        (FIRST_APPLY, 2.0, "floor + scp"),
        (CHECK_EDITED, 1.5, "floor"),
    ):
        row = mop_row(workload, main_hosts)
        measured = f"{row.ratio:.2f}x {reference} ({_seconds(row.wall)} s vs {_seconds(row.reference)} s)" if row and row.ratio else "-"
        ok = None if row is None or row.ratio is None else row.ratio <= limit
        lines.append(f"| {workload}, {at}: at most {limit}x {reference} | {measured} | {verdict(ok)} |")

    mop = mop_row(NO_CHANGE, main_hosts)
    pyinfra = _find(rows, "pyinfra", NO_CHANGE, main_hosts)
    if mop and pyinfra and pyinfra.wall:
        speedup = pyinfra.wall / mop.wall
        lines.append(
            f"| {NO_CHANGE}, {at}: at least 8x faster than pyinfra | {speedup:.1f}x "
            f"({_seconds(mop.wall)} s vs {_seconds(pyinfra.wall)} s) | {verdict(speedup >= 8)} |"
        )
    else:
        missing = "no pyinfra figure" if not (pyinfra and pyinfra.wall) else "no mop figure"
        lines.append(f"| {NO_CHANGE}, {at}: at least 8x faster than pyinfra | - | pending ({missing}) |")

    # Growth: mop's time above the floor, per host, at each fleet size.
    if not scale:
        lines.append("| scale: mop minus floor grows no faster than linearly | - | pending (scale runs off) |")
        lines.append("| scale: mop's own peak RSS under 100 MiB at the largest fleet | - | pending (scale runs off) |")
        return "\n".join(lines) + "\n"
    largest = max(scale)
    excess = []
    for hosts in sorted({main_hosts, *scale}):
        row = mop_row(NO_CHANGE, hosts)
        if row and row.reference is not None:
            excess.append((hosts, row.wall - row.reference))
    if len(excess) >= 2 and excess[-1][0] == largest:
        described = ", ".join(f"{hosts}: {1000 * value / hosts:.0f} ms/host" for hosts, value in excess)
        # Linear or better: the excess per host at the largest fleet is at most 10 % (noise)
        # above the excess per host at the next size down, or under 5 ms/host.
        (small_hosts, small), (big_hosts, big) = excess[-2], excess[-1]
        ok = big / big_hosts <= max(small / small_hosts, 0.0) * 1.1 + 0.005
        lines.append(f"| {largest} hosts: mop minus floor grows no faster than linearly | {described} | {verdict(ok)} |")
    else:
        lines.append(f"| {largest} hosts: mop minus floor grows no faster than linearly | - | pending (no mop figure at {largest} hosts) |")
    big_row = mop_row(NO_CHANGE, largest)
    if big_row and big_row.own_rss_mib is not None:
        lines.append(
            f"| {largest} hosts: mop's own peak RSS under 100 MiB | {big_row.own_rss_mib:.0f} MiB | {verdict(big_row.own_rss_mib < 100)} |"
        )
    else:
        lines.append(f"| {largest} hosts: mop's own peak RSS under 100 MiB | - | pending (no mop figure) |")
    return "\n".join(lines) + "\n"


def write_json(path: Path, meta: dict[str, object], rows: list[Row]) -> None:
    payload = {"meta": meta, "rows": [row.to_json() for row in sorted(rows, key=sort_key)]}
    path.write_text(json.dumps(payload, indent=2) + "\n")
