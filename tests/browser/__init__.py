"""Browser tests of the dashboard (Chromium through Playwright)."""
