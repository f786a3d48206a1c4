"""`siprec stt list [--config FILE] [--json]`: the installed providers, what they can do, which one is configured.

Registered in siprec/cli.py through `register()`. Light to import: the registry (and the plugins) load only when
the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["configure_stt", "run_stt"]


def configure_stt(p: argparse.ArgumentParser) -> None:
    subs = p.add_subparsers(dest="stt_command", metavar="ACTION", required=True)
    lst = subs.add_parser(
        "list",
        help="installed providers, their capabilities, the configured one",
        description="installed speech-to-text providers (entry-point group siprec.stt)",
    )
    lst.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        type=Path,
        default=None,
        help="YAML config whose stt section is checked (default: etc/siprec.yaml if it exists)",
    )
    lst.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run_stt(args: argparse.Namespace) -> int:
    from siprec.cli import DEFAULT_CONFIG
    from siprec.config import ConfigError, load_config
    from siprec.stt.provider import describe
    from siprec.stt.registry import NONE, ProviderRegistry

    path: Path | None = args.config
    if path is None and DEFAULT_CONFIG.is_file():
        path = DEFAULT_CONFIG
    try:
        config = load_config(path)
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 1
    registry = ProviderRegistry()
    providers = registry.providers()
    stt = config.stt
    problems: list[str] = []
    warnings: list[str] = []
    try:
        warnings = list(registry.plan(stt).warnings)
    except ConfigError as err:
        problems = [str(p) for p in err.problems]
    configured = [] if stt.provider == NONE else [stt.provider, *[f for f in stt.fallback if f != NONE]]
    report: dict[str, Any] = {
        "providers": [
            {
                **describe(cls),
                "origin": registry.origin(name),
                "configured": "provider"
                if name == stt.provider
                else "fallback"
                if name in configured
                else None,
            }
            for name, cls in providers.items()
        ],
        "broken": [{"name": n, "error": e} for n, e in registry.broken().items()],
        "configured": {
            "provider": stt.provider,
            "fallback": list(stt.fallback),
            "language": stt.language,
            "config": str(path) if path else None,
        },
        "problems": problems,
        "warnings": warnings,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _print_text(report)
    return 0


def _print_text(report: dict[str, Any]) -> None:
    conf = report["configured"]
    print(f"installed speech-to-text providers ({len(report['providers'])}):")
    for p in report["providers"]:
        mark = f"  <- {p['configured']}" if p["configured"] else ""
        caps = [c for c in ("streaming", "partials", "word_timestamps") if p[c]]
        print(f"  {p['name']}{mark}")
        print(
            f"      {', '.join(caps) or 'batch only'}; languages {', '.join(p['languages'])}; "
            f"input rates {', '.join(map(str, p['sample_rates']))} Hz"
        )
        print(f"      options: {', '.join(p['config']) or '(none)'}; from {p['origin']}")
    for b in report["broken"]:
        print(f"  {b['name']}  UNUSABLE: {b['error']}")
    fallback = ", ".join(conf["fallback"]) or "none"
    source = conf["config"] or "built-in defaults"
    print(
        f"configured ({source}): provider {conf['provider']}, fallback {fallback}, language {conf['language']}"
    )
    for w in report["warnings"]:
        print(f"warning: {w}")
    for p in report["problems"]:
        print(f"problem: {p}", file=sys.stderr)
