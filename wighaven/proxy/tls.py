"""TLS towards the backend: always verified, certificate and hostname.

The trust store is the system's (which honours SSL_CERT_FILE), plus the CA
certificates of BACKEND_CA_BUNDLE when one is given, for private CAs and
tests. There is deliberately no switch that turns verification off: the
token must only ever reach the backend it was meant for.
"""

from __future__ import annotations

from typing import Optional

from OpenSSL import crypto
from twisted.internet import ssl
from twisted.internet._sslverify import IOpenSSLTrustRoot, OpenSSLCertificateAuthorities
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

__all__ = ["BackendTLSPolicy", "load_ca_bundle"]


def load_ca_bundle(path: str) -> list:
    """Every certificate in the PEM file at C{path}, as pyOpenSSL X509 objects."""
    from cryptography import x509

    with open(path, "rb") as f:
        certs = x509.load_pem_x509_certificates(f.read())
    return [crypto.X509.from_cryptography(cert) for cert in certs]


@implementer(IOpenSSLTrustRoot)
class _SystemAndExtraTrust:
    """The platform's trust store with extra CA certificates added to it."""

    def __init__(self, extra: list):
        self._platform = ssl.platformTrust()
        self._extra = OpenSSLCertificateAuthorities(extra)

    def _addCACertsToContext(self, context):
        self._platform._addCACertsToContext(context)
        self._extra._addCACertsToContext(context)


@implementer(IPolicyForHTTPS)
class BackendTLSPolicy:
    """
    Agent's TLS policy: verify the server against the trust store and check
    its hostname (service_identity), for whatever host Agent connects to,
    which is only ever the configured backend.
    """

    def __init__(self, ca_bundle: Optional[str] = None):
        extra = load_ca_bundle(ca_bundle) if ca_bundle else []
        self._trust = _SystemAndExtraTrust(extra) if extra else ssl.platformTrust()
        self._options = {}

    def creatorForNetloc(self, hostname: bytes, port: int):
        options = self._options.get(hostname)
        if options is None:
            options = ssl.optionsForClientTLS(
                hostname.decode("idna"), trustRoot=self._trust, acceptableProtocols=[b"http/1.1"]
            )
            self._options[hostname] = options
        return options
