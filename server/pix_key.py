"""PIX receiver keys as people type them: detect the type, check it, and write it the way the DICT
(Banco Central's key directory) stores it.

The five key types: CPF (11 digits, two check digits), CNPJ (14 digits, two check digits), phone
(`+55`, a two-digit DDD, then 8 or 9 digits), e-mail (lower case, at most 77 characters) and the
random key (EVP, a lower-case UUID). People type `123.456.789-09`, `(11) 91234-5678` or
`+55 11 91234-5678`; the punctuation says which type they mean and is removed. Eleven bare digits
are either a CPF or a mobile number with its DDD: the check digits and the number's shape decide,
and when both fit the key is refused with a request to write it unambiguously, because a PIX sent to
the wrong key goes to someone else. Every refusal names the field and says what is wrong in
English and Portuguese (`server.errors.DomainError.messages`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from server.errors import Invalid

FIELD: Final = "pix.key"
EMAIL_MAX: Final = 77
# Brazilian area codes (DDD) in use.
_DDD_TEXT: Final = (
    "11 12 13 14 15 16 17 18 19 21 22 24 27 28 31 32 33 34 35 37 38 41 42 43 44 45 46 47 48 "
    "49 51 53 54 55 61 62 63 64 65 66 67 68 69 71 73 74 75 77 79 81 82 83 84 85 86 87 88 89 "
    "91 92 93 94 95 96 97 98 99"
)
DDDS: Final = frozenset(_DDD_TEXT.split())
KEY_TYPES: Final = ("cpf", "cnpj", "phone", "email", "evp")

_EMAIL_RE: Final = re.compile(
    r"[a-z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
    r"(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+"
)
_UUID_RE: Final = re.compile(
    r"([0-9a-f]{8})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{12})"
)
_NUMERIC_RE: Final = re.compile(r"\+?[0-9 .()/-]+")
_CPF_FORMATTED_RE: Final = re.compile(r"[0-9]{3}\.[0-9]{3}\.[0-9]{3}-[0-9]{2}")
_CNPJ_FORMATTED_RE: Final = re.compile(r"[0-9]{2}\.?[0-9]{3}\.?[0-9]{3}/[0-9]{4}-?[0-9]{2}")
# What the DICT stores, one pattern per type (the JSON Schema of a normalised key).
CANONICAL: Final = {
    "cpf": r"^[0-9]{11}$",
    "cnpj": r"^[0-9]{14}$",
    "phone": r"^\+55[1-9][0-9](?:9[0-9]{8}|[2-5][0-9]{7})$",
    "evp": r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    "email": r"^[a-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[a-z0-9.-]+\.[a-z0-9-]+$",
}


@dataclass(frozen=True, slots=True)
class PixKey:
    """A checked key: its type and the text that goes into the BR Code."""

    kind: str
    key: str


def _refuse(en: str, pt: str, code: str = "invalid_pix_key") -> Invalid:
    return Invalid(f"{FIELD}: {en}", code=code, field=FIELD, messages={"en": en, "pt-BR": pt})


def _check_digits_ok(digits: str, weights: list[list[int]]) -> bool:
    """The two mod-11 check digits of a CPF or CNPJ (`weights` for the first and the second)."""
    if len(set(digits)) == 1:  # 000.000.000-00 and the like pass the arithmetic but are void
        return False
    numbers = [int(c) for c in digits]
    body = len(digits) - 2
    for i, weight in enumerate(weights):
        total = sum(n * w for n, w in zip(numbers[: body + i], weight, strict=True))
        digit = 0 if total % 11 < 2 else 11 - total % 11
        if numbers[body + i] != digit:
            return False
    return True


def cpf_ok(digits: str) -> bool:
    return len(digits) == 11 and _check_digits_ok(
        digits, [list(range(10, 1, -1)), list(range(11, 1, -1))]
    )


def cnpj_ok(digits: str) -> bool:
    first = [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]
    return len(digits) == 14 and _check_digits_ok(digits, [first, [6, *first]])


def _national_phone(national: str) -> str | None:
    """`+55…` for a Brazilian number with its DDD (mobile: 9 + 8 digits; landline: 8 digits)."""
    if national[:2] not in DDDS:
        return None
    local = national[2:]
    if (len(local) == 9 and local[0] == "9") or (len(local) == 8 and local[0] in "2345"):
        return "+55" + national
    return None


def _phone(national: str) -> PixKey:
    phone = _national_phone(national)
    if phone is None:
        if national[:2] not in DDDS:
            raise _refuse(
                f"{national[:2]} is not a Brazilian area code (DDD); "
                "write the phone as +55, the DDD and the number.",
                f"{national[:2]} não é um DDD brasileiro; escreva o telefone como +55, DDD e número.",
            )
        raise _refuse(
            "A phone key is +55, the DDD and the number (9 digits starting with 9 for a mobile, "
            "8 for a landline), e.g. +55 11 91234-5678.",
            "A chave telefone é +55, DDD e número (9 dígitos começando com 9 para celular, 8 "
            "para fixo), por exemplo +55 11 91234-5678.",
        )
    return PixKey("phone", phone)


def _cpf(digits: str) -> PixKey:
    if not cpf_ok(digits):
        raise _refuse(
            "This CPF's check digits are wrong: check the number (a payment to a mistyped key "
            "goes nowhere, or to someone else).",
            "Os dígitos verificadores deste CPF não conferem: confira o número (um pagamento a "
            "uma chave errada não chega, ou vai para outra pessoa).",
        )
    return PixKey("cpf", digits)


def _cnpj(digits: str) -> PixKey:
    if len(digits) != 14 or not cnpj_ok(digits):
        raise _refuse(
            "This CNPJ's check digits are wrong: check the number.",
            "Os dígitos verificadores deste CNPJ não conferem: confira o número.",
        )
    return PixKey("cnpj", digits)


def _numeric(text: str) -> PixKey:
    digits = re.sub(r"[^0-9]", "", text)
    if text.startswith("+"):
        if not digits.startswith("55"):
            raise _refuse(
                "PIX phone keys are Brazilian numbers: they start with +55.",
                "Chaves PIX de telefone são números brasileiros: começam com +55.",
            )
        return _phone(digits[2:])
    if "/" in text or _CNPJ_FORMATTED_RE.fullmatch(text):
        return _cnpj(digits)
    if _CPF_FORMATTED_RE.fullmatch(text):
        return _cpf(digits)
    if "(" in text or ")" in text:
        return _phone(digits)
    if len(digits) == 11:
        as_cpf = cpf_ok(digits)
        as_phone = _national_phone(digits)
        if as_cpf and as_phone:
            raise _refuse(
                "These 11 digits could be a CPF or a mobile number: write a phone as "
                "+55 11 91234-5678, a CPF as 123.456.789-09.",
                "Estes 11 dígitos podem ser um CPF ou um celular: escreva o telefone como "
                "+55 11 91234-5678 e o CPF como 123.456.789-09.",
                code="ambiguous_pix_key",
            )
        if as_phone:
            return PixKey("phone", as_phone)
        return _cpf(digits)
    if len(digits) == 10:
        return _phone(digits)
    if len(digits) in (12, 13) and digits.startswith("55"):
        return _phone(digits[2:])
    if len(digits) == 14:
        return _cnpj(digits)
    raise _refuse(
        f"{len(digits)} digits are not a CPF (11), a CNPJ (14) or a phone (+55, DDD and number).",
        f"{len(digits)} dígitos não formam um CPF (11), um CNPJ (14) nem um telefone "
        "(+55, DDD e número).",
    )


def normalise(raw: object) -> PixKey:
    """The key's type and its canonical text, or `Invalid` (field `pix.key`) saying why not."""
    if not isinstance(raw, str):
        raise _refuse("The PIX key must be text.", "A chave PIX deve ser um texto.")
    text = " ".join(raw.split())
    if not text:
        raise _refuse("The PIX key is required.", "A chave PIX é obrigatória.", code="invalid")
    if "@" in text:
        email = text.replace(" ", "").lower()
        if len(email) > EMAIL_MAX or not _EMAIL_RE.fullmatch(email):
            raise _refuse(
                f"This is not an e-mail address a PIX key can be (at most {EMAIL_MAX} characters, "
                "like ana@example.com).",
                f"Isto não é um e-mail válido para chave PIX (no máximo {EMAIL_MAX} caracteres, "
                "como ana@exemplo.com).",
            )
        if len(email.partition("@")[0]) > 64:
            raise _refuse(
                "The part of the e-mail before @ is longer than 64 characters.",
                "A parte do e-mail antes do @ tem mais de 64 caracteres.",
            )
        return PixKey("email", email)
    uuid = _UUID_RE.fullmatch(text.lower())
    if uuid is not None and not text.isdigit():
        return PixKey("evp", "-".join(uuid.groups()))
    if _NUMERIC_RE.fullmatch(text):
        return _numeric(text)
    raise _refuse(
        "This is not a PIX key: use a CPF, a CNPJ, a phone (+55 11 91234-5678), an e-mail or a "
        "random key (UUID).",
        "Isto não é uma chave PIX: use CPF, CNPJ, telefone (+55 11 91234-5678), e-mail ou chave "
        "aleatória (UUID).",
    )
