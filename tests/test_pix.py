"""BR Code generator and parser: the published vectors, limits, and random round trips."""

from __future__ import annotations

import random
import string
import xml.etree.ElementTree as ET

import pytest

from server import pix
from server.errors import Invalid

BCB_MANUAL = (
    "00020126580014br.gov.bcb.pix0136123e4567-e12b-12d1-a456-4266554400005204000053039865802BR"
    "5913Fulano de Tal6008BRASILIA62070503***63041D3D"
)
WITH_AMOUNT = (
    "00020126510014br.gov.bcb.pix0115thalesog@me.com0210Pedido 123520400005303986540510.00"
    "5802BR5914Thales Ogliari6015SAO MIGUEL DO O62070503***63044367"
)


def test_crc_check_value() -> None:
    assert pix.crc_hex("123456789") == "29B1"


def test_crc_matches_the_bitwise_definition() -> None:
    def bitwise(data: bytes) -> int:
        crc = 0xFFFF
        for byte in data:
            crc ^= byte << 8
            for _ in range(8):
                crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
                crc &= 0xFFFF
        return crc

    for n in range(0, 260, 7):
        data = bytes((i * 37 + n) % 256 for i in range(n))
        assert pix.crc16_ccitt_false(data) == bitwise(data)


def test_reproduces_banco_central_manual_vector() -> None:
    code = pix.BrCode(
        key="123e4567-e12b-12d1-a456-426655440000",
        merchant_name="Fulano de Tal",
        merchant_city="Brasília",
    )
    assert pix.build(code) == BCB_MANUAL


def test_reproduces_vector_with_amount_and_message() -> None:
    code = pix.BrCode(
        key="thalesog@me.com",
        merchant_name="Thales Ogliari",
        merchant_city="São Miguel do Ó",
        amount_centavos=1000,
        message="Pedido 123",
    )
    assert pix.build(code) == WITH_AMOUNT


@pytest.mark.parametrize("payload", [BCB_MANUAL, WITH_AMOUNT])
def test_published_vectors_parse_back(payload: str) -> None:
    code = pix.parse(payload)
    assert pix.build(code) == payload


def test_parse_fields_of_vector_with_amount() -> None:
    code = pix.parse(WITH_AMOUNT)
    assert code == pix.BrCode(
        key="thalesog@me.com",
        merchant_name="Thales Ogliari",
        merchant_city="SAO MIGUEL DO O",
        amount_centavos=1000,
        txid=None,
        message="Pedido 123",
        single_use=False,
    )


def test_split_tlv_reads_every_field_of_the_manual_vector() -> None:
    tags = [tag for tag, _ in pix.split_tlv(BCB_MANUAL)]
    assert tags == ["00", "26", "52", "53", "58", "59", "60", "62", "63"]


@pytest.mark.parametrize(
    ("centavos", "text"),
    [(1, "0.01"), (10, "0.10"), (99, "0.99"), (100, "1.00"), (1720, "17.20"), (123456, "1234.56")],
)
def test_amount_formatting_is_exact(centavos: int, text: str) -> None:
    assert pix.format_amount(centavos) == text
    assert pix.parse_amount(text) == centavos


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10", 10**13])
def test_amount_formatting_refuses(bad: object) -> None:
    with pytest.raises(Invalid):
        pix.format_amount(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "centavos"), [("17.2", 1720), ("17", 1700), ("0.05", 5), ("17.20", 1720)]
)
def test_parse_amount_variants(text: str, centavos: int) -> None:
    assert pix.parse_amount(text) == centavos


@pytest.mark.parametrize("bad", ["17.201", "1e3", "-1.00", " 1.00", "1,00", "", "01.00", "NaN"])
def test_parse_amount_refuses(bad: str) -> None:
    with pytest.raises(Invalid):
        pix.parse_amount(bad)


def test_name_limit_counts_after_removing_accents() -> None:
    assert pix.merchant_name("Conceição Ação Ltda") == "Conceicao Acao Ltda"
    assert pix.merchant_name("É" * 25) == "E" * 25
    with pytest.raises(Invalid, match=r"merchant_name is 26 characters .* at most 25"):
        pix.merchant_name("A" * 26)


def test_city_is_upper_cased_and_limited() -> None:
    assert pix.merchant_city("  são   paulo ") == "SAO PAULO"
    assert pix.merchant_city("Florianópolis") == "FLORIANOPOLIS"
    with pytest.raises(Invalid, match=r"merchant_city is 16 characters .* at most 15"):
        pix.merchant_city("Ribeirão Pretoo!")


@pytest.mark.parametrize("bad", ["", "   ", "東京", "Ünïcode ✓"])
def test_city_refuses_empty_or_unrepresentable(bad: str) -> None:
    with pytest.raises(Invalid):
        pix.merchant_city(bad)


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("12345678909", "cpf"),
        ("12345678000195", "cnpj"),
        ("+5511999998888", "phone"),
        ("123e4567-e12b-12d1-a456-426655440000", "evp"),
        ("thalesog@me.com", "email"),
    ],
)
def test_key_types(key: str, kind: str) -> None:
    assert pix.key_type(key) == kind


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "123",
        "not a key",
        "a@b",
        "x" * 70 + "@example.com",
        5,
        "12345678901",  # an 11-digit "CPF" whose check digits are wrong (the old code took it)
        "12345678000199",  # the same for a CNPJ
        "11912345678",  # a phone without +55: the DICT key is +5511912345678
        "123.456.789-09",  # a CPF, but written with punctuation
    ],
)
def test_key_type_refuses(bad: object) -> None:
    with pytest.raises(Invalid, match=r"pix\.key"):
        pix.key_type(bad)  # type: ignore[arg-type]


