#!/usr/bin/env python3
"""tests/fuzz/make_corpus.py: writes the seed corpus of pg_codec_fuzz (tests/fuzz/corpus/pg_codec/).

Valid frames of both phases, as clients and servers send them. Re-run after changing it:
    python3 tests/fuzz/make_corpus.py
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "pg_codec")


def startup(params):
    body = struct.pack("!I", 196608)
    for k, v in params:
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def msg(t, body=b""):
    return t.encode() + struct.pack("!I", len(body) + 4) + body


def cstr(s):
    return s.encode() + b"\0"


SSL = struct.pack("!II", 8, 80877103)
GSSENC = struct.pack("!II", 8, 80877104)
CANCEL = struct.pack("!IIii", 16, 80877102, 4242, -123456789)

parse = msg("P", cstr("s1") + cstr("SELECT abalance FROM pgbench_accounts WHERE aid = $1")
            + struct.pack("!hI", 1, 23))
bind = msg("B", cstr("") + cstr("s1") + struct.pack("!hh", 1, 0) + struct.pack("!h", 1)
           + struct.pack("!i", 5) + b"12345" + struct.pack("!hh", 1, 0))
describe = msg("D", b"P" + cstr(""))
execute = msg("E", cstr("") + struct.pack("!i", 0))
sync = msg("S")
close = msg("C", b"S" + cstr("s1"))

error = msg("E", b"SERROR\0VERROR\0C42P01\0Mrelation \"nope\" does not exist\0P15\0"
            b"Fparse_relation.c\0L1392\0RparserOpenTable\0\0")
notice = msg("N", b"SNOTICE\0VNOTICE\0C00000\0Mhello\0\0")

SEEDS = {
    "startup_psql": startup([("user", "reservoir_app"), ("database", "reservoir_test"),
                             ("application_name", "psql"), ("client_encoding", "UTF8")]),
    "startup_options": startup([("user", "app"), ("database", "db"),
                                ("options", "-c reservoir.cclass=REPORTING -c reservoir.purity=self")]),
    "startup_min": startup([("user", "u")]),
    "startup_replication": startup([("user", "u"), ("replication", "database")]),
    "ssl_request": SSL,
    "gssenc_request": GSSENC,
    "ssl_then_startup": SSL + startup([("user", "u"), ("database", "d")]),
    "cancel_request": CANCEL,
    "startup_then_query": startup([("user", "u")]) + msg("Q", cstr("SELECT 1")),
    "query": msg("Q", cstr("SELECT 1")),
    "query_multi": msg("Q", cstr("BEGIN; UPDATE pgbench_accounts SET abalance = 1; COMMIT;")),
    "extended_batch": parse + bind + describe + execute + sync,
    "extended_close": close + msg("H") + sync + msg("X"),
    "password_md5": msg("p", cstr("md5" + "0123456789abcdef" * 2)),
    "sasl_initial": msg("p", cstr("SCRAM-SHA-256") + struct.pack("!i", 32)
                        + b"n,,n=,r=rOprNGfwEbeRWgbNEkqO%hvYDp"[:32]),
    "sasl_initial_null": msg("p", cstr("SCRAM-SHA-256") + struct.pack("!i", -1)),
    "sasl_response": msg("p", b"c=biws,r=nonce,p=proof"),
    "error_response": error,
    "notice_response": notice,
    "auth_ok": msg("R", struct.pack("!i", 0)),
    "auth_md5": msg("R", struct.pack("!i", 5) + b"\x01\x02\x03\x04"),
    "auth_sasl": msg("R", struct.pack("!i", 10) + cstr("SCRAM-SHA-256-PLUS") + cstr("SCRAM-SHA-256") + b"\0"),
    "auth_sasl_continue": msg("R", struct.pack("!i", 11) + b"r=abc,s=c2FsdA==,i=4096"),
    "server_login": (msg("R", struct.pack("!i", 0)) + msg("S", cstr("server_version") + cstr("15.18"))
                     + msg("S", cstr("TimeZone") + cstr("UTC"))
                     + msg("K", struct.pack("!ii", 777, 99999)) + msg("Z", b"I")),
    "server_results": (msg("1") + msg("2") + msg("T", struct.pack("!h", 1) + cstr("abalance")
                       + struct.pack("!IhIhih", 0, 0, 23, 4, -1, 0))
                       + msg("D", struct.pack("!hi", 1, 1) + b"0") + msg("C", cstr("SELECT 1"))
                       + msg("Z", b"T") + error + msg("Z", b"E")),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds in {OUT}")


if __name__ == "__main__":
    main()
