"""The driver's profile in a real browser on a phone (390x844): register, plates (a refusal with the
rule and an example, then a good plate), the password change, both languages, nothing wider than the phone."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def _fits_the_phone(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_driver_on_a_phone_manages_plates_and_password_on_the_profile(live, phone):
    page = phone.page
    # A driver of its own: the demo driver's password stays as the other tests expect it.
    page.goto(f"{live.url}/register")
    page.fill("#email", "profile-phone@example.com")
    page.fill("#password", "first-pass-word")
    page.fill("#name", "李师傅")
    page.fill("#plate", "沪ａ·12345")  # full-width, with a dot: normalised
    page.click("form.stack button[type=submit]")
    page.wait_for_url(f"{live.url}/stations")

    page.click('nav.tabs a[href="/profile"]')  # the "我的" tab
    page.wait_for_selector("#plates")
    assert page.locator("html").get_attribute("lang") == "zh-Hans"
    assert page.locator(".plate-row .plate").all_inner_texts() == ["沪A12345"]
    assert _fits_the_phone(page)
    phone.shot("20-profile-zh-phone")

    page.fill("#plate", "ABC")
    page.click("#plate-form button[type=submit]")
    page.wait_for_selector("#plate-error")
    refusal = page.locator("#plate-error").inner_text()
    assert "省份简称" in refusal and "沪A12345" in refusal
    assert page.locator("#plate").input_value() == "ABC"  # what was typed stays
    assert _fits_the_phone(page)
    phone.shot("21-profile-plate-refused-zh-phone")

    page.fill("#plate", "沪ad12345")
    page.click("#plate-form button[type=submit]")
    page.wait_for_selector(".flash-ok")
    assert page.locator(".plate-row .plate").all_inner_texts() == ["沪A12345", "沪AD12345"]
    page.click('button[aria-label="删除 沪A12345"]')
    page.wait_for_selector(".flash-ok")
    assert page.locator(".plate-row .plate").all_inner_texts() == ["沪AD12345"]

    page.fill("#current_password", "first-pass-word")
    page.fill("#new_password", "second-pass-word")
    page.click("#password-form button[type=submit]")
    page.wait_for_selector(".flash-ok")
    assert "其他手机和应用上的登录已退出" in page.locator(".flash-ok").inner_text()
    phone.shot("22-profile-password-changed-zh-phone")

    page.click("form.lang button[value=en]")
    page.wait_for_selector("html[lang=en]")
    assert page.locator("h1").inner_text() == "My account"
    assert _fits_the_phone(page)
    phone.shot("23-profile-en-phone")

    # The new password logs in; the old one no longer does.
    page.click("nav.tabs button.linklike")  # log out
    page.goto(f"{live.url}/login?next=/profile")
    page.fill("#email", "profile-phone@example.com")
    page.fill("#password", "first-pass-word")
    page.click("form.stack button[type=submit]")
    page.wait_for_selector(".refusal")
    page.fill("#password", "second-pass-word")
    page.click("form.stack button[type=submit]")
    page.wait_for_url(f"{live.url}/profile")
