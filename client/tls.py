"""TLS for chat-client: the server's certificate is verified against the system's trust store,
or against a CA file (a private deployment, a test certificate); --insecure encrypts without
verifying anything and says so."""

from typing import Any

from twisted.internet import ssl


def client_tls(host: str, ca: str | None, insecure: bool) -> Any:
    """The connection creator for `wrapClientTLS`: verifying name and chain unless insecure."""
    if insecure:
        return ssl.CertificateOptions()
    if ca is None:
        trust: Any = ssl.platformTrust()
    else:
        with open(ca, "rb") as f:
            trust = ssl.Certificate.loadPEM(f.read())
    return ssl.optionsForClientTLS(host, trustRoot=trust)
