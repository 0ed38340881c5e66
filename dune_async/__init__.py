"""dune_async: run many Dune queries concurrently and stream their results into Fivetran."""

__version__ = "0.1.0"
