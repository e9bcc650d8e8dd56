"""Controller-side files of the "web tier" workload, generated deterministically at run time.

The same bytes for every tool: 10 templates (in two dialects that differ only in how they name
the host: `{{ host.name }}` for mop and pyinfra, `{{ inventory_hostname }}` for Ansible),
10 files of 64 KiB and one file of 10 MiB. The binary files are pseudo-random (a seeded
generator), so no tool gains from compression, and identical across runs.

The policy, deploy and playbook that use these files are hand-written and committed:
`bench/workload/webtier.toml`, `bench/peers/pyinfra/deploy.py`, `bench/peers/ansible/webtier.yml`.

Usage as a script (to look at the files): python3 bench/workload/generate.py OUT_DIR
"""

from __future__ import annotations

import hashlib
import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

WORKLOAD_DIR = Path(__file__).resolve().parent

TEMPLATE_COUNT = 10
BLOB_COUNT = 10
BLOB_SIZE = 64 * 1024
BUNDLE_SIZE = 10 * 1024 * 1024
SHELL_COUNT = 5
# The subdirectories under each host's root; with the root itself these are the 5 directories.
SUBDIRECTORIES = ("conf", "data", "www", "run")
# Where everything lands on a host: BASE/<host name>/... (all hosts are this machine).
BASE = "/srv/mopbench"

# How each dialect names the host being configured.
HOST_NAME_EXPRESSION = {
    "jinja-host": "{{ host.name }}",  # mop, pyinfra
    "ansible": "{{ inventory_hostname }}",
}


@dataclass(frozen=True)
class Workload:
    """Where the generated files are, for one run."""

    root: Path  # holds webtier.toml, templates/, templates-ansible/, files/

    @property
    def mop_policy(self) -> Path:
        return self.root / "webtier.toml"

    @property
    def templates(self) -> Path:
        return self.root / "templates"

    @property
    def ansible_templates(self) -> Path:
        return self.root / "templates-ansible"

    @property
    def files(self) -> Path:
        return self.root / "files"

    def payload_files(self) -> list[Path]:
        """Every file a first apply ships to a host (what the scp floor copies)."""
        return (
            sorted(self.templates.glob("t*.j2"))
            + [self.files / f"blob{index}" for index in range(1, BLOB_COUNT + 1)]
            + [self.files / "bundle.bin"]
        )


def template_text(index: int, dialect: str) -> str:
    """One configuration template of about 2 KiB: host name, variables, a filter, filler."""
    host = HOST_NAME_EXPRESSION[dialect]
    lines = [
        f"# t{index}.conf for {host}: managed by the mop benchmark, do not edit",
        "[server]",
        f"name = {host}",
        f"listen = {{{{ listen_port + {index} }}}}",
        "workers = {{ workers }}",
        "upstreams = {{ upstreams | join(', ') }}",
        "",
        f"[tuning.t{index}]",
    ]
    for option in range(1, 41):
        digest = hashlib.sha256(f"t{index}-{option}".encode()).hexdigest()[:32]
        lines.append(f"option_{index}_{option} = {digest}")
    return "\n".join(lines) + "\n"


def pseudo_random_bytes(seed: str, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def generate(root: Path) -> Workload:
    """Writes the workload into `root` (created; an existing one is replaced)."""
    if root.exists():
        shutil.rmtree(root)
    workload = Workload(root)
    for directory in (workload.templates, workload.ansible_templates, workload.files):
        directory.mkdir(parents=True)
    for index in range(1, TEMPLATE_COUNT + 1):
        (workload.templates / f"t{index}.j2").write_text(template_text(index, "jinja-host"))
        (workload.ansible_templates / f"t{index}.j2").write_text(template_text(index, "ansible"))
    for index in range(1, BLOB_COUNT + 1):
        (workload.files / f"blob{index}").write_bytes(
            pseudo_random_bytes(f"blob{index}", BLOB_SIZE)
        )
    (workload.files / "bundle.bin").write_bytes(pseudo_random_bytes("bundle", BUNDLE_SIZE))
    # mop resolves `template` and `source` relative to the policy file's directory.
    shutil.copyfile(WORKLOAD_DIR / "webtier.toml", workload.mop_policy)
    return workload


def expected_tree(host: str) -> dict[str, int | None]:
    """What a converged host holds under BASE: relative path -> size (None for directories,
    -1 for files whose size depends on the host name)."""
    tree: dict[str, int | None] = {host: None}
    for sub in SUBDIRECTORIES:
        tree[f"{host}/{sub}"] = None
    for index in range(1, TEMPLATE_COUNT + 1):
        tree[f"{host}/conf/t{index}.conf"] = -1
    for index in range(1, BLOB_COUNT + 1):
        tree[f"{host}/data/blob{index}"] = BLOB_SIZE
    tree[f"{host}/www/bundle.bin"] = BUNDLE_SIZE
    for index in range(1, SHELL_COUNT + 1):
        tree[f"{host}/run/blob{index}.sum"] = -1
    return tree


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: generate.py OUT_DIR", file=sys.stderr)
        return 2
    workload = generate(Path(argv[1]))
    total = sum(path.stat().st_size for path in workload.payload_files())
    print(f"{workload.root}: {len(workload.payload_files())} payload files, {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
