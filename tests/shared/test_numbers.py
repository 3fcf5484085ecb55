"""The dialled number: the user part of the SIP To header, in E.164."""

from __future__ import annotations

import pytest

from shared.numbers import dialled_number, to_e164


@pytest.mark.parametrize(
    ("header", "number"),
    [
        ("sip:+18005551212@sip.example.com", "+18005551212"),
        ("sip:+1 (800) 555-1212@sip.example.com", "+18005551212"),
        ("<sip:+18005551212@sip.example.com>;tag=as5f3", "+18005551212"),
        ('"Sales" <sips:+61468002102@pstn.twilio.com;user=phone>;tag=1', "+61468002102"),
        ("tel:+1-800-555-1212", "+18005551212"),
        ("tel:+1.800.555.1212;phone-context=example.com", "+18005551212"),
        ("<tel:+18005551212>", "+18005551212"),
        ("sip:0018005551212@sip.example.com", "+18005551212"),
        ("sip:18005551212@sip.example.com", "+18005551212"),
        ("sip:%2B18005551212@sip.example.com", "+18005551212"),
        ("SIP:+18005551212@SIP.EXAMPLE.COM", "+18005551212"),
    ],
)
def test_the_forms_carriers_write_normalise_to_one_number(header: str, number: str) -> None:
    assert dialled_number(header) == number


@pytest.mark.parametrize(
    "header",
    [None, "", "sip:support@sip.example.com", "<sip:sip.example.com>", "garbage", "sip:+1@x",
     "sip:+0123456789@x", "sip:+1234567890123456@x"],
)  # fmt: skip
def test_anything_not_clearly_a_number_is_none(header: str | None) -> None:
    assert dialled_number(header) is None


def test_e164_of_profile_numbers() -> None:
    assert to_e164("+61 468 002 102") == "+61468002102"
    assert to_e164("not a number") is None


@pytest.mark.parametrize(
    "number", ["+٦١٤٦٨٠٠٢١٠٢", "+61468002102\u0663", "+\uff16\uff11\uff14\uff16\uff18"], ids=repr
)
def test_digits_of_other_scripts_are_not_a_number(number: str) -> None:
    """Validated strings are matched whole, in ASCII: `\\d` alone takes Arabic-Indic digits."""
    assert to_e164(number) is None
