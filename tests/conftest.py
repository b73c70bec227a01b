# Fixture plugins. Append further plugin modules to this list.
pytest_plugins = [
    "tests.support.postgres",
    "tests.support.browser",
    "tests.support.gateway",
    "tests.support.archive",
    "tests.support.dashboard",
    "tests.support.serving",
]
