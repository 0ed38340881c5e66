"""Fivetran entry point for the Dune connector. It only wires: the work happens in `dune_async/`.

Run locally with `fivetran debug --configuration configuration.json`; see README.md.
"""

from fivetran_connector_sdk import Connector
from fivetran_connector_sdk import Logging as log
from fivetran_connector_sdk import Operations as op

from dune_async.discovery import declared_tables, destination_schema
from dune_async.logbridge import sdk_logging
from dune_async.setup_form import configuration_form
from dune_async.sync import run_sync


def schema(configuration: dict) -> list:
    """`dune_query_result`, `dune_query_execution`, and a typed table per catalogue entry."""
    with sdk_logging(log):
        return destination_schema(configuration)


def update(configuration: dict, state: dict) -> None:
    """One sync: every configured query runs concurrently; rows stream to Fivetran with checkpoints."""
    with sdk_logging(log):
        run_sync(configuration, state, op, declared_tables=declared_tables(configuration))


connector = Connector(update=update, schema=schema, configuration_form=configuration_form)
