"""A Doris 2.1/3.x stand-in for tests and the benchmark: FE + BE HTTP (Stream Load) and the MySQL port.

    emu = DorisEmulator(); emu.start()
    emu.query("CREATE DATABASE d"); ...; emu.stop()

Everything binds to 127.0.0.1 and free ports unless ports are given; read the real ports after
start(). The facade only wires the parts together:

  schema.py        columns, types, Doris errors, literal coercion (shared by everything below)
  sql_parser.py    SQL tokenizer, CREATE TABLE / column DDL parser, SHOW CREATE TABLE rendering
  storage.py       the Catalog: databases, tables and rows in sqlite, information_schema, txn records
  sql_exec.py      runs one SQL statement (DDL, SHOW, DESCRIBE, INSERT; SELECT rewritten for sqlite)
  transactions.py  Stream Load transactions: label rules, PREPARE/PRECOMMITTED/VISIBLE/ABORTED, 2PC
  mysql_server.py  the FE query port (9030), MySQL wire protocol
  http_server.py   FE (8030: redirects, 2PC API) and BE (8040: Stream Load) over HTTP
  loader.py        Stream Load bodies -> rows (headers, CSV/JSON parsing, Doris's conversion rules)
  faults.py        fault injection
"""
from __future__ import annotations

import threading

from .faults import KINDS as FAULT_KINDS, Faults

__all__ = ["DorisEmulator", "Faults", "FAULT_KINDS"]


class DorisEmulator:
    """One emulated Doris cluster (one FE, one BE) in this process."""

    def __init__(self, host: str = "127.0.0.1", fe_http_port: int = 0, be_http_port: int = 0,
                 query_port: int = 0, user: str = "root", password: str = "", bench: bool = False,
                 auth_error_style: str = "http401", precommit_timeout_s: float = 3600.0,
                 catalog_path: str = ":memory:", max_running_txn_num_per_db: int = 1000,
                 load_state_style: str = "wrapped", tls: bool = False):
        from .http_server import DorisHTTP
        from .storage import Catalog
        from .tls import make_test_ca
        self.host, self.user, self.password, self.bench = host, user, password, bench
        # tls=True: FE, BE and the MySQL port speak TLS with a certificate from a CA made now; clients
        # trust it through ca_file (sinker: doris.https + doris.ca_file). Removed again by stop().
        self._ca = make_test_ca(host) if tls else None
        self._tls = self._ca.server_context() if self._ca is not None else None
        self.ca_file: str | None = self._ca.ca_file if self._ca is not None else None
        self.scheme = "https" if tls else "http"
        self.catalog = Catalog(catalog_path)
        self.faults = Faults()
        self._query_port_wanted = query_port
        self._mysql = None
        self._http = DorisHTTP(self.catalog, host, fe_http_port, be_http_port, user, password, self.faults,
                               bench, auth_error_style, precommit_timeout_s,
                               max_running_txn_num_per_db=max_running_txn_num_per_db,
                               load_state_style=load_state_style, tls=self._tls)
        self._conn = None
        self._conn_lock = threading.Lock()

    # ports (real ones after start())
    @property
    def fe_http_port(self) -> int:
        return self._http.fe_port

    @property
    def be_http_port(self) -> int:
        return self._http.be_port

    @property
    def query_port(self) -> int:
        return self._mysql.port if self._mysql is not None else self._query_port_wanted

    def start(self) -> "DorisEmulator":
        from .mysql_server import MySQLServer
        self._mysql = MySQLServer(self.catalog, self.host, self._query_port_wanted, self.user, self.password,
                                  tls=self._tls)
        self._mysql.start()
        self._http.state.query_port = self._mysql.port
        self._http.start()
        return self

    def stop(self) -> None:
        with self._conn_lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except Exception:  # noqa: BLE001 - closing a dead connection
                    pass
                self._conn = None
        self._http.stop()
        if self._mysql is not None:
            self._mysql.stop()
        if self._ca is not None:
            self._ca.remove()

    def __enter__(self) -> "DorisEmulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def take_down(self) -> None:
        """FE and BE HTTP stop listening (connection refused); data, labels and the MySQL port stay."""
        self._http.take_down()

    def bring_up(self) -> None:
        """Listen again on the same FE and BE ports."""
        self._http.bring_up()

    def query(self, sql: str) -> list[tuple]:
        """Run SQL over the MySQL port with pymysql, like a user would (one connection, reused)."""
        import pymysql
        with self._conn_lock:
            for attempt in (1, 2):
                if self._conn is None:
                    self._conn = pymysql.connect(host=self.host, port=self.query_port, user=self.user,
                                                 password=self.password, autocommit=True,
                                                 ssl={"ca": self.ca_file} if self.ca_file else None,
                                                 connect_timeout=10, read_timeout=120, write_timeout=120)
                try:
                    with self._conn.cursor() as cur:
                        cur.execute(sql)
                        return list(cur.fetchall())
                except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as e:
                    broken = isinstance(e, pymysql.err.InterfaceError) or (e.args and e.args[0] in (2006, 2013, 2014))
                    if not broken or attempt == 2:
                        raise
                    try:
                        self._conn.close()
                    except Exception:  # noqa: BLE001
                        pass
                    self._conn = None
        return []
