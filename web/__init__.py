"""The web layer: turns HTTP requests and commands into calls of `ml`, and the results back.

Grouped by area (accounts, doctor, datasets, training, models, jobs, audit); see docs/architecture.md.
Importing this package imports no Flask: a job's process (worker.py) uses web.jobs.run and web.records.
"""
