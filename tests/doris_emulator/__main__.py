"""`python -m tests.doris_emulator`: run the emulator in the foreground until SIGINT/SIGTERM."""
from __future__ import annotations

import argparse
import signal
import threading

from . import DorisEmulator


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.doris_emulator",
                                 description="Apache Doris emulator: FE/BE HTTP (Stream Load) and the MySQL port")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--fe-http-port", type=int, default=0)
    ap.add_argument("--be-http-port", type=int, default=0)
    ap.add_argument("--query-port", type=int, default=0)
    ap.add_argument("--user", default="root")
    ap.add_argument("--password", default="")
    ap.add_argument("--bench", action="store_true",
                    help="check framing, labels and row/column counts without converting or storing rows")
    ap.add_argument("--auth-error-style", choices=("http401", "json200"), default="http401")
    ap.add_argument("--precommit-timeout-s", type=float, default=3600.0,
                    help="abort a pre-committed (2PC) txn nobody committed after this long")
    ap.add_argument("--max-running-txn-num-per-db", type=int, default=1000,
                    help="running-transaction slots per database (PRECOMMITTED txns hold one)")
    ap.add_argument("--load-state-style", choices=("wrapped", "flat"), default="wrapped",
                    help="get_load_state answer: newer {msg,code,data} or older {Label,Status,State}")
    ap.add_argument("--tls", action="store_true",
                    help="serve FE, BE and the query port over TLS with a test CA made at start (path printed)")
    args = ap.parse_args(argv)
    emu = DorisEmulator(host=args.host, fe_http_port=args.fe_http_port, be_http_port=args.be_http_port,
                        query_port=args.query_port, user=args.user, password=args.password, bench=args.bench,
                        auth_error_style=args.auth_error_style, precommit_timeout_s=args.precommit_timeout_s,
                        max_running_txn_num_per_db=args.max_running_txn_num_per_db,
                        load_state_style=args.load_state_style, tls=args.tls)
    emu.start()
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print(f"doris emulator: fe_http={emu.fe_http_port} be_http={emu.be_http_port} query={emu.query_port} "
          f"host={emu.host} bench={args.bench} scheme={emu.scheme} ca_file={emu.ca_file}", flush=True)
    while not done.wait(1.0):
        pass
    emu.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
