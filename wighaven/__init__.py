"""WigHaven Gateway: a streaming reverse proxy that puts a private Hugging
Face Space (or any private HTTP app) safely on the public internet."""

__version__ = "0.1.0"
