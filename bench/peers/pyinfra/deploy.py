"""The "web tier" benchmark workload as an idiomatic pyinfra 3 deploy (see docs/benchmarks.md).

Per host, all under sudo: 5 directories, 10 templated files, 10 files of 64 KiB and one of
10 MiB uploaded from the controller, 5 shell commands guarded by "creates" (pyinfra has no
`creates` argument: the idiom is a fact check while the deploy is planned).

The harness generates the controller-side files (bench/workload/generate.py) and an inventory
whose host data carries `workload_dir`; run it as
    pyinfra --parallel N -y INVENTORY.py bench/peers/pyinfra/deploy.py [--dry]
"""

from pathlib import Path

from pyinfra import config, host
from pyinfra.facts.files import File
from pyinfra.operations import files, server

config.SUDO = True

BASE = "/srv/mopbench"
TEMPLATE_VARS = {
    "listen_port": 8000,
    "workers": 4,
    "upstreams": ["10.0.0.11:8080", "10.0.0.12:8080", "10.0.0.13:8080"],
}

workload = Path(host.data.workload_dir)
root = f"{BASE}/{host.name}"

for directory in (root, f"{root}/conf", f"{root}/data", f"{root}/www", f"{root}/run"):
    files.directory(name=f"directory {directory}", path=directory, mode="755")

for index in range(1, 11):
    files.template(
        name=f"template t{index}.conf",
        src=str(workload / "templates" / f"t{index}.j2"),
        dest=f"{root}/conf/t{index}.conf",
        mode="644",
        **TEMPLATE_VARS,
    )

for index in range(1, 11):
    files.put(
        name=f"file blob{index}",
        src=str(workload / "files" / f"blob{index}"),
        dest=f"{root}/data/blob{index}",
        mode="644",
    )

files.put(
    name="file bundle.bin",
    src=str(workload / "files" / "bundle.bin"),
    dest=f"{root}/www/bundle.bin",
    mode="644",
)

for index in range(1, 6):
    checksum = f"{root}/run/blob{index}.sum"
    if not host.get_fact(File, path=checksum):
        server.shell(
            name=f"checksum blob{index}",
            commands=[f"sha256sum {root}/data/blob{index} > {checksum}"],
        )
