"""Runs one command and measures it: wall time, controller CPU time, own peak RSS.

The harness does not run the command itself: it starts this file as a small probe
(`python3 measure.py --result FILE --timeout SECS -- ARGV...`), which
- becomes a child subreaper, so that processes the command leaves behind when their parent
  exits (ssh ControlPersist masters, `ssh -f` multiplexers) are reparented to the probe and not
  lost. The probe is not an ancestor of the test hosts' sshd, so nothing of the hosts' side
  (sshd sessions, sudo, the remote agent or Python modules) is ever counted;
- takes the wall time from just before spawning the command to its exit;
- takes CPU time as user + system of the command and its reaped descendants (`wait4`), plus,
  once the command has exited, the orphans it adopted: any still running get SIGTERM, all are
  reaped and their rusage is added;
- takes the command's own peak RSS from `VmHWM` in /proc/PID/status, sampled every 20 ms while
  it runs (a high-water mark only grows, so the last sample is the peak up to 20 ms before the
  exit). Children are excluded: mop's ssh processes, Ansible's forked workers.
  (`ru_maxrss` from `wait4` is not used: Linux folds in the image a process had before `exec`,
  and it includes reaped children.)
- writes the figures as JSON to FILE.

Standard library only; this file must run on its own (no package imports).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
SAMPLE_INTERVAL = 0.02
KILL_GRACE = 3.0


@dataclass
class Measurement:
    argv: list[str]
    wall: float
    cpu_user: float
    cpu_system: float
    own_peak_rss_kib: int | None
    exit_code: int
    timed_out: bool
    log: Path
    orphans: int = 0
    # Processes the command left running when it exited (terminated by the probe).
    left_running: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def cpu(self) -> float:
        return self.cpu_user + self.cpu_system

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def first_error_line(self) -> str:
        """The first line of the log that looks like an error, else its last non-empty line."""
        if self.timed_out:
            return f"timed out after {self.wall:.0f} s"
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return f"exit code {self.exit_code}"
        lines = [line.strip() for line in text.splitlines()[1:] if line.strip()]
        for line in lines:
            lowered = line.lower()
            if any(word in lowered for word in ("error", "fatal", "failed", "traceback")):
                return line[:200]
        return (lines[-1][:200] if lines else "") or f"exit code {self.exit_code}"


# ---------------------------------------------------------------- harness side


def run_measured(
    argv: list[str],
    *,
    log: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> Measurement:
    """Runs `argv` under the probe, with stdout and stderr into `log`, and returns the figures."""
    log.parent.mkdir(parents=True, exist_ok=True)
    result = log.with_suffix(".json")
    probe = [sys.executable, str(Path(__file__).resolve()), "--result", str(result)]
    if timeout is not None:
        probe += ["--timeout", str(timeout)]
    with open(log, "wb") as output:
        output.write(("$ " + " ".join(argv) + "\n").encode())
        output.flush()
        process = subprocess.Popen(
            [*probe, "--", *argv],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        process.wait()
    except BaseException:
        # Ctrl-C or SIGTERM in the harness: the probe takes its command and orphans down.
        process.send_signal(signal.SIGTERM)
        process.wait()
        raise
    try:
        figures = json.loads(result.read_text())
    except (OSError, ValueError):
        figures = {"wall": 0.0, "cpu_user": 0.0, "cpu_system": 0.0, "own_peak_rss_kib": None,
                   "exit_code": 127 if process.returncode == 0 else process.returncode,
                   "timed_out": False, "orphans": 0, "left_running": []}
    result.unlink(missing_ok=True)
    return Measurement(
        argv=argv,
        wall=figures["wall"],
        cpu_user=figures["cpu_user"],
        cpu_system=figures["cpu_system"],
        own_peak_rss_kib=figures["own_peak_rss_kib"],
        exit_code=figures["exit_code"],
        timed_out=figures["timed_out"],
        log=log,
        orphans=figures["orphans"],
        left_running=figures["left_running"],
    )


# ---------------------------------------------------------------- probe side


def _peak_rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _children() -> list[tuple[int, str, str]]:
    """(pid, state, command name) of the processes whose parent is this one (zombies too)."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                text = stat.read()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: split after the last `)`.
        fields = text[text.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == me:
            found.append((int(entry), fields[0], text[text.find("(") + 1 : text.rfind(")")]))
    return found


def _reap_orphans() -> tuple[int, list[str], float, float]:
    """Terminates and reaps every child left (all are orphans adopted from the command).

    Returns (orphans, names of those still running, user seconds, system seconds)."""
    children = _children()
    orphans = [pid for pid, _state, _name in children]
    running = [name for _pid, state, name in children if state not in ("Z", "X")]
    for pid in orphans:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    user = system = 0.0
    pending = set(orphans)
    deadline = time.monotonic() + KILL_GRACE
    while pending:
        for pid in list(pending):
            try:
                reaped, _status, usage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                pending.discard(pid)
                continue
            if reaped:
                pending.discard(pid)
                user += usage.ru_utime
                system += usage.ru_stime
        if pending:
            if time.monotonic() > deadline:
                for pid in pending:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                deadline = time.monotonic() + KILL_GRACE
            time.sleep(0.02)
    return len(orphans), running, user, system


def _kill_group(pgid: int) -> None:
    for number in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, number)
        except (ProcessLookupError, PermissionError):
            return
        if number == signal.SIGTERM:
            time.sleep(KILL_GRACE)


def probe(argv: list[str], result: Path, timeout: float | None) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("probe: warning: not a child subreaper; daemonised ssh masters are not counted", file=sys.stderr)
    stop = threading.Event()
    # The harness stops us with SIGTERM (Ctrl-C, timeout of its own): take the command along.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    start = time.perf_counter()
    try:
        process = subprocess.Popen(argv, start_new_session=True)
    except OSError as error:
        print(f"error: cannot run `{argv[0]}`: {error}", file=sys.stderr, flush=True)
        result.write_text(json.dumps({"wall": 0.0, "cpu_user": 0.0, "cpu_system": 0.0,
                                      "own_peak_rss_kib": None, "exit_code": 127,
                                      "timed_out": False, "orphans": 0, "left_running": []}))
        return 0
    peak: list[int | None] = [None]
    timed_out = threading.Event()
    finished = threading.Event()

    def sample() -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not finished.is_set():
            value = _peak_rss_kib(process.pid)
            if value is not None:
                peak[0] = value
            late = deadline is not None and time.monotonic() > deadline
            if (late or stop.is_set()) and not timed_out.is_set():
                timed_out.set()
                _kill_group(process.pid)
            finished.wait(SAMPLE_INTERVAL)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    finished.set()
    sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen from waiting
    if timed_out.is_set():
        _kill_group(process.pid)  # whatever of the group is still running
    orphans, running, orphan_user, orphan_system = _reap_orphans()
    result.write_text(json.dumps({
        "wall": wall,
        "cpu_user": usage.ru_utime + orphan_user,
        "cpu_system": usage.ru_stime + orphan_system,
        "own_peak_rss_kib": peak[0],
        "exit_code": process.returncode,
        "timed_out": timed_out.is_set(),
        "orphans": orphans,
        "left_running": sorted(running),
    }))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="measure one command (used by bench/run)")
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--timeout", type=float)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command")
    return probe(command, args.result, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
