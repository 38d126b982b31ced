"""A certificate authority made by the tests, and certificates it signs.

Made once per test run into a temporary folder: the backend serves a
certificate for localhost/127.0.0.1 signed by the test CA; the gateway is
told to trust that CA through BACKEND_CA_BUNDLE. A second, untrusted CA and
a certificate for the wrong hostname let the tests check that verification
can't be fooled.
"""

import datetime
import ipaddress
import os
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_NOW = datetime.datetime.now(datetime.timezone.utc)


def _name(common):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def make_ca(common):
    key = _key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW - datetime.timedelta(days=1))
        .not_valid_after(_NOW + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_server_cert(ca_key, ca_cert, dns_names, ips=()):
    key = _key()
    sans = [x509.DNSName(n) for n in dns_names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(dns_names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW - datetime.timedelta(days=1))
        .not_valid_after(_NOW + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


class TestPKI:
    """Files of the test PKI: ca.pem, and key+cert PEMs for each server identity."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="wighaven-pki-")
        ca_key, ca_cert = make_ca("WigHaven Test CA")
        rogue_key, rogue_cert = make_ca("Untrusted Test CA")
        self.ca_pem = self._write("ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM))
        self.good = self._server("good", ca_key, ca_cert, ["localhost"], ["127.0.0.1"])
        self.wrong_host = self._server("wrong-host", ca_key, ca_cert, ["elsewhere.example"])
        self.untrusted = self._server("untrusted", rogue_key, rogue_cert, ["localhost"], ["127.0.0.1"])

    def _write(self, name, data):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def _server(self, name, ca_key, ca_cert, dns, ips=()):
        """Writes NAME.pem (key and certificate), NAME.key and NAME.crt."""
        key, cert = make_server_cert(ca_key, ca_cert, dns, ips)
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        self._write(name + ".key", _pem_key(key))
        self._write(name + ".crt", cert_pem)
        return self._write(name + ".pem", _pem_key(key) + cert_pem)


_pki = None


def pki() -> TestPKI:
    """The test PKI of this run, made on first use."""
    global _pki
    if _pki is None:
        _pki = TestPKI()
    return _pki
