"""Credentials for a Kerberized HDFS, checked before hdfs-native connects.

On a secure cluster (``hadoop.security.authentication=kerberos`` in the client configuration) a process
authenticates to HDFS with one of two things: a delegation token, in the file YARN gives its
containers (``HADOOP_TOKEN_FILE_LOCATION``), or a Kerberos ticket, from the ticket cache kinit fills.
Without either, hdfs-native fails late and unclearly (a GSSAPI error naming a ticket cache the
container was never meant to have, or "Connection refused" after a minute of retries on an HA
cluster), so ``usable_credentials`` looks first and says in one line what is missing and what to run.

It also bridges one gap between Hadoop and hdfs-native: Hadoop names a delegation token's service by
the NameNode's IP address (``hadoop.security.token.service.use_ip``, true by default), while
hdfs-native looks its token up by the host:port it connects to. A URL naming the NameNode by host name
would find no token; the jobs connect to the address the token names instead.

The ticket is asked of the system's GSSAPI library (MIT's libgssapi_krb5, through ctypes), the one
hdfs-native itself loads, so the answer is what hdfs-native will find, whatever the cache type
(``FILE:``, ``KEYRING:``, ``KCM:``) or a client keytab (``KRB5_CLIENT_KTNAME``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from . import hadooptokens

TOKEN_FILE_VARIABLE = "HADOOP_TOKEN_FILE_LOCATION"
KINIT_HINT = "run kinit (or kinit -kt KEYTAB PRINCIPAL), or pass spark-submit --principal and --keytab"
# hdfs-native skips a token whose maximum date is less than this far away (user.rs).
TOKEN_MARGIN_MS = 60_000


def security_enabled(properties: Mapping[str, str]) -> bool:
    """Whether a client configuration (core-site.xml's properties) asks for Kerberos."""
    return properties.get("hadoop.security.authentication", "simple").strip().lower() == "kerberos"


@dataclass(frozen=True)
class Ticket:
    principal: str
    seconds_left: int


class KerberosUnavailable(OSError):
    """No usable ticket: GSSAPI's own reason, in one line."""


class TicketExpired(KerberosUnavailable):
    """The ticket cache holds a ticket, past its end time."""


GSS_S_CREDENTIALS_EXPIRED = 11  # a routine error (bits 16-23 of a major status), RFC 2744


def current_ticket() -> Ticket:
    """The Kerberos credential this process would initiate with (its principal and how long it lasts);
    KerberosUnavailable if there is none or the library is missing."""
    library = _gssapi()
    minor, credential, name = ctypes.c_uint32(), ctypes.c_void_p(), ctypes.c_void_p()
    lifetime = ctypes.c_uint32()
    major = library.gss_acquire_cred(ctypes.byref(minor), None, 0xFFFFFFFF, None, 1, ctypes.byref(credential), None, None)
    if major >> 16:  # a routine or calling error (the low 16 bits are informational)
        raise KerberosUnavailable(_status(library, major, minor.value))
    try:
        major = library.gss_inquire_cred(ctypes.byref(minor), credential, ctypes.byref(name), ctypes.byref(lifetime), None, None)
        if (major >> 16) & 0xFF == GSS_S_CREDENTIALS_EXPIRED:  # MIT acquires an expired ticket, then says so here
            raise TicketExpired("the ticket has expired")
        if major >> 16:
            raise KerberosUnavailable(_status(library, major, minor.value))
        buffer = _Buffer()
        library.gss_display_name(ctypes.byref(minor), name, ctypes.byref(buffer), None)
        principal = ctypes.string_at(buffer.value, buffer.length).decode(errors="replace")
        library.gss_release_buffer(ctypes.byref(minor), ctypes.byref(buffer))
        library.gss_release_name(ctypes.byref(minor), ctypes.byref(name))
        return Ticket(principal, int(lifetime.value))
    finally:
        library.gss_release_cred(ctypes.byref(minor), ctypes.byref(credential))


class _Buffer(ctypes.Structure):
    _fields_ = [("length", ctypes.c_size_t), ("value", ctypes.c_void_p)]


@lru_cache(maxsize=1)
def _gssapi() -> ctypes.CDLL:
    name = ctypes.util.find_library("gssapi_krb5") or "libgssapi_krb5.so.2"
    try:
        library = ctypes.CDLL(name)
    except OSError:
        raise KerberosUnavailable(f"the Kerberos library {name} is not installed (Debian: apt-get install libgssapi-krb5-2; "
                                  "RHEL: krb5-libs)") from None
    pointer, uint = ctypes.POINTER, ctypes.c_uint32
    library.gss_acquire_cred.argtypes = [pointer(uint), ctypes.c_void_p, uint, ctypes.c_void_p, ctypes.c_int,
                                         pointer(ctypes.c_void_p), ctypes.c_void_p, ctypes.c_void_p]
    library.gss_inquire_cred.argtypes = [pointer(uint), ctypes.c_void_p, pointer(ctypes.c_void_p), pointer(uint), ctypes.c_void_p,
                                         ctypes.c_void_p]
    library.gss_display_name.argtypes = [pointer(uint), ctypes.c_void_p, pointer(_Buffer), ctypes.c_void_p]
    library.gss_display_status.argtypes = [pointer(uint), uint, ctypes.c_int, ctypes.c_void_p, pointer(uint), pointer(_Buffer)]
    library.gss_release_buffer.argtypes = [pointer(uint), pointer(_Buffer)]
    library.gss_release_name.argtypes = [pointer(uint), pointer(ctypes.c_void_p)]
    library.gss_release_cred.argtypes = [pointer(uint), pointer(ctypes.c_void_p)]
    for function in ("gss_acquire_cred", "gss_inquire_cred", "gss_display_name", "gss_display_status", "gss_release_buffer",
                     "gss_release_name", "gss_release_cred"):
        getattr(library, function).restype = uint
    return library


def _status(library: ctypes.CDLL, major: int, minor: int) -> str:
    """GSSAPI's words for a status: the mechanism's (Kerberos's, which names the cache) when it has some."""
    messages = []
    for code, kind in ((minor, 2), (major, 1)):  # GSS_C_MECH_CODE, GSS_C_GSS_CODE
        context = ctypes.c_uint32(0)
        while code:
            status, buffer = ctypes.c_uint32(), _Buffer()
            library.gss_display_status(ctypes.byref(status), code, kind, None, ctypes.byref(context), ctypes.byref(buffer))
            messages.append(ctypes.string_at(buffer.value, buffer.length).decode(errors="replace"))
            library.gss_release_buffer(ctypes.byref(status), ctypes.byref(buffer))
            if not context.value:
                break
        if messages:
            break
    return "; ".join(message for message in messages if message) or f"GSSAPI status {major:#x}"


@lru_cache(maxsize=64)
def _addresses(host: str) -> frozenset[str]:
    try:
        return frozenset(info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP))
    except OSError:
        return frozenset()


