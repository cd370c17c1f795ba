"""The import path of the SLA-miss callback in DAGs rendered before generator 0.2.0.

Airflow stores a DeadlineAlert's callback path with each run (`generator.incidents.record_sla_miss`
for those DAGs), so runs queued before an upgrade still find it here. New DAGs use
generator.runtime.callbacks; this alias can go once no run from before the upgrade is pending.
"""

from generator.runtime.callbacks import record_sla_miss

__all__ = ["record_sla_miss"]
