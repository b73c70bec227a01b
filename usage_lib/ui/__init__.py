"""The live page as ipywidgets: the dashboard (`dashboard`), its charts, its top table,
the Export control, and the invisible widget that keeps the address in step."""
