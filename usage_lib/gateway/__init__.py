"""The gateway's database as this dashboard sees it: its tables (`schema`), a read-only
connection that checks them (`db`), and the LiteLLM router config (`routerconfig`)."""
