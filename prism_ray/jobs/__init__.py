"""Running prism-ray on an existing Ray cluster through the Ray Jobs API: submit a recipe,
follow its logs, and inspect, list or stop jobs. Everything here talks to the dashboard's
HTTP endpoint (``http://HEAD:8265``); nothing needs a local Ray cluster."""
