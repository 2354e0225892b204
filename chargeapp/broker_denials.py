"""``chargeapp broker-denials``: count the publishes the broker refused, from Mosquitto's log.

A publish the ACL denies never reaches the bridge, and an MQTT 3.1.1 device gets
a success PUBACK for it (an MQTT 5 device gets reason 0x87, Not authorized), so
the broker's log is the only place it shows. Mosquitto 2.0.11 logs it only with
``log_type debug`` (the shipped deploy/mosquitto/mosquitto.conf has it), as

    Denied PUBLISH from s1.F1 (d0, q1, r0, m3, 'stations/s1/chargers/F2/meter', ... (52 bytes))

and its ``$SYS`` topics count a denied publish as received like any other (no
counter of denials). This command reads log lines (files, or standard input:
``journalctl -u mosquitto -o cat | chargeapp broker-denials``), prints the
denials by client and topic, and with ``--textfile`` adds them to cumulative
counters in a Prometheus text file for node_exporter's textfile collector, so an
operator can alert on them (docs/deploy.md, "Refused publishes"). Fed with
``journalctl --cursor-file`` each line is read once, so the counters never count
a line twice.
"""
from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Iterable

import click

DENIED = re.compile(r"Denied PUBLISH from (?P<client>.+?) \(d\d+, q\d+, r\d+, m\d+, '(?P<topic>.*)', "
                    r"\.\.\. \(\d+ bytes\)\)\s*$")
TOTAL = "chargeapp_broker_denied_publishes_total"
BY_CLIENT = "chargeapp_broker_denied_publishes_by_client_total"
LAST_RUN = "chargeapp_broker_denials_last_run_timestamp_seconds"
_SAMPLE = re.compile(r'^(?P<name>[a-z_]+)(?:\{client="(?P<client>(?:[^"\\]|\\.)*)"\})? (?P<value>\S+)$')


def count_denials(lines: Iterable[str]) -> Counter:
    """(client, topic) -> how many "Denied PUBLISH" lines name them."""
    out: Counter = Counter()
    for line in lines:
        if "Denied PUBLISH" in line:
            match = DENIED.search(line)
            if match:
                out[(match["client"], match["topic"])] += 1
    return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value)


def read_textfile(path: Path) -> tuple[int, Counter]:
    """The totals a previous run wrote: (all clients, per client); nothing when the file is absent."""
    total, clients = 0, Counter()
    if not path.exists():
        return total, clients
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        if match["name"] == TOTAL:
            total = int(float(match["value"]))
        elif match["name"] == BY_CLIENT and match["client"] is not None:
            clients[_unescape(match["client"])] = int(float(match["value"]))
    return total, clients


def write_textfile(path: Path, total: int, clients: Counter, now: float) -> None:
    """Write the counters atomically (a temporary file renamed), as node_exporter's textfile collector wants."""
    lines = [f"# HELP {TOTAL} Publishes the MQTT broker refused (ACL), counted from its log by chargeapp broker-denials",
             f"# TYPE {TOTAL} counter", f"{TOTAL} {total}",
             f"# HELP {BY_CLIENT} Publishes the MQTT broker refused (ACL), by client id (= username)",
             f"# TYPE {BY_CLIENT} counter"]
    lines += [f'{BY_CLIENT}{{client="{_escape(client)}"}} {n}' for client, n in sorted(clients.items())]
    lines += [f"# HELP {LAST_RUN} When chargeapp broker-denials last read the broker's log", f"# TYPE {LAST_RUN} gauge",
              f"{LAST_RUN} {now:.3f}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


@click.command("broker-denials")
@click.argument("logs", nargs=-1, type=click.File("r", encoding="utf-8", errors="replace"))
@click.option("--textfile", type=click.Path(dir_okay=False, path_type=Path),
              help="Add the counts to the counters in this Prometheus text file (node_exporter's textfile "
                   "collector), written atomically.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.option("--quiet", is_flag=True, help="Print nothing (with --textfile, from a timer).")
def broker_denials_command(logs, textfile, as_json, quiet):
    """Count the publishes Mosquitto refused ("Denied PUBLISH" lines of its log, which needs log_type debug) by
    client and topic. LOGS are log files; none or "-": standard input, for example
    journalctl -u mosquitto -o cat --cursor-file=FILE | chargeapp broker-denials --textfile FILE.prom"""
    counts: Counter = Counter()
    for log in logs or (sys.stdin,):
        counts.update(count_denials(log))
    if textfile is not None:
        total, clients = read_textfile(textfile)
        for (client, _), n in counts.items():
            clients[client] += n
        write_textfile(textfile, total + sum(counts.values()), clients, time.time())
    if quiet:
        return
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if as_json:
        click.echo(json.dumps({"total": sum(counts.values()), "denials": [
            {"client": client, "topic": topic, "count": n} for (client, topic), n in rows]}, ensure_ascii=False))
        return
    for (client, topic), n in rows:
        click.echo(f"{n:8d}  {client}  {topic}")
    click.echo(f"{sum(counts.values())} denied publish(es) from {len({c for c, _ in counts})} client(s)")
