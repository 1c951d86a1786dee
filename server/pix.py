"""PIX "copia e cola" (BR Code): build, parse and draw the static payload a viewer pays with.

The payload is EMV QRCPS-MPM: fields `ID(2) LEN(2) VALUE` concatenated, ending in field 63 with a
CRC-16/CCITT-FALSE computed over the whole string *including* the `6304` that opens field 63.
Everything here is pure (no I/O, no clock) so the published vectors in `shared/pix.md` pin it down.

Text rules, chosen so both published vectors come out byte for byte: accents are stripped from
every free-text field (banking apps disagree on non-ASCII, and EMV lengths count characters); the
city is also upper-cased (as Banco Central's examples and most libraries do); the merchant name
keeps its case.
"""

from __future__ import annotations

import binascii
import io
import re
import unicodedata
from dataclasses import dataclass
from typing import Final

import segno

from server import pix_key
from server.errors import Invalid

GUI: Final = "br.gov.bcb.pix"
NAME_MAX: Final = 25
CITY_MAX: Final = 15
TXID_MAX: Final = 25
ACCOUNT_INFO_MAX: Final = 99  # field 26 as a whole: GUI + key + optional message
AMOUNT_MAX_LEN: Final = 13  # field 54 value, e.g. "9999999999.99"
NO_TXID: Final = "***"

_TXID_RE: Final = re.compile(r"[A-Za-z0-9]{1,25}")
_AMOUNT_RE: Final = re.compile(r"(0|[1-9][0-9]*)(?:\.([0-9]{1,2}))?")
_CRC_RE: Final = re.compile(r"[0-9A-F]{4}")


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final XOR.

    `binascii.crc_hqx` is exactly this CRC given the 0xFFFF start, in C: a bit-by-bit Python loop
    took ~0.25 ms per BR Code, a sixth of a priced join.
    """
    return binascii.crc_hqx(data, 0xFFFF)


def crc_hex(text: str) -> str:
    """The four upper-case hex digits closing a payload whose text (ending in `6304`) is given."""
    return f"{crc16_ccitt_false(text.encode('ascii')):04X}"


def format_amount(centavos: int) -> str:
    """Integer centavos as the EMV decimal string (`1720` → `"17.20"`), never through a float."""
    if isinstance(centavos, bool) or not isinstance(centavos, int):
        raise Invalid("amount must be an integer number of centavos")
    if centavos <= 0:
        raise Invalid("amount must be positive")
    text = f"{centavos // 100}.{centavos % 100:02d}"
    if len(text) > AMOUNT_MAX_LEN:
        raise Invalid(f"amount {text} is longer than {AMOUNT_MAX_LEN} characters")
    return text


def parse_amount(text: str) -> int:
    """A decimal string (`"17.2"`, `"17.20"`, `"17"`) as exact integer centavos, else Invalid."""
    match = _AMOUNT_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise Invalid(f"amount {text!r} is not a decimal like 17.20")
    whole, frac = match.group(1), match.group(2) or ""
    return int(whole) * 100 + int(frac.ljust(2, "0"))


def strip_accents(text: str) -> str:
    """Remove diacritics (`São Miguel do Ó` → `Sao Miguel do O`) and collapse whitespace."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(bare.split())


def _printable_ascii(label: str, text: str) -> str:
    if not text:
        raise Invalid(f"{label} must not be empty")
    bad = sorted({ch for ch in text if not (" " <= ch <= "~")})
    if bad:
        shown = "".join(bad[:5])
        raise Invalid(f"{label} has characters a BR Code cannot carry: {shown!r}")
    return text


def merchant_name(raw: str) -> str:
    """The name as it goes into field 59: accents stripped, case kept, at most 25 characters."""
    name = _printable_ascii("pix.merchant_name", strip_accents(_text(raw, "pix.merchant_name")))
    if len(name) > NAME_MAX:
        raise Invalid(
            f"pix.merchant_name is {len(name)} characters after removing accents "
            f"({name!r}); the BR Code allows at most {NAME_MAX}"
        )
    return name


