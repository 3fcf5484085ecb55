"""The value of a call's lease in KV `call_leases`: which worker owns the call, which
ownership of the call this is. Written by session workers, read by the control API."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError


class LeaseValue(BaseModel):
    worker: str
    attempt: int

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def decode(cls, data: bytes | None) -> LeaseValue | None:
        """The stored value, or None when it is not one (never raises)."""
        try:
            return cls.model_validate_json(data or b"")
        except ValidationError:
            return None
