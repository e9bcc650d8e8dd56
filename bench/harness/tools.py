"""The tools being compared, each as the command an operator would type for one run.

mop, pyinfra and Ansible run the same "web tier" workload (bench/workload/webtier.toml,
bench/peers/pyinfra/deploy.py, bench/peers/ansible/webtier.yml). The floor is what any SSH
push tool must pay at least: one handshake and one exec (`sudo -n true`) per host, all hosts
in parallel; for the first apply also the time to copy the same bytes with one `scp` per host.
"""

from __future__ import annotations

import os
import re
import shlex
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from workload.generate import Workload

from .hosts import TestHosts

BENCH_DIR = Path(__file__).resolve().parent.parent
PEERS_DIR = BENCH_DIR / "peers"

APPLY = "apply"
CHECK = "check"


@dataclass
class Command:
    argv: list[str]
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    # Run after the command (not timed): e.g. remove a per-run directory.
    cleanup: list[Path] = field(default_factory=list)


def _environment(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"NO_COLOR": "1", "LC_ALL": "C.UTF-8", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


class Mop:
    """mop as installed (since issue 14 that caches the agent on the hosts), or with `cache`, as
    `mop-cache`: `-e mop_agent_cache=true` spelled out, the same setting as the default now."""

    def __init__(self, binary: Path | None, agent: Path | None, problem: str | None, cache: bool = False) -> None:
        self.name = "mop-cache" if cache else "mop"
        self.binary = binary
        self.agent = agent
        self.problem = problem
        self.cache = cache

    def unavailable(self) -> str | None:
        return self.problem

    def prepare(self, hosts: TestHosts, work: Path, workload: Workload) -> None:
        pass

    def command(self, mode: str, hosts: TestHosts, work: Path, workload: Workload) -> Command:
        assert self.binary is not None, "mop is available"
        argv = [
            str(self.binary),
            "push",
            str(workload.mop_policy),
            "--apply" if mode == APPLY else "--check",
            "-i",
            str(hosts.mop_inventory),
            "--forks",
            str(len(hosts.hosts)),
        ]
        if self.cache:
            argv += ["-e", "mop_agent_cache=true"]
        extra = {"MOP_AGENT_BIN": str(self.agent)} if self.agent else {}
        return Command(argv, cwd=workload.root, env=_environment(extra))

    def missed_drift(self, output: str, hosts: int) -> str | None:
        """Check mode must report a change on every host (the summary's `changed` column).
        Says nothing when the summary is not found (its format is mop's to change)."""
        rows = re.findall(r"^\S+\s+\d+\s+(\d+)\s+\d+\s+\d+\s+(?:yes|no)\b", output, re.MULTILINE)
        if not rows:
            return None
        found = sum(1 for value in rows if int(value) > 0)
        return None if found == hosts else f"reported the edited file on {found} of {hosts} hosts"


class Pyinfra:
    name = "pyinfra"

    def __init__(self, venv_bin: Path, problem: str | None) -> None:
        self.executable = venv_bin / "pyinfra"
        self.problem = problem
        self.inventory = Path()

    def unavailable(self) -> str | None:
        return self.problem

    def prepare(self, hosts: TestHosts, work: Path, workload: Workload) -> None:
        self.inventory = hosts.write_pyinfra_inventory(
            work / f"pyinfra_inventory_{len(hosts.hosts)}.py", workload.root
        )

    def command(self, mode: str, hosts: TestHosts, work: Path, workload: Workload) -> Command:
        # Apply: `-y` runs at once. Check: `--dry` without `-y` detects and prints the changes
        # (with `-y`, pyinfra skips change detection and `--dry` would check nothing).
        argv = [str(self.executable), "-y" if mode == APPLY else "--dry"]
        argv += [
            "--parallel",
            str(len(hosts.hosts)),
            str(self.inventory),
            str(PEERS_DIR / "pyinfra" / "deploy.py"),
        ]
        return Command(argv, cwd=BENCH_DIR, env=_environment({}))

    def missed_drift(self, output: str, hosts: int) -> str | None:
        """Check mode must report the edited template on every host."""
        match = re.search(r"^\s*template t1\.conf\s+(\d+)", output, re.MULTILINE)
        found = int(match.group(1)) if match else 0
        return None if found == hosts else f"reported the edited file on {found} of {hosts} hosts"


class Ansible:
    name = "ansible"

    def __init__(self, venv_bin: Path, problem: str | None) -> None:
        self.executable = venv_bin / "ansible-playbook"
        self.problem = problem
        self.inventory = Path()

    def unavailable(self) -> str | None:
        return self.problem

    def prepare(self, hosts: TestHosts, work: Path, workload: Workload) -> None:
        self.inventory = hosts.write_ansible_inventory(work / f"ansible_inventory_{len(hosts.hosts)}.ini")

    def command(self, mode: str, hosts: TestHosts, work: Path, workload: Workload) -> Command:
        argv = [
            str(self.executable),
            "-i",
            str(self.inventory),
            "--forks",
            str(len(hosts.hosts)),
            "-e",
            f"workload_dir={workload.root}",
            str(PEERS_DIR / "ansible" / "webtier.yml"),
        ]
        if mode == CHECK:
            argv.append("--check")
        # A fresh ControlPersist directory per run: every run pays its own handshakes, like
        # the other tools; the masters left behind are closed and counted by the harness.
        control_dir = Path(tempfile.mkdtemp(prefix="cp-", dir=work))
        env = {
            "ANSIBLE_CONFIG": str(PEERS_DIR / "ansible" / "ansible.cfg"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
            "ANSIBLE_HOME": str(work / "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": str(work / "ansible-local"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
        }
        return Command(argv, cwd=BENCH_DIR, env=_environment(env), cleanup=[control_dir])

    def missed_drift(self, output: str, hosts: int) -> str | None:
        """Check mode must report a change on every host (the recap's changed=)."""
        changed = re.findall(r"^\S+\s+: ok=\d+\s+changed=(\d+)", output, re.MULTILINE)
        found = sum(1 for value in changed if int(value) > 0)
        return None if found == hosts else f"reported the edited file on {found} of {hosts} hosts"


def _parallel_script(commands: list[list[str]]) -> list[str]:
    """One bash process that starts every command at once and fails if any of them fails."""
    lines = ["pids=()"]
    for command in commands:
        lines.append(" ".join(shlex.quote(part) for part in command) + " & pids+=($!)")
    lines.append('status=0; for pid in "${pids[@]}"; do wait "$pid" || status=1; done; exit $status')
    return ["bash", "-c", "\n".join(lines)]


def floor_ssh(hosts: TestHosts) -> Command:
    """N parallel `ssh HOST 'sudo -n true'`: one handshake and one exec per host."""
    config = str(hosts.ssh_config)
    return Command(
        _parallel_script([["ssh", "-F", config, host.name, "sudo -n true"] for host in hosts.hosts]),
        env=_environment({}),
    )


def floor_scp(hosts: TestHosts, workload: Workload, target_base: Path) -> Command:
    """N parallel `scp` of every file a first apply ships (templates, blobs, bundle)."""
    config = str(hosts.ssh_config)
    files = [str(path) for path in workload.payload_files()]
    return Command(
        _parallel_script(
            [
                ["scp", "-q", "-F", config, *files, f"{host.name}:{target_base / host.name}/"]
                for host in hosts.hosts
            ]
        ),
        env=_environment({}),
    )
