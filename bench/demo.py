"""`make demo`: one SIPREC call from the bundled sipp scenario against a running server (`make run`), then where
its recording went.

Reads the same config as the server (etc/siprec.yaml plus SIPREC__ variables) for the SIP port and recording dir.
Exits non-zero when sipp fails or no recording folder appeared.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

from siprec.config import load_config
from siprec.srs.session import safe_name

REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "tests" / "sipp" / "siprec_basic.xml"
FINAL_WAIT_S = 10.0


def manifest_state(folder: Path) -> str | None:
    try:
        return str(json.loads((folder / "manifest.json").read_text()).get("state"))
    except (OSError, ValueError):
        return None


def main() -> int:
    config = load_config(os.environ.get("SIPREC_CONFIG", REPO / "etc" / "siprec.yaml"))
    sipp = shutil.which("sipp")
    if sipp is None:
        print("demo: sipp is not installed (Debian package sip-tester)", file=sys.stderr)
        return 2
    host = config.sip.advertised_host or ("127.0.0.1" if config.sip.host in ("0.0.0.0", "::") else config.sip.host)
    port = config.sip.udp_port
    token = secrets.token_hex(4)
    call_id = f"siprec-demo-{token}-1@127.0.0.1"
    cmd = [
        sipp, f"{host}:{port}", "-sf", str(SCENARIO), "-m", "1", "-i", "127.0.0.1",
        "-cid_str", f"siprec-demo-{token}-%u@%s", "-timeout", "20s", "-timeout_error", "-nostdin", "-trace_err",
    ]
    print(f"demo: placing one SIPREC call to {host}:{port} (Call-ID {call_id})")
    result = subprocess.run(cmd, cwd=Path(os.environ.get("TMPDIR", "/tmp")), capture_output=True, text=True, timeout=40)
    if result.returncode != 0:
        print(f"demo: sipp failed with exit code {result.returncode}:\n{result.stderr[-2000:]}", file=sys.stderr)
        return 1
    root = Path(config.recording.dir).resolve()
    folders = sorted(root.glob(f"*/{safe_name(call_id)}"))
    if not folders:
        print(f"demo: the call succeeded but no recording folder for it exists under {root}", file=sys.stderr)
        return 1
    folder = folders[-1]
    # The files are final once the manifest says so (a media worker or FLAC transcoding may take a moment).
    deadline = time.monotonic() + FINAL_WAIT_S
    while time.monotonic() < deadline and manifest_state(folder) not in ("completed", "interrupted"):
        time.sleep(0.05)
    print(f"demo: recording of {call_id} is in {folder}")
    print(f"demo: manifest state: {manifest_state(folder) or 'no manifest'}")
    for path in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        print(f"  {path.name}  ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
