"""``python -m bench``: run every benchmark (or ``--only`` some), each next to its baseline; ``--smoke``: tiny sizes.

    python -m bench                          # full sizes, SQLite
    python -m bench --start-postgres         # SQLite, then a throw-away PostgreSQL (.ci/pg-start)
    python -m bench --postgres-url postgresql+psycopg://postgres@127.0.0.1:55432/postgres --backend postgresql
    python -m bench --smoke                  # every benchmark, tiny sizes, well under a minute (CI)
    python -m bench --only ingest,booking --json var/bench/run.json

Prints one line per benchmark and backend (figure, baseline, ratio, target met)
and writes every figure as JSON. Exit status 0 when every benchmark ran
(whether or not it met its target), 1 when one failed to run.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from datetime import datetime
from pathlib import Path

from bench.common import ROOT, Databases, Result, ThrowawayPostgres, dump, machine, say

BENCHMARKS = ("ingest", "latency", "booking", "reports", "memory")

FULL = {
    "ingest": {"sqlite": {"messages": 100_000}, "postgresql": {"messages": 50_000}},
    "latency": {"rates": [100, 250], "samples": 200, "load_chargers": 20, "bridge_args": []},
    "booking": {"connections": 16, "seconds": 30, "warmup": 3, "attackers": 8, "attack_seconds": 15,
                "fast_chargers": 10, "client_processes": 2},
    "reports": {"sqlite": {"days": 365, "chargers": 33, "sessions_per_day": 3, "repeats": 5},
                # Each service call is a round trip on PostgreSQL: half the year keeps the run near 5 minutes.
                "postgresql": {"days": 180, "chargers": 33, "sessions_per_day": 3, "repeats": 5}},
    "memory": {"seconds": 240, "rate": 150},
}
SMOKE = {
    "ingest": {"messages": 600},
    "latency": {"rates": [50], "samples": 10, "load_chargers": 5},
    "booking": {"connections": 4, "seconds": 2, "warmup": 0.5, "attackers": 4, "attack_seconds": 2,
                "fast_chargers": 4, "client_processes": 1},
    "reports": {"days": 3, "chargers": 6, "sessions_per_day": 2, "repeats": 1},
    "memory": {"seconds": 4, "rate": 50},
}


def sizes_for(name: str, backend: str, smoke: bool, overrides: dict) -> dict:
    table = SMOKE if smoke else FULL
    sizes = table[name]
    if backend in sizes and isinstance(sizes[backend], dict):
        sizes = sizes[backend]
    return {**sizes, **overrides.get(name, {})}


def run_one(name: str, backend: str, dbs: Databases, workdir: Path, sizes: dict) -> list[Result]:
    from bench import booking, ingest, live, reports

    fn = {"ingest": ingest.run, "latency": live.run_latency, "booking": booking.run, "reports": reports.run,
          "memory": live.run_memory}[name]
    return fn(backend, dbs, workdir, sizes)


def line(r: Result) -> str:
    """One summary line: the headline figure, the baseline, the ratio, met or not."""
    f, b = r.figures, r.baseline
    if r.error:
        return f"{r.name:<15} {r.backend:<10} FAILED: {r.error.splitlines()[-1][:150]}"
    if r.name == "bridge_ingest":
        what = f"bridge {f['bridge_msg_per_s']:,} msg/s vs bare {b['bare_msg_per_s']:,} msg/s, lost {f['lost']}"
    elif r.name == "live_latency":
        levels = ", ".join(f"{lv['meter_msg_per_s']}/s p50 {lv['p50_ms']} p99 {lv['p99_ms']} ms" for lv in f["levels"])
        what = f"unloaded p50 {b['p50_ms']} p99 {b['p99_ms']} ms; {levels}"
    elif r.name == "booking_api":
        what = (f"{f['per_second']} req/s p50 {f['p50_ms']} p99 {f['p99_ms']} ms vs no-database "
                f"{b['per_second']} req/s")
    elif r.name == "double_booking":
        what = (f"{f['overlapping_bookings_at_end']} overlapping (worst seen {f['worst_overlap_seen_while_running']}), "
                f"{f['won']} won of {f['booking_attempts']} attempts")
    elif r.name == "reports":
        what = f"report {f['report_median_ms']} ms vs bare read {b['bare_read_median_ms']} ms ({b['rows']:,} rows)"
    elif r.name == "memory":
        what = "; ".join(f"{n} peak {f[n].get('peak_mib')} MiB (idle {b[n].get('peak_mib')}, "
                         f"first {f[n].get('first_mib')} last {f[n].get('last_mib')})" for n in ("bridge", "web_worker"))
    else:
        what = json.dumps(f)[:150]
    met = {True: "met", False: "NOT met", None: "-"}[r.met]
    return f"{r.name:<15} {r.backend:<10} {what}; ratio {r.ratio}; target: {met}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the harness runs, measures nothing")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default=None,
                        help="default: sqlite, or both when a PostgreSQL is given")
    parser.add_argument("--postgres-url", help="a PostgreSQL server (any database on it): each benchmark creates its own")
    parser.add_argument("--start-postgres", action="store_true", help="start a throw-away PostgreSQL with .ci/pg-start")
    parser.add_argument("--json", type=Path, help="write every figure here (default var/bench/<mode>-<time>.json)")
    parser.add_argument("--set", action="append", default=[], metavar="BENCH.KEY=JSON",
                        help="override one size, e.g. --set ingest.messages=20000 --set latency.rates=[50,100]")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases)")
    args = parser.parse_args(argv)

    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    overrides: dict = {}
    for item in args.set:
        key, _, value = item.partition("=")
        bench, _, field = key.partition(".")
        if bench not in BENCHMARKS or not field:
            parser.error(f"--set {item}: use BENCH.KEY=VALUE")
        overrides.setdefault(bench, {})[field] = json.loads(value)
    backend = args.backend or ("both" if (args.postgres_url or args.start_postgres) else "sqlite")
    backends = ["sqlite", "postgresql"] if backend == "both" else [backend]

    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="chargeapp-bench-"))
    pg = None
    results: list[Result] = []
    meta = {**machine(), "mode": "smoke" if args.smoke else "full", "started": datetime.now().isoformat(timespec="seconds"),
            "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]), "workdir": str(workdir)}
    try:
        postgres_url = args.postgres_url
        if "postgresql" in backends and not postgres_url:
            if not args.start_postgres:
                parser.error("PostgreSQL needs --postgres-url or --start-postgres")
            pg = ThrowawayPostgres(workdir)
            postgres_url = pg.start()
        dbs = Databases(workdir, postgres_url)
        for be in backends:
            for name in only:
                sizes = sizes_for(name, be, args.smoke, overrides)
                say(f"[{name} on {be}] {json.dumps(sizes)}")
                started = time.monotonic()
                try:
                    got = run_one(name, be, dbs, workdir, sizes)
                except Exception as exc:  # noqa: BLE001 (one failing benchmark must not hide the others)
                    traceback.print_exc()
                    got = [Result(name, be, error=f"{type(exc).__name__}: {exc}", sizes=sizes)]
                for r in got:
                    r.seconds = round(time.monotonic() - started, 1)
                    say("  " + line(r))
                results.extend(got)
                dbs.drop_all()
    finally:
        if pg is not None:
            pg.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    out = args.json or ROOT / "var" / "bench" / f"{meta['mode']}-{datetime.now():%Y%m%d-%H%M%S}.json"
    dump(results, out, meta)
    print(f"\nmachine: {meta['nproc']} CPUs ({meta['cpu']}), Python {meta['python']}, SQLite {meta['sqlite']}, "
          f"Mosquitto {meta['mosquitto']}, PostgreSQL {meta['postgresql']}, load {meta['load_average']}")
    for r in results:
        print(line(r))
    print(f"figures: {out}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
