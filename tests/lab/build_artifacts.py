"""Build the lab's app artifacts: reproducible tarballs plus SHA256SUMS.

Good versions: app-1.0.0, app-1.1.0. Bad versions, named for their fault:
app-1.2.0-unhealthy (never ready), app-1.3.0-errors (~10% HTTP 500 on /,
/health stays 200), app-1.4.0-slowstart (ready only after a long delay),
app-1.5.0-leak (memory grows 16 MB/s), app-1.6.0-cpuburn (a thread spins a CPU core).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import tarfile
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent / "app"

# name -> (the version /version reports, behaviour). The version is the
# artifact name without "app-", so a release of `-e rollout_version=1.3.0-errors`
# can check that the host really runs what was deployed.
ARTIFACTS = {
    "app-1.0.0": ("1.0.0", {}),
    "app-1.1.0": ("1.1.0", {}),
    "app-1.2.0-unhealthy": ("1.2.0-unhealthy", {"unhealthy": True}),
    "app-1.3.0-errors": ("1.3.0-errors", {"error_rate": 0.1}),
    "app-1.4.0-slowstart": ("1.4.0-slowstart", {"startup_delay": 45}),
    "app-1.5.0-leak": ("1.5.0-leak", {"leak_mb_per_second": 16}),
    "app-1.6.0-cpuburn": ("1.6.0-cpuburn", {"cpu_burn": True}),
}


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 1_700_000_000  # fixed: same inputs give the same checksum
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def build(name: str, version: str, behavior: dict) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin",):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = 1_700_000_000
            tar.addfile(info)
        _add(tar, "bin/start", (APP_DIR / "bin" / "start").read_bytes(), 0o755)
        _add(tar, "bin/stop", (APP_DIR / "bin" / "stop").read_bytes(), 0o755)
        _add(tar, "app.py", (APP_DIR / "app.py").read_bytes(), 0o644)
        _add(tar, "VERSION", f"{version}\n".encode(), 0o644)
        _add(tar, "behavior.json", (json.dumps(behavior, sort_keys=True) + "\n").encode(), 0o644)
    import gzip
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("outdir", type=Path)
    args = p.parse_args()
    args.outdir.mkdir(parents=True, exist_ok=True)
    sums = []
    for name, (version, behavior) in ARTIFACTS.items():
        data = build(name, version, behavior)
        (args.outdir / f"{name}.tar.gz").write_bytes(data)
        sums.append(f"{hashlib.sha256(data).hexdigest()}  {name}.tar.gz")
    (args.outdir / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    print(f"built {len(ARTIFACTS)} artifacts in {args.outdir}")


if __name__ == "__main__":
    main()
