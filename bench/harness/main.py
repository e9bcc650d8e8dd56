"""`bench/run`: compare mop with pyinfra, Ansible and the SSH floor on throwaway sshd hosts."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from workload import generate

from . import measure, report, state
from .hosts import HostsError, TestHosts
from .measure import Measurement
from .report import CHECK_EDITED, FIRST_APPLY, FLOOR_SCP, FLOOR_SSH, NO_CHANGE, Row
from .tools import APPLY, CHECK, Ansible, Command, Mop, Pyinfra, floor_scp, floor_ssh

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent
VENV_DIR = BENCH_DIR / ".venv"
PEER_REQUIREMENTS = ["pyinfra>=3,<4", "ansible-core"]
ALL_TOOLS = ["mop", "mop-cache", "pyinfra", "ansible", "floor"]
MOP_TOOLS = ("mop", "mop-cache")


def log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run",
        description="Benchmark mop against pyinfra, Ansible and the SSH floor on loopback sshd hosts "
        "(see docs/benchmarks.md). Needs root (mop-testhosts starts sshd and a test user).",
        epilog="Exit status: 0 when every measurement ran (a tool that failed or could not be "
        "installed is reported in the table, not in the exit status), 1 when the harness "
        "itself failed (hosts did not start, ...), 2 for a bad command line, 130 when interrupted "
        "(the report still covers what ran).",
    )
    parser.add_argument("--hosts", type=int, default=20, metavar="N", help="hosts for the three web tier workloads (default 20)")
    parser.add_argument("--scale", default="10,50,200", metavar="LIST", help="host counts for the no-change scale runs, comma-separated; 'off' for none (default 10,50,200)")
    parser.add_argument("--runs", type=int, default=3, metavar="R", help="runs per measurement; the table shows the median (default 3)")
    parser.add_argument("--tools", default=",".join(ALL_TOOLS), metavar="LIST", help="tools to run, comma-separated, from mop,mop-cache,pyinfra,ansible,floor (default all); mop-cache is mop with the agent cached on the hosts (mop_agent_cache = true)")
    parser.add_argument("--quick", action="store_true", help="smoke test: --hosts 5 --runs 1 --scale off")
    parser.add_argument("--mop", type=Path, metavar="PATH", help="the mop binary to measure (default: cargo build --release, then target/release/mop)")
    parser.add_argument("--agent", type=Path, metavar="PATH", help="the mop-agent binary mop uploads (sets MOP_AGENT_BIN; default: none, mop uploads the static agent it carries, as installed)")
    parser.add_argument("--testhosts", type=Path, metavar="PATH", help="the mop-testhosts binary (default: target/release/mop-testhosts)")
    parser.add_argument("--no-build", action="store_true", help="do not run cargo; use the binaries already in target/release")
    parser.add_argument("--timeout", type=float, default=900, metavar="SECS", help="kill a single run after SECS (default 900)")
    parser.add_argument("--cell-budget", type=float, default=900, metavar="SECS", help="stop repeating one measurement once its runs took SECS in total; the table says how many runs it got (default 900)")
    parser.add_argument("--scale-limit", type=float, default=300, metavar="SECS", help="skip a peer at a scale point when its run there is predicted (linearly from the previous size) to take longer than SECS (default 300)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results", metavar="DIR", help="where latest.md, latest.json and logs/ go (default bench/results)")
    args = parser.parse_args(argv)
    for name in ("mop", "agent", "testhosts"):
        if getattr(args, name) is not None:
            setattr(args, name, getattr(args, name).resolve())
    args.out = args.out.resolve()
    if args.quick:
        args.hosts, args.runs, args.scale = 5, 1, "off"
    try:
        args.scale = [] if args.scale in ("", "off", "none") else sorted({int(part) for part in args.scale.split(",")})
    except ValueError:
        parser.error(f"--scale: expected comma-separated host counts, got `{args.scale}`")
    args.tools = [tool.strip() for tool in args.tools.split(",") if tool.strip()]
    unknown = [tool for tool in args.tools if tool not in ALL_TOOLS]
    if unknown:
        parser.error(f"--tools: unknown tool `{unknown[0]}` (choose from {', '.join(ALL_TOOLS)})")
    if args.hosts < 1 or args.runs < 1 or any(n < 1 for n in args.scale):
        parser.error("--hosts, --runs and --scale need positive numbers")
    return args


# ---------------------------------------------------------------- setup


def first_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("error") or "error:" in line or "ERROR" in line:
            return line[:200]
    return lines[-1][:200] if lines else "no output"


def build(args: argparse.Namespace, logs: Path) -> tuple[Path, Path | None, str | None]:
    """Returns (mop-testhosts, mop or None, why mop is missing)."""
    release = REPO_DIR / "target" / "release"
    wants_mop = bool(set(MOP_TOOLS) & set(args.tools)) and args.mop is None
    if not args.no_build:
        packages = ["-p", "mop-testhosts"] + (["-p", "mop"] if wants_mop else [])
        log(f"building: cargo build --release {' '.join(packages)} (log: {logs / 'build.log'})")
        result = subprocess.run(["cargo", "build", "--release", *packages], cwd=REPO_DIR, capture_output=True, text=True)
        (logs / "build.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0 and wants_mop:
            mop_problem = "build failed: " + first_error_line(result.stderr)
            log(f"mop: {mop_problem}; building mop-testhosts alone")
            result = subprocess.run(["cargo", "build", "--release", "-p", "mop-testhosts"], cwd=REPO_DIR, capture_output=True, text=True)
            (logs / "build-testhosts.log").write_text(result.stdout + result.stderr)
            wants_mop = False
        else:
            mop_problem = None
        if result.returncode != 0:
            raise HostsError("cannot build mop-testhosts: " + first_error_line(result.stderr))
        # No agent is built here: a release `mop` carries its static agents (crates/mop/build.rs),
        # so mop is measured as installed; `--agent` still sets MOP_AGENT_BIN for experiments.
    else:
        mop_problem = None
    testhosts = args.testhosts or release / "mop-testhosts"
    if not testhosts.is_file():
        raise HostsError(f"`{testhosts}` not found\nhint: run without --no-build, or pass --testhosts PATH")
    if not set(MOP_TOOLS) & set(args.tools):
        return testhosts, None, None
    mop = args.mop or release / "mop"
    if mop_problem:
        return testhosts, None, mop_problem
    if not mop.is_file():
        return testhosts, None, f"`{mop}` not found"
    return testhosts, mop, None


def ensure_peers(args: argparse.Namespace, logs: Path) -> str | None:
    """Creates bench/.venv with pyinfra 3 and ansible-core; returns why not, if it cannot."""
    if not ({"pyinfra", "ansible"} & set(args.tools)):
        return None
    bin_dir = VENV_DIR / "bin"
    def installed() -> bool:
        return (bin_dir / "pyinfra").is_file() and (bin_dir / "ansible-playbook").is_file()
    if not installed():
        log(f"installing {' and '.join(PEER_REQUIREMENTS)} into {VENV_DIR} (log: {logs / 'pip.log'})")
        with open(logs / "pip.log", "w") as pip_log:
            steps = [
                (f"cannot create the virtualenv `{VENV_DIR}`", [sys.executable, "-m", "venv", str(VENV_DIR)]),
                (
                    f"cannot install {' and '.join(PEER_REQUIREMENTS)} from PyPI",
                    [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", *PEER_REQUIREMENTS],
                ),
            ]
            for what, step in steps:
                result = subprocess.run(step, stdout=pip_log, stderr=subprocess.STDOUT)
                if result.returncode != 0:
                    pip_log.flush()
                    return f"{what}: " + first_error_line((logs / "pip.log").read_text())
    if not installed():
        return "pip finished but pyinfra or ansible-playbook is missing from bench/.venv/bin"
    return None


def tool_versions(mop: Path | None) -> dict[str, str]:
    def version(argv: list[str]) -> str:
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return "unavailable"
        text = (result.stdout + result.stderr).strip().splitlines()
        return text[0].strip() if text else "unknown"

    bin_dir = VENV_DIR / "bin"
    return {
        "mop": version([str(mop), "--version"]) if mop else "unavailable",
        "pyinfra": version([str(bin_dir / "pyinfra"), "--version"]),
        "ansible-core": version([str(bin_dir / "ansible"), "--version"]),
        "openssh": version(["ssh", "-V"]),
        "python": platform.python_version(),
    }


def machine() -> dict[str, str]:
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": str(os.cpu_count()), "memory": memory, "cpu": cpu, "kernel": platform.release()}


# ---------------------------------------------------------------- measuring


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, logs: Path, workload: generate.Workload) -> None:
        self.args = args
        self.work = work
        self.logs = logs
        self.workload = workload
        self.rows: list[Row] = []
        self.counter = 0

    def run(self, command: Command, label: str, hosts: TestHosts) -> Measurement:
        self.counter += 1
        log_path = self.logs / f"{self.counter:03d}-{label}.log"
        measurement = measure.run_measured(
            command.argv, log=log_path, cwd=command.cwd, env=command.env or None, timeout=self.args.timeout
        )
        for path in command.cleanup:
            shutil.rmtree(path, ignore_errors=True)
        if not hosts.alive():
            raise HostsError(f"mop-testhosts died during `{label}`; see `{hosts.log}`")
        if measurement.left_running:
            names = sorted(set(measurement.left_running))
            measurement.notes.append(
                f"left {len(measurement.left_running)} process(es) running at exit ({', '.join(names)}), closed by the harness"
            )
        state_text = "ok" if measurement.ok else f"FAILED: {measurement.first_error_line()}"
        log(f"  {label}: {measurement.wall:.2f} s wall, {measurement.cpu:.2f} s CPU, {state_text}")
        return measurement

    def row(self, tool: str, workload: str, hosts: int) -> Row:
        row = Row(tool, workload, hosts, self.args.runs)
        self.rows.append(row)
        return row

    # ---- the floor

    def floor(self, hosts: TestHosts, with_scp: bool) -> tuple[Row, Row | None]:
        count = len(hosts.hosts)
        ssh_row = self.row(FLOOR_SSH, report.FLOOR_WORKLOAD[FLOOR_SSH], count)
        for run in range(self.args.runs):
            measurement = self.run(floor_ssh(hosts), f"floor-ssh-{count}-run{run + 1}", hosts)
            ssh_row.measurements.append(measurement)
            if not measurement.ok:
                ssh_row.fail("failed", measurement.first_error_line())
                break
        ssh_row.reference = ssh_row.wall
        ssh_row.reference_name = "floor: ssh"
        if not with_scp:
            return ssh_row, None
        scp_row = self.row(FLOOR_SCP, report.FLOOR_WORKLOAD[FLOOR_SCP], count)
        names = [host.name for host in hosts.hosts]
        for run in range(self.args.runs):
            state.prepare_scp_targets(names, hosts.user)
            measurement = self.run(floor_scp(hosts, self.workload, state.SCP_BASE), f"floor-scp-{count}-run{run + 1}", hosts)
            scp_row.measurements.append(measurement)
            if not measurement.ok:
                scp_row.fail("failed", measurement.first_error_line())
                break
        shutil.rmtree(state.SCP_BASE, ignore_errors=True)
        size = sum(path.stat().st_size for path in self.workload.payload_files())
        scp_row.notes.append(f"{len(self.workload.payload_files())} files, {size / 2**20:.1f} MiB per host")
        return ssh_row, scp_row

    # ---- one tool, one workload

    def cell(self, tool, row: Row, hosts: TestHosts, mode: str, before_each=None, after_each=None) -> bool:
        """Runs one measurement `runs` times (within the cell budget); False if it failed."""
        started = time.monotonic()
        count = len(hosts.hosts)
        slug = row.workload.replace(",", "").replace(" ", "-")
        for run in range(self.args.runs):
            if run > 0 and time.monotonic() - started > self.args.cell_budget:
                row.notes.append(f"stopped after {run} runs: over the {self.args.cell_budget:.0f} s budget")
                break
            if before_each:
                before_each()
            measurement = self.run(tool.command(mode, hosts, self.work, self.workload), f"{tool.name}-{slug}-{count}-run{run + 1}", hosts)
            row.measurements.append(measurement)
            for note in measurement.notes:
                # One "left N processes running" note per row is enough (the JSON has each run's).
                if not any(existing.startswith("left ") for existing in row.notes):
                    row.notes.append(note)
            if not measurement.ok:
                row.fail("timeout" if measurement.timed_out else "failed", measurement.first_error_line())
                return False
            if after_each:
                problem = after_each()
                if problem:
                    measurement.notes.append(problem)
                    if problem not in row.notes:
                        row.notes.append(problem)
        return True

    def webtier(self, tool, hosts: TestHosts, floor_ssh_row: Row, floor_scp_row: Row | None) -> None:
        count = len(hosts.hosts)
        names = [host.name for host in hosts.hosts]
        first = self.row(tool.name, FIRST_APPLY, count)
        nochange = self.row(tool.name, NO_CHANGE, count)
        check = self.row(tool.name, CHECK_EDITED, count)
        first.reference = _sum(floor_ssh_row.wall, floor_scp_row.wall if floor_scp_row else None)
        first.reference_name = "floor: ssh + scp"
        for row in (nochange, check):
            row.reference = floor_ssh_row.wall
            row.reference_name = "floor: ssh"
        problem = tool.unavailable()
        if problem:
            for row in (first, nochange, check):
                row.fail("unavailable", problem)
            return
        tool.prepare(hosts, self.work, self.workload)
        log(f"{tool.name}: web tier on {count} hosts")

        def converged() -> str | None:
            problems = state.verify_converged(names)
            return f"incomplete: {problems[0]} (+{len(problems) - 1} more)" if problems else None

        if not self.cell(tool, first, hosts, APPLY, before_each=self.clean_hosts, after_each=converged):
            for row in (nochange, check):
                row.fail("skipped", "first apply failed")
            return
        if first.notes and first.notes[0].startswith("incomplete"):
            first.status = "failed"

        snapshot: dict[str, state.Snapshot] = {}

        def take_snapshot() -> None:
            snapshot["before"] = state.snapshot(names)

        def unchanged(what: str):
            def check_unchanged() -> str | None:
                changed = state.changed_paths(snapshot["before"], state.snapshot(names))
                if changed:
                    return f"{what} changed {len(changed)} path(s), e.g. {changed[0]}"
                return None
            return check_unchanged

        paired = {nochange.workload: [], check.workload: []}

        def floor_before(row: Row):
            """A floor run right before each of the row's runs: the floor drifts with the
            machine's state over a bench run (1.07-1.40 s at 20 hosts in one afternoon), so
            the row is compared with floor runs taken next to its own."""

            def run_floor() -> None:
                if floor_ssh_row.wall is None:
                    return  # no floor in this bench run (--tools without floor)
                runs = paired[row.workload]
                slug = row.workload.replace(",", "").replace(" ", "-")
                measurement = self.run(floor_ssh(hosts), f"floor-ssh-{count}-before-{slug}-run{len(runs) + 1}", hosts)
                if measurement.ok:
                    runs.append(measurement.wall)

            return run_floor

        def pair_reference(row: Row) -> None:
            runs = paired[row.workload]
            if floor_ssh_row.wall is not None and runs:
                row.reference = statistics.median(runs)
                row.reference_name = "floor: ssh, paired"
                row.notes.append(
                    f"vs floor: median of {len(runs)} floor run(s) taken just before this row's runs "
                    f"({', '.join(f'{wall:.2f}' for wall in runs)} s)"
                )

        floor_before_nochange = floor_before(nochange)

        def snapshot_then_floor() -> None:
            take_snapshot()
            floor_before_nochange()

        self.cell(tool, nochange, hosts, APPLY, before_each=snapshot_then_floor, after_each=unchanged("no-change apply"))
        pair_reference(nochange)

        floor_before_check = floor_before(check)

        def edit_then_snapshot() -> None:
            state.edit_one_file(names)
            take_snapshot()
            floor_before_check()

        check_unchanged = unchanged("check mode")

        def check_outcome() -> str | None:
            problem = check_unchanged()
            if problem:
                return problem
            output = check.measurements[-1].log.read_text(errors="replace")
            return tool.missed_drift(output, count)

        self.cell(tool, check, hosts, CHECK, before_each=edit_then_snapshot, after_each=check_outcome)
        pair_reference(check)

    def clean_hosts(self) -> None:
        state.wipe()
        state.wipe_tool_caches(state.TEST_USER)

    # ---- scale

    def scale_point(self, tool, hosts: TestHosts, floor_ssh_row: Row, history: dict[str, tuple[int, float, float]]) -> None:
        """No-change apply at this fleet size, after an untimed first apply."""
        count = len(hosts.hosts)
        names = [host.name for host in hosts.hosts]
        row = self.row(tool.name, NO_CHANGE, count)
        row.reference = floor_ssh_row.wall
        row.reference_name = "floor: ssh"
        problem = tool.unavailable()
        if problem:
            row.fail("unavailable", problem)
            return
        previous = history.get(tool.name)
        if previous and tool.name not in MOP_TOOLS:
            last_hosts, last_first, last_nochange = previous
            predicted_run = last_nochange * count / last_hosts
            predicted_setup = last_first * count / last_hosts
            if predicted_run > self.args.scale_limit or predicted_setup > self.args.timeout:
                row.fail(
                    "skipped",
                    f"predicted {predicted_run:.0f} s per run and {predicted_setup:.0f} s to set up "
                    f"(linear from {last_hosts} hosts), over the {self.args.scale_limit:.0f} s limit",
                )
                return
        tool.prepare(hosts, self.work, self.workload)
        log(f"{tool.name}: no-change apply on {count} hosts (first apply to set up, not timed)")
        self.clean_hosts()
        setup = self.run(tool.command(APPLY, hosts, self.work, self.workload), f"{tool.name}-setup-{count}", hosts)
        if not setup.ok:
            row.fail("timeout" if setup.timed_out else "failed", "setup (first apply): " + setup.first_error_line())
            return
        problems = state.verify_converged(names)
        if problems:
            row.fail("failed", f"setup (first apply) incomplete: {problems[0]}")
            return
        snapshot: dict[str, state.Snapshot] = {}

        def take_snapshot() -> None:
            snapshot["before"] = state.snapshot(names)

        def check_unchanged() -> str | None:
            changed = state.changed_paths(snapshot["before"], state.snapshot(names))
            return f"no-change apply changed {len(changed)} path(s), e.g. {changed[0]}" if changed else None

        if self.cell(tool, row, hosts, APPLY, before_each=take_snapshot, after_each=check_unchanged) and row.wall:
            history[tool.name] = (count, setup.wall, row.wall)


def _sum(*values: float | None) -> float | None:
    if any(value is None for value in values):
        return None
    return sum(values)  # type: ignore[arg-type]


# ---------------------------------------------------------------- main


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench/run: error: needs root (mop-testhosts starts sshd daemons and a test user)\nhint: sudo bench/run", file=sys.stderr)
        return 1
    # A SIGTERM tears down like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.out / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    started = time.monotonic()
    try:
        testhosts, mop_binary, mop_problem = build(args, logs)
    except HostsError as error:
        print(f"bench/run: error: {error}", file=sys.stderr)
        return 1
    peer_problem = ensure_peers(args, logs)
    if peer_problem:
        log(f"peers: {peer_problem}; continuing without them")
    if mop_problem:
        log(f"mop: {mop_problem}; continuing without it")

    tools = []
    if "mop" in args.tools:
        tools.append(Mop(mop_binary, args.agent, mop_problem))
    if "mop-cache" in args.tools:
        tools.append(Mop(mop_binary, args.agent, mop_problem, cache=True))
    if "pyinfra" in args.tools:
        tools.append(Pyinfra(VENV_DIR / "bin", peer_problem))
    if "ansible" in args.tools:
        tools.append(Ansible(VENV_DIR / "bin", peer_problem))
    with_floor = "floor" in args.tools

    work = Path(tempfile.mkdtemp(prefix="mopbench-"))
    os.chmod(work, 0o755)  # the test user reads nothing here, but scp/ssh configs live here
    workload = generate.generate(work / "workload")
    bench = Bench(args, work, logs, workload)
    meta: dict[str, object] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["bench/run", *argv]),
        "machine": machine(),
        "versions": tool_versions(mop_binary),
        "hosts": args.hosts,
        "scale": args.scale,
        "runs": args.runs,
    }
    status = 0
    try:
        log(f"web tier on {args.hosts} hosts, {args.runs} run(s) each")
        with TestHosts(testhosts, args.hosts, work / f"hosts-{args.hosts}") as hosts:
            ssh_row, scp_row = _floor_or_none(bench, hosts, with_floor, with_scp=True)
            for tool in tools:
                bench.webtier(tool, hosts, ssh_row, scp_row)
        history: dict[str, tuple[int, float, float]] = {}
        for tool in tools:
            first = report._find(bench.rows, tool.name, FIRST_APPLY, args.hosts)
            nochange = report._find(bench.rows, tool.name, NO_CHANGE, args.hosts)
            if first and nochange and first.wall and nochange.wall:
                history[tool.name] = (args.hosts, first.wall, nochange.wall)
        for count in args.scale:
            if count == args.hosts:
                continue  # the web tier's no-change apply already measured this size
            log(f"scale: no-change apply on {count} hosts")
            with TestHosts(testhosts, count, work / f"hosts-{count}") as hosts:
                ssh_row, _ = _floor_or_none(bench, hosts, with_floor, with_scp=False)
                for tool in tools:
                    bench.scale_point(tool, hosts, ssh_row, history)
    except KeyboardInterrupt:
        log("interrupted: tearing down; the report covers what ran")
        status = 130
    except HostsError as error:
        log(f"error: {error}")
        status = 1
    except Exception:  # noqa: BLE001 - report what ran, then fail
        log("error: the harness failed:\n" + traceback.format_exc())
        status = 1
    finally:
        state.wipe()
        shutil.rmtree(work, ignore_errors=True)

    meta["duration_s"] = round(time.monotonic() - started)
    markdown = render(meta, bench.rows, args)
    (args.out / "latest.md").write_text(markdown)
    report.write_json(args.out / "latest.json", meta, bench.rows)
    print(markdown)
    log(f"wrote {args.out / 'latest.md'} and {args.out / 'latest.json'}; logs in {logs}")
    return status


def _floor_or_none(bench: Bench, hosts: TestHosts, with_floor: bool, with_scp: bool) -> tuple[Row, Row | None]:
    if with_floor:
        return bench.floor(hosts, with_scp)
    # Without the floor, ratios are left empty.
    return Row(FLOOR_SSH, "", len(hosts.hosts), 0), (Row(FLOOR_SCP, "", len(hosts.hosts), 0) if with_scp else None)


def render(meta: dict[str, object], rows: list[Row], args: argparse.Namespace) -> str:
    machine_info = meta["machine"]
    versions = meta["versions"]
    assert isinstance(machine_info, dict) and isinstance(versions, dict)
    lines = [
        f"# mop benchmark: {meta['date']}",
        "",
        f"`{meta['command']}` on {machine_info['cores']} cores ({machine_info['cpu']}), "
        f"{machine_info['memory']}, Linux {machine_info['kernel']}; took {meta['duration_s']} s.",
        "",
        "Versions: " + "; ".join(f"{name} `{value}`" for name, value in versions.items()) + ".",
        "",
        "Wall time is the median of the runs that succeeded; controller CPU (median) is user + "
        "system of the tool and every process it started, ssh included; peak RSS is the largest "
        "over the runs of the tool's own process only (mop without its ssh children, the main "
        "Python process for pyinfra and Ansible). \"vs floor\" divides by the floor's median "
        "at the same host count (first apply: by floor ssh + floor scp). All hosts are this "
        "machine: their sshd, sudo and remote work share its cores with the controller. "
        "See docs/benchmarks.md.",
        "",
        f"## Web tier on {args.hosts} hosts",
        "",
        report.table([row for row in rows if row.hosts == args.hosts]),
    ]
    scale_rows = [
        row
        for row in rows
        if row.workload in (NO_CHANGE, report.FLOOR_WORKLOAD[FLOOR_SSH])
        and row.tool != FLOOR_SCP
        and (row.hosts in args.scale or row.hosts == args.hosts)
    ]
    if args.scale:
        lines += [
            "## Scale: no-change apply",
            "",
            "\"above floor\" is the tool's median minus the floor's at the same size; "
            f"the {args.hosts}-host rows are the web tier's.",
            "",
            report.scale_table(scale_rows),
        ]
    for tool in [tool for tool in MOP_TOOLS if tool in args.tools]:
        lines += [
            f"## Targets for {tool}",
            "",
            report.targets(rows, args.hosts, args.scale, tool),
        ]
    return "\n".join(lines)