def merchant_city(raw: str) -> str:
    """The city as it goes into field 60: accents stripped, upper-cased, at most 15 characters."""
    city = _printable_ascii(
        "pix.merchant_city", strip_accents(_text(raw, "pix.merchant_city")).upper()
    )
    if len(city) > CITY_MAX:
        raise Invalid(
            f"pix.merchant_city is {len(city)} characters after removing accents "
            f"({city!r}); the BR Code allows at most {CITY_MAX}"
        )
    return city


def fit_city(raw: str) -> tuple[str, bool]:
    """The city as field 60 can hold it, and whether it had to be cut to `CITY_MAX` characters.

    Cities longer than 15 characters are common ("São José dos Campos"); the code carries the
    first 15 (the payer's bank shows them), so a form warns with exactly this text beforehand.
    """
    city = _printable_ascii(
        "pix.merchant_city", strip_accents(_text(raw, "pix.merchant_city")).upper()
    )
    if len(city) <= CITY_MAX:
        return city, False
    return city[:CITY_MAX].rstrip(), True


def key_type(raw: str) -> str:
    """Classify a PIX key (cpf, cnpj, phone, evp, email) or raise Invalid naming what is wrong;
    the key must already be written as the DICT stores it (`server.pix_key.normalise` makes it so)."""
    key = _text(raw, "pix.key")
    checked = pix_key.normalise(key)
    if checked.key != key:
        raise Invalid(
            f"pix.key is a {checked.kind} written as {key!r}; the BR Code needs {checked.key!r}",
            field="pix.key",
        )
    return checked.kind


def _text(raw: object, label: str) -> str:
    if not isinstance(raw, str):
        raise Invalid(f"{label} must be a string")
    return raw


def _tlv(tag: str, value: str) -> str:
    if len(value) > 99:
        raise Invalid(f"BR Code field {tag} would be {len(value)} characters; at most 99 fit")
    return f"{tag}{len(value):02d}{value}"


@dataclass(frozen=True, slots=True)
class BrCode:
    """The meaningful content of a static BR Code, as built or as read back."""

    key: str
    merchant_name: str
    merchant_city: str
    amount_centavos: int | None = None
    txid: str | None = None
    message: str | None = None
    single_use: bool = False


def build(code: BrCode) -> str:
    """The "copia e cola" text for `code`, with its CRC; Invalid names any field over its limit."""
    key = _printable_ascii("pix.key", _text(code.key, "pix.key"))
    account = _tlv("00", GUI) + _tlv("01", key)
    if code.message:
        message = _printable_ascii("pix message", strip_accents(code.message))
        account += _tlv("02", message)
    if len(account) > ACCOUNT_INFO_MAX:
        raise Invalid(
            f"pix key and message take {len(account)} characters of field 26; "
            f"at most {ACCOUNT_INFO_MAX} fit"
        )
    if code.txid is None:
        txid = NO_TXID
    elif isinstance(code.txid, str) and _TXID_RE.fullmatch(code.txid):
        txid = code.txid
    else:
        raise Invalid(f"txid must be 1 to {TXID_MAX} letters or digits")
    parts = [_tlv("00", "01")]
    if code.single_use:
        parts.append(_tlv("01", "12"))
    parts += [_tlv("26", account), _tlv("52", "0000"), _tlv("53", "986")]
    if code.amount_centavos is not None:
        parts.append(_tlv("54", format_amount(code.amount_centavos)))
    parts += [
        _tlv("58", "BR"),
        _tlv("59", merchant_name(code.merchant_name)),
        _tlv("60", merchant_city(code.merchant_city)),
        _tlv("62", _tlv("05", txid)),
    ]
    body = "".join(parts) + "6304"
    return body + crc_hex(body)


