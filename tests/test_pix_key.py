"""PIX keys as people type them: detection, check digits, normalisation, bilingual refusals."""

from __future__ import annotations

import pytest

from server import pix, pix_key
from server.errors import Invalid
from server.payments.receiver import check_receiver


@pytest.mark.parametrize(
    ("typed", "kind", "stored"),
    [
        # CPF: bare or punctuated, check digits valid.
        ("12345678909", "cpf", "12345678909"),
        ("123.456.789-09", "cpf", "12345678909"),
        (" 529.982.247-25 ", "cpf", "52998224725"),
        # CNPJ: bare or punctuated.
        ("12345678000195", "cnpj", "12345678000195"),
        ("12.345.678/0001-95", "cnpj", "12345678000195"),
        # Phone: +55 spelled out, or missing where the digits can only be a phone.
        ("+55 11 91234-5678", "phone", "+5511912345678"),
        ("+5511912345678", "phone", "+5511912345678"),
        ("(11) 91234-5678", "phone", "+5511912345678"),
        ("11912345678", "phone", "+5511912345678"),  # the case: not a CPF
        ("5511912345678", "phone", "+5511912345678"),
        ("1133334444", "phone", "+551133334444"),  # a landline with its DDD
        ("+55 (21) 2345-6789", "phone", "+552123456789"),
        # E-mail: trimmed, lower case.
        ("Ana.Dev@Example.COM", "email", "ana.dev@example.com"),
        # Random key: any case, dashes optional.
        ("123E4567-E12B-12D1-A456-426655440000", "evp", "123e4567-e12b-12d1-a456-426655440000"),
        ("123e4567e12b12d1a456426655440000", "evp", "123e4567-e12b-12d1-a456-426655440000"),
    ],
)
def test_keys_are_detected_and_normalised(typed: str, kind: str, stored: str) -> None:
    key = pix_key.normalise(typed)
    assert (key.kind, key.key) == (kind, stored)
    # What is stored is what `pix.key_type` accepts as is, and a BR Code carries it.
    assert pix.key_type(key.key) == kind
    code = pix.build(pix.BrCode(key=key.key, merchant_name="Ana", merchant_city="Recife"))
    assert pix.parse(code).key == stored


@pytest.mark.parametrize(
    ("typed", "code", "en", "pt"),
    [
        ("123.456.789-00", "invalid_pix_key", "check digits are wrong", "não conferem"),
        ("12345678901", "invalid_pix_key", "check digits are wrong", "não conferem"),
        ("000.000.000-00", "invalid_pix_key", "check digits", "verificadores"),
        ("12.345.678/0001-99", "invalid_pix_key", "CNPJ's check digits", "CNPJ"),
        ("+1 415 555 0100", "invalid_pix_key", "start with +55", "+55"),
        ("+55 10 91234-5678", "invalid_pix_key", "area code", "DDD"),
        ("+55 11 81234-5678", "invalid_pix_key", "9 digits starting with 9", "celular"),
        ("1234567", "invalid_pix_key", "7 digits", "7 dígitos"),
        ("ana@example", "invalid_pix_key", "e-mail", "e-mail"),
        ("chave qualquer", "invalid_pix_key", "not a PIX key", "não é uma chave PIX"),
        ("   ", "invalid", "required", "obrigatória"),
    ],
)
def test_bad_keys_are_refused_in_both_languages(typed: str, code: str, en: str, pt: str) -> None:
    with pytest.raises(Invalid) as caught:
        pix_key.normalise(typed)
    err = caught.value
    assert err.code == code and err.field == "pix.key"
    assert err.messages is not None
    assert en in err.messages["en"] and pt in err.messages["pt-BR"], err.messages


def test_eleven_digits_that_are_both_a_cpf_and_a_phone_must_be_written_out() -> None:
    # 11 9xxxx-xxxx shape with valid CPF check digits: find one, then require punctuation.
    ambiguous = next(
        d
        for d in (f"119{n:06d}" for n in range(0, 1_000_000, 7))
        for d in [d + _digits(d)]
        if pix_key.cpf_ok(d)
    )
    with pytest.raises(Invalid) as caught:
        pix_key.normalise(ambiguous)
    assert caught.value.code == "ambiguous_pix_key"
    cpf = f"{ambiguous[:3]}.{ambiguous[3:6]}.{ambiguous[6:9]}-{ambiguous[9:]}"
    assert pix_key.normalise(cpf).kind == "cpf"
    assert pix_key.normalise("+55" + ambiguous).kind == "phone"


def _digits(nine: str) -> str:
    """The two CPF check digits of nine digits."""
    numbers = [int(c) for c in nine]
    for size in (9, 10):
        total = sum(n * w for n, w in zip(numbers, range(size + 1, 1, -1), strict=False))
        numbers.append(0 if total % 11 < 2 else 11 - total % 11)
    return "".join(map(str, numbers[9:]))


def test_receiver_normalises_key_and_cuts_the_city_with_a_warning() -> None:
    checked = check_receiver(
        {
            "key": "+55 11 91234-5678",
            "merchant_name": "Ana Dev",
            "merchant_city": "São José dos Campos",
        }
    )
    assert checked.receiver == {
        "key": "+5511912345678",
        "key_type": "phone",
        "merchant_name": "Ana Dev",
        "merchant_city": "SAO JOSE DOS CA",
    }
    [warning] = checked.warnings
    assert warning["field"] == "pix.merchant_city" and warning["code"] == "city_truncated"
    assert "SAO JOSE DOS CA" in warning["messages"]["en"]
    assert "SAO JOSE DOS CA" in warning["messages"]["pt-BR"]


def test_receiver_name_over_the_limit_names_the_field() -> None:
    with pytest.raises(Invalid) as caught:
        check_receiver({"key": "ana@example.com", "merchant_name": "A" * 26, "merchant_city": "X"})
    assert caught.value.field == "pix.merchant_name"
    assert caught.value.messages and "25" in caught.value.messages["pt-BR"]


def test_partial_receiver_checks_only_what_is_given() -> None:
    checked = check_receiver({"merchant_city": "Florianópolis"}, partial=True)
    assert checked.receiver == {"merchant_city": "FLORIANOPOLIS"} and checked.warnings == []
    checked = check_receiver({"key": "11912345678"}, partial=True)
    assert checked.receiver == {"key": "+5511912345678", "key_type": "phone"}
