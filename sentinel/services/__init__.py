"""Loop services: periodic jobs run by APScheduler in exactly one process."""
