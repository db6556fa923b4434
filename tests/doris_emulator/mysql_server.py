"""The Doris FE query port (9030): a small MySQL wire-protocol server in front of the Catalog.

Hand-written rather than mysql-mimic because Doris SQL (DDL with DISTRIBUTED BY, SHOW TRANSACTION,
DESCRIBE) must reach the Catalog verbatim, and pymysql only needs the text protocol: handshake v10,
mysql_native_password, COM_QUERY/INIT_DB/PING/QUIT, OK/ERR/EOF packets, TLS on request (SSLRequest)
when the server has a TLS context. One thread per connection.

Result column types are chosen from the values so pymysql returns what it would from real Doris:
int -> LONGLONG (int, also for LARGEINT), float -> DOUBLE, DecimalText -> NEWDECIMAL (Decimal),
DateText -> DATE (datetime.date), DateTimeText -> DATETIME (datetime.datetime), other str -> VAR_STRING.
A column whose values are all NULL (or an empty result) is VAR_STRING.
"""
from __future__ import annotations

import hashlib
import logging
import os
import socket
import ssl
import struct
import threading

from .schema import DateText, DateTimeText, DecimalText, DorisError
from .storage import Catalog

log = logging.getLogger(__name__)

# capability flags
_LONG_PASSWORD, _FOUND_ROWS, _LONG_FLAG, _CONNECT_WITH_DB = 0x1, 0x2, 0x4, 0x8
_PROTOCOL_41, _TRANSACTIONS, _SECURE_CONNECTION = 0x200, 0x2000, 0x8000
_MULTI_RESULTS, _PLUGIN_AUTH, _CONNECT_ATTRS, _PLUGIN_AUTH_LENENC = 0x20000, 0x80000, 0x100000, 0x200000
_SERVER_CAPS = (_LONG_PASSWORD | _FOUND_ROWS | _LONG_FLAG | _CONNECT_WITH_DB | _PROTOCOL_41 | _TRANSACTIONS
                | _SECURE_CONNECTION | _MULTI_RESULTS | _PLUGIN_AUTH | _CONNECT_ATTRS | _PLUGIN_AUTH_LENENC)
_SSL = 0x800
_STATUS_AUTOCOMMIT = 0x0002
_UTF8, _BINARY = 33, 63
# column types
_T_NEWDECIMAL, _T_DOUBLE, _T_LONGLONG, _T_DATE, _T_DATETIME, _T_VAR_STRING = 246, 5, 8, 10, 12, 253
_BINARY_FLAG = 0x80
_MAX_PAYLOAD = 0xFFFFFF
SERVER_VERSION = "5.7.99"


def _lenenc_int(n: int) -> bytes:
    if n < 251:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfc" + struct.pack("<H", n)
    if n < 1 << 24:
        return b"\xfd" + struct.pack("<I", n)[:3]
    return b"\xfe" + struct.pack("<Q", n)


def _lenenc_str(b: bytes) -> bytes:
    return _lenenc_int(len(b)) + b


def _read_lenenc_int(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    if first < 251:
        return first, pos + 1
    if first == 0xFC:
        return struct.unpack_from("<H", data, pos + 1)[0], pos + 3
    if first == 0xFD:
        return int.from_bytes(data[pos + 1:pos + 4], "little"), pos + 4
    return struct.unpack_from("<Q", data, pos + 1)[0], pos + 9


def native_password_scramble(password: str, salt: bytes) -> bytes:
    """What a client sends for mysql_native_password: SHA1(pw) XOR SHA1(salt + SHA1(SHA1(pw)))."""
    if not password:
        return b""
    h1 = hashlib.sha1(password.encode()).digest()
    h2 = hashlib.sha1(h1).digest()
    h3 = hashlib.sha1(salt + h2).digest()
    return bytes(a ^ b for a, b in zip(h1, h3))


def _column_type(values) -> tuple[int, int, int]:
    """(type, charset, flags) for a result column, from its first non-NULL value."""
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool) or isinstance(v, int):
            return _T_LONGLONG, _BINARY, _BINARY_FLAG
        if isinstance(v, float):
            return _T_DOUBLE, _BINARY, _BINARY_FLAG
        if isinstance(v, DecimalText):
            return _T_NEWDECIMAL, _BINARY, _BINARY_FLAG
        if isinstance(v, DateTimeText):
            return _T_DATETIME, _BINARY, _BINARY_FLAG
        if isinstance(v, DateText):
            return _T_DATE, _BINARY, _BINARY_FLAG
        break
    return _T_VAR_STRING, _UTF8, 0


def _text(v) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, float):
        return repr(v).encode()
    if isinstance(v, bool):
        return b"1" if v else b"0"
    return str(v).encode()


class _Conn:
    """One client connection: packet framing, handshake, then the command loop."""

    def __init__(self, server: "MySQLServer", sock: socket.socket, conn_id: int):
        self.server, self.sock, self.conn_id = server, sock, conn_id
        self.seq = 0
        self.db: str | None = None
        self.buf = bytearray()
        self.plain_handshake = server.tls is not None

    # ------------------------------------------------------------------------------- framing

    def _recv_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            # before TLS starts, read no further than the packet: the ClientHello follows the SSLRequest
            chunk = self.sock.recv(n - len(self.buf) if self.plain_handshake else max(65536, n - len(self.buf)))
            if not chunk:
                raise ConnectionError("client closed the connection")
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_packet(self) -> bytes:
        payload = b""
        while True:
            head = self._recv_exact(4)
            length = int.from_bytes(head[:3], "little")
            self.seq = (head[3] + 1) & 0xFF
            payload += self._recv_exact(length)
            if length < _MAX_PAYLOAD:
                return payload

    def _frame(self, payload: bytes) -> bytes:
        out = bytearray()
        while True:
            part, payload = payload[:_MAX_PAYLOAD], payload[_MAX_PAYLOAD:]
            out += len(part).to_bytes(3, "little") + bytes([self.seq]) + part
            self.seq = (self.seq + 1) & 0xFF
            if len(part) < _MAX_PAYLOAD:
                return bytes(out)

    def send(self, *payloads: bytes) -> None:
        self.sock.sendall(b"".join(self._frame(p) for p in payloads))

    # ------------------------------------------------------------------------------- packets

    @staticmethod
    def ok(affected: int = 0) -> bytes:
        return b"\x00" + _lenenc_int(affected) + _lenenc_int(0) + struct.pack("<HH", _STATUS_AUTOCOMMIT, 0)

    @staticmethod
    def err(code: int, sqlstate: str, message: str) -> bytes:
        return b"\xff" + struct.pack("<H", code) + b"#" + sqlstate.encode()[:5].ljust(5, b"0") + message.encode()

    @staticmethod
    def eof() -> bytes:
        return b"\xfe" + struct.pack("<HH", 0, _STATUS_AUTOCOMMIT)

    def _column_def(self, name: str, ctype: int, charset: int, flags: int) -> bytes:
        n = name.encode()
        return (_lenenc_str(b"def") + _lenenc_str((self.db or "").encode()) + _lenenc_str(b"") + _lenenc_str(b"")
                + _lenenc_str(n) + _lenenc_str(n) + b"\x0c" + struct.pack("<HIBHB", charset, 65535, ctype, flags,
                                                                              31 if ctype == _T_DOUBLE else 0)
                + b"\x00\x00")

    def send_result(self, columns: list[str], rows: list[tuple]) -> None:
        types = [_column_type(r[i] for r in rows) for i in range(len(columns))]
        packets = [_lenenc_int(len(columns))]
        packets += [self._column_def(name, *t) for name, t in zip(columns, types)]
        packets.append(self.eof())
        for r in rows:
            packets.append(b"".join(b"\xfb" if v is None else _lenenc_str(_text(v)) for v in r))
        packets.append(self.eof())
        self.send(*packets)

    # ------------------------------------------------------------------------------ handshake

    def handshake(self) -> bool:
        salt = bytes(b % 94 + 33 for b in os.urandom(20))    # printable, no NUL, like MySQL's
        tls = self.server.tls
        caps = _SERVER_CAPS | (_SSL if tls is not None else 0)
        greeting = (b"\x0a" + SERVER_VERSION.encode() + b"\x00" + struct.pack("<I", self.conn_id) + salt[:8]
                    + b"\x00" + struct.pack("<H", caps & 0xFFFF) + bytes([_UTF8])
                    + struct.pack("<H", _STATUS_AUTOCOMMIT) + struct.pack("<H", caps >> 16) + bytes([21])
                    + b"\x00" * 10 + salt[8:] + b"\x00" + b"mysql_native_password\x00")
        self.seq = 0
        self.send(greeting)
        data = self.read_packet()
        self.plain_handshake = False
        client_caps = struct.unpack_from("<I", data, 0)[0]
        if tls is not None and client_caps & _SSL and len(data) == 32:     # SSLRequest: TLS, then the rest
            self.sock = tls.wrap_socket(self.sock, server_side=True)
            data = self.read_packet()
            client_caps = struct.unpack_from("<I", data, 0)[0]
        if not client_caps & _PROTOCOL_41:
            self.send(self.err(1043, "08S01", "Bad handshake: the emulator needs a 4.1+ protocol client"))
            return False
        pos = 32
        end = data.index(b"\x00", pos)
        user = data[pos:end].decode(errors="replace")
        pos = end + 1
        if client_caps & _PLUGIN_AUTH_LENENC:
            n, pos = _read_lenenc_int(data, pos)
        elif client_caps & _SECURE_CONNECTION:
            n, pos = data[pos], pos + 1
        else:
            n = data.index(b"\x00", pos) - pos
        auth = data[pos:pos + n]
        pos += n
        db = None
        if client_caps & _CONNECT_WITH_DB and pos < len(data):
            end = data.index(b"\x00", pos)
            db = data[pos:end].decode() or None
            pos = end + 1
        plugin = ""
        if client_caps & _PLUGIN_AUTH and pos < len(data):
            end = data.find(b"\x00", pos)
            plugin = data[pos:end if end >= 0 else len(data)].decode(errors="replace")
        if plugin and plugin != "mysql_native_password":
            # ask the client to switch to the plugin we check
            self.send(b"\xfe" + b"mysql_native_password\x00" + salt + b"\x00")
            auth = self.read_packet()
        expected = native_password_scramble(self.server.password, salt)
        peer = self.sock.getpeername()[0]
        if user != self.server.user or auth != expected:
            using = "YES" if auth else "NO"
            self.send(self.err(1045, "28000", f"Access denied for user '{user}'@'{peer}' (using password: {using})"))
            return False
        if db is not None:
            if not self.server.catalog.has_database(db):
                self.send(self.err(1049, "42000", f"errCode = 2, detailMessage = Unknown database '{db}'"))
                return False
            self.db = db
        self.send(self.ok())
        return True

    # -------------------------------------------------------------------------------- commands

    def serve(self) -> None:
        try:
            if not self.handshake():
                return
            while True:
                data = self.read_packet()
                if not data:
                    continue
                cmd, arg = data[0], data[1:]
                if cmd == 0x01:      # COM_QUIT
                    return
                if cmd == 0x0E:      # COM_PING
                    self.send(self.ok())
                elif cmd == 0x02:    # COM_INIT_DB
                    name = arg.decode()
                    if self.server.catalog.has_database(name):
                        self.db = name
                        self.send(self.ok())
                    else:
                        self.send(self.err(1049, "42000", f"errCode = 2, detailMessage = Unknown database '{name}'"))
                elif cmd == 0x03:    # COM_QUERY
                    self.query(arg.decode("utf-8", errors="replace"))
                else:
                    self.send(self.err(1047, "08S01", f"Unknown command {cmd:#x}: the emulator speaks only "
                                                      "the text protocol (COM_QUERY)"))
        except (ConnectionError, OSError):
            return
        except (ValueError, IndexError, struct.error) as e:   # a malformed packet: drop this client only
            log.warning("MySQL emulator: dropping connection %d after a malformed packet: %s", self.conn_id, e)
            return
        finally:
            try:
                self.sock.close()
            except OSError:
                pass
            self.server._forget(self)

    def query(self, sql: str) -> None:
        try:
            r = self.server.catalog.execute_full(sql, self.db)
        except DorisError as e:
            self.send(self.err(e.code, e.sqlstate, e.message))
            return
        except Exception as e:  # noqa: BLE001 - an emulator bug must reach the client, not kill the thread
            log.exception("emulator failed on %r", sql)
            self.send(self.err(1105, "HY000", f"errCode = 2, detailMessage = emulator internal error: {e!r}"))
            return
        if r.new_db is not None:
            self.db = r.new_db
        if r.columns:
            self.send_result(r.columns, r.rows)
        else:
            self.send(self.ok(r.affected))


