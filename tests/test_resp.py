"""Redis's wire format (llm_router.resp), the one parser of every reply our two Redis clients read."""
from __future__ import annotations

import io
import unittest

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
        for data in (b"", b"+PONG", b"$10\r\nshort\r\n", b"*2\r\n:1\r\n", b"HTTP/1.1 400 Bad Request\r\n"):
            with self.subTest(data=data), self.assertRaises(ConnectionError):
                self.read(data)

    def test_encode_is_an_array_of_bulk_strings(self):
        self.assertEqual(resp.encode(("SET", "k", "vé")), b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\xc3\xa9\r\n")


if __name__ == "__main__":
    unittest.main()
