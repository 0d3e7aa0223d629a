"""CrowdSec's scenarios on the same web log, offline, for `ecomwatch evaluate-logs --crowdsec`.

CrowdSec (Debian's 1.4.6 package, unpacked by `make crowdsec` into `.tools/crowdsec/`, never
installed: its post-install step registers with CrowdSec's central API, which is unreachable
here) is run in replay mode (`crowdsec -dsn file://LOG -type nginx`) with a configuration of
its own in a temporary directory: the linux (date parsing, whitelists), nginx, base HTTP and
HTTP CVE collections from the hub the package ships (their parsers and scenarios copied where
`cscli` would link them, since `cscli` insists on downloading them), no central API, its local
API on a free loopback port. The IPs it alerted on are read from its SQLite database.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

from ecomwatch.testing_servers import free_port

# linux brings the date parser and whitelists every CrowdSec install has.
COLLECTIONS = (
    "crowdsecurity/linux",
    "crowdsecurity/nginx",
    "crowdsecurity/base-http-scenarios",
    "crowdsecurity/http-cve",
)
DEFAULT_ROOT = Path(".tools/crowdsec")


class CrowdSecMissing(RuntimeError):
    """CrowdSec is not unpacked where it was looked for."""


def _config(work: Path, port: int) -> str:
    return f"""common:
  daemonize: false
  log_media: file
  log_level: warning
  log_dir: {work}/log/
  working_dir: .
config_paths:
  config_dir: {work}/etc/
  data_dir: {work}/data/
  simulation_path: {work}/etc/simulation.yaml
  hub_dir: {work}/hub/
  index_path: {work}/hub/.index.json
  notification_dir: {work}/etc/notifications/
  plugin_dir: {work}/plugins/
crowdsec_service:
  acquisition_path: {work}/etc/acquis.yaml
  parser_routines: 1
db_config:
  type: sqlite
  db_path: {work}/data/crowdsec.db
api:
  client:
    credentials_path: {work}/etc/local_api_credentials.yaml
  server:
    listen_uri: 127.0.0.1:{port}
    profiles_path: {work}/etc/profiles.yaml
prometheus:
  enabled: false
"""


def _install(hub: Path, etc: Path) -> int:
    """Copy the collections' parsers and scenarios into the configuration; how many."""
    index = json.loads((hub / ".index.json").read_text())
    seen: set[tuple[str, str]] = set()

    def add(kind: str, name: str) -> None:
        if (kind, name) in seen:
            return
        seen.add((kind, name))
        item = index[kind][name]
        if kind == "collections":
            for part in ("parsers", "scenarios", "postoverflows", "collections"):
                for child in item.get(part) or []:
                    add(part, child)
            return
        source = Path(item["path"])
        stage = source.parts[1] if kind in ("parsers", "postoverflows") else ""
        target = etc / kind / stage / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(hub / source, target)

    for collection in COLLECTIONS:
        add("collections", collection)
    return sum(1 for kind, _ in seen if kind != "collections")


def crowdsec_flags(log: Path, root: Path = DEFAULT_ROOT) -> dict[str, set[str]]:
    """IP → the CrowdSec scenarios that alerted on it, replaying `log` (an access log)."""
    binary, cscli = root / "usr/bin/crowdsec", root / "usr/bin/cscli"
    if not binary.is_file():
        raise CrowdSecMissing(f"no CrowdSec at {root}: run `make crowdsec` (Debian's package)")
    with tempfile.TemporaryDirectory(prefix="ecomwatch-crowdsec-") as name:
        work = Path(name)
        etc = work / "etc"
        etc.mkdir()
        for item in ("patterns", "profiles.yaml", "simulation.yaml"):
            source = root / "etc/crowdsec" / item
            if source.is_dir():
                shutil.copytree(source, etc / item)
            else:
                shutil.copy(source, etc / item)
        (etc / "acquis.yaml").write_text("")
        shutil.copytree(root / "usr/share/crowdsec/hub", work / "hub")
        shutil.copytree(root / "usr/share/crowdsec/data", work / "data")
        (work / "log").mkdir()
        _install(work / "hub", etc)
        config = work / "config.yaml"
        config.write_text(_config(work, free_port()))
        credentials = etc / "local_api_credentials.yaml"
        subprocess.run(
            [str(cscli), "-c", str(config), "machines", "add", "-a", "-f", str(credentials)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        replay = subprocess.run(
            [str(binary), "-c", str(config), "-dsn", f"file://{log.resolve()}", "-type", "nginx"],
            capture_output=True, text=True, timeout=1800, check=False,
        )  # fmt: skip
        if replay.returncode != 0:
            raise RuntimeError(f"crowdsec failed on {log}: {replay.stderr[-2000:]}")
        with sqlite3.connect(work / "data" / "crowdsec.db") as db:
            rows = db.execute("SELECT source_value, scenario FROM alerts").fetchall()
    flagged: dict[str, set[str]] = {}
    for ip, scenario in rows:
        if ip:
            flagged.setdefault(ip, set()).add(scenario)
    return flagged


def compare(
    ours: set[str], theirs: dict[str, set[str]], bots: set[str], masked_theirs: set[str]
) -> dict[str, object]:
    """CrowdSec's figures beside ecomwatch's on one log (IPs)."""
    flagged = set(theirs)
    by_scenario: dict[str, int] = {}
    for scenarios in theirs.values():
        for scenario in scenarios:
            by_scenario[scenario] = by_scenario.get(scenario, 0) + 1
    caught = len(masked_theirs & bots)
    return {
        "flagged_ips": len(flagged),
        "both": len(flagged & ours),
        "only_ecomwatch": len(ours - flagged),
        "only_crowdsec": len(flagged - ours),
        "flagged_non_bot_ips": len(flagged - bots),
        "by_scenario": dict(sorted(by_scenario.items())),
        "masked_bots_flagged": caught,
        "masked_bots_flagged_share": round(caught / len(bots), 4) if bots else None,
    }


def crowdsec_score(log: Path, ours: set[str], bots: set[str], bot_lines: set[int],
                   root: Path = DEFAULT_ROOT) -> dict[str, object]:  # fmt: skip
    """CrowdSec on the log as logged and with the self-declared bots' user agents masked."""
    from ecomwatch.detect.evaluate_logs import write_masked

    theirs = crowdsec_flags(log, root)
    with tempfile.TemporaryDirectory(prefix="ecomwatch-masked-") as name:
        masked = Path(name) / "masked.log"
        write_masked(log, bot_lines, masked)
        masked_theirs = set(crowdsec_flags(masked, root))
    return compare(ours, theirs, bots, masked_theirs)
