"""Update the page catalogs after changing a page's text: extract, merge, translate, compile.

    python -m chargeapp.translations.update [zh.json ...]

Each JSON file maps an English msgid (or ``"context\\x04msgid"``) to its Simplified
Chinese text; those entries are filled in (and their fuzzy flag dropped). Then the
catalogs are compiled, and every msgid still without a Chinese translation is listed
(exit status 1 if there is one), so nothing untranslated ships by accident.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ZH = HERE / "zh_Hans" / "LC_MESSAGES" / "messages.po"


def _pybabel(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", *args], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv: list[str]) -> int:
    _pybabel("extract", "-F", "babel.cfg", "-k", "_l", "-k", "lazy_pgettext:1c,2", "--no-location",
             "--sort-output", "-o", str(HERE / "messages.pot"), ".")
    _pybabel("update", "-i", str(HERE / "messages.pot"), "-d", str(HERE), "--no-fuzzy-matching")
    wanted: dict[str, str] = {}
    for name in argv:
        wanted.update(json.loads(Path(name).read_text(encoding="utf-8")))
    with ZH.open("rb") as f:
        catalog = read_po(f, locale="zh_Hans")
    missing = []
    for message in catalog:
        if not message.id:
            continue
        msgid = message.id[0] if isinstance(message.id, tuple) else message.id
        key = f"{message.context}\x04{msgid}" if message.context else msgid
        if key in wanted:
            text = wanted[key]
            message.string = tuple([text] * 1) if isinstance(message.id, tuple) else text
            message.flags.discard("fuzzy")
        if not (message.string[0] if isinstance(message.string, tuple) else message.string):
            missing.append(key)
    with ZH.open("wb") as f:
        write_po(f, catalog, width=0, omit_header=False, include_previous=False)
    _pybabel("compile", "-d", str(HERE))
    for key in missing:
        print("untranslated:", key.replace("\x04", " | "))
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
