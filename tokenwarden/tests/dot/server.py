"""A real django-oauth-toolkit (DOT) authorization server for tokenwarden's tests.

Listens on 127.0.0.1 on an ephemeral port, with a fresh SQLite database in a
temporary directory (removed at exit), then prints ONE JSON line on stdout (see
README.md) and serves until its stdin is closed; then it exits 0. Nothing else is
written to stdout; set TW_DOT_DEBUG=1 for logs on stderr.

    .venv/bin/python server.py
"""

import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for twdot

USER = {"login": "alice", "password": "alice-password-TOPSECRET"}
CALLBACK = "http://127.0.0.1/callback"  # any port is allowed on it (RFC 8252 §7.3)

# The applications, as DOT models them: one grant type each (refresh_token comes
# with authorization-code, password and the device code). Secrets are stored
# unhashed (hash_client_secret=False): the plain secret is checked in constant
# time, without a costly hash at each start and each request.
CLIENTS = {
    # client_secret_basic and client_secret_post work for any confidential client;
    # two of them to match the other server's clients.
    "cc-basic": {"client_type": "confidential", "authorization_grant_type": "client-credentials"},
    "cc-post": {"client_type": "confidential", "authorization_grant_type": "client-credentials"},
    # A web app: authorization code + PKCE, refresh tokens, OpenID Connect;
    # skip_authorization: no consent page.
    "app": {
        "client_type": "confidential",
        "authorization_grant_type": "authorization-code",
        "redirect_uris": CALLBACK,
        "algorithm": "RS256",
        "skip_authorization": True,
    },
    # A native app (RFC 8252): public, PKCE, loopback redirect; with DOT's consent page.
    "cli": {
        "client_type": "public",
        "authorization_grant_type": "authorization-code",
        "redirect_uris": CALLBACK,
        "algorithm": "RS256",
    },
    # The device flow (RFC 8628) is a grant of its own in DOT, so not `app`'s:
    # a public client, and a confidential one. DOT's device authorization
    # endpoint wants client_id in the form, so the confidential one works with
    # client_secret_post there, not with client_secret_basic alone.
    # OpenID clients (RS256), as a refresh that repeats `openid` makes an ID
    # token, which fails (HTTP 500) for a client without an algorithm.
    "device": {
        "client_type": "public",
        "authorization_grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "algorithm": "RS256",
    },
    "device-confidential": {
        "client_type": "confidential",
        "authorization_grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "algorithm": "RS256",
    },
    # The resource owner password grant (still in DOT 3.4.1, deprecated by RFC 9700).
    "pw": {"client_type": "confidential", "authorization_grant_type": "password"},
}


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """The standard library's WSGI server, one thread per request."""

    daemon_threads = True
    request_queue_size = 64  # the listen backlog: tests may connect many at once


class Handler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
        if os.environ.get("TW_DOT_DEBUG"):
            super().log_message(format, *args)


def create_user_and_clients():
    """Creates alice and the applications; returns the clients for the ready line."""
    from django.contrib.auth import get_user_model
    from oauth2_provider.models import get_application_model

    get_user_model().objects.create_user(username=USER["login"], password=USER["password"])
    clients = {}
    for client_id, fields in CLIENTS.items():
        confidential = fields["client_type"] == "confidential"
        secret = f"{client_id}-TOPSECRET" if confidential else ""
        get_application_model().objects.create(
            client_id=client_id,
            name=client_id,
            client_secret=secret,
            hash_client_secret=False,
            **fields,
        )
        clients[client_id] = {
            "client_secret": secret or None,
            "client_type": fields["client_type"],
            "grant_type": fields["authorization_grant_type"],  # DOT's name for it
        }
        if "redirect_uris" in fields:
            clients[client_id]["redirect_uri"] = fields["redirect_uris"]
    return clients


def endpoints(base):
    """The endpoints' URLs, as DOT's URL configuration has them."""
    from django.urls import reverse

    def url(name):
        return base + reverse(name)

    return {
        "openid_configuration": url("oauth2_provider:oidc-connect-discovery-info"),
        "oauth_authorization_server": url("rfc8414-metadata"),
        "authorization_endpoint": url("oauth2_provider:authorize"),
        "token_endpoint": url("oauth2_provider:token"),
        # In neither metadata document: configure it.
        "device_authorization_endpoint": url("oauth2_provider:device-authorization"),
        "revocation_endpoint": url("oauth2_provider:revoke-token"),
        "introspection_endpoint": url("oauth2_provider:introspect"),
        "userinfo_endpoint": url("oauth2_provider:user-info"),
        "jwks_uri": url("oauth2_provider:jwks-info"),
    }


def main():
    ready_out = sys.stdout
    sys.stdout = sys.stderr  # whatever else is printed goes to stderr
    # Killed rather than closed: still remove the temporary directory.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    workdir = tempfile.mkdtemp(prefix="tokenwarden-dot-")
    try:
        # The port first: the issuer (and so Django's settings) depends on it.
        server = make_server("127.0.0.1", 0, None, ThreadingWSGIServer, Handler)
        base = f"http://127.0.0.1:{server.server_port}"
        issuer = f"{base}/o"
        os.environ["TW_DOT_ISSUER"] = issuer
        os.environ["TW_DOT_DB"] = os.path.join(workdir, "db.sqlite3")
        os.environ["DJANGO_SETTINGS_MODULE"] = "twdot.settings"

        import django
        from django.core.management import call_command
        from django.core.wsgi import get_wsgi_application

        django.setup()
        call_command("migrate", verbosity=0, interactive=False)
        clients = create_user_and_clients()
        server.set_app(get_wsgi_application())
        threading.Thread(target=server.serve_forever, daemon=True).start()

        ready = {"issuer": issuer, **endpoints(base), "clients": clients, "user": USER}
        ready_out.write(json.dumps(ready) + "\n")
        ready_out.flush()

        # Until the test process closes our stdin (or ends); the server's
        # threads are daemons, and end with this one.
        try:
            sys.stdin.buffer.read()
        except KeyboardInterrupt:
            pass
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