def split_tlv(text: str, where: str = "payload") -> list[tuple[str, str]]:
    """Split TLV text into `(id, value)` pairs in order; Invalid on any malformed length or id."""
    fields: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        head = text[pos : pos + 4]
        if len(head) < 4 or not head.isdigit() or not head.isascii():
            raise Invalid(f"{where}: malformed field header {head!r} at offset {pos}")
        tag, length = head[:2], int(head[2:])
        value = text[pos + 4 : pos + 4 + length]
        if len(value) != length:
            raise Invalid(f"{where}: field {tag} says {length} characters but {len(value)} remain")
        fields.append((tag, value))
        pos += 4 + length
    return fields


def parse(payload: str) -> BrCode:
    """Read a static BR Code back field by field, checking order, lengths and the CRC."""
    if not isinstance(payload, str) or not payload.isascii():
        raise Invalid("payload must be ASCII text")
    if len(payload) < 8 or payload[-8:-4] != "6304":
        raise Invalid("payload must end with field 63 (6304 and four hex digits)")
    given = payload[-4:]
    if not _CRC_RE.fullmatch(given):
        raise Invalid(f"CRC {given!r} is not four upper-case hex digits")
    expected = crc_hex(payload[:-4])
    if given != expected:
        raise Invalid(f"CRC mismatch: payload says {given}, content gives {expected}")
    fields = split_tlv(payload)
    tags = [tag for tag, _ in fields]
    if tags[0] != "00" or fields[0][1] != "01":
        raise Invalid("field 00 (payload format indicator) must come first with value 01")
    if tags[-1] != "63":
        raise Invalid("field 63 (CRC) must come last")
    if len(set(tags)) != len(tags):
        raise Invalid("a field appears twice")
    values = dict(fields)
    for tag in ("26", "52", "53", "58", "59", "60", "62"):
        if tag not in values:
            raise Invalid(f"field {tag} is missing")
    if values["53"] != "986":
        raise Invalid(f"field 53 (currency) must be 986 (BRL), got {values['53']!r}")
    if values["58"] != "BR":
        raise Invalid(f"field 58 (country) must be BR, got {values['58']!r}")
    initiation = values.get("01")
    if initiation not in (None, "11", "12"):
        raise Invalid(f"field 01 (point of initiation) must be 11 or 12, got {initiation!r}")
    account = dict(split_tlv(values["26"], "field 26"))
    if account.get("00", "").lower() != GUI:
        raise Invalid(f"field 26 must start with the {GUI} identifier")
    if "01" not in account:
        raise Invalid("field 26 has no PIX key (sub-field 01)")
    extra = dict(split_tlv(values["62"], "field 62"))
    txid = extra.get("05")
    if txid is None:
        raise Invalid("field 62 has no txid (sub-field 05)")
    if len(values["59"]) > NAME_MAX or len(values["60"]) > CITY_MAX:
        raise Invalid("merchant name or city over its length limit")
    amount = parse_amount(values["54"]) if "54" in values else None
    return BrCode(
        key=account["01"],
        merchant_name=values["59"],
        merchant_city=values["60"],
        amount_centavos=amount,
        txid=None if txid == NO_TXID else txid,
        message=account.get("02"),
        single_use=initiation == "12",
    )


def _qr(payload: str) -> segno.QRCode:
    # Error correction M, never a Micro QR: what banking apps' scanners expect.
    return segno.make(payload, error="m", micro=False)


def qr_svg(payload: str) -> bytes:
    """The payload as an SVG QR code (scales without blur on any screen)."""
    out = io.BytesIO()
    _qr(payload).save(out, kind="svg", scale=4, border=4)
    return out.getvalue()


def qr_png(payload: str, scale: int = 6) -> bytes:
    """The payload as a PNG QR code, for clients that cannot show SVG."""
    out = io.BytesIO()
    _qr(payload).save(out, kind="png", scale=scale, border=4)
    return out.getvalue()
