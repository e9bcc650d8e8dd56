"""The hosts' side of the workload, inspected and reset directly: every test host is this
machine, so "host7's /srv/mopbench/host7" is a local directory the harness (root) can read.

Used to make hosts clean before a first apply, to edit one file per host before check mode,
and to check each tool's work: a first apply must leave the full tree, a no-change apply and
a check run must leave every file untouched (same inode, size, mode and mtime).
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from workload import generate

BASE = Path(generate.BASE)
SCP_BASE = Path("/tmp/mopbench-scp")
EDITED_FILE = "conf/t1.conf"
EDIT_LINE = "# edited by hand on the host\n"
# The user mop-testhosts logs in as; its home is shared by every test host.
TEST_USER = "moptest"

Snapshot = dict[str, tuple[int, int, int, int]]


def wipe() -> None:
    """Clean hosts: nothing of the workload exists."""
    shutil.rmtree(BASE, ignore_errors=True)
    shutil.rmtree(SCP_BASE, ignore_errors=True)


def wipe_tool_caches(user: str) -> None:
    """What a tool keeps in the login user's home between runs, which a clean host lacks:
    mop's cached agents (`~/.mop/agent-*`) and Ansible's remote temp directory. mop's per-run
    work directories (`~/.mop/w-*`) are left alone: other runs (tests) may be using them."""
    import pwd

    try:
        home = Path(pwd.getpwnam(user).pw_dir)
    except KeyError:
        return
    for cached in (home / ".mop").glob("agent-*"):
        try:
            cached.unlink()
        except OSError:
            pass
    shutil.rmtree(home / ".ansible", ignore_errors=True)


def prepare_scp_targets(hosts: list[str], owner: str) -> None:
    """Per-host directories the scp floor copies into (scp cannot sudo)."""
    shutil.rmtree(SCP_BASE, ignore_errors=True)
    SCP_BASE.mkdir(mode=0o755)
    user = _uid_gid(owner)
    for host in hosts:
        directory = SCP_BASE / host
        directory.mkdir()
        os.chown(directory, *user)


def edit_one_file(hosts: list[str]) -> None:
    """Appends a line to one templated file on every host, as an operator's hand edit would."""
    for host in hosts:
        path = BASE / host / EDITED_FILE
        if not path.read_text(encoding="utf-8").endswith(EDIT_LINE):
            with open(path, "a", encoding="utf-8") as file:
                file.write(EDIT_LINE)


def snapshot(hosts: list[str]) -> Snapshot:
    entries: Snapshot = {}
    for host in hosts:
        root = BASE / host
        if not root.exists():
            continue
        for directory, _subdirs, files in os.walk(root):
            for name in [*files, ""]:
                path = os.path.join(directory, name) if name else directory
                info = os.lstat(path)
                entries[path] = (info.st_ino, info.st_size, info.st_mode, info.st_mtime_ns)
    return entries


def changed_paths(before: Snapshot, after: Snapshot) -> list[str]:
    """Paths added, removed or modified between two snapshots (directories count only when
    added, removed or re-moded: their mtime moves whenever a tool writes a temp file)."""
    changed = []
    for path in sorted(before.keys() | after.keys()):
        old, new = before.get(path), after.get(path)
        if old is None or new is None:
            changed.append(path)
        elif stat.S_ISDIR(new[2]):
            if old[2] != new[2]:
                changed.append(path)
        elif old != new:
            changed.append(path)
    return changed


def verify_converged(hosts: list[str]) -> list[str]:
    """What is missing or wrong after a first apply (empty when every host is complete)."""
    problems = []
    for host in hosts:
        for relative, size in generate.expected_tree(host).items():
            path = BASE / relative
            try:
                info = path.lstat()
            except FileNotFoundError:
                problems.append(f"{path} missing")
                continue
            if size is None:
                if not stat.S_ISDIR(info.st_mode):
                    problems.append(f"{path} is not a directory")
            elif not stat.S_ISREG(info.st_mode):
                problems.append(f"{path} is not a regular file")
            elif size >= 0 and info.st_size != size:
                problems.append(f"{path} has {info.st_size} bytes, expected {size}")
            elif size < 0 and info.st_size == 0:
                problems.append(f"{path} is empty")
            elif path.suffix == ".conf" and f"name = {host}\n" not in path.read_text(errors="replace"):
                problems.append(f"{path} does not name its host (template not rendered)")
    return problems


def _uid_gid(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid
