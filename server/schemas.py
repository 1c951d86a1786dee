"""Every request and response shape, defined once as JSON Schema data.

The handlers check each request body against these (`validate`) before a service sees it, and the
OpenAPI document (`handlers.openapi`) publishes the very same dicts as its components: what the
document promises and what the server enforces cannot drift apart. Enumerations come from
`server.domain`, limits from the modules that enforce them (pricing, pix, media), the text rule
from `server.validation`. The services still apply the rules a schema cannot express (an SDP is
negotiable, a token may act on this session) and answer those with their own 4xx.
"""

from __future__ import annotations

from typing import Any, Final

from server import pix, pix_key
from server.accounts import DISPLAY_NAME_MAX, TOKEN_NAME_MAX, USERNAME_PATTERN
from server.domain import (
    KIND_RULES,
    PIP_CORNERS,
    PIP_FIXED_CORNERS,
    PIP_SIZE_MAX,
    PIP_SIZE_MIN,
    QUALITY_AUTO,
    SESSION_STATUSES,
    STREAM_KINDS,
    STREAM_STATUSES,
    VIEW_MODES,
)
from server.media.ice import MAX_CANDIDATE_CHARS
from server.media.offers import MAX_SDP_CHARS
from server.media.scaling import MAX_HEIGHT_MAX, MAX_HEIGHT_MIN
from server.passwords import PASSWORD_MAX, PASSWORD_MIN
from server.payments.receiver import CITY_INPUT_MAX
from server.payments.webhook import E2E_PATTERN, MAX_ITEMS, TXID_PATTERN, VALOR_PATTERN
from server.pricing import CURRENCY, MAX_AMOUNT_CENTAVOS
from server.schema_check import REF_PREFIX, check
from server.sessions import BROADCASTER_NAME_MAX
from server.validation import TEXT_PATTERN

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": REF_PREFIX + name}


# -- building blocks ---------------------------------------------------------------------------

TITLE_MAX: Final = 200
# What a person may type as a PIX key: a formatted CNPJ is 18, an e-mail at most 77 characters.
PIX_KEY_INPUT_MAX: Final = 100
KIND: Final[Schema] = {"type": "string", "enum": list(STREAM_KINDS)}
KINDS: Final[Schema] = {"type": "array", "items": KIND, "uniqueItems": True}
AMOUNT: Final[Schema] = {
    "type": "integer",
    "minimum": 0,
    "maximum": MAX_AMOUNT_CENTAVOS,
    "x-error-code": "invalid_amount",
}
NULLABLE_TIME: Final[Schema] = {"type": ["string", "null"]}
# Letters a BR Code can carry once accents are stripped (`pix.strip_accents`): printable ASCII and
# the accented Latin letters that decompose to one ASCII letter.
_BR_CODE_CHARS: Final = r" -~\u00c0-\u00c5\u00c7-\u00cf\u00d1-\u00d6\u00d9-\u00dd\u00e0-\u00e5\u00e7-\u00ef\u00f1-\u00f6\u00f9-\u00fd\u00ff"
_BR_CODE_TEXT: Final = (
    f"^[{_BR_CODE_CHARS}]*[{_BR_CODE_CHARS.replace(' -~', '!-~', 1)}][{_BR_CODE_CHARS}]*$"
)


def _br_code_text(field: str, max_len: int, en: str, pt: str) -> Schema:
    """Text a BR Code field can carry; the errors say so per language (the studio shows them)."""
    where = f"pix.{field}"
    chars_en = (
        f"{en} must be letters, digits and punctuation a PIX code can carry (accents are removed)"
    )
    chars_pt = (
        f"{pt}: use letras, números e pontuação que o código PIX comporta (acentos são removidos)"
    )
    return {
        "type": "string",
        "allOf": [
            {
                "maxLength": max_len,
                "x-error": {
                    "code": "invalid",
                    "field": where,
                    "message": f"{where} must be at most {max_len} characters",
                    "messages": {
                        "en": f"{en} must be at most {max_len} characters",
                        "pt-BR": f"{pt}: no máximo {max_len} caracteres",
                    },
                },
            },
            {
                "pattern": _BR_CODE_TEXT,
                "x-error": {
                    "code": "invalid",
                    "field": where,
                    "message": f"{where} must be visible text a BR Code can carry "
                    "(letters, digits, punctuation; accents are removed)",
                    "messages": {"en": chars_en, "pt-BR": chars_pt},
                },
            },
        ],
    }


def _quality(kind: str) -> Schema:
    rules = KIND_RULES[kind]
    return {
        "type": "object",
        "properties": {
            "preset": {"type": "string", "enum": list(rules.presets)},
            "fps": {"type": "integer", "minimum": rules.fps_min, "maximum": rules.fps_max},
            "content_hint": {"type": "string", "enum": list(rules.content_hints)},
        },
        "additionalProperties": False,
    }


def _quality_needs_stream(kind: str) -> Schema:
    """`quality.<kind>` only for a stream the session starts with (when `streams` is given)."""
    return {
        "x-error": {"code": "invalid", "message": f"quality given for streams not started: {kind}"},
        "if": {
            "type": "object",
            "required": ["streams"],
            "properties": {"streams": {"type": "array", "not": {"contains": {"const": kind}}}},
        },
        "then": {"properties": {"quality": {"not": {"type": "object", "required": [kind]}}}},
    }


# A priced session (any non-zero amount) needs a PIX receiver.
_PRICED: Final[Schema] = {
    "type": "object",
    "required": ["pricing"],
    "properties": {
        "pricing": {
            "type": "object",
            "anyOf": [
                {"required": ["base"], "properties": {"base": {"exclusiveMinimum": 0}}},
                {
                    "required": ["addons"],
                    "properties": {
                        "addons": {
                            "type": "object",
                            "anyOf": [
                                {"required": [k], "properties": {k: {"exclusiveMinimum": 0}}}
                                for k in STREAM_KINDS
                            ],
                        }
                    },
                },
            ],
        }
    },
}

_PIX_REQUIRED: Final = {
    "code": "pix_required",
    "field": "pix",
    "message": "a priced session needs a pix receiver (key, merchant_name, merchant_city)",
    "messages": {
        "en": "a paid session needs a PIX receiver: key, name and city",
        "pt-BR": "uma sessão paga precisa de um recebedor PIX: chave, nome e cidade",
    },
}

_USERNAME: Final[Schema] = {
    "type": "string",
    # Either case: names are kept in lower case (`Ana` signs up as `ana`).
    "pattern": USERNAME_PATTERN.replace("a-z", "A-Za-z"),
    "x-error": {
        "code": "invalid_username",
        "message": "username must be 3-32 characters: letters, digits, '.', '_' or "
        "'-' (starting with a letter or digit)",
    },
}
_PASSWORD: Final[Schema] = {
    "type": "string",
    "minLength": PASSWORD_MIN,
    "maxLength": PASSWORD_MAX,
    "x-error": {
        "code": "invalid_password",
        "message": f"password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters",
    },
}

# -- requests ----------------------------------------------------------------------------------

REQUESTS: Final[dict[str, Schema]] = {
    "StartSession": {
        "type": "object",
        "properties": {
            "title": {"type": "string", "maxLength": TITLE_MAX, "pattern": TEXT_PATTERN},
            "streams": {**KINDS, "minItems": 1},
            "pricing": ref("Pricing"),
            "quality": {
                "type": "object",
                "properties": {kind: ref(f"Quality_{kind}") for kind in STREAM_KINDS},
                "additionalProperties": False,
            },
            "pix": ref("PixReceiver"),
            "default_pip": {
                **ref("Pip"),
                "description": "the broadcaster's picture-in-picture: the layout of every viewer "
                "who has not chosen one (changed live with `PUT .../layout`)",
            },
            "broadcaster_name": {
                "type": "string",
                "maxLength": BROADCASTER_NAME_MAX,
                "pattern": TEXT_PATTERN,
                "description": "shown on the stream list and the watch page",
            },
        },
        "additionalProperties": False,
        "allOf": [
            *(_quality_needs_stream(kind) for kind in STREAM_KINDS),
            {
                "if": _PRICED,
                "then": {"required": ["pix"]},
                "x-error": _PIX_REQUIRED,
            },
        ],
    },
    "Preferences": {
        "type": "object",
        "properties": {
            "enabled_streams": KINDS,
            "mode": {"type": "string", "enum": list(VIEW_MODES)},
            "pip": ref("Pip"),
            "pip_custom": {
                "type": "boolean",
                "description": "false: follow the broadcaster's layout again (a `pip` given "
                "makes the layout the viewer's own)",
            },
        },
        "additionalProperties": False,
    },
    "DefaultLayout": {
        "type": "object",
        "required": ["pip"],
        "properties": {"pip": ref("Pip")},
        "additionalProperties": False,
    },
    "NoFields": {
        "type": "object",
        "description": "an empty object (or no body at all)",
        "additionalProperties": False,
    },
    "Offer": {
        "type": "object",
        "required": ["sdp"],
        "properties": {
            "sdp": {"type": "string", "minLength": 1, "maxLength": MAX_SDP_CHARS},
            "type": {"type": "string", "enum": ["offer"]},
            "max_height": {
                "type": "integer",
                "minimum": MAX_HEIGHT_MIN,
                "maximum": MAX_HEIGHT_MAX,
                "description": "viewers only: a scaled-down variant (180/360/540/720/1080 lines)",
            },
        },
        "additionalProperties": False,
    },
    "Candidate": {
        "type": "object",
        "required": ["pc_id", "candidate"],
        "properties": {
            "pc_id": {"type": "string", "minLength": 1, "maxLength": 64},
            "candidate": {
                "description": 'an RTCIceCandidateInit; `candidate: ""` is end-of-candidates',
                "type": "object",
                "required": ["candidate"],
                "properties": {
                    "candidate": {"type": "string", "maxLength": MAX_CANDIDATE_CHARS},
                    "sdpMid": {"type": ["string", "null"], "maxLength": 32},
                    "sdpMLineIndex": {"type": ["integer", "null"], "minimum": 0, "maximum": 63},
                    "usernameFragment": {"type": ["string", "null"], "maxLength": 256},
                },
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    },
    "LegacyStart": {
        "type": "object",
        "properties": {
            "title": {"type": "string", "maxLength": TITLE_MAX, "pattern": TEXT_PATTERN},
            "price_centavos": AMOUNT,
            "pix": ref("PixReceiver"),
            "quality": ref("Quality_camera"),
        },
        "additionalProperties": False,
        "allOf": [
            {
                "if": {
                    "type": "object",
                    "required": ["price_centavos"],
                    "properties": {"price_centavos": {"exclusiveMinimum": 0}},
                },
                "then": {"required": ["pix"]},
                "x-error": _PIX_REQUIRED,
            }
        ],
    },
    "Signup": {
        "type": "object",
        "required": ["username", "password"],
        "properties": {
            "username": _USERNAME,
            "password": _PASSWORD,
            "display_name": {
                "type": "string",
                "maxLength": DISPLAY_NAME_MAX,
                "pattern": TEXT_PATTERN,
            },
        },
        "additionalProperties": False,
    },
    "Login": {
        "type": "object",
        "required": ["username", "password"],
        "properties": {
            # Any string: a malformed name or password is just wrong credentials (401), so the
            # answer never says which part was wrong.
            "username": {"type": "string", "maxLength": 64},
            "password": {"type": "string", "maxLength": PASSWORD_MAX},
        },
        "additionalProperties": False,
    },
    "TokenCreate": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": TOKEN_NAME_MAX, "pattern": TEXT_PATTERN}
        },
        "additionalProperties": False,
    },
    "AccountPix": {
        "type": "object",
        "required": ["pix"],
        "properties": {"pix": {"anyOf": [ref("PixReceiver"), {"type": "null"}]}},
        "additionalProperties": False,
    },
    "PixCallback": {
        "type": "object",
        "required": ["pix"],
        "properties": {
            "pix": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_ITEMS,
                "description": "each item is applied on its own; a malformed one is answered "
                "`rejected` (and recorded) without blocking the others",
                "items": {
                    "type": "object",
                    "required": ["endToEndId", "txid", "valor"],
                    "properties": {
                        "endToEndId": {"type": "string", "pattern": f"^{E2E_PATTERN}$"},
                        "txid": {"type": "string", "pattern": f"^{TXID_PATTERN}$"},
                        "valor": {"type": "string", "pattern": f"^{VALOR_PATTERN}$"},
                        "horario": {"type": "string", "format": "date-time"},
                        "infoPagador": {"type": "string"},
                    },
                },
            }
        },
    },
}

# No string of any body may hold NUL (`server.validation.check_values`): say so on every request
# string that has no stricter pattern of its own, so the document promises what the server takes.
NO_NUL: Final = r"^[^\x00]*$"


def _forbid_nul(node: Any) -> None:
    if isinstance(node, dict):
        types = node.get("type")
        is_string = types == "string" or (isinstance(types, list) and "string" in types)
        if is_string and "pattern" not in node and "enum" not in node:
            node["pattern"] = NO_NUL
        for child in node.values():
            _forbid_nul(child)
    elif isinstance(node, list):
        for child in node:
            _forbid_nul(child)


_forbid_nul(REQUESTS)

# -- shared components -------------------------------------------------------------------------

COMPONENTS: Final[dict[str, Schema]] = {
    "Pip": {
        "type": "object",
        "properties": {
            "corner": {"type": "string", "enum": list(PIP_CORNERS)},
            "size_pct": {"type": "integer", "minimum": PIP_SIZE_MIN, "maximum": PIP_SIZE_MAX},
        },
        "additionalProperties": False,
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["status", "code", "message"],
                "properties": {
                    "status": {"type": "integer"},
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                },
            }
        },
    },
    **{f"Quality_{kind}": _quality(kind) for kind in STREAM_KINDS},
    "Pricing": {
        "type": "object",
        "properties": {
            "base": AMOUNT,
            "addons": {
                "type": "object",
                "properties": {kind: AMOUNT for kind in STREAM_KINDS},
                "additionalProperties": False,
            },
            "bundle_discount_pct": {"type": "integer", "minimum": 0, "maximum": 100},
        },
        "additionalProperties": False,
    },
    "PixReceiver": {
        "type": "object",
        "required": ["key", "merchant_name", "merchant_city"],
        "properties": {
            "key": {
                "type": "string",
                "minLength": 1,
                "maxLength": PIX_KEY_INPUT_MAX,
                "pattern": TEXT_PATTERN,
                "description": "a CPF, CNPJ, phone, e-mail or random key as people write it "
                "(`123.456.789-09`, `+55 11 91234-5678`, `(11) 91234-5678`); the server checks "
                "the check digits and stores it as the DICT does (`12345678909`, `+5511912345678`)",
            },
            "merchant_name": _br_code_text("merchant_name", pix.NAME_MAX, "The name", "O nome"),
            "merchant_city": {
                **_br_code_text("merchant_city", CITY_INPUT_MAX, "The city", "A cidade"),
                "description": f"PIX codes carry the first {pix.CITY_MAX} characters (accents "
                "removed, upper case); `POST /api/v1/payments/pix/receiver` warns beforehand",
            },
        },
        "additionalProperties": False,
    },
    "Warning": {
        "type": "object",
        "required": ["field", "code", "messages"],
        "properties": {
            "field": {"type": "string"},
            "code": {"type": "string"},
            "value": {"type": "string"},
            "messages": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "Stream": {
        "type": "object",
        "required": ["id", "session_id", "kind", "status"],
        "properties": {
            "id": {"type": "string"},
            "session_id": {"type": "string"},
            "kind": KIND,
            "status": {"type": "string", "enum": list(STREAM_STATUSES)},
            "quality": {"type": "object"},
            "started_at": NULLABLE_TIME,
            "stopped_at": NULLABLE_TIME,
        },
    },
    "Session": {
        "type": "object",
        "required": ["id", "title", "status", "created_at", "pricing", "streams"],
        "properties": {
            "id": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "string", "enum": list(SESSION_STATUSES)},
            "created_at": {"type": "string"},
            "ended_at": NULLABLE_TIME,
            "pricing": ref("Pricing"),
            "streams": {"type": "array", "items": ref("Stream")},
            "viewer_count": {"type": "integer", "minimum": 0},
            "default_pip": {"type": "object"},
            "broadcaster_name": {"type": ["string", "null"]},
        },
    },
    "Quote": {
        "type": "object",
        "required": ["amount_centavos", "currency", "items"],
        "properties": {
            "amount_centavos": {"type": "integer"},
            "currency": {"type": "string", "enum": [CURRENCY]},
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["code", "label", "amount_centavos"],
                    "properties": {
                        "code": {"type": "string"},
                        "label": {"type": "string"},
                        "amount_centavos": {"type": "integer"},
                    },
                },
            },
        },
    },
    "ViewerPreferences": {
        "type": "object",
        "required": ["enabled_streams", "mode", "pip"],
        "properties": {
            "enabled_streams": KINDS,
            "mode": {"type": "string", "enum": list(VIEW_MODES)},
            "pip": {
                "type": "object",
                "properties": {
                    "corner": {"type": "string", "enum": list(PIP_CORNERS)},
                    "size_pct": {"type": "integer"},
                },
            },
            "pip_custom": {"type": "boolean"},
            "updated_at": NULLABLE_TIME,
        },
    },
    "Order": {
        "type": "object",
        "required": ["order_id", "txid", "status", "amount_centavos", "currency", "streams"],
        "properties": {
            "order_id": {"type": "string"},
            "txid": {"type": "string"},
            "status": {"type": "string"},
            "amount_centavos": {"type": "integer"},
            "currency": {"type": "string", "enum": [CURRENCY]},
            "streams": KINDS,
            "pix_copia_e_cola": {"type": "string"},
            "qr_url": {"type": ["string", "null"]},
            "received_centavos": {
                "type": ["integer", "null"],
                "description": "a payment that was not credited (wrong amount, or after expiry)",
            },
        },
    },
    "Balance": {
        "type": "object",
        "description": "priced sessions: what this viewer has paid and what it owes now",
        "required": ["paid_centavos", "due_centavos"],
        "properties": {
            "paid_centavos": {"type": "integer", "minimum": 0},
            "due_centavos": {"type": "integer", "minimum": 0},
        },
    },
    "LegacyLivestream": {
        "type": "object",
        "required": ["id", "title", "status"],
        "properties": {
            "id": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "string", "enum": list(SESSION_STATUSES)},
            "stream_id": {"type": ["string", "null"]},
            "price_centavos": {"type": "integer"},
        },
    },
}

