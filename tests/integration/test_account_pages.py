"""The driver's account pages (profile, plates, password, reset link), the cancel confirmation step
and the opening hours' "Open 24 hours" confirmation, through Flask's test client with CSRF on.

The station is the factories' ``s1``; the clock is fixed at 2026-11-22 14:00 Shanghai.
"""
from __future__ import annotations

from html import unescape
import re

import pytest
from sqlalchemy import select

from chargeapp.db import models as m
from chargeapp.services import accounts
from tests.integration.test_pages import (
    CSRF, PASSWORD, book_via_page, log_in, make_account, post, token,
)
from tests.integration.test_manage_pages import _account as staff_account

pytestmark = pytest.mark.integration


@pytest.fixture
def app(app):
    app.config["WTF_CSRF_ENABLED"] = True
    return app


@pytest.fixture
def ann(session, clock, station):
    return make_account(session, clock)


@pytest.fixture
def logged_in(client, ann):
    assert log_in(client).status_code == 302
    return client


def text(r) -> str:
    return unescape(r.get_data(as_text=True))


def english(client, path="/profile"):
    post(client, "/language", {"lang": "en", "next": path}, page=path)


# -- the profile ---------------------------------------------------------------------------------


def test_the_profile_shows_the_account_and_its_plates_in_chinese_and_english(logged_in):
    html = text(logged_in.get("/profile"))
    assert "我的账号" in html and "ann@example.com" in html and "沪A12345" in html and "我的车牌" in html
    assert 'href="/profile" aria-current="page"' in html  # the "Me" tab
    english(logged_in)
    html = text(logged_in.get("/profile"))
    assert "My account" in html and "My plates" in html and "Change the password" in html


def test_the_profile_needs_a_login(client, station):
    r = client.get("/profile")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login?next=/profile")


def test_a_driver_renames_themselves_on_the_profile(logged_in, session, ann):
    r = post(logged_in, "/profile/name", {"name": " 王师傅 "}, page="/profile")
    assert r.status_code == 302
    assert session.get(m.User, ann.id).name == "王师傅"
    assert "名字已保存" in text(logged_in.get("/profile"))
    r = post(logged_in, "/profile/name", {"name": "x" * 101}, page="/profile")
    assert r.status_code == 422 and "名字最多 100 个字符" in text(r)


def test_a_plate_is_added_normalised_and_removed(logged_in, session, ann):
    r = post(logged_in, "/profile/plates", {"plate": "沪ａ·d1234 5"}, page="/profile")
    assert r.status_code == 302
    html = text(logged_in.get("/profile"))
    assert "车牌 沪AD12345 已登记" in html and "沪AD12345" in html
    r = post(logged_in, "/profile/plates/remove", {"plate": "沪AD12345"}, page="/profile")
    assert r.status_code == 302
    regs = {r.plate: r.valid_to for r in session.scalars(select(m.PlateRegistration)
                                                          .where(m.PlateRegistration.user_id == ann.id))}
    assert regs["沪AD12345"] is not None and regs["沪A12345"] is None  # ended, kept as history


@pytest.mark.parametrize("plate, zh, en", [
    ("ABC", "车牌第一位是省份简称", "A plate starts with a province's abbreviation"),
    ("沪A1234", "车牌为 7 位", "A plate has 7 characters"),
    ("沪A123456", "8 位新能源车牌", "new-energy plate has D or F third"),
    ("沪A1234警", "不能登记", "cannot be registered"),
])
def test_a_plate_off_the_format_is_refused_on_the_page_with_the_rule_and_an_example(logged_in, plate, zh, en):
    r = post(logged_in, "/profile/plates", {"plate": plate}, page="/profile")
    assert r.status_code == 422
    html = text(r)
    assert zh in html and "沪A12345" in html and f'value="{plate}"' in html  # what was typed stays
    english(logged_in)
    html = text(post(logged_in, "/profile/plates", {"plate": plate}, page="/profile"))
    assert en in html and "沪A12345" in html


