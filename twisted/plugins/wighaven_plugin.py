"""twistd entry point of WigHaven Gateway: `twistd -n wighaven --port 7860`.

Only the plugin declaration lives here; the options and the service are in
wighaven.run.tap, imported lazily so `twistd --help` stays fast.
"""

from twisted.application.service import ServiceMaker

wighaven = ServiceMaker(
    "WigHaven Gateway",
    "wighaven.run.tap",
    "A streaming reverse proxy that puts a private Hugging Face Space on the public internet.",
    "wighaven",
)
