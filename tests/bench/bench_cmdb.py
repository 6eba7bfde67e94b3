"""Benchmark: 10,000 CMDB records → inventory. Prints one JSON object.

    .venv/bin/python tests/bench/bench_cmdb.py [--records 10000] [--no-cli] [--quick]

Measures, each as {"wall_s", "cpu_s"} (best of --repeat; YAML and the CLI once). On a loaded
machine wall time inflates; cpu_s is the work done:
  client_json / client_yaml   file backend: read + check + map, JSON and YAML exports
  plugin                      the inventory plugin filling ansible's InventoryData (groups, vars)
  plugin_constructed          the same with compose + keyed_groups (Jinja per host)
  rest_paginated              the NetBox backend over a local NetBox-shaped server, 1000 per page
  ansible_inventory_list      `ansible-inventory -i <config> --list` end to end (process start included)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / ".collections"))
sys.path.insert(0, str(REPO / "tests"))

# Ansible's collection loader, as tests/conftest.py installs it: the plugin loaded in-process
# finds its doc fragments by FQCN (sre.rollout.cmdb).
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder  # noqa: E402

_AnsibleCollectionFinder(paths=[str(REPO / ".collections")], scan_sys_paths=False)._install()

import yaml  # noqa: E402
from ansible.inventory.data import InventoryData  # noqa: E402
from ansible.parsing.dataloader import DataLoader  # noqa: E402
from ansible.plugins.loader import inventory_loader  # noqa: E402
from cmdb.fake_cmdb_server import FakeCmdb, netbox_vm  # noqa: E402

from ansible_collections.sre.rollout.plugins.inventory import cmdb as plugin_module  # noqa: E402
from ansible_collections.sre.rollout.plugins.module_utils._cmdb import (  # noqa: E402
    CmdbClient,
    CmdbQuery,
    FileBackend,
    RestBackend,
)

ZONES = ("zone-a", "zone-b", "zone-c")


def records(n: int) -> list[dict]:
    out = []
    for i in range(1, n + 1):
        rec = netbox_vm(i, f"host{i:05d}", app=f"app{i % 20}", env="prod" if i % 4 else "staging",
                        zone=ZONES[i % 3], status="active" if i % 50 else "offline")
        rec.pop("config_context")
        out.append(rec)
    return out


def best(fn, repeat: int) -> tuple[dict, object]:
    """Best-of-``repeat`` wall and CPU seconds (CPU includes child processes: the CLI run)."""
    walls, cpus, result = [], [], None
    for _unused in range(repeat):
        start, cpu0 = time.perf_counter(), _cpu()
        result = fn()
        walls.append(time.perf_counter() - start)
        cpus.append(_cpu() - cpu0)
    return {"wall_s": round(min(walls), 3), "cpu_s": round(min(cpus), 3)}, result


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def plugin_parse(config: Path) -> InventoryData:
    inventory_loader._load_config_defs("sre.rollout.cmdb", plugin_module, plugin_module.__file__)
    plugin = plugin_module.InventoryModule()
    plugin._load_name = "sre.rollout.cmdb"
    plugin._redirected_names = ["sre.rollout.cmdb"]
    data = InventoryData()
    plugin.parse(data, DataLoader(), str(config), cache=False)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-cli", action="store_true", help="skip the ansible-inventory subprocess")
    parser.add_argument("--quick", action="store_true", help="500 records, once: the CI run that keeps it working")
    args = parser.parse_args()
    if args.quick:
        args.records, args.repeat = 500, 1

    recs = records(args.records)
    result: dict[str, object] = {"records": args.records}
    with tempfile.TemporaryDirectory(prefix="bench-cmdb-") as tmp:
        tmpdir = Path(tmp)
        (tmpdir / "export.json").write_text(json.dumps({"virtual_machines": recs}))
        (tmpdir / "export.yml").write_text(yaml.safe_dump({"virtual_machines": recs}, default_flow_style=None))
        query = CmdbQuery(inactive="group")

        result["client_json"], res = best(
            lambda: CmdbClient(FileBackend(str(tmpdir / "export.json"))).hosts(query), args.repeat)
        result["active_hosts"], result["inactive_hosts"] = len(res.hosts), len(res.inactive)
        result["client_yaml"], _unused = best(
            lambda: CmdbClient(FileBackend(str(tmpdir / "export.yml"))).hosts(query), 1)

        plain = tmpdir / "plain.cmdb.yml"
        plain.write_text(yaml.safe_dump({"plugin": "sre.rollout.cmdb", "path": "export.json", "inactive": "group"}))
        result["plugin"], data = best(lambda: plugin_parse(plain), args.repeat)
        result["groups"] = len(data.groups)

        constructed = tmpdir / "constructed.cmdb.yml"
        constructed.write_text(yaml.safe_dump({
            "plugin": "sre.rollout.cmdb", "path": "export.json",
            "compose": {"ansible_user": "'deploy'"},
            "keyed_groups": [{"key": "cmdb_env", "prefix": "k_env"}]}))
        result["plugin_constructed"], _unused = best(lambda: plugin_parse(constructed), args.repeat)

        with FakeCmdb(recs) as fake:
            def rest():
                backend = RestBackend(fake.url, page_size=1000, retry_delay=0)
                return CmdbClient(backend).hosts(CmdbQuery()), backend.requests
            result["rest_paginated"], (res, requests) = best(rest, args.repeat)
            result["rest_requests"] = requests

        if not args.no_cli:
            env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
            cmd = [str(REPO / ".venv" / "bin" / "ansible-inventory"), "-i", str(plain), "--list"]

            def cli():
                run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=True)
                return len(json.loads(run.stdout)["_meta"]["hostvars"])

            result["ansible_inventory_list"], result["ansible_inventory_hosts"] = best(cli, 1)
    result["load_average_1m"] = round(os.getloadavg()[0], 2)
    result["cpus"] = os.cpu_count()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