def test_an_empty_or_duplicate_plate_says_why(logged_in):
    r = post(logged_in, "/profile/plates", {"plate": "  "}, page="/profile")
    assert r.status_code == 422 and "请填写您所开车辆的车牌，如 沪A12345" in text(r)
    r = post(logged_in, "/profile/plates", {"plate": "沪a12345"}, page="/profile")
    assert r.status_code == 409 and "这个车牌已经登记在您的账号下" in text(r)


def test_changing_the_password_keeps_this_browser_and_ends_every_other_session(app, logged_in, ann, session):
    other = app.test_client()
    assert log_in(other).status_code == 302
    r = post(logged_in, "/profile/password", {"current_password": "wrong-wrong", "new_password": "new-pass-word"},
             page="/profile")
    assert r.status_code == 422 and "当前密码不对" in text(r)
    r = post(logged_in, "/profile/password", {"current_password": PASSWORD, "new_password": "short"}, page="/profile")
    assert r.status_code == 422 and "新密码需 8 到 200 个字符" in text(r)
    r = post(logged_in, "/profile/password", {"current_password": PASSWORD, "new_password": "new-pass-word"},
             page="/profile")
    assert r.status_code == 302
    assert logged_in.get("/profile").status_code == 200  # this browser stays in
    assert other.get("/profile").status_code == 302  # the other one is logged out
    assert log_in(app.test_client(), password="new-pass-word").status_code == 302


# -- registration: the plate rule and the email format -----------------------------------------


def _register(client, **form):
    data = {"email": "bo@example.com", "password": PASSWORD, "name": "Bo", "plate": "", **form}
    return client.post("/register", data={**data, "csrf_token": token(client, "/register")})


def test_registration_refuses_a_plate_off_the_format_and_names_the_rule(client, station, session):
    r = _register(client, plate="ABC")
    assert r.status_code == 422 and "车牌第一位是省份简称，如 沪、粤：沪A12345。" in text(r)
    assert session.scalar(select(m.User).where(m.User.email == "bo@example.com")) is None
    r = _register(client, plate="沪a 12345d")
    assert r.status_code == 302
    assert session.scalar(select(m.PlateRegistration.plate)) == "沪A12345D"


def test_an_email_without_a_domain_is_a_wrong_format_with_an_example_in_both_languages(client, station):
    r = _register(client, email="a@b")
    assert r.status_code == 422 and "邮箱格式不对，应写成 name@example.com 这样" in text(r)
    english(client, "/register")
    r = _register(client, email="a@b")
    assert "The email address format is wrong: write it like name@example.com." in text(r)


# -- the reset link -------------------------------------------------------------------------------


def test_a_manager_issues_a_reset_link_the_driver_uses_once(app, client, session, clock, station, ann):
    staff = app.test_client()
    staff_account(session, clock, "boss@example.com", "manager", (station,))
    assert log_in(staff, email="boss@example.com").status_code == 302
    r = post(staff, "/manage/password-reset", {"email": "ann@example.com", "reason": ""},
             page="/manage/password-reset")
    assert r.status_code == 422  # a reason is required
    r = post(staff, "/manage/password-reset", {"email": "ann@example.com", "reason": "forgot it, at the desk"},
             page="/manage/password-reset")
    assert r.status_code == 200 and r.headers["Cache-Control"] == "private, no-store"
    link = re.search(r'id="reset-link" class="break" href="([^"]+)"', text(r)).group(1)
    path = link.split("://", 1)[1].split("/", 1)[1]
    path = "/" + path
    assert session.scalar(select(m.AuditEntry.action).order_by(m.AuditEntry.id.desc())) == "user.reset_link"

    page = client.get(path)
    assert page.status_code == 200 and "ann@example.com" in text(page) and "设置新密码" in text(page)
    csrf = CSRF.search(text(page)).group(1)
    r = client.post(path, data={"new_password": "brand-new-pass", "csrf_token": csrf})
    assert r.status_code == 302 and r.headers["Location"] == "/profile"
    assert log_in(app.test_client(), password="brand-new-pass").status_code == 302
    again = client.get(path)
    assert again.status_code == 422 and "已经用过" in text(again)  # single use


