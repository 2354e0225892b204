"""Licence plates: how one is written down, and which a driver may register.

Two rules, kept apart on purpose:

- ``normalise_plate`` is what every plate goes through (a gate's reading, a manager's
  fix, a driver's registration): NFKC (full-width letters and digits become ASCII),
  spaces and the separators · • ・ - . 。 _ removed, latin letters upper-cased, CJK kept.
  It refuses only what is not a plate at all (empty, longer than 64), because a gate
  must record whatever its camera read.
- ``registrable_plate`` is the stricter rule for a plate a driver registers (free
  parking depends on it): a mainland plate of the GA 36 format, ordinary or
  new-energy. Each refusal names the rule broken and gives an example.

Ordinary plate, 7 characters: province abbreviation, the issuing office's letter, 5
letters or digits (沪A12345). New-energy plate, 8 characters (沪AD12345, 沪A12345D):
small cars have D (electric) or F (other new energy) third, then a letter or digit and
4 digits; large vehicles have 5 digits and then D or F. Letters never include I or O
(they read as 1 and 0).

Special plates are refused (docs/rules.md, "Plates"): police 警, driving-school 学,
trailer 挂, embassy 使 and consulate 领, Hong Kong and Macau 港/澳 and military plates.
The app is for taxi, ride-hailing and van drivers, whose cars carry ordinary or
new-energy plates; a special vehicle's parking is settled by the station's staff.
"""
from __future__ import annotations

import unicodedata

from chargeapp.domain.errors import InvalidRequest

PLATE_MAX = 64  # what a gate reading may be (a registered plate is 7 or 8 characters)
PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I, no O
DIGITS = "0123456789"
NEW_ENERGY_MARKS = "DF"  # D: battery electric; F: other new energy (plug-in hybrid, fuel cell)
SPECIAL_LAST = "警学挂领港澳"  # a 7th character that marks a special plate
SPECIAL_FIRST = "使"  # embassy plates start with it
MILITARY_PREFIXES = ("WJ",)  # armed police; other military plates start with a latin letter (no province)
EXAMPLE = "沪A12345"
NEW_ENERGY_EXAMPLES = ("沪AD12345", "沪A12345D")
_SEPARATORS = set(" \t\r\n\u00b7\u2022\u30fb\u3002-._")


class InvalidPlate(InvalidRequest):
    """A plate has 1 to 64 characters once spaces and separators are removed."""

    code = "invalid_plate"


class PlateNotRegistrable(InvalidRequest):
    """That plate cannot be registered."""

    code = "plate_not_registrable"


class PlateProvinceMissing(PlateNotRegistrable):
    """A plate starts with a province's abbreviation, such as 沪 or 粤: 沪A12345."""

    code = "plate_province"


class PlateOfficeLetterMissing(PlateNotRegistrable):
    """The second character of a plate is a letter (A-Z, not I or O): 沪A12345."""

    code = "plate_office_letter"


class PlateLengthWrong(PlateNotRegistrable):
    """A plate has 7 characters (沪A12345), or 8 on a new-energy car (沪AD12345 or 沪A12345D)."""

    code = "plate_length"


class PlateSerialWrong(PlateNotRegistrable):
    """After the province and the letter come 5 letters or digits (no I or O): 沪A12345."""

    code = "plate_serial"


class PlateNewEnergyWrong(PlateNotRegistrable):
    """An 8-character new-energy plate has D or F third and 5 more letters or digits ending in 4 digits
    (small car: 沪AD12345), or 5 digits and then D or F (large vehicle: 沪A12345D)."""

    code = "plate_new_energy"


class PlateSpecial(PlateNotRegistrable):
    """Police (警), driving-school (学), trailer (挂), embassy (使), consulate (领), Hong Kong or Macau (港/澳)
    and military plates cannot be registered: register the ordinary or new-energy plate of the car you
    drive for work, such as 沪A12345 or 沪AD12345."""

    code = "plate_special"


def normalise_plate(plate: str) -> str:
    """The plate as stored: NFKC, spaces and separators (· • ・ - . 。 _) removed, a-z upper-cased, CJK unchanged.

    " 沪a·12345 " -> "沪A12345"; "沪Ａ１２３４５" -> "沪A12345". Raises InvalidPlate for empty or over 64 characters.
    """
    if not isinstance(plate, str):
        raise InvalidPlate(f"A plate is text, got {plate!r}.")
    text = unicodedata.normalize("NFKC", plate)
    out = "".join(c.upper() if "a" <= c <= "z" else c for c in text if c not in _SEPARATORS and not c.isspace())
    if not out or len(out) > PLATE_MAX:
        raise InvalidPlate(f"Not a plate: {plate[:80]!r}.", plate=plate[:80])
    return out


def _all_in(text: str, allowed: str) -> bool:
    return all(c in allowed for c in text)


def is_special(plate: str) -> bool:
    """True for a normalised plate that is police, school, trailer, diplomatic, HK/Macau or military."""
    return (plate[:1] == SPECIAL_FIRST or plate[-1:] in SPECIAL_LAST
            or plate.startswith(MILITARY_PREFIXES))


def registrable_plate(plate: str) -> str:
    """The normalised plate if a driver may register it (an ordinary or new-energy mainland plate).

    Raises InvalidPlate (empty), PlateSpecial, PlateProvinceMissing, PlateOfficeLetterMissing,
    PlateLengthWrong, PlateSerialWrong or PlateNewEnergyWrong, each with ``details["plate"]``.
    """
    p = normalise_plate(plate)
    if is_special(p):
        raise PlateSpecial(plate=p)
    if p[0] not in PROVINCES:
        raise PlateProvinceMissing(plate=p)
    if len(p) < 2 or p[1] not in LETTERS:
        raise PlateOfficeLetterMissing(plate=p)
    serial = p[2:]
    if len(p) == 7:
        if not _all_in(serial, LETTERS + DIGITS):
            raise PlateSerialWrong(plate=p)
        return p
    if len(p) == 8:
        small = (serial[0] in NEW_ENERGY_MARKS and serial[1] in LETTERS + DIGITS and _all_in(serial[2:], DIGITS))
        large = _all_in(serial[:5], DIGITS) and serial[5] in NEW_ENERGY_MARKS
        if not (small or large):
            raise PlateNewEnergyWrong(plate=p)
        return p
    raise PlateLengthWrong(plate=p, length=len(p))
