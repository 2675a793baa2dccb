"""Sub-commands of the ingest area, registered into `storeflow` by storeflow.cli: ``ingest run``."""

from __future__ import annotations

import argparse

from storeflow.cli import add_db_arg


def _cmd_run(args: argparse.Namespace) -> int:
    from ingest.service import IngestService
    from storeflow.settings import get_settings

    overrides = {
        k: v
        for k, v in {
            "mqtt_url": args.mqtt_url,
            "ingest_group": args.group,
            "ingest_client_id": args.client_id,
            "ingest_metrics_port": args.metrics_port,
            "topic_prefix": args.topic_prefix,
        }.items()
        if v is not None
    }
    settings = get_settings().model_copy(update=overrides)
    return IngestService(settings, args.database_url, shared=not args.no_shared, leave=args.leave).run()


def register(sub: argparse._SubParsersAction) -> None:
    """Add this area's sub-commands to the `storeflow` parser."""
    ing = sub.add_parser("ingest", help="MQTT -> database ingest service")
    isub = ing.add_subparsers(dest="ingest_command", required=True, metavar="{run}")
    run = isub.add_parser(
        "run", help="consume the edge agents' batches and store them (until SIGTERM/SIGINT)"
    )
    add_db_arg(run)
    run.add_argument(
        "--mqtt-url", default=None, help="broker, mqtt://host:port (default: STOREFLOW_MQTT_URL)"
    )
    run.add_argument(
        "--group", default=None, help="shared-subscription group (default: STOREFLOW_INGEST_GROUP)"
    )
    run.add_argument(
        "--client-id",
        default=None,
        help="MQTT client id, i.e. the persistent session (default: STOREFLOW_INGEST_CLIENT_ID, "
        "else <group>-<host>-<slot>)",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="Prometheus /metrics port, 0 = off (default: STOREFLOW_INGEST_METRICS_PORT)",
    )
    run.add_argument(
        "--topic-prefix", default=None, help="first topic level (default: STOREFLOW_TOPIC_PREFIX)"
    )
    run.add_argument(
        "--no-shared",
        action="store_true",
        help="plain MQTT 3.1.1 subscription instead of an MQTT 5 shared one (brokers without "
        "shared subscriptions; run a single process then)",
    )
    run.add_argument(
        "--leave",
        action="store_true",
        help="scale down: unsubscribe this --client-id from the group, store what the broker still "
        "holds for its session, end the session and exit",
    )
    run.set_defaults(func=_cmd_run)
