"""Personal-data rules: what must be masked, and what must be left alone."""

import pytest

from gemmaforge.safety.pii import luhn_ok, mask


@pytest.mark.parametrize("text, rule, expected", [
    ("write to jane.doe+sft@mail.example.co.uk today", "email", "write to <EMAIL> today"),
    ("Contact: a_b-c.d@sub-domain.example.org.", "email", "Contact: <EMAIL>."),
    ("card 4111 1111 1111 1111 expires 09/27", "card_number", "card <CARD_NUMBER> expires 09/27"),
    ("pay with 5500-0000-0000-0004", "card_number", "pay with <CARD_NUMBER>"),
    ("amex 378282246310005", "card_number", "amex <CARD_NUMBER>"),
    ("call +1 (555) 123-4567 now", "phone", "call <PHONE> now"),
    ("office +44 20 7946 0958", "phone", "office <PHONE>"),
    ("ring 555-123-4567 or (555) 123 4567", "phone", "ring <PHONE> or <PHONE>"),
])
def test_masks_personal_data(text, rule, expected):
    assert mask(text) == (expected, [rule])


@pytest.mark.parametrize("text", [
    "card 4111 1111 1111 1112 fails the Luhn check",
    "order 12345678901234 shipped",  # 14 digits, Luhn fails
    "0000 0000 0000 0000",  # passes Luhn, but one repeated digit is no card
    "the year 2024, pi 3.14159265358979, date 2024-05-01, version 1.2.3",
    "ip 192.168.1.1 and port 8080",
    "an @mention and user@localhost are not addresses",
    "x = 12345 * 67890",
])
def test_leaves_other_text_alone(text):
    assert mask(text) == (text, [])


def test_several_rules_in_one_text():
    masked, fired = mask("mail bob@example.com, card 4111-1111-1111-1111, phone +33 1 23 45 67 89")
    assert masked == "mail <EMAIL>, card <CARD_NUMBER>, phone <PHONE>"
    assert fired == ["email", "card_number", "phone"]


def test_luhn():
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
