"""The operations console: an Airflow 3 plugin serving the catalog's API and pages in the api-server.

`DatameshPlugin` (airflow_plugin.py) is what Airflow loads, in every Airflow process, tasks included,
so importing it costs next to nothing: the FastAPI app (app.py, api.py, pages.py) is built on the
first request the api-server routes to it. Registered by the package's `airflow.plugins` entry point.
"""

from generator.plugin.airflow_plugin import DatameshPlugin

__all__ = ["DatameshPlugin"]
