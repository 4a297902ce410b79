"""To-dos: CRUD, completion, search, keyset pagination, conditional writes, delta sync."""
