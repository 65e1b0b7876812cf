"""A small TCP proxy of the suite's own between the workers and Redis or PostgreSQL, that can make the
link slow (latency on every chunk), hang it (nothing forwarded, connections kept open: Toxiproxy's
`timeout 0`) or reset every connection on it."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

from tests.support.processes import free_port

CHUNK = 65536


class Proxy:
    """`host`:`port` forwarded to 127.0.0.1:`target`; `mode` is "pass", "slow" or "hang"."""

    def __init__(self, target: int, *, latency_s: float = 0.2, host: str = "127.0.0.1") -> None:
        self.target, self.port, self.latency_s = target, free_port(), latency_s
        self.mode = "pass"
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener = socket.create_server((host, self.port))
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name=f"proxy-{self.port}").start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _address = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()  # the server is down (being restarted): refused, as it would be
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(CHUNK):
                while self.mode == "hang" and not self._closed:
                    time.sleep(0.05)  # held: the peer sees a link that says nothing
                if self.mode == "slow":
                    time.sleep(self.latency_s)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(source, sink)

    def _drop(self, *sockets: socket.socket, graceful: bool = True) -> None:
        with self._lock:
            for sock in sockets:
                self._sockets.discard(sock)
                # shutdown() first: the pump of the other direction may be blocked in recv() on this
                # socket, and a bare close() neither wakes it nor lets the kernel end the connection (no
                # FIN, no RST): a client killed mid-transaction left its PostgreSQL backend, and the
                # locks it held, alive for ever behind the proxy. A killed process's kernel closes at once.
                if graceful:  # a reset (SO_LINGER 0, SHUT_RD done) must end in an RST, not a FIN
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()

    def reset(self) -> int:
        """Reset every open connection (RST, not FIN); how many were open."""
        with self._lock:
            open_now = list(self._sockets)
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # Wakes the pump blocked in recv() on it: a bare close() would not, and the kernel keeps
                # a socket some thread still reads from open (ESTABLISHED, silent), so the peer would see
                # a link that hangs for ever instead of one that was reset. SHUT_RD sends nothing.
                sock.shutdown(socket.SHUT_RD)
        self._drop(*open_now, graceful=False)
        return len(open_now) // 2

    def close(self) -> None:
        """Stop listening and drop every connection."""
        self._closed = True
        self._listener.close()
        self.reset()
