"""The admin API's domain: routes, configuration import and export, connection tests."""
