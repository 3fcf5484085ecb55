"""How a call gets its place: the booking procedure, as steps of compare-and-set. Pure.

The procedure yields `Change`s (one compare-and-set on one book each) and receives their
results; the acceptor runs it against KV (`shared/reservations.py`), the model
test against an in-memory store with other deciders' steps interleaved. What it reads
between steps (`Look`) is the decider's own view, which may lag the store.
"""

from __future__ import annotations

import random
from functools import partial
from typing import Literal, Protocol

from shared.admission import (
    Change,
    Document,
    Steps,
    book_call,
    book_key,
    move_out,
    release_steps,
)
from shared.capacity import Standing, order_to_try

MoveIn = Literal["added", "present", "full"]


class Look(Protocol):
    """A decider's view, read between steps."""

    rng: random.Random

    def standing(self) -> Standing: ...
    def capacity(self, worker: str) -> int: ...  # 0 unless live and not draining
    def until_of(self, worker: str, call_id: str) -> float | None: ...
    def now(self) -> float: ...


def book_steps(call_id: str, until: float, look: Look, sure: bool) -> Steps[str | None]:
    """Book the call in a live book with room, after moving departed workers' calls into
    live books; the worker whose book holds it, or None. With `sure`, every live book is
    tried (each compare-and-set reads it fresh), so None means the fleet is full."""
    view = look.standing()
    if any(view.orphans.values()):
        yield from move_steps(view, look)
        view = look.standing()
    if view.full:
        return None  # departed workers' calls wait for places, or workers report full
    order = order_to_try(view.room, look.rng)
    for worker in order if sure else [w for w in order if view.room[w] > 0]:
        booked = yield Change(book_key(worker), partial(_book_now, look, call_id, until, worker))
        if booked:
            return worker
    return None


def move_steps(view: Standing, look: Look) -> Steps[None]:
    """Move the calls of departed workers' books into live books with room: add to the new
    book first, then leave a forwarding entry in the old one. A decider that added the
    call and then finds it gone from the old book (it ended, or moved elsewhere) takes it
    back out; a call already in the new book is another decider's same move."""
    room = dict(view.room)
    for source, calls in view.orphans.items():
        for call_id in calls:
            target = next((w for w in order_to_try(room, look.rng) if room[w] > 0), None)
            if target is None:
                return
            until = look.until_of(source, call_id)
            if until is None:
                continue  # it ended meanwhile
            added: MoveIn = yield Change(
                book_key(target), partial(_move_in_now, look, call_id, until, target)
            )
            if added == "full":
                room[target] = 0
                continue
            room[target] -= 1
            left: bool = yield Change(
                book_key(source), partial(_move_out_now, look, call_id, target)
            )
            if not left and added == "added":
                yield from release_steps(call_id, target, look.now)
                room[target] += 1


def move_in(
    document: Document | None, call_id: str, now: float, until: float, capacity: int
) -> tuple[Document | None, MoveIn]:
    """Book a moving call: "added" here, "present" already, or "full"."""
    new, booked = book_call(document, call_id, now, until, capacity)
    return new, "added" if new is not None else ("present" if booked else "full")


# The worker's capacity is read when the change is applied, not when it was planned: a
# worker that died or began draining in between (as the view now knows) takes no call.


def _book_now(
    look: Look, call_id: str, until: float, worker: str, document: Document | None
) -> tuple[Document | None, bool]:
    return book_call(document, call_id, look.now(), until, look.capacity(worker))


def _move_in_now(
    look: Look, call_id: str, until: float, worker: str, document: Document | None
) -> tuple[Document | None, MoveIn]:
    return move_in(document, call_id, look.now(), until, look.capacity(worker))


def _move_out_now(
    look: Look, call_id: str, to_worker: str, document: Document | None
) -> tuple[Document | None, bool]:
    return move_out(document, call_id, to_worker, look.now())
