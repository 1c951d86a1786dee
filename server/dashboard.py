"""The broadcaster's dashboard: its sessions, live and past, with what each earned.

Earnings are the session's paid PIX orders (integer centavos, BRL): the same orders the entitlement
rule reads, so what the dashboard counts is exactly what viewers got access for. Only sessions with
an owner appear (sessions started before accounts existed have none).
"""

from __future__ import annotations

import csv
import io
from typing import Any, Final

from server.pricing import CURRENCY
from server.sessions import SessionService, public_session
from store.protocol import Doc, Store

MAX_SESSIONS: Final = 500
_MAX_ORDERS: Final = 100_000
CSV_COLUMNS: Final = (
    "session_id",
    "title",
    "status",
    "started_at",
    "ended_at",
    "paid_orders",
    "amount_centavos",
    "amount_brl",
    "currency",
)


def brl(centavos: int) -> str:
    """`1234` -> `12.34` (a plain decimal, what spreadsheets import in any locale setting)."""
    return f"{centavos // 100}.{centavos % 100:02d}"


class Dashboard:
    def __init__(self, store: Store, sessions: SessionService) -> None:
        self.store = store
        self.sessions = sessions

    async def earnings_of(self, session_id: str) -> dict[str, Any]:
        paid = await self.store.find(
            "orders", {"session_id": session_id, "status": "paid"}, limit=_MAX_ORDERS
        )
        amount = sum(int(o["amount_centavos"]) for o in paid)
        return {"paid_orders": len(paid), "amount_centavos": amount, "currency": CURRENCY}

    async def sessions_of(self, user: Doc) -> dict[str, Any]:
        """The owner's sessions, newest first (at most `MAX_SESSIONS`), each with its earnings."""
        docs = await self.store.find(
            "broadcast_sessions",
            {"owner_id": user["id"]},
            order_by="created_at",
            descending=True,
            limit=MAX_SESSIONS,
        )
        out = []
        total = 0
        for doc in docs:
            item = public_session(doc, await self.sessions.streams_of(doc["id"]))
            item["pix"] = doc.get("pix") and {
                k: doc["pix"][k] for k in ("key", "merchant_name", "merchant_city")
            }
            item["earnings"] = await self.earnings_of(doc["id"])
            item["viewer_count"] = self.sessions.presence.count(doc["id"])
            total += item["earnings"]["amount_centavos"]
            out.append(item)
        return {"sessions": out, "total_centavos": total, "currency": CURRENCY}

    async def earnings_csv(self, user: Doc) -> str:
        """One row per session (the same numbers as `sessions_of`), then a total row."""
        listed = await self.sessions_of(user)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        for s in listed["sessions"]:
            earned = s["earnings"]
            writer.writerow(
                [
                    s["id"],
                    _cell(s["title"]),
                    s["status"],
                    s["created_at"],
                    s.get("ended_at") or "",
                    earned["paid_orders"],
                    earned["amount_centavos"],
                    brl(earned["amount_centavos"]),
                    CURRENCY,
                ]
            )
        total = listed["total_centavos"]
        paid = sum(s["earnings"]["paid_orders"] for s in listed["sessions"])
        writer.writerow(["total", "", "", "", "", paid, total, brl(total), CURRENCY])
        return buffer.getvalue()


def _cell(text: str) -> str:
    """A title cannot become a spreadsheet formula (CSV injection): a leading = + - @ is quoted
    with an apostrophe, as OWASP advises."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
