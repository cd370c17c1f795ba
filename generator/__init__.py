"""datamesh: one spec per data product becomes a dbt project and an Airflow DAG (docs/architecture.md)."""

# The version every generated file's header names. Bump it when the generated output changes.
__version__ = "0.2.0"
