"""What every feature shares: settings, the database, errors, base schemas, pagination, identity."""
