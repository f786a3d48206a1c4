"""The `siprec` command: serve, check-config, version.

Subcommands live in SUBCOMMANDS (name -> Subcommand); add one with `register()` before `main()` builds the parser,
e.g. `register("stt", Subcommand("speech-to-text providers", configure_stt, run_stt))`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

import siprec
from siprec.config import Config, ConfigError, load_config, redact_url
from siprec.stt.command import configure_stt, run_stt

DEFAULT_CONFIG = Path("etc/siprec.yaml")

Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Subcommand:
    help: str
    configure: Callable[[argparse.ArgumentParser], None]  # adds the subcommand's own arguments
    run: Handler


SUBCOMMANDS: dict[str, Subcommand] = {}


def register(name: str, sub: Subcommand) -> None:
    SUBCOMMANDS[name] = sub


def _print_problems(err: ConfigError) -> None:
    for problem in err.problems:
        print(problem, file=sys.stderr)


def listen_summary(config: Config) -> str:
    """One line saying what would listen where (printed by check-config)."""
    sip, http, rtp = config.sip, config.http, config.rtp
    rec_dir = config.recording.dir
    shown_dir = str(rec_dir) if rec_dir.is_absolute() else f"./{rec_dir}"  # Path drops the "./" users wrote

    def port(p: int) -> str:
        return f"{sip.host}:{p}" if p else "off"

    return (
        f"sip udp {port(sip.udp_port)} tcp {port(sip.tcp_port)} tls {port(sip.tls_port)}; "
        f"rtp {rtp.port_min}-{rtp.port_max}; http {http.host}:{http.port}; "
        f"recordings {shown_dir}; store {redact_url(config.store.url)}; stt {config.stt.provider}"
    )


# --------------------------------------------------------------------------- serve


def _configure_serve(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", "-c", metavar="FILE", type=Path, default=None,
        help=f"YAML config (default: {DEFAULT_CONFIG} if it exists, else built-in defaults)",
    )


def not_implemented(config: Config) -> list[str]:
    """Valid settings this version cannot honour: refused at start rather than silently ignored."""
    problems = []
    if config.recording.encryption.enabled:
        problems.append("recording.encryption.enabled: encryption at rest is not implemented in this version")
    return problems


def _run_serve(args: argparse.Namespace) -> int:
    path: Path | None = args.config
    if path is None and DEFAULT_CONFIG.is_file():
        path = DEFAULT_CONFIG
    try:
        config = load_config(path)
    except ConfigError as err:
        _print_problems(err)
        print(f"siprec: refusing to start: {len(err.problems)} configuration problem(s)", file=sys.stderr)
        return 1
    for problem in not_implemented(config):
        print(f"siprec: refusing to start: {problem}", file=sys.stderr)
        return 1
    from siprec.logsetup import configure_logging

    configure_logging(config.log)
    from siprec.app import run  # lazy: the server's heavy imports are not needed by the other subcommands

    return run(config)


# --------------------------------------------------------------------------- check-config


def _configure_check(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", type=Path, help="YAML config to validate (env overrides apply)")
    p.add_argument("--show", action="store_true", help="also print the effective config (secrets redacted)")


def _run_check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as err:
        _print_problems(err)
        print(f"invalid: {args.file} ({len(err.problems)} problem(s))", file=sys.stderr)
        return 1
    for problem in not_implemented(config):
        print(f"warning: {problem} (serve will refuse to start)", file=sys.stderr)
    print(f"ok: {args.file}")
    print(listen_summary(config))
    if args.show:
        print(yaml.safe_dump(config.to_public_dict(), sort_keys=False), end="")
    return 0


# --------------------------------------------------------------------------- version


def _run_version(args: argparse.Namespace) -> int:
    print(f"siprec {siprec.__version__}")
    return 0


register("serve", Subcommand("run the recording server", _configure_serve, _run_serve))
register("check-config", Subcommand("validate a config file and exit", _configure_check, _run_check))
register("version", Subcommand("print the version", lambda p: None, _run_version))
register("stt", Subcommand("speech-to-text providers (stt list)", configure_stt, run_stt))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siprec", description="SIPREC (RFC 7866) recording server")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, sub in SUBCOMMANDS.items():
        p = subs.add_parser(name, help=sub.help, description=sub.help)
        sub.configure(p)
        p.set_defaults(handler=sub.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
