"""`gateway test <lang>|all`: story tests + NLU evaluation; the verdict is kept next to the model."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.commands.common import Subparsers, config_name, say, select_langs, settings_from_args
from gateway.errors import ConfigError, DeliveryError


def register(sub: Subparsers) -> None:
    """Add the `test` parser."""
    parser = sub.add_parser(
        "test",
        help="run a bot's story tests and NLU evaluation; exit 1 when a gate fails",
        description="Runs bots/<lang>/tests/*.yml against the bot's current model and cross-validates "
        "data/nlu.yml; fails on a failed story or when intent accuracy/F1 is below delivery.min_intent_*. "
        "The verdict is written next to the model as <model>.tests.json; publish refuses models without one.",
    )
    parser.add_argument("lang", help="language code, or 'all'")
    parser.add_argument("--model", type=Path, help="model archive to test (default: the bot's current model)")
    parser.add_argument("--prod", action="store_true", help="test the model trained from config.prod.yml")
    parser.add_argument("--results", type=Path, help="keep Rasa's raw story reports in this folder")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Test the selected bots (all of them, even after a failure); exit 1 when any failed."""
    from gateway import logs
    from gateway.delivery.evaluation import evaluate_model, model_to_test
    from gateway.delivery.records import write_record
    from gateway.delivery.report import format_record, format_summary

    settings = settings_from_args(args)
    logs.configure(settings.logging)
    langs = select_langs(settings, args.lang)
    if args.model is not None and len(langs) != 1:
        raise ConfigError("--model names one archive: give one language, not 'all'")
    config = config_name(args.prod)
    records = []
    for lang in langs:
        model = args.model.resolve() if args.model is not None else model_to_test(settings, lang, config)
        results = args.results / lang if args.results is not None else None
        record = evaluate_model(settings, lang, model, config_name=config, results_dir=results, progress=say)
        say(format_record(record, write_record(record, model)))
        records.append(record)
    if len(records) > 1:
        say(format_summary(records))
    failed = [r.lang for r in records if not r.passed]
    if failed:
        raise DeliveryError(f"tests failed for {', '.join(failed)}: see the table above")
    return 0
