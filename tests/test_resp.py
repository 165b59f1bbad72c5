"""Redis's wire format (llm_router.resp), the one parser of every reply our two Redis clients read."""
from __future__ import annotations

import contextlib
import io
import unittest
from unittest import mock

from llm_router import resp


class ReplyTests(unittest.TestCase):
    def read(self, data: bytes) -> object:
        return resp.read_reply(io.BytesIO(data))

    def test_each_kind(self):
        self.assertEqual(self.read(b"+PONG\r\n"), "PONG")
        self.assertEqual(self.read(b":42\r\n"), 42)
        self.assertEqual(self.read(b"$5\r\nhello\r\n"), "hello")
        self.assertIsNone(self.read(b"$-1\r\n"))
        self.assertIsNone(self.read(b"*-1\r\n"))
        self.assertEqual(self.read(b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n"), ["a", [1]])

    def test_an_error_reply_is_a_value_cut_to_200_characters(self):
        reply = self.read(b"-WRONGPASS " + b"x" * 500 + b"\r\n")
        self.assertIsInstance(reply, resp.ReplyError)
        self.assertEqual(len(str(reply)), 200)

    def test_short_and_foreign_replies_are_a_dropped_connection(self):
        for data in (b"", b"+PONG", b"$10\r\nshort\r\n", b"*2\r\n:1\r\n", b"HTTP/1.1 400 Bad Request\r\n",
                     b":x\r\n", b"$abc\r\n", b"$999999999999\r\n", b"*1\r\n" * (resp.MAX_DEPTH + 1) + b":1\r\n"):
            with self.subTest(data=data), self.assertRaises(ConnectionError):
                self.read(data)

    def test_encode_is_an_array_of_bulk_strings(self):
        self.assertEqual(resp.encode(("SET", "k", "vé")), b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\xc3\xa9\r\n")


class ConnectionTest(unittest.TestCase):
    """usage_share's connection over resp, against a peer on loopback that answers every command with one reply."""

    def peer(self, reply: bytes) -> int:
        import socket
        import threading

        server = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(server.close)

        def answer():
            with contextlib.suppress(OSError):
                conn, _ = server.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(reply)
                    conn.recv(65536)  # until the client hangs up

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 10)
        return server.getsockname()[1]

    def test_a_refused_password_is_a_redis_error_and_the_connection_is_dropped(self):
        from llm_router.usage_share import Connection, RedisError, RedisTarget

        port = self.peer(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
        connection = Connection(RedisTarget("127.0.0.1", port, password="secret-value"), timeout=10)
        with self.assertRaises(RedisError) as caught:
            connection.execute([("PING",)])
        self.assertIn("WRONGPASS", str(caught.exception))
        self.assertNotIn("secret-value", str(caught.exception))
        self.assertIsNone(connection._sock)

    def test_a_failed_tls_handshake_closes_the_socket(self):
        import ssl

        raw = mock.Mock()
        with mock.patch("socket.create_connection", return_value=raw), \
                mock.patch.object(ssl, "create_default_context", side_effect=ssl.SSLError("handshake")):
            with self.assertRaises(ssl.SSLError):
                resp.connect("127.0.0.1", 6379, 1.0, tls=True)
        raw.close.assert_called_once_with()


if __name__ == "__main__":
    unittest.main()
