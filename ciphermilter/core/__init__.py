"""The pure core: message bytes + envelope + key store -> EditPlan. No Milter, click or sqlite3."""