# Any of the receiver's fields, as a form holds them while being filled in.
# Its limits are what the check reports (as `problems`), so any text up to a sane length is taken.
_DRAFT_TEXT: Final[Schema] = {"type": "string", "maxLength": 200, "pattern": NO_NUL}
REQUESTS["PixReceiverDraft"] = {
    "type": "object",
    "properties": {name: dict(_DRAFT_TEXT) for name in ("key", "merchant_name", "merchant_city")},
    "additionalProperties": False,
}

_PAYMENT: Final[Schema] = {"anyOf": [{"type": "null"}, ref("Order")]}

RESPONSES: Final[dict[str, Schema]] = {
    "SessionStarted": {
        "type": "object",
        "required": ["session", "broadcaster_token"],
        "properties": {"session": ref("Session"), "broadcaster_token": {"type": "string"}},
    },
    "SessionStatus": {
        "type": "object",
        "required": ["session", "streams", "viewer_count", "price_list"],
        "properties": {
            "session": ref("Session"),
            "streams": {"type": "array", "items": ref("Stream")},
            "viewer_count": {"type": "integer", "minimum": 0},
            "price_list": {"type": "object"},
            "signaling_url": {"type": "string"},
            "owner": {
                "description": "The instance serving this live session's media (its lease), "
                "with that instance's load at its last heartbeat; null when no instance holds it",
                "type": ["object", "null"],
                "properties": {
                    "instance_id": {"type": "string"},
                    "epoch": {"type": "integer"},
                    "acquired_at": {"type": "number"},
                    "expires_in_s": {"type": "number"},
                    "answered_by": {"type": "string"},
                    "peers": {"type": ["integer", "null"]},
                    "cpu": {"type": ["number", "null"]},
                },
            },
            "relay": {
                "description": "With relay on (MULTISTREAM_RELAY): the instances that may serve "
                "this session's viewers through a relay link, their load at their last "
                "heartbeat, and whether each relays this session now",
                "type": "object",
                "properties": {
                    "enabled": {"type": "boolean"},
                    "instances": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "instance_id": {"type": "string"},
                                "peers": {"type": ["integer", "null"]},
                                "cpu": {"type": ["number", "null"]},
                                "relaying": {"type": "boolean"},
                            },
                        },
                    },
                },
            },
        },
    },
    "Joined": {
        "type": "object",
        "required": ["viewer_id", "viewer_token", "preferences", "quote"],
        "properties": {
            "viewer_id": {"type": "string"},
            "viewer_token": {"type": "string"},
            "preferences": ref("ViewerPreferences"),
            "quote": ref("Quote"),
            "signaling_url": {"type": "string"},
            "payment": _PAYMENT,
            "balance": ref("Balance"),
        },
    },
    "PreferencesSaved": {
        "type": "object",
        "required": ["preferences"],
        "properties": {
            "preferences": ref("ViewerPreferences"),
            "quote": ref("Quote"),
            "payment": _PAYMENT,
            "balance": ref("Balance"),
        },
    },
    "DefaultLayoutSaved": {
        "type": "object",
        "required": ["default_pip"],
        "properties": {"default_pip": {"type": "object"}},
    },
    "StreamChanged": {
        "type": "object",
        "required": ["stream"],
        "properties": {"stream": ref("Stream")},
    },
    "SessionEnded": {
        "type": "object",
        "required": ["session"],
        "properties": {"session": ref("Session")},
    },
    "SessionList": {
        "type": "object",
        "required": ["sessions", "next"],
        "properties": {
            "sessions": {"type": "array", "items": ref("Session")},
            "next": {"type": ["string", "null"], "description": "the next page's `cursor`"},
        },
    },
    "Answer": {
        "type": "object",
        "required": ["sdp", "type", "pc_id"],
        "properties": {
            "sdp": {"type": "string"},
            "type": {"type": "string", "enum": ["answer"]},
            "pc_id": {"type": "string"},
        },
    },
    "QualityChoice": {
        "type": "object",
        "required": ["pc_id", "quality"],
        "properties": {
            "pc_id": {"type": "string", "minLength": 1, "maxLength": 64},
            "quality": {
                "type": "string",
                "minLength": 1,
                "maxLength": 32,
                "description": '"auto" (follow the connection) or one rung\'s `name`',
            },
        },
        "additionalProperties": False,
    },
    "QualityState": {
        "type": "object",
        "required": ["pc_id", "choice", "rungs", "rung", "delivering", "limited_by_connection"],
        "properties": {
            "pc_id": {"type": "string"},
            "choice": {"type": "string"},
            "rungs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "height", "fps", "bitrate_bps"],
                    "properties": {
                        "name": {"type": "string"},
                        "height": {"type": ["integer", "null"]},
                        "fps": {"type": ["number", "null"]},
                        "bitrate_bps": {"type": ["integer", "null"]},
                    },
                },
            },
            "rung": {"type": ["string", "null"]},
            "delivering": {"type": ["string", "null"]},
            "target_bps": {"type": ["number", "null"]},
            "limited_by_connection": {"type": "boolean"},
            "layout": {
                "description": "A composite's layout: as chosen (size snapped, auto resolved), as "
                "delivered, and whether the server's composite budget gave the nearest running "
                "layout instead",
                "type": ["object", "null"],
                "properties": {
                    "requested": ref("LayoutChoice"),
                    "delivered": ref("LayoutChoice"),
                    "substitute": {"type": "boolean"},
                },
            },
        },
    },
    "LayoutChoice": {
        "type": "object",
        "required": ["corner", "size_pct"],
        "properties": {
            "corner": {"type": "string", "enum": list(PIP_FIXED_CORNERS)},
            "size_pct": {"type": "integer", "minimum": PIP_SIZE_MIN, "maximum": PIP_SIZE_MAX},
        },
    },
    "QualityConnections": {
        "type": "object",
        "required": ["connections"],
        "properties": {"connections": {"type": "array", "items": ref("QualityState")}},
    },
    "QualityAny": {"anyOf": [ref("QualityState"), ref("QualityConnections")]},
    "ViewersDebug": {
        "type": "object",
        "required": ["viewers"],
        "properties": {
            "viewers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["pc_id", "role", "rung"],
                    "properties": {
                        "pc_id": {"type": "string"},
                        "viewer_id": {"type": ["string", "null"]},
                        "role": {"type": "string"},
                        "rung": {"type": ["string", "null"]},
                    },
                },
            }
        },
    },
    "Ack": {
        "type": "object",
        "required": ["ok"],
        "properties": {"ok": {"type": "boolean", "enum": [True]}},
    },
    "ReceiverChecked": {
        "type": "object",
        "required": ["receiver", "warnings", "problems"],
        "properties": {
            "receiver": {
                "type": "object",
                "description": "the fields given, as they will be stored (the key as the DICT "
                "writes it, the city as the PIX code carries it)",
                "properties": {
                    "key": {"type": "string"},
                    "key_type": {"type": "string", "enum": list(pix_key.KEY_TYPES)},
                    "merchant_name": {"type": "string"},
                    "merchant_city": {"type": "string"},
                },
            },
            "warnings": {"type": "array", "items": ref("Warning")},
            "problems": {
                "type": "array",
                "description": "fields that cannot work as typed, each with its message in "
                "English and Portuguese (the form shows them beside the field)",
                "items": ref("Warning"),
            },
        },
    },
    "OrderStatus": {
        "type": "object",
        "required": ["order"],
        "properties": {"order": ref("Order")},
    },
    "WebhookResults": {
        "type": "object",
        "required": ["results"],
        "properties": {
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "outcome"],
                    "properties": {
                        "index": {"type": "integer", "minimum": 0},
                        "outcome": {
                            "type": "string",
                            "enum": [
                                "paid",
                                "replayed",
                                "already_paid",
                                "mismatch",
                                "expired",
                                "unknown_txid",
                                "rejected",
                            ],
                        },
                        "txid": {"type": ["string", "null"]},
                        "reason": {"type": "string"},
                    },
                },
            }
        },
    },
    "ChatHistory": {
        "type": "object",
        "required": ["messages"],
        "properties": {
            "messages": {"type": "array", "items": {"type": "object"}},
            "next_before": {"type": ["string", "null"]},
        },
    },
    "RecordingList": {
        "type": "object",
        "required": ["recordings"],
        "properties": {"recordings": {"type": "array", "items": {"type": "object"}}},
    },
    "LegacyStarted": {
        "type": "object",
        "required": ["livestream", "token"],
        "properties": {"livestream": ref("LegacyLivestream"), "token": {"type": "string"}},
    },
    "LegacyLivestreamAnswer": {
        "type": "object",
        "required": ["livestream"],
        "properties": {"livestream": ref("LegacyLivestream")},
    },
    "Vocabulary": {
        "type": "object",
        "required": ["stream_kinds", "view_modes", "pip", "quality"],
        "properties": {
            "stream_kinds": {"type": "array", "items": KIND},
            "view_modes": {"type": "array", "items": {"type": "string", "enum": list(VIEW_MODES)}},
            "pip": {
                "type": "object",
                "required": ["corners", "size_min", "size_max", "default"],
                "properties": {
                    "corners": {"type": "array", "items": {"type": "string"}},
                    "size_min": {"type": "integer", "const": PIP_SIZE_MIN},
                    "size_max": {"type": "integer", "const": PIP_SIZE_MAX},
                    "default": {"type": "object"},
                },
            },
            "quality": {"type": "object"},
            "quality_auto": {"type": "string", "const": QUALITY_AUTO},
        },
    },
    "User": {
        "type": "object",
        "required": ["id", "username", "display_name", "created_at", "disabled"],
        "properties": {
            "id": {"type": "string"},
            "username": {"type": "string"},
            "display_name": {"type": "string"},
            "created_at": {"type": "string"},
            "disabled": {"type": "boolean"},
            "has_password": {"type": "boolean"},
            "pix": {"anyOf": [ref("PixReceiver"), {"type": "null"}]},
        },
    },
    "AuthState": {
        "type": "object",
        "required": ["user", "signup_open"],
        "properties": {
            "user": {"anyOf": [ref("User"), {"type": "null"}]},
            "signup_open": {"type": "boolean"},
        },
    },
    "Account": {
        "type": "object",
        "required": ["user"],
        "properties": {"user": ref("User")},
    },
    "ApiToken": {
        "type": "object",
        "required": ["id", "name", "kind", "created_at"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "kind": {"type": "string", "enum": ["api"]},
            "created_at": {"type": "string"},
            "expires_at": NULLABLE_TIME,
        },
    },
    "TokenList": {
        "type": "object",
        "required": ["tokens"],
        "properties": {"tokens": {"type": "array", "items": ref("ApiToken")}},
    },
    "TokenCreated": {
        "type": "object",
        "required": ["token", "secret"],
        "properties": {
            "token": ref("ApiToken"),
            "secret": {"type": "string", "description": "shown once: keep it"},
        },
    },
    "AccountPixSaved": {
        "type": "object",
        "required": ["pix"],
        "properties": {"pix": {"anyOf": [ref("PixReceiver"), {"type": "null"}]}},
    },
    "Earnings": {
        "type": "object",
        "required": ["paid_orders", "amount_centavos", "currency"],
        "properties": {
            "paid_orders": {"type": "integer", "minimum": 0},
            "amount_centavos": {"type": "integer", "minimum": 0},
            "currency": {"type": "string", "const": CURRENCY},
        },
    },
    "ReplayState": {
        "type": "object",
        "required": ["status", "progress"],
        "properties": {
            "status": {"type": "string", "enum": ["none", "rendering", "done", "failed"]},
            "progress": {"type": "number", "minimum": 0, "maximum": 1},
            "url": {"type": "string"},
            "duration_s": {"type": "number"},
            "speed_x_realtime": {"type": "number"},
            "error": {"type": "string"},
        },
    },
    "DashboardSessions": {
        "type": "object",
        "required": ["sessions", "total_centavos", "currency"],
        "properties": {
            "sessions": {
                "type": "array",
                "items": {
                    "allOf": [ref("Session")],
                    "type": "object",
                    "required": ["earnings"],
                    "properties": {"earnings": ref("Earnings"), "replay": ref("ReplayState")},
                },
            },
            "total_centavos": {"type": "integer", "minimum": 0},
            "currency": {"type": "string", "const": CURRENCY},
        },
    },
    "Replay": {
        "type": "object",
        "required": ["session_id", "recordings", "composite"],
        "properties": {
            "session_id": {"type": "string"},
            "recordings": {"type": "array", "items": {"type": "object"}},
            "composite": ref("ReplayState"),
        },
    },
    "OpenApiDocument": {
        "type": "object",
        "required": ["openapi", "info", "paths"],
        "properties": {"openapi": {"type": "string"}, "paths": {"type": "object"}},
    },
}

# `QualityChoice` is a request body kept beside the quality answers it belongs with: the NUL rule
# applies to it as to every request (schemathesis found it sending NUL to `PUT .../quality`).
_forbid_nul(RESPONSES["QualityChoice"])

ALL: Final[dict[str, Schema]] = {**COMPONENTS, **REQUESTS, **RESPONSES}


# -- the validator -----------------------------------------------------------------------------


def validate(value: Any, name: str, where: str = "body") -> Any:
    """Check `value` against the named schema; `Invalid` naming the first field that breaks it."""
    check(value, ALL[name], where, ALL)
    return value
