"""A salon booking tool service: `check_availability` and `book_appointment`.

Run it beside Switchboard (`NATS_URL` as for the services):

    python -m examples.salon_tools

and declare the tools in the salon agent profile (`SWITCHBOARD_AGENTS_FILE`):

    tools:
      - name: check_availability
        parameters: {type: object, properties: {day: {type: string}}, required: [day]}
      - name: book_appointment
        parameters:
          type: object
          properties: {day: {type: string}, time: {type: string}, name: {type: string}}
          required: [day, time, name]

The appointment book lives in memory: enough for the demo and the tests.
"""

from __future__ import annotations

import logging
from typing import Any

from switchboard.toolkit import ToolError, ToolRequest, ToolService

OPENING_HOURS = ("09:00", "10:00", "11:00", "13:00", "14:00", "15:00", "16:00")
OPEN_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday")


class AppointmentBook:
    """A slot is free while fewer than `chairs` people booked it."""

    def __init__(self, chairs: int = 1) -> None:
        self.chairs = chairs
        self.booked: dict[tuple[str, str], list[str]] = {}

    def free(self, day: str) -> list[str]:
        day = _day(day)
        return [t for t in OPENING_HOURS if len(self.booked.get((day, t), [])) < self.chairs]

    def book(self, day: str, time: str, name: str) -> dict[str, Any]:
        day = _day(day)
        if time not in OPENING_HOURS:
            raise ToolError(f"we take bookings at {', '.join(OPENING_HOURS)}")
        if time not in self.free(day):
            raise ToolError(f"{time} on {day} is taken; free: {', '.join(self.free(day))}")
        self.booked.setdefault((day, time), []).append(name)
        return {"day": day, "time": time, "name": name, "confirmed": True}


def _day(value: Any) -> str:
    day = str(value or "").strip().lower()
    if day not in OPEN_DAYS:
        raise ToolError("we are open Monday to Saturday")
    return day


def salon_service(book: AppointmentBook | None = None, **kwargs: Any) -> ToolService:
    """The service with its two tools (tests pass their own broker in `kwargs`)."""
    book = book or AppointmentBook()
    service = ToolService(**kwargs)

    @service.tool("check_availability")
    def check_availability(request: ToolRequest) -> dict[str, Any]:
        day = request.arguments.get("day")
        return {"day": _day(day), "free": book.free(day)}

    @service.tool("book_appointment")
    def book_appointment(request: ToolRequest) -> dict[str, Any]:
        args = request.arguments
        return book.book(args.get("day"), str(args.get("time", "")), str(args.get("name", "")))

    return service


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    # Ten chairs: every demo call of `make run CALLS=10` can book Friday at 3 pm.
    salon_service(AppointmentBook(chairs=10)).run()