class MySQLServer:
    """The FE query port on 127.0.0.1; ``port=0`` picks a free one (read ``.port`` after start())."""

    def __init__(self, catalog: Catalog, host: str = "127.0.0.1", port: int = 0, user: str = "root",
                 password: str = "", tls: ssl.SSLContext | None = None):
        self.catalog, self.host, self.user, self.password = catalog, host, user, password
        self.tls = tls            # offered to clients that ask (CLIENT_SSL); plain clients still connect
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = self._sock.getsockname()[1]
        self._conns: set[_Conn] = set()
        self._lock = threading.Lock()
        self._next_id = 1
        self._thread: threading.Thread | None = None
        self._stopping = False

    def __enter__(self) -> "MySQLServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "MySQLServer":
        self._sock.listen(64)
        self._thread = threading.Thread(target=self._accept_loop, name=f"doris-emu-mysql-{self.port}", daemon=True)
        self._thread.start()
        return self

    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                sock, _ = self._sock.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                conn = _Conn(self, sock, self._next_id)
                self._next_id += 1
                self._conns.add(conn)
            threading.Thread(target=conn.serve, name=f"doris-emu-mysql-conn-{conn.conn_id}", daemon=True).start()

    def _forget(self, conn: _Conn) -> None:
        with self._lock:
            self._conns.discard(conn)

    def stop(self) -> None:
        """Close the listening socket and every open connection; joins the accept thread."""
        self._stopping = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
