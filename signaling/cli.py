"""The `shopcall` command: run the server, mint tokens, migrate the database.

Server and storage modules are imported inside the commands so that `shopcall --help`, token
minting and config checks work (and fail with a clear message) without the heavy media stack.
Exit codes: 0 success, 1 runtime failure (database), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .auth import TokenIssuer, default_ttl, resolve_secret
from .config import DEMO_CONFIG, ConfigError, Settings, StaffConfig, load_settings
from .model import Role, StaffMember
from .storage import StorageError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A command line that cannot be carried out as given (exit code 2)."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # forwarded verbatim, options included, to the load tool
        return _bench(argv[1:])
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits on errors and --help; callers want a code
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    command: Callable[[argparse.Namespace], int] = args.command
    try:
        return command(args)
    except (ConfigError, UsageError) as e:
        _error(str(e))
        return EXIT_USAGE
    except StorageError as e:
        _error(f"database error: {e}")
        return EXIT_FAILURE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shopcall", description="Video consultation server for retail.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    config.add_argument("--demo", action="store_true",
                        help="use the bundled demo configuration (unless --config is given)")
    config.add_argument("--db", type=Path, metavar="PATH", help="SQLite database file")

    serve = commands.add_parser("serve", parents=[config], help="run the server")
    serve.add_argument("--host", help="address to listen on")
    serve.add_argument("--port", type=int, help="port to listen on")
    serve.add_argument("--tls-cert", type=Path, metavar="FILE",
                       help="serve HTTPS: PEM certificate chain (with --tls-key)")
    serve.add_argument("--tls-key", type=Path, metavar="FILE",
                       help="PEM private key of --tls-cert, unencrypted")
    serve.set_defaults(command=_serve)

    token = commands.add_parser("token", help="print an access token")
    kinds = token.add_subparsers(title="roles", metavar="ROLE", required=True)
    ttl = argparse.ArgumentParser(add_help=False)
    ttl.add_argument("--ttl", type=_positive_float, metavar="SECONDS",
                     help="lifetime (default: from the configuration)")
    staff = kinds.add_parser(
        "staff", parents=[config, ttl], help="staff token; profile options create/update")
    staff.add_argument("id", metavar="ID")
    staff.add_argument("--store", help="store id (required to create a staff member)")
    staff.add_argument("--name", help="display name (default: ID when creating)")
    staff.add_argument("--skills", type=_csv, metavar="A,B", help="comma-separated skills")
    staff.add_argument("--languages", type=_csv, metavar="fr,en",
                       help="comma-separated language codes")
    staff.add_argument("--max", type=int, metavar="N", dest="max_conversations",
                       help="maximum simultaneous conversations (1-20)")
    staff.add_argument("--channels", type=_csv, metavar="chat,audio,video",
                       help="channels this person takes")
    staff.set_defaults(command=_token_staff)
    operator = kinds.add_parser("operator", parents=[config, ttl], help="operator token")
    operator.add_argument("name", metavar="NAME")
    operator.set_defaults(command=_token_operator)

    migrate = commands.add_parser("migrate", parents=[config],
                                  help="create or upgrade the database schema")
    migrate.set_defaults(command=_migrate)

    report = commands.add_parser("report", parents=[config],
                                 help="write the weekly report (Markdown or HTML with charts)")
    report.add_argument("--week", nargs="?", const="", default="", metavar="YYYY-Www",
                        help="ISO week, e.g. 2026-W07 (default: the last complete week)")
    report.add_argument("--store", help="one store (default: every store)")
    report.add_argument("--format", choices=("md", "html"), default="md")
    report.add_argument("--tz", default="UTC", help="IANA time zone of the week (default UTC)")
    report.add_argument("--out", type=Path, metavar="FILE",
                        help="file to write (default: standard output)")
    report.set_defaults(command=_report)

    # Listed for --help only: main() forwards `bench ...` before argparse sees it.
    commands.add_parser("bench", help="load-test a running server (forwards its arguments)")
    return parser


# Commands ------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(args, {"server.host": args.host, "server.port": args.port,
                                "server.tls_cert": args.tls_cert,
                                "server.tls_key": args.tls_key})
    from .server import serve  # lazily: the aiohttp/media stack only when serving

    try:
        serve(settings, banner=print, demo=args.demo)
    except KeyboardInterrupt:  # Ctrl-C is how a foreground server is meant to stop
        pass
    return EXIT_OK


def _token_operator(args: argparse.Namespace) -> int:
    settings = _settings(args)
    print(_mint(settings, Role.OPERATOR, args.name, args.ttl))
    return EXIT_OK


def _token_staff(args: argparse.Namespace) -> int:
    settings = _settings(args)
    profile = {key: getattr(args, key) for key in _PROFILE_OPTIONS
               if getattr(args, key) is not None}
    configured = any(s.id == args.id for s in settings.staff)
    # A configured member needs no database access to get a token; anything else does.
    if profile or not configured:
        asyncio.run(_ensure_staff(settings, args.id, profile, configured))
    print(_mint(settings, Role.STAFF, args.id, args.ttl))
    return EXIT_OK


def _migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from .sqlite_storage import migrate

    path = settings.database.path
    schema_version = asyncio.run(migrate(path))
    print(f"database at {path} is at schema version {schema_version}")
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    import sqlite3
    import time
    import zoneinfo

    from .reporting import SQLiteReports
    from .weekly_report import parse_week, previous_week, render, week_bounds

    settings = _settings(args)
    try:
        tz = zoneinfo.ZoneInfo(args.tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"unknown time zone {args.tz!r} (IANA names such as Europe/Paris)"
                         ) from None
    now = time.time()
    try:
        year, week = parse_week(args.week) if args.week else previous_week(now, tz)
    except ValueError as exc:
        raise UsageError(f"--week: {exc}") from None
    path = settings.database.path
    if not Path(path).is_file():
        raise StorageError(f"no database at {path} (give --db, or run the server once)")
    reports = SQLiteReports(path)
    start, end = week_bounds(year, week, tz)
    try:
        stores = asyncio.run(reports.stores())
        if args.store is not None and args.store not in stores:
            raise UsageError(f"unknown store {args.store!r}; known: {', '.join(stores)}")
        data = asyncio.run(reports.weekly(
            week=f"{year}-W{week:02d}", start=start, end=end, now=now, store=args.store,
            tz_name=args.tz, tz=tz, default_aht_s=settings.routing.default_handle_time_s))
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read {path}: {exc}") from None
    text = render(data, args.format)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
        _error(f"wrote {args.out} ({data.title()})")
    return EXIT_OK


def _bench(argv: list[str]) -> int:
    try:
        available = importlib.util.find_spec("benchmarks.cli") is not None
    except ModuleNotFoundError:
        available = False
    if not available:
        print("shopcall bench is not available in this build", file=sys.stderr)
        return EXIT_USAGE
    from benchmarks.cli import main as bench_main  # type: ignore[import-not-found]

    return int(bench_main(argv) or 0)


# Helpers -------------------------------------------------------------------------------

# CLI option (argparse dest) -> StaffConfig field, for profile updates and error messages.
_PROFILE_OPTIONS = {"store": "--store", "name": "--name", "skills": "--skills",
                    "languages": "--languages", "max_conversations": "--max",
                    "channels": "--channels"}


async def _ensure_staff(settings: Settings, staff_id: str, profile: dict[str, Any],
                        configured: bool) -> None:
    """Create or update the staff member the token is for, so it can actually log in."""
    from .sqlite_storage import SQLiteStorage

    storage = SQLiteStorage(settings.database.path, synchronous=settings.database.synchronous)
    await storage.open()
    try:
        existing = await storage.get_staff(staff_id)
        if existing is None and not configured and "store" not in profile:
            raise UsageError(f"unknown staff member {staff_id}: give --store to create it")
        if not profile:
            return
        if existing is not None:
            base = _staff_fields(existing)
        elif configured:
            base = next(s for s in settings.staff if s.id == staff_id).model_dump()
        else:
            base = {"id": staff_id, "name": staff_id}
        member = _validated_staff({**base, **profile})
        # Configured stores may not be in the database yet if the server never ran.
        for store in settings.store_models():
            await storage.upsert_store(store)
        if await storage.get_store(member.store_id) is None:
            raise UsageError(f"unknown store {member.store_id}: add it to the configuration "
                             "file ([[stores]]) first")
        await storage.upsert_staff(member)
        if configured:
            _error(f"note: {staff_id} is also defined in the configuration, which the server "
                   "may apply again on start")
    finally:
        await storage.close()


def _staff_fields(member: StaffMember) -> dict[str, Any]:
    return {"id": member.id, "name": member.name, "store": member.store_id,
            "skills": sorted(member.skills), "languages": sorted(member.languages),
            "max_conversations": member.max_conversations,
            "channels": sorted(c.value for c in member.channels)}


def _validated_staff(fields: dict[str, Any]) -> StaffMember:
    try:
        return StaffConfig(**fields).to_model()
    except ValidationError as e:
        problems = []
        for err in e.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            option = _PROFILE_OPTIONS.get(field, field or "staff profile")
            problems.append(f"invalid {option}: {err['msg']}")
        raise UsageError("; ".join(problems)) from None


def _settings(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> Settings:
    config_file = args.config or (DEMO_CONFIG if args.demo else None)
    merged = {"database.path": args.db, **(overrides or {})}
    return load_settings(config_file, {k: v for k, v in merged.items() if v is not None})


def _mint(settings: Settings, role: Role, subject: str, ttl_s: float | None) -> str:
    issuer = TokenIssuer(resolve_secret(settings))
    return issuer.mint(role, subject, ttl_s if ttl_s is not None else default_ttl(settings, role))


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value!r}")
    return number


def _version() -> str:
    try:
        return version("shopcall")
    except PackageNotFoundError:
        return "unknown"


def _error(message: str) -> None:
    print(f"shopcall: {message}", file=sys.stderr)
