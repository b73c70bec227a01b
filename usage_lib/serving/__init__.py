"""The dashboard served to people: who is looking (`identity`, `voila_hooks`), the served
page (`page`, `usage_dashboard.ipynb`), the Voila process and its configuration (`voila_process`,
`voila_config/voila.py`), `serve`, and PDF/PNG capture of the real page (`capture`)."""
