"""Airflow's auth manager guards every route of the console.

Plugin apps are mounted without a login check of their own, so each route depends on one of these:
- `can_read`: reading the catalog = reading Airflow's assets (each product output is an Asset its DAG
  publishes). FAB: every built-in role (Viewer and up) has it. Simple auth manager: every role.
- `can_write`: recording a subscription = creating on assets. FAB: User, Op and Admin have it, Viewer
  does not (403). Simple auth manager: OP and ADMIN (asset writes need OP there), not VIEWER or USER.
No login at all (no JWT cookie or bearer token) is 401 for both.
"""

from __future__ import annotations

from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_asset
from fastapi import Depends

can_read = Depends(requires_access_asset("GET"))
can_write = Depends(requires_access_asset("POST"))

__all__ = ["GetUserDep", "can_read", "can_write"]
