"""A small PostgREST stand-in for respx: answers the requests supabase-py sends from a real
Postgres database holding the real migrations, the way PostgREST would.

PostgREST itself cannot be installed here. This covers only the request shapes the Supabase
adapter uses (select with eq/in filters, order and limit; insert; update; rpc), and refuses
anything else loudly, so an adapter change that sends a new shape fails the tests instead of
being answered wrongly. SQL errors become PostgREST's status codes and JSON error bodies.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import psycopg
from psycopg import sql

# PostgREST's mapping of SQLSTATE to HTTP status, for the codes these tests can produce.
_STATUS = {"42501": 403, "23505": 409, "23503": 409, "22P02": 400, "P0001": 400,
           "42P01": 404, "42883": 404, "57014": 500}
_READ_ONLY_PARAMS = {"select", "order", "limit", "offset"}


def error_body(code: str, message: str, details: str | None = None,
               hint: str | None = None) -> dict[str, Any]:
    return {"code": code, "details": details, "hint": hint, "message": message}


class FakePostgrest:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/rest/v1/")
        try:
            with psycopg.connect(self.dsn) as conn:  # one transaction per request, as PostgREST
                if path.startswith("rpc/"):
                    assert request.method == "POST", request
                    return self._rpc(conn, path[4:], json.loads(request.content))
                if request.method == "GET":
                    return self._select(conn, path, request.url.params)
                if request.method == "POST":
                    return self._insert(conn, path, request)
                if request.method == "PATCH":
                    return self._update(conn, path, request)
        except psycopg.Error as exc:
            code = exc.sqlstate or "XX000"
            status = int(code[2:]) if code.startswith("PT") else _STATUS.get(code, 500)
            return httpx.Response(status, json=error_body(
                code, exc.diag.message_primary or str(exc), exc.diag.message_detail,
                exc.diag.message_hint))
        raise AssertionError(f"unexpected PostgREST request {request.method} {request.url}")

    @staticmethod
    def _where(params: httpx.QueryParams) -> tuple[sql.Composable, list[Any]]:
        clauses: list[sql.Composable] = []
        args: list[Any] = []
        for column, value in params.multi_items():
            if column in _READ_ONLY_PARAMS:
                continue
            op, _, operand = value.partition(".")
            if op == "eq":
                clauses.append(sql.SQL("{}::text = %s").format(sql.Identifier(column)))
                args.append(operand)
            elif op == "in":
                assert operand.startswith("(") and operand.endswith(")"), value
                items = [v.strip('"') for v in operand[1:-1].split(",")]
                clauses.append(sql.SQL("{}::text = ANY(%s)").format(sql.Identifier(column)))
                args.append(items)
            else:
                raise AssertionError(f"unsupported filter {column}={value}")
        where = sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("true")
        return where, args

    @staticmethod
    def _json(conn: psycopg.Connection, query: sql.Composable, args: list[Any]) -> Any:
        wrapped = sql.SQL("SELECT coalesce(json_agg(r), '[]') FROM ({}) r").format(query)
        row = conn.execute(wrapped, args).fetchone()
        assert row is not None
        return row[0]

    def _select(self, conn: psycopg.Connection, table: str,
                params: httpx.QueryParams) -> httpx.Response:
        assert params.get("select") == "*" or re.fullmatch(r"[a-z_,]+", params["select"]), params
        columns = (sql.SQL("*") if params["select"] == "*"
                   else sql.SQL(", ").join(map(sql.Identifier, params["select"].split(","))))
        where, args = self._where(params)
        query = sql.SQL("SELECT {} FROM {} WHERE {}").format(columns, sql.Identifier(table), where)
        if "order" in params:
            terms = []
            for term in params["order"].split(","):
                column, direction = term.split(".")
                assert direction in ("asc", "desc"), term
                terms.append(sql.SQL("{} " + direction).format(sql.Identifier(column)))
            query = sql.SQL("{} ORDER BY {}").format(query, sql.SQL(", ").join(terms))
        if "limit" in params:
            query = sql.SQL("{} LIMIT {}").format(query, sql.Literal(int(params["limit"])))
        if "offset" in params:
            query = sql.SQL("{} OFFSET {}").format(query, sql.Literal(int(params["offset"])))
        return httpx.Response(200, json=self._json(conn, query, args))

    def _returning(self, conn: psycopg.Connection, request: httpx.Request,
                   query: sql.Composable, args: list[Any], status: int) -> httpx.Response:
        prefer = request.headers.get("prefer", "")
        assert prefer in ("return=minimal", "return=representation"), prefer
        row = conn.execute(sql.SQL("WITH w AS ({} RETURNING *) "
                                   "SELECT coalesce(json_agg(w), '[]') FROM w").format(query),
                           args).fetchone()
        assert row is not None
        rows = row[0]
        if prefer == "return=minimal":
            return httpx.Response(status)
        return httpx.Response(status, json=rows)

    def _insert(self, conn: psycopg.Connection, table: str,
                request: httpx.Request) -> httpx.Response:
        assert not request.url.params, request.url
        body = json.loads(request.content)
        rows = body if isinstance(body, list) else [body]
        columns = sql.SQL(", ").join(map(sql.Identifier, rows[0]))
        query = sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM "
                        "json_populate_recordset(NULL::{t}, %s)").format(
            t=sql.Identifier(table), c=columns)
        return self._returning(conn, request, query, [json.dumps(rows)], 201)

    def _update(self, conn: psycopg.Connection, table: str,
                request: httpx.Request) -> httpx.Response:
        changes = json.loads(request.content)
        where, args = self._where(request.url.params)
        columns = sql.SQL(", ").join(map(sql.Identifier, changes))
        query = sql.SQL("UPDATE {t} SET ({c}) = (SELECT {c} FROM json_populate_record("
                        "NULL::{t}, %s)) WHERE {w}").format(
            t=sql.Identifier(table), c=columns, w=where)
        return self._returning(conn, request, query, [json.dumps(changes), *args], 200)

    def _rpc(self, conn: psycopg.Connection, function: str,
             params: dict[str, Any]) -> httpx.Response:
        found = conn.execute(
            "SELECT p.proretset, p.prorettype::regtype::text, "
            "array(SELECT format('%%I %%s', n, t::regtype) FROM unnest(p.proargnames, "
            "p.proargtypes::oid[]) AS a(n, t)) FROM pg_proc p WHERE p.proname = %s "
            "AND p.pronamespace = 'public'::regnamespace", (function,)).fetchone()
        if found is None:
            return httpx.Response(404, json=error_body(
                "PGRST202", f"Could not find the function public.{function} in the schema cache"))
        returns_set, return_type, arg_defs = found
        names = [d.split(" ", 1)[0] for d in arg_defs]
        assert set(params) == set(names), (params, names)
        record = sql.SQL("json_to_record(%s) AS a({})").format(sql.SQL(", ").join(
            sql.SQL(d) for d in arg_defs))
        call = sql.SQL("{}({})").format(sql.Identifier(function), sql.SQL(", ").join(
            sql.SQL("{n} := a.{n}").format(n=sql.Identifier(n)) for n in names))
        if returns_set:
            query = sql.SQL("SELECT f.* FROM {r}, LATERAL {c} f").format(r=record, c=call)
            return httpx.Response(200, json=self._json(conn, query, [json.dumps(params)]))
        if return_type == "void":
            conn.execute(sql.SQL("SELECT {c} FROM {r}").format(c=call, r=record),
                         [json.dumps(params)])
            return httpx.Response(204)
        row = conn.execute(sql.SQL("SELECT to_json({c}) FROM {r}").format(c=call, r=record),
                           [json.dumps(params)]).fetchone()
        assert row is not None
        return httpx.Response(200, json=row[0])
