#!/usr/bin/python3
"""A real SMTP server nobody here wrote (aiosmtpd, from Debian), requiring STARTTLS and AUTH and refusing
every login, for .ci/host-checks: linkbatch must stop (exit 3) on the refused login, never hang or send.
Usage: smtp-server.py CERT KEY PORTFILE COUNTFILE. Writes the port it listens on to PORTFILE, and the number
of messages it took to COUNTFILE as they come."""
import asyncio
import socket
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

cert, key, port_file, count_file = sys.argv[1:5]
taken = 0


class Handler:
    async def handle_DATA(self, server, session, envelope):
        global taken
        taken += 1
        with open(count_file, "w") as f:
            f.write(str(taken))
        return "250 OK"


def refuse_every_login(server, session, envelope, mechanism, auth_data):
    return AuthResult(success=False, handled=False)


probe = socket.socket()
probe.bind(("127.0.0.1", 0))
port = probe.getsockname()[1]
probe.close()

context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
controller = Controller(
    Handler(),
    hostname="127.0.0.1",
    port=port,
    tls_context=context,
    require_starttls=True,
    auth_required=True,
    auth_require_tls=True,
    authenticator=refuse_every_login,
)
controller.start()
with open(count_file, "w") as f:
    f.write("0")
with open(port_file, "w") as f:
    f.write(str(port))
try:
    asyncio.get_event_loop().run_forever()
except KeyboardInterrupt:
    pass
