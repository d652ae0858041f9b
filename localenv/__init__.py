"""Running the system on one machine: private Redis/Postgres, migrations, the process supervisor."""
