"""What the gateway tells about itself: metrics, figures for the dashboard, logs, the exchange log and the dashboard's live feed."""
