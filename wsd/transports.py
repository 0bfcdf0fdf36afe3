"""Which transport serves the sockets: `server.transport` ("websockets" or "picows") to the
`wsd.transport.Listening` that runs it, built with the handler it calls.

The one place that names the implementations; picows is imported only when chosen (it is
the optional `picows` extra).
"""

from __future__ import annotations

from wsd.config import ServerConfig
from wsd.transport import ConnectionHandler, Listening
from wsd.transport_websockets import WebsocketsListening

__all__ = ["listening_for"]


def listening_for(handler: ConnectionHandler, settings: ServerConfig) -> Listening:
    """The transport `settings.transport` names, serving `handler`."""
    if settings.transport == "picows":
        from wsd.transport_picows import PicowsListening   # the optional `picows` extra
        return PicowsListening(handler, settings)
    return WebsocketsListening(handler, settings)