def token_host(tokens: list[hadooptokens.Token], host: str, port: int | None) -> str | None:
    """The host to connect to for the HDFS delegation token of host:port: host itself if a token names
    it (or the HA name service, port None), the IP address a token names if host resolves to it; None
    if no token is for this NameNode."""
    services = {token.service for token in tokens if token.kind == hadooptokens.HDFS_DELEGATION_TOKEN}
    if port is None:
        return host if f"ha-hdfs:{host}" in services else None
    if f"{host}:{port}" in services:
        return host
    for address in sorted(_addresses(host)):
        if f"{address}:{port}" in services:
            return address
    return None


def usable_credentials(host: str, port: int | None, conf_dir: str, env: Mapping[str, str] = os.environ,
                       now_ms: int | None = None) -> str:
    """For a secure cluster's NameNode host:port (port None: an HA name service), the host hdfs-native
    should connect to; a one-line ValueError saying what is missing and what to do if this process has
    neither a delegation token for it nor a Kerberos ticket."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    where = f"HDFS at {host}{f':{port}' if port else ''} is Kerberized (hadoop.security.authentication=kerberos in {conf_dir}/core-site.xml)"
    token_file = env.get(TOKEN_FILE_VARIABLE)
    if token_file:
        try:
            tokens = hadooptokens.read_tokens(token_file)
        except OSError as error:
            raise ValueError(f"{where} and the delegation tokens in {TOKEN_FILE_VARIABLE}={token_file} cannot be read: "
                             f"{error.strerror or error}") from None
        target = token_host(tokens, host, port)
        if target is None:
            services = sorted({token.service for token in tokens}) or ["none"]
            where += f", the delegation tokens in {token_file} are for other services ({', '.join(services)}),"
        else:
            service = f"{target}:{port}" if port else f"ha-hdfs:{host}"
            dates = [t.max_date_ms for t in tokens if t.service == service and t.kind == hadooptokens.HDFS_DELEGATION_TOKEN]
            if all(date is not None and date <= now_ms + TOKEN_MARGIN_MS for date in dates):
                ended = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(max(dates) / 1000))
                raise ValueError(f"{where} and its delegation token in {token_file} (service {service}) reached its maximum "
                                 f"lifetime at {ended}: start runs longer than the cluster's token lifetime with "
                                 "spark-submit --deploy-mode cluster --principal PRINCIPAL --keytab KEYTAB")
            return target
    try:
        ticket = current_ticket()
    except TicketExpired:
        raise ValueError(f"{where} and this process's Kerberos ticket has expired: {KINIT_HINT}") from None
    except KerberosUnavailable as error:
        raise ValueError(f"{where} and this process has no Kerberos ticket ({error}): {KINIT_HINT}") from None
    if ticket.seconds_left <= 0:
        raise ValueError(f"{where} and the Kerberos ticket of {ticket.principal} has expired: {KINIT_HINT}")
    return host
