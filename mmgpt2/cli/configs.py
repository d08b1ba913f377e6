"""`mmgpt2 list-configs`: the named configs of the papers' setups (`mmgpt2/configs/*.json`)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("list-configs", help="named configs of the papers' setups (recipes read them)")
    parser.add_argument("name", nargs="?", help="print this config as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mmgpt2.configs import list_configs, load_named_config

    if args.name:
        print(json.dumps(load_named_config(args.name).to_dict(), indent=2))
        return 0
    for name in list_configs():
        named = load_named_config(name)
        spec = named.pipeline
        print(f"{name:28s} {spec['type']:24s} {spec['encoder']} + {spec['lm']}")
        print(f"{'':28s} {named.description}")
    return 0
