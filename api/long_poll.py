"""What a view and the serving layer (api/server.py) share about a long-poll (`?wait=`).

Under `tally api` a view does not wait in its thread: it answers with the current state and
leaves a `LongPoll` in the WSGI environ; the server parks it on its event loop and renders
the answer again when the transaction's notification arrives or the wait ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# The WSGI environ keys: set by the server when it can park long-polls; set by the view
# when it leaves one to park.
ASYNC_LONG_POLL = "tally.async_long_poll"
LONG_POLL = "tally.long_poll"


@dataclass
class LongPoll:
    """A wait the view hands to the server: re-render until final or the deadline."""

    transaction_id: str
    timeout: float
    # Run in a pool thread: the answer's body now, and whether the transaction is final.
    render: Callable[[], tuple[bytes, bool]]
    # Gives the long-poll slot back (per process and per tenant).
    release: Callable[[], None]