def test_city_longer_than_the_code_is_cut_with_notice() -> None:
    assert pix.fit_city("São José dos Campos") == ("SAO JOSE DOS CA", True)
    assert pix.fit_city("Rio de Janeiro ") == ("RIO DE JANEIRO", False)
    # A cut that ends on a space never leaves it dangling.
    assert pix.fit_city("Campina Grande do Sul") == ("CAMPINA GRANDE", True)


def test_field_26_limit_shared_by_key_and_message() -> None:
    key = "a" * 60 + "@example.com"  # 72 characters
    base = pix.BrCode(key=key, merchant_name="N", merchant_city="C")
    assert pix.parse(pix.build(base)).key == key
    ok = pix.BrCode(key=key, merchant_name="N", merchant_city="C", message="x")
    assert pix.parse(pix.build(ok)).message == "x"
    too_long = pix.BrCode(key=key, merchant_name="N", merchant_city="C", message="xy")
    with pytest.raises(Invalid, match="field 26"):
        pix.build(too_long)


@pytest.mark.parametrize("bad", ["", "a" * 26, "abc-123", "ação", "***"])
def test_txid_limits(bad: str) -> None:
    code = pix.BrCode(key="12345678901", merchant_name="N", merchant_city="C", txid=bad)
    with pytest.raises(Invalid, match="txid"):
        pix.build(code)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (BCB_MANUAL[:-4] + "1D3E", "CRC mismatch"),
        (BCB_MANUAL[:-4] + "1d3d", "upper-case hex"),
        (BCB_MANUAL[:-8], "must end with field 63"),
        ("0002016304" + pix.crc_hex("0002016304"), "missing"),
        # Field 62 length lies (the typo the shared notes warn about); CRC recomputed so only the
        # structure is wrong.
        (
            lambda: (
                (body := BCB_MANUAL[:-8].replace("62070503***", "62080503***") + "6304")
                + pix.crc_hex(body)
            ),
            "says 40 characters",
        ),
    ],
)
def test_parse_refuses_broken_payloads(payload: object, message: str) -> None:
    text = payload() if callable(payload) else payload
    with pytest.raises(Invalid, match=message):
        pix.parse(text)  # type: ignore[arg-type]


def _random_code(rng: random.Random) -> pix.BrCode:
    alphabet = string.ascii_letters + string.digits + " .-áéíóúãõçÁÉÍÓÚÃÕÇ"
    kind = rng.choice(["cpf", "cnpj", "evp", "email", "phone"])
    key = {
        "cpf": "".join(rng.choices(string.digits, k=11)),
        "cnpj": "".join(rng.choices(string.digits, k=14)),
        "evp": "-".join("".join(rng.choices("0123456789abcdef", k=n)) for n in (8, 4, 4, 4, 12)),
        "email": "".join(rng.choices(string.ascii_lowercase, k=rng.randint(1, 40))) + "@ex.com",
        "phone": "+55" + "".join(rng.choices(string.digits, k=11)),
    }[kind]
    room = pix.ACCOUNT_INFO_MAX - 18 - 4 - len(key) - 4
    message = (
        "".join(rng.choices(string.ascii_letters + " 0123456789", k=rng.randint(1, room)))
        if rng.random() < 0.5
        else None
    )
    if message is not None:
        message = message.strip() or None
    return pix.BrCode(
        key=key,
        merchant_name=("".join(rng.choices(alphabet, k=rng.randint(1, 25))).strip() or "X"),
        merchant_city=("".join(rng.choices(alphabet, k=rng.randint(1, 15))).strip() or "Y"),
        amount_centavos=rng.choice([None, rng.randint(1, 10**11)]),
        txid=rng.choice(
            [None, "".join(rng.choices(string.ascii_letters + string.digits, k=rng.randint(1, 25)))]
        ),
        message=message,
        single_use=rng.random() < 0.5,
    )


def test_random_payloads_round_trip() -> None:
    rng = random.Random(20261124)
    for _ in range(2000):
        code = _random_code(rng)
        payload = pix.build(code)
        back = pix.parse(payload)
        assert back.key == code.key
        assert back.amount_centavos == code.amount_centavos
        assert back.txid == code.txid
        assert back.single_use == code.single_use
        assert back.merchant_name == pix.merchant_name(code.merchant_name)
        assert back.merchant_city == pix.merchant_city(code.merchant_city)
        assert back.message == (pix.strip_accents(code.message) if code.message else None)
        assert pix.build(back) == payload
        # Any single-character corruption is caught by the CRC or the structure checks.
        pos = rng.randrange(len(payload) - 4)
        swapped = "7" if payload[pos] != "7" else "8"
        with pytest.raises(Invalid):
            pix.parse(payload[:pos] + swapped + payload[pos + 1 :])


def test_qr_svg_is_an_svg_document() -> None:
    root = ET.fromstring(pix.qr_svg(WITH_AMOUNT))
    assert root.tag.endswith("svg")


def test_qr_png_decodes_to_the_payload() -> None:
    cv2 = pytest.importorskip("cv2")
    np = pytest.importorskip("numpy")
    image = cv2.imdecode(np.frombuffer(pix.qr_png(WITH_AMOUNT), np.uint8), cv2.IMREAD_GRAYSCALE)
    decoded, _, _ = cv2.QRCodeDetector().detectAndDecode(image)
    assert decoded == WITH_AMOUNT
