"""The gateway's own pages (Klein): the dashboard and its static parts, health."""
