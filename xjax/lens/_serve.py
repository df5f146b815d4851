"""Serve a Lens atlas on 127.0.0.1 (the standard library's HTTP server, no network access)."""

import functools
import http.server
import os
import threading

__all__ = ["serve"]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


def serve(directory: str, *, port: int = 8000, host: str = "127.0.0.1",
          background: bool = False) -> http.server.ThreadingHTTPServer:
    """Serve ``directory`` over HTTP on ``host:port`` (``port=0`` picks a free port).

    With ``background=True`` the server runs in a daemon thread and is returned (call
    ``server.shutdown()``); otherwise this blocks until interrupted.
    """
    if not os.path.exists(os.path.join(directory, "index.html")):
        raise FileNotFoundError(f"lens serve: {directory!r} has no index.html; build it first "
                                f"with `xjax lens build --out {directory}`")
    handler = functools.partial(_Quiet, directory=os.path.abspath(directory))
    server = http.server.ThreadingHTTPServer((host, port), handler)
    if background:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return server
