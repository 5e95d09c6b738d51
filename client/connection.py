"""Keeping the session connected: a ClientService with back-off that tells the user what it does."""

from __future__ import annotations

from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer

from client import display
from client.protocol import ChatConnectionFactory
from client.session import Session, Show

FIRST_RETRY = 0.5
LONGEST_RETRY = 10.0


@implementer(IStreamClientEndpoint)
class _ReportingEndpoint:
    """Says why a connection attempt failed; ClientService alone would retry in silence."""

    def __init__(self, endpoint: IStreamClientEndpoint, where: str, show: Show) -> None:
        self._endpoint = endpoint
        self._where = where
        self._show = show

    def connect(self, factory: IProtocolFactory) -> Deferred[Any]:
        return self._endpoint.connect(factory).addErrback(self._failed)

    def _failed(self, failure: Failure) -> Failure:
        if not failure.check(CancelledError):
            self._show([display.info(
                f"cannot connect to {self._where}: {failure.getErrorMessage()}")])
        return failure


def connect(session: Session, reactor: Any, host: str, port: int, show: Show,
            tls: Any = None) -> ClientService:
    """Start connecting, for good: every lost connection is retried with back-off. `tls`, a
    connection creator (client.tls), wraps the connection in TLS."""
    backoff = backoffPolicy(FIRST_RETRY, LONGEST_RETRY)

    def retry(attempt: int) -> float:
        delay = backoff(attempt)
        if not session.closing:
            show([display.info(f"reconnecting in {delay:.1f} s")])
        return delay

    where = f"{host}:{port}"
    show([display.info(f"connecting to {where}")])
    tcp: IStreamClientEndpoint = HostnameEndpoint(reactor, host, port)
    if tls is not None:
        tcp = wrapClientTLS(tls, tcp)
    endpoint = _ReportingEndpoint(tcp, where, show)
    service = ClientService(endpoint, ChatConnectionFactory(session, reactor),
                            retryPolicy=retry, clock=reactor)
    service.startService()
    return service
