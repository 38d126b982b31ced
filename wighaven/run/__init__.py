"""Start-up and the process model: the twistd options, the running service, workers and their supervisor, drain, the event loop's tuning."""
