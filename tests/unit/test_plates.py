"""Plates: how one is written down and which a driver may register (chargeapp.domain.plates)."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargeapp.domain import plates as p

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("typed, stored", [
    (" 沪a·12345 ", "沪A12345"),
    ("沪Ａ１２３４５", "沪A12345"),  # full-width letters and digits
    ("沪 A 12345", "沪A12345"),
    ("沪A.12345", "沪A12345"),
    ("沪A。12345", "沪A12345"),  # an ideographic full stop from a Chinese keyboard
    ("沪A・12345", "沪A12345"),
    ("粤b-d1234 5", "粤BD12345"),
    ("沪ad12345", "沪AD12345"),
])
def test_a_plate_is_stored_half_width_upper_case_without_spaces_or_dots(typed, stored):
    assert p.normalise_plate(typed) == stored


@pytest.mark.parametrize("typed", ["", "  ", " · ", "x" * 65])
def test_nothing_or_far_too_much_is_not_a_plate(typed):
    with pytest.raises(p.InvalidPlate):
        p.normalise_plate(typed)


def test_a_gate_reading_that_is_no_mainland_plate_is_still_recorded():
    assert p.normalise_plate("ABC") == "ABC"  # the gate keeps what its camera read


@pytest.mark.parametrize("plate", [
    "沪A12345", "京N8P8F8", "粤B1234X", "川AQ2A45", "新A00001", "琼E12345",
])
def test_an_ordinary_plate_of_province_letter_and_five_letters_or_digits_is_registrable(plate):
    assert p.registrable_plate(plate) == plate


@pytest.mark.parametrize("plate", ["沪AD12345", "沪AF12345", "粤BDA1234", "浙AFK1234"])
def test_a_small_new_energy_plate_has_d_or_f_third(plate):
    assert p.registrable_plate(plate) == plate


@pytest.mark.parametrize("plate", ["沪A12345D", "沪A12345F"])
def test_a_large_new_energy_plate_ends_in_d_or_f(plate):
    assert p.registrable_plate(plate) == plate


def test_a_registrable_plate_is_normalised_first():
    assert p.registrable_plate(" 沪ａ·d1234 5 ") == "沪AD12345"


@pytest.mark.parametrize("plate, error", [
    ("ABC", p.PlateProvinceMissing),
    ("A12345", p.PlateProvinceMissing),
    ("X沪A12345", p.PlateProvinceMissing),
    ("沪112345", p.PlateOfficeLetterMissing),
    ("沪I12345", p.PlateOfficeLetterMissing),  # I reads as 1
    ("沪O12345", p.PlateOfficeLetterMissing),
    ("沪", p.PlateOfficeLetterMissing),
    ("沪A1234", p.PlateLengthWrong),
    ("沪A123456789", p.PlateLengthWrong),
    ("沪A1234O", p.PlateSerialWrong),  # O reads as 0
    ("沪A12中45", p.PlateSerialWrong),
    ("沪A123456", p.PlateNewEnergyWrong),  # 8 characters without D or F
    ("沪AX12345", p.PlateNewEnergyWrong),
    ("沪AD1234X", p.PlateNewEnergyWrong),  # a small NEV's last four are digits
    ("沪A1234DF", p.PlateNewEnergyWrong),
    ("沪A12D45F", p.PlateNewEnergyWrong),
])
def test_a_plate_off_the_format_is_refused_naming_the_rule(plate, error):
    with pytest.raises(error) as caught:
        p.registrable_plate(plate)
    assert caught.value.code.startswith("plate_")
    assert "沪A12345" in caught.value.message or "沪AD12345" in caught.value.message  # an example


@pytest.mark.parametrize("plate", [
    "沪A1234警", "沪A1234学", "沪A1234挂", "沪A1234领", "粤Z1234港", "粤Z1234澳", "使123456", "WJ0112345",
])
def test_special_plates_are_refused_with_the_reason(plate):
    with pytest.raises(p.PlateSpecial) as caught:
        p.registrable_plate(plate)
    assert "沪A12345" in caught.value.message and caught.value.details["plate"] == p.normalise_plate(plate)


def test_every_refusal_is_a_422_kind_with_a_stable_code():
    codes = {cls.code for cls in (p.PlateProvinceMissing, p.PlateOfficeLetterMissing, p.PlateLengthWrong,
                                  p.PlateSerialWrong, p.PlateNewEnergyWrong, p.PlateSpecial)}
    assert len(codes) == 6
    assert all(cls.kind == "invalid" for cls in p.PlateNotRegistrable.__subclasses__())


@given(st.sampled_from(p.PROVINCES), st.sampled_from(p.LETTERS),
       st.text(alphabet=p.LETTERS + p.DIGITS, min_size=5, max_size=5))
def test_every_province_letter_and_serial_makes_a_registrable_plate(province, letter, serial):
    plate = province + letter + serial
    assert p.registrable_plate(plate.lower()) == plate


@given(st.text(max_size=20))
def test_any_text_is_either_registrable_or_refused_as_invalid_never_a_crash(text):
    try:
        assert p.registrable_plate(text) == p.normalise_plate(text)
    except p.InvalidPlate:
        pass
    except p.PlateNotRegistrable:
        pass
