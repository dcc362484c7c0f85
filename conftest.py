"""Root pytest configuration: every test in the monorepo gets the real-infrastructure fixtures."""

pytest_plugins = ["npo_deploy.testing"]