def test_a_reset_link_expires_and_a_forged_one_is_refused(client, session, clock, station, ann, app):
    token_, _, _ = accounts.issue_reset_link(session, clock.now(), None, "ann@example.com", app.config["SECRET_KEY"])
    session.commit()
    clock.advance(hours=25)
    r = client.get(f"/reset-password/{token_}")
    assert r.status_code == 422 and "已过期" in text(r)
    r = client.get("/reset-password/forged.token")
    assert r.status_code == 422 and "无效" in text(r)


def test_a_manager_cannot_issue_a_link_for_another_manager_and_a_driver_not_at_all(app, session, clock, station,
                                                                                  logged_in):
    staff = app.test_client()
    staff_account(session, clock, "boss@example.com", "manager", (station,))
    staff_account(session, clock, "other@example.com", "manager", (station,))
    log_in(staff, email="boss@example.com")
    r = post(staff, "/manage/password-reset", {"email": "other@example.com", "reason": "x"},
             page="/manage/password-reset")
    assert r.status_code == 403 and "站长只能为司机生成重置链接" in text(r)
    r = post(staff, "/manage/password-reset", {"email": "nobody@example.com", "reason": "x"},
             page="/manage/password-reset")
    assert r.status_code == 404
    assert logged_in.get("/manage/password-reset").status_code == 403


def test_the_cli_prints_a_single_use_link(runner, session, station, ann):
    result = runner.invoke(args=["reset-password", "ann@example.com", "--base-url", "https://charge.example.cn/"])
    assert result.exit_code == 0, result.output
    assert re.search(r"^https://charge\.example\.cn/reset-password/\S+$", result.stdout, re.M)
    assert runner.invoke(args=["reset-password", "nobody@example.com"]).exit_code == 1


# -- confirming what cannot be undone ------------------------------------------------------------


def test_cancelling_a_booking_asks_first_and_a_post_without_confirmation_cancels_nothing(logged_in, session):
    location = book_via_page(logged_in).headers["Location"]
    booking_id = int(location.rsplit("/", 1)[1])
    html = text(logged_in.get(location))
    assert f'href="/bookings/{booking_id}/cancel"' in html  # a link to the step, not a one-tap POST
    step = logged_in.get(f"/bookings/{booking_id}/cancel")
    assert step.status_code == 200
    assert "确定取消这个预约？" in text(step) and "取消后无法撤销" in text(step) and "现在取消免费" in text(step)
    r = post(logged_in, f"/bookings/{booking_id}/cancel", page=location)
    assert r.status_code == 200 and "确定取消这个预约？" in text(r)
    assert session.get(m.Booking, booking_id).status == "booked"
    r = post(logged_in, f"/bookings/{booking_id}/cancel", {"confirm": "yes"}, page=location)
    assert r.status_code == 302 and session.get(m.Booking, booking_id).status == "cancelled"
    assert logged_in.get(f"/bookings/{booking_id}/cancel").status_code == 302  # nothing left to confirm


@pytest.fixture
def manager(app, session, clock, station):
    staff_account(session, clock, "boss@example.com", "manager", (station,))
    client = app.test_client()
    assert log_in(client, email="boss@example.com").status_code == 302
    return client


def test_saving_both_opening_times_empty_asks_to_confirm_open_24_hours(manager, session, station):
    post(manager, "/manage/s1/hours", {"opens_at": "07:00", "closes_at": "23:00"}, page="/manage/")
    r = post(manager, "/manage/s1/hours", {"opens_at": "", "closes_at": ""}, page="/manage/")
    assert r.status_code == 422 and "两个时间都是空的" in text(r)
    session.refresh(station)
    assert station.opens_at.hour == 7  # unchanged
    r = post(manager, "/manage/s1/hours", {"opens_at": "07:00", "closes_at": "23:00", "around_the_clock": "yes"},
             page="/manage/")
    assert r.status_code == 422 and "取消勾选" in text(r)
    r = post(manager, "/manage/s1/hours", {"opens_at": "", "closes_at": "", "around_the_clock": "yes"},
             page="/manage/")
    assert r.status_code == 302
    session.refresh(station)
    assert station.opens_at is None and station.closes_at is None
    html = text(manager.get("/manage/s1/rules"))
    assert 'name="around_the_clock" type="checkbox" value="yes" checked' in html
