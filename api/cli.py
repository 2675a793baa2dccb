"""`storeflow serve` and `storeflow token ...`."""

from __future__ import annotations

import argparse
import os

from storeflow.cli import add_db_arg


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from storeflow.db import resolve_url
    from storeflow.settings import get_settings

    s = get_settings()
    if args.no_auth:
        s = s.model_copy(update={"api_auth": False})
    host, port = args.host or s.api_host, args.port or s.api_port
    workers = api_workers(args.workers if args.workers is not None else s.api_workers)
    print(f"StoreFlow dashboard: http://{host}:{port}/  (API docs: http://{host}:{port}/docs)", flush=True)
    if workers == 1:
        uvicorn.run(create_app(s, args.database_url), host=host, port=port, log_level="warning", workers=1)
        return 0
    # worker processes build the app from the environment: hand them what the command line chose
    os.environ["STOREFLOW_DATABASE_URL"] = resolve_url(s, args.database_url)  # (starts an embedded server once)
    if args.no_auth:
        os.environ["STOREFLOW_API_AUTH"] = "false"
    uvicorn.run("api.app:create_app", factory=True, host=host, port=port, log_level="warning", workers=workers)
    return 0


def api_workers(setting: int) -> int:
    """Worker processes for ``storeflow serve``: the setting, or for 0 one per two CPU cores (at most 4):
    PostgreSQL, on the same machine in most deployments, needs the other cores for the reports' queries."""
    return setting if setting > 0 else max(1, min(4, (os.cpu_count() or 1) // 2))


def _token_create(args: argparse.Namespace) -> int:
    from api.auth import create_token
    from storeflow.db import connect

    with connect(args.database_url) as conn:
        token_id, token = create_token(conn, args.role, args.store or None, args.name, args.expires_days)
    print(f"token {token_id} ({args.role}, stores: {', '.join(args.store) if args.store else 'all'}); "
          f"shown only now:\n{token}")
    return 0


def _token_list(args: argparse.Namespace) -> int:
    from api.auth import list_tokens
    from storeflow.db import connect

    with connect(args.database_url) as conn:
        for t in list_tokens(conn):
            state = "revoked" if t["revoked_at"] else "active"
            print(f"{t['token_id']}\t{t['role']}\t{','.join(t['stores'] or ['*'])}\t{state}\t{t['name']}")
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    from api.auth import revoke_token
    from storeflow.contract import BadInput
    from storeflow.db import connect

    with connect(args.database_url) as conn:
        if not revoke_token(conn, args.token_id):
            raise BadInput(f"no active token {args.token_id}")
    print(f"token {args.token_id} revoked")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `serve` and `token` to the `storeflow` parser."""
    p = sub.add_parser("serve", help="run the HTTP API and dashboard")
    add_db_arg(p)
    p.add_argument("--host", default=None, help="listen address (default STOREFLOW_API_HOST)")
    p.add_argument("--port", type=int, default=None, help="port (default STOREFLOW_API_PORT)")
    p.add_argument("--no-auth", action="store_true", help="serve without tokens (local demo only)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes (default STOREFLOW_API_WORKERS; 0 = one per two CPU cores, at most 4)")
    p.set_defaults(func=_serve)

    t = sub.add_parser("token", help="manage API tokens")
    ts = t.add_subparsers(dest="token_command", required=True, metavar="{create,list,revoke}")
    c = ts.add_parser("create", help="create a token (printed once)")
    add_db_arg(c)
    c.add_argument("--role", required=True, choices=("viewer", "analyst", "admin"))
    c.add_argument("--store", action="append", default=[], help="grant this store (repeat); default all")
    c.add_argument("--name", default="", help="a label for the token")
    c.add_argument("--expires-days", type=float, default=None, help="expiry in days (default never)")
    c.set_defaults(func=_token_create)
    ls = ts.add_parser("list", help="list tokens")
    add_db_arg(ls)
    ls.set_defaults(func=_token_list)
    r = ts.add_parser("revoke", help="revoke a token")
    add_db_arg(r)
    r.add_argument("token_id", type=int)
    r.set_defaults(func=_token_revoke)
