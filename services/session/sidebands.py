"""Which `Sideband` adapter runs a call: one line per OpenAI API."""

from __future__ import annotations

import openai

from services.session.live import LiveSideband
from services.session.realtime import RealtimeSideband
from services.session.sideband import Sideband
from shared.calls import SessionJob
from shared.settings import Settings


def open_sideband(job: SessionJob, settings: Settings, client: openai.AsyncOpenAI) -> Sideband:
    """The adapter for the API the call was accepted through (its agent's)."""
    if job.agent.api == "live":
        return LiveSideband(job.openai_id, settings, client)
    return RealtimeSideband(job.call_id, settings, client)
