"""The session's PIX receiver, validated once at session start so every later order can be built.

What people type is normalised (the key as the DICT stores it, see `server.pix_key`; name and city
without accents, the city upper-cased) and what cannot work is refused per field, in English and
Portuguese. A city longer than the BR Code's 15 characters is cut, never refused: `check_receiver`
returns a warning with the exact text the payer's bank will show, which the studio displays while
the broadcaster types (`POST /api/v1/payments/pix/receiver`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from server import pix, pix_key
from server.errors import Invalid

FIELDS: Final = ("key", "merchant_name", "merchant_city")
# What a broadcaster may type for the city; the code carries the first `pix.CITY_MAX` characters.
CITY_INPUT_MAX: Final = 60
# The longest values an order adds, so a receiver that passes here can never fail at join time.
_WORST_TXID = "X" * pix.TXID_MAX
_WORST_AMOUNT = 99_999_999_99


@dataclass(frozen=True, slots=True)
class ReceiverCheck:
    """A receiver as it will be stored and put into BR Codes, and what the broadcaster should know:
    warnings, and (checking a form being filled in) the fields that cannot work as typed."""

    receiver: dict[str, Any]
    warnings: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)


_LABELS: Final = {
    "merchant_name": ("The receiver's name", "O nome do recebedor"),
    "merchant_city": ("The city", "A cidade"),
}


def _field_error(name: str, en: str, pt: str, code: str = "invalid") -> Invalid:
    """`en`/`pt` continue the field's label: "The city" + " must be at most 60 characters."."""
    where = f"pix.{name}"
    label_en, label_pt = _LABELS[name]
    return Invalid(
        f"{where} {en}",
        code=code,
        field=where,
        messages={"en": f"{label_en} {en}.", "pt-BR": f"{label_pt} {pt}."},
    )


def _text_field(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _field_error(name, "is required", "é obrigatório")
    if not isinstance(value, str):
        raise _field_error(name, "must be a string", "deve ser um texto")
    return value.strip()


def _unrepresentable(name: str, exc: Invalid) -> Invalid:
    return _field_error(
        name,
        "has characters a BR Code cannot carry (use letters without special symbols, digits "
        f"and punctuation; accents are removed): {exc.message.rpartition(': ')[2]}",
        "tem caracteres que o código PIX não comporta (use letras, números e pontuação; "
        f"os acentos são removidos): {exc.message.rpartition(': ')[2]}",
    )


def check_receiver(raw: object, *, partial: bool = False) -> ReceiverCheck:
    """`{"key", "merchant_name", "merchant_city"}` normalised and checked against the BR Code's
    limits; `Invalid` names the first field that cannot work. `partial` checks the fields given
    (a form being filled in) and answers only those."""
    if not isinstance(raw, dict):
        raise Invalid(
            "pix must be an object with key, merchant_name and merchant_city",
            field="pix",
            messages={
                "en": "the PIX receiver needs a key, a name and a city",
                "pt-BR": "o recebedor PIX precisa de chave, nome e cidade",
            },
        )
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise Invalid(f"pix has unknown fields: {', '.join(k[:40] for k in unknown)}", field="pix")
    if partial:
        return _check_fields(raw)
    key = pix_key.normalise(raw.get("key"))
    name_typed = _text_field(raw, "merchant_name")
    city_typed = _text_field(raw, "merchant_city")
    name = _name(name_typed)
    city, warnings = _city(city_typed)
    receiver = {
        "key": key.key,
        "key_type": key.kind,
        # The name as typed (for display; the code strips its accents), the city as coded.
        "merchant_name": name_typed,
        "merchant_city": city,
    }
    # Build the largest payload an order could need: any limit it breaks is reported now.
    try:
        pix.build(
            pix.BrCode(
                key=key.key,
                merchant_name=name,
                merchant_city=city,
                amount_centavos=_WORST_AMOUNT,
                txid=_WORST_TXID,
                single_use=True,
            )
        )
    except Invalid as exc:
        raise Invalid(exc.message, field="pix.key") from None
    return ReceiverCheck(receiver, warnings)


def _check_fields(raw: dict[str, Any]) -> ReceiverCheck:
    """Each field given, on its own: one field's problem does not hide another's."""
    receiver: dict[str, Any] = {}
    warnings: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    for name in FIELDS:
        if raw.get(name) in (None, ""):
            continue
        try:
            if name == "key":
                key = pix_key.normalise(raw["key"])
                receiver.update(key=key.key, key_type=key.kind)
            elif name == "merchant_name":
                typed = _text_field(raw, "merchant_name")
                _name(typed)
                receiver["merchant_name"] = typed
            else:
                receiver["merchant_city"], warnings = _city(_text_field(raw, "merchant_city"))
        except Invalid as exc:
            problems.append(
                {
                    "field": exc.field or f"pix.{name}",
                    "code": exc.code,
                    "message": exc.message,
                    "messages": exc.messages or {"en": exc.message},
                }
            )
    return ReceiverCheck(receiver, warnings, problems)


def _name(name_typed: str) -> str:
    try:
        name = pix.merchant_name(name_typed)
    except Invalid as exc:
        if "cannot carry" in exc.message:
            raise _unrepresentable("merchant_name", exc) from None
        bare = pix.strip_accents(name_typed)
        raise _field_error(
            "merchant_name",
            f"is {len(bare)} characters; the PIX code allows at most {pix.NAME_MAX}: "
            "shorten or abbreviate it",
            f"tem {len(bare)} caracteres; o código PIX permite no máximo {pix.NAME_MAX}: "
            "encurte ou abrevie",
        ) from None
    return name


def _city(city_typed: str) -> tuple[str, list[dict[str, Any]]]:
    if len(city_typed) > CITY_INPUT_MAX:
        raise _field_error(
            "merchant_city",
            f"must be at most {CITY_INPUT_MAX} characters",
            f"deve ter no máximo {CITY_INPUT_MAX} caracteres",
        )
    try:
        city, cut = pix.fit_city(city_typed)
    except Invalid as exc:
        raise _unrepresentable("merchant_city", exc) from None
    if not cut:
        return city, []
    return city, [
        {
            "field": "pix.merchant_city",
            "code": "city_truncated",
            "value": city,
            "messages": {
                "en": f"PIX codes hold {pix.CITY_MAX} characters of the city: payers will see "
                f"“{city}”. Abbreviate it to choose what they see.",
                "pt-BR": f"O código PIX guarda {pix.CITY_MAX} caracteres da cidade: quem paga "
                f"verá “{city}”. Abrevie para escolher o que aparece.",
            },
        }
    ]


def validate_receiver(raw: object) -> dict[str, Any]:
    """The receiver every order's BR Code names (what `check_receiver` normalised)."""
    return check_receiver(raw).receiver
