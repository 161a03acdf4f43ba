"""Twilio's REST API, through the twilio library's client (asynchronous, aiohttp).

The base URL can be pointed elsewhere (FLOWPBX_TWILIO_API_URL), which is how the tests talk
to a local fake of Twilio. Failures become `TwilioFailure`, with Twilio's code when it gave one.
"""

from __future__ import annotations

import asyncio
import logging
import re
import warnings
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from flowpbx import metrics
from flowpbx.errors import FlowpbxError

log = logging.getLogger("flowpbx.twilio")

# twilio 9.13's async HTTP client uses aiohttp's BasicAuth, deprecated in aiohttp 3.14: the
# warning is theirs to fix and says nothing to an operator.
warnings.filterwarnings("ignore", "BasicAuth is deprecated", DeprecationWarning)
warnings.filterwarnings("ignore", "The 'auth' parameter is deprecated", DeprecationWarning)

REQUEST_SECONDS = 10.0
STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
T = TypeVar("T")


class TwilioFailure(FlowpbxError):
    """Twilio refused a request (`code`, `status` as Twilio gave them) or could not be reached
    (`status` 0)."""

    def __init__(self, message: str, *, status: int = 0, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class PlacedCall:
    sid: str
    status: str


@dataclass
class TwilioCredentials:
    """The account, and what signs REST requests: an API key and secret (preferred), or the
    account SID and auth token."""

    account_sid: str
    username: str
    password: str = field(repr=False)
    base_url: str = ""


class TwilioRest:
    """The calls flowpbx makes to Twilio. The client is made on first use, inside the running
    event loop (aiohttp sessions belong to one)."""

    def __init__(self, credentials: TwilioCredentials) -> None:
        self.credentials = credentials
        self._client: Client | None = None
        self._http: AsyncTwilioHttpClient | None = None

    def _api(self) -> Client:
        if self._client is None:
            self._http = AsyncTwilioHttpClient()
            creds = self.credentials
            self._client = Client(
                creds.username, creds.password, creds.account_sid, http_client=self._http
            )
            if creds.base_url:
                self._client.api.base_url = creds.base_url
        return self._client

    async def _call(self, operation: str, what: str, request: Awaitable[T]) -> T:
        """Await one request to Twilio within REQUEST_SECONDS; failures become TwilioFailure
        (`what` says what was asked, e.g. "Twilio refused the call"). Counted in the metrics
        by `operation` (create_call, dequeue...)."""
        try:
            async with asyncio.timeout(REQUEST_SECONDS):
                answer = await request
        except TwilioRestException as exc:
            metrics.twilio_request(operation, "refused")
            # The library prefixes Twilio's message with "Unable to create record: ".
            message = re.sub(r"^Unable to \w+ record: ", "", str(exc.msg))
            raise TwilioFailure(f"{what}: {message}", status=exc.status, code=exc.code) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            metrics.twilio_request(operation, "unreachable")
            raise TwilioFailure(f"Twilio could not be reached: {type(exc).__name__}") from exc
        metrics.twilio_request(operation)
        return answer

    async def create_call(
        self,
        *,
        to: str,
        from_: str,
        url: str,
        status_callback: str,
        timeout: int = 30,
        events: Sequence[str] = STATUS_EVENTS,
    ) -> PlacedCall:
        """Place a call; Twilio requests `url` when it is answered and reports its progress to
        `status_callback` (by default initiated, ringing, answered, completed)."""
        args: dict[str, Any] = {
            "to": to,
            "from_": from_,
            "url": url,
            "method": "POST",
            "status_callback": status_callback,
            "status_callback_method": "POST",
            "status_callback_event": list(events),
            "timeout": timeout,
        }
        call = await self._call(
            "create_call", "Twilio refused the call", self._api().calls.create_async(**args)
        )
        return PlacedCall(sid=str(call.sid), status=str(call.status))

    async def dequeue(self, queue_sid: str, call_sid: str, url: str) -> None:
        """Take one caller out of a Twilio queue: their call runs the TwiML at `url`."""
        member = self._api().queues(queue_sid).members(call_sid)
        await self._call(
            "dequeue",
            f"Twilio did not dequeue {call_sid}",
            member.update_async(url=url, method="POST"),
        )

    async def redirect(self, call_sid: str, url: str) -> None:
        """Make a call in progress run the TwiML at `url` (out of a queue, if it waits in one)."""
        call = self._api().calls(call_sid)
        await self._call(
            "redirect",
            f"Twilio did not redirect {call_sid}",
            call.update_async(url=url, method="POST"),
        )

    async def call_price(self, sid: str) -> tuple[str, str] | None:
        """The price Twilio charged for a call and its unit (like "-0.01700", "USD"), or None
        while Twilio has not priced it yet (it does so shortly after the call ends)."""
        call = await self._call(
            "fetch_call", f"Twilio did not give call {sid}", self._api().calls(sid).fetch_async()
        )
        if call.price in (None, ""):
            return None
        return str(call.price), str(call.price_unit or "USD").upper()

    async def aclose(self) -> None:
        if self._http is not None and self._http.session is not None:
            await self._http.session.close()
