"""The demo: the service on SQLite, a fleet of real agents, failures in Llama 3's mix."""
